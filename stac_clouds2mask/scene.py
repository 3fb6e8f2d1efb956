"""The data handed between stages: a Scene on a grid (read -> infer) and a MaskResult (infer -> publish)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pystac
from affine import Affine
from rasterio.crs import CRS


@dataclass
class Scene:
    """Reflectance of one source item on the processing grid.

    reflectance: float32 (bands, H, W), TOA for L1C and BOA for L2A, offset removed.
    valid: bool (H, W), False where any needed band is nodata (DN 0 or the declared nodata).
    """

    item: pystac.Item
    reflectance: np.ndarray
    valid: np.ndarray
    bands: tuple[str, ...]
    crs: CRS
    transform: Affine
    level: str
    assets: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.valid.shape  # type: ignore[return-value]

    @property
    def resolution(self) -> float:
        return abs(self.transform.a)


@dataclass
class MaskResult:
    """The class map of one scene, on the scene's grid, ready to publish.

    classes: uint8 (H, W): 0 clear, 1 cloud, 2 cloud shadow, 255 nodata.
    probabilities: optional uint8 (3, H, W), softmax x 255 per class.
    """

    scene: Scene
    classes: np.ndarray
    model_name: str
    probabilities: np.ndarray | None = None
    settings: dict[str, object] = field(default_factory=dict)
