"""The data handed between stages: a Scene on a grid (read -> infer) and a MaskResult (infer -> publish)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pystac
from affine import Affine
from rasterio.crs import CRS

BAND_SUBSTITUTES = "clouds2mask:band_substitutes"  # source item property: model band -> the band standing in


@dataclass
class Scene:
    """One source item's bands on the processing grid, kept as DNs with their scale and offset.

    dn: (bands, H, W) as stored (uint16 for Sentinel-2): half the memory of float32 reflectance,
    which matters for full 10 m scenes. reflectance = dn * scale + offset (TOA for L1C, BOA for
    L2A, the +1000 offset removed). nodata: each band's declared nodata DN besides 0 (None if none).
    valid: bool (H, W), False where any band is nodata.
    """

    item: pystac.Item
    dn: np.ndarray
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    nodata: tuple[float | None, ...]
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

    def without_pixels(self) -> Scene:
        """The same item on the same grid without its band values: all that publishing needs, so a
        batch does not hold a finished scene's DNs (1.4 GB for six 10 m bands) while it writes."""
        return replace(self, dn=np.empty((self.dn.shape[0], 0, 0), self.dn.dtype))

    @property
    def reflectance(self) -> np.ndarray:
        """float32 (bands, H, W) reflectance, 0 where not valid (computed on demand)."""
        out = self.dn.astype(np.float32) * np.asarray(self.scale, np.float32)[:, None, None]
        out += np.asarray(self.offset, np.float32)[:, None, None]
        out[:, ~self.valid] = 0.0
        return out


@dataclass
class MaskResult:
    """The class map of one scene, on the scene's grid, ready to publish.

    classes: uint8 (H, W): 0 clear, 1 cloud, 2 cloud shadow, 255 nodata.
    probabilities: optional uint8 (3, H, W), softmax x 254 per class, 255 nodata.
    settings: what the run asked for (compared by reruns); execution: what ran (infer.Prediction.record:
    runtime, precision, layout, threads, device, patch plan), recorded beside them.
    """

    scene: Scene
    classes: np.ndarray
    model_name: str
    probabilities: np.ndarray | None = None
    settings: dict[str, object] = field(default_factory=dict)
    execution: dict[str, object] = field(default_factory=dict)
