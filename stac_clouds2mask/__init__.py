"""STAC-native cloud and cloud-shadow masks for Sentinel-2.

Python API: `run` (search, read, infer, publish a batch), the stages `search`, `read_scene`,
`predict` and `Publisher`, and `mask_array` for reflectance already in memory.

Names are imported on first use (PEP 562), so that `import stac_clouds2mask` and the command line's
`--help` do not load torch and rasterio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_names

__version__ = "0.1.0"

_NAMES = {
    "access": ("header_secrets", "headers_from_env", "parse_headers"),
    "api": ("mask_array",),
    "config": ("RunConfig",),
    "errors": (
        "Clouds2MaskError",
        "ConfigurationError",
        "EmptySearchError",
        "InvalidInputError",
        "ItemError",
        "ModelError",
        "OptionError",
        "PublishError",
        "SourceDataError",
    ),
    "infer": ("Prediction", "predict"),
    "model": ("list_models",),
    "publish": ("Publisher", "StacApi", "StaticCatalog"),
    "read": ("read_scene",),
    "report": ("ItemOutcome", "Progress", "RunReport", "environment_secrets", "redact", "unfinished_ids"),
    "runner": ("Interrupted", "Runner", "interruptible", "run"),
    "scene": ("MaskResult", "Scene"),
    "search": ("EARTH_SEARCH", "SearchFilters", "load_geojson", "search", "search_all"),
    "stack": ("stack_masked",),
    "storage": ("StorageOptions", "write_bytes_atomic", "write_json_atomic"),
    "task": ("absolute_item_dict",),
}
__all__ = [
    "__version__",
    "Clouds2MaskError",
    "ConfigurationError",
    "EARTH_SEARCH",
    "EmptySearchError",
    "Interrupted",
    "InvalidInputError",
    "ItemError",
    "ItemOutcome",
    "MaskResult",
    "ModelError",
    "OptionError",
    "Prediction",
    "Progress",
    "PublishError",
    "Publisher",
    "RunConfig",
    "RunReport",
    "Runner",
    "Scene",
    "SearchFilters",
    "SourceDataError",
    "StacApi",
    "StaticCatalog",
    "StorageOptions",
    "absolute_item_dict",
    "environment_secrets",
    "header_secrets",
    "headers_from_env",
    "interruptible",
    "list_models",
    "load_geojson",
    "mask_array",
    "parse_headers",
    "predict",
    "read_scene",
    "redact",
    "run",
    "search",
    "search_all",
    "stack_masked",
    "unfinished_ids",
    "write_bytes_atomic",
    "write_json_atomic",
]


__getattr__, __dir__ = lazy_names(__name__, _NAMES)

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from .access import header_secrets, headers_from_env, parse_headers
    from .api import mask_array
    from .config import RunConfig
    from .errors import (
        Clouds2MaskError,
        ConfigurationError,
        EmptySearchError,
        InvalidInputError,
        ItemError,
        ModelError,
        OptionError,
        PublishError,
        SourceDataError,
    )
    from .infer import Prediction, predict
    from .model import list_models
    from .publish import Publisher, StacApi, StaticCatalog
    from .read import read_scene
    from .report import ItemOutcome, Progress, RunReport, environment_secrets, redact, unfinished_ids
    from .runner import Interrupted, Runner, interruptible, run
    from .scene import MaskResult, Scene
    from .search import EARTH_SEARCH, SearchFilters, load_geojson, search, search_all
    from .stack import stack_masked
    from .storage import StorageOptions, write_bytes_atomic, write_json_atomic
    from .task import absolute_item_dict
