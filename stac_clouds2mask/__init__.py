"""STAC-native cloud and cloud-shadow masks for Sentinel-2.

Python API: `run` (search, read, infer, publish a batch), the stages `search`, `read_scene`,
`predict` and `Publisher`, and `mask_array` for reflectance already in memory.
"""

__version__ = "0.1.0"

from .api import mask_array  # noqa: E402
from .errors import (  # noqa: E402
    Clouds2MaskError,
    ConfigurationError,
    InvalidInputError,
    ItemError,
    ModelError,
    PublishError,
    SourceDataError,
)
from .infer import Prediction, predict  # noqa: E402
from .pipeline import RunConfig, RunReport, Runner, run  # noqa: E402
from .publish import Publisher, StacApi, StaticCatalog  # noqa: E402
from .read import read_scene  # noqa: E402
from .scene import MaskResult, Scene  # noqa: E402
from .search import SearchFilters, search  # noqa: E402

__all__ = [
    "Clouds2MaskError",
    "ConfigurationError",
    "InvalidInputError",
    "ItemError",
    "ModelError",
    "PublishError",
    "SourceDataError",
    "MaskResult",
    "Prediction",
    "Publisher",
    "RunConfig",
    "RunReport",
    "Runner",
    "Scene",
    "SearchFilters",
    "StacApi",
    "StaticCatalog",
    "__version__",
    "mask_array",
    "predict",
    "read_scene",
    "run",
    "search",
]
