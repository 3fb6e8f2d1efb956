"""The data handed between stages: a Scene on a grid (read -> infer) and a MaskResult (infer -> publish)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pystac
from affine import Affine
from rasterio.crs import CRS

from .aoi import Window

BAND_SUBSTITUTES = "clouds2mask:band_substitutes"  # source item property: model band -> the band standing in


@dataclass(frozen=True)
class AoiCut:
    """Where the AOI lies on a clipped scene: the published window in the scene's pixels, the pixels of that
    window inside the AOI, the AOI's identity and the AOI inside the item's footprint (GeoJSON, WGS84)."""

    window: Window
    inside: np.ndarray  # bool (window.height, window.width)
    id: str
    geometry: dict[str, Any]


@dataclass
class Scene:
    """One source item's bands on the processing grid, kept as DNs with their scale and offset.

    dn: (bands, H, W) as stored (uint16 for Sentinel-2): half the memory of float32 reflectance,
    which matters for full 10 m scenes. reflectance = dn * scale + offset (TOA for L1C, BOA for
    L2A, the +1000 offset removed). nodata: each band's declared nodata DN besides 0 (None if none).
    valid: bool (H, W), False where any band is nodata.
    aoi: for a clipped read, where the AOI lies on this grid (the grid then holds the AOI's window and the
    context margin around it; ``published()`` is the AOI's window alone).
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
    aoi: AoiCut | None = None

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

    def published(self) -> Scene:
        """The grid that is published, without band values: the AOI's window (pixels outside the AOI not
        valid) for a clipped read, else the whole scene."""
        if self.aoi is None:
            return self.without_pixels()
        w = self.aoi.window
        rows, cols = w.slices()
        return replace(
            self,
            dn=np.empty((self.dn.shape[0], 0, 0), self.dn.dtype),
            valid=self.valid[rows, cols] & self.aoi.inside,
            transform=self.transform * Affine.translation(w.col, w.row),
            aoi=replace(self.aoi, window=Window(0, 0, w.height, w.width)),
        )

    def crop(self, array: np.ndarray, fill: int) -> np.ndarray:
        """A (..., H, W) array of this grid on the published grid: the AOI window, ``fill`` outside the AOI."""
        if self.aoi is None:
            return array
        rows, cols = self.aoi.window.slices()
        out = array[..., rows, cols].copy()
        out[..., ~self.aoi.inside] = fill
        return out

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
