"""The area of interest (AOI) of a clipped run: its identity, where it meets an item, its window on a grid.

With ``--clip`` each item is read and masked only over the AOI, in the item's own grid. The published
mask is a window of the whole-scene grid (the AOI's envelope in the item's CRS, snapped outward to whole
pixels: no resampling, so every AOI mask pixel is a pixel of the whole-scene mask). The network also sees
a context margin around that window, which is read and inferred but not published: the model's answer
near a window edge depends on what lies beyond it (the margin's size is measured in
benchmarks/aoi_margin.py). The read window is also widened to the encoder's 32 px lattice of the whole
scene, so the patches of a clipped run sit on the same lattice as those of a whole-scene run.

The AOI is kept as a GeoJSON geometry in WGS84 longitude/latitude. A bbox AOI is the polygon of the bbox
(two polygons across the antimeridian). Pixels of the window outside the AOI geometry are nodata (255),
and the AOI statistics count pixels inside it only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from .infer.plan import LATTICE  # the encoder's total stride: read windows start on its multiples

CONTEXT_MARGIN = 96  # px of the processing grid read around the AOI window (benchmarks/aoi_margin.py)
_ID_DIGITS = 7  # coordinates rounded to 1e-7 degree (~1 cm) for the AOI's identity
_DENSIFY_DEGREES = 0.01  # edges split every ~1 km before reprojection, so curved edges stay inside


@dataclass(frozen=True)
class Window:
    """Rows [row, row + height) and columns [col, col + width) of a grid."""

    row: int
    col: int
    height: int
    width: int

    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)

    def within(self, outer: Window) -> Window:
        """This window in the pixel coordinates of ``outer`` (which holds it)."""
        return Window(self.row - outer.row, self.col - outer.col, self.height, self.width)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, _ID_DIGITS)
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def aoi_id(geometry: dict[str, Any]) -> str:
    """A short identity of the AOI: equal for the same geometry (to ~1 cm), different for another one."""
    from .search import geometry_from_geojson

    canonical = shapely.normalize(geometry_from_geojson(geometry))
    text = json.dumps(_rounded(shapely.geometry.mapping(canonical)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def footprint_part(geometry: dict[str, Any], footprint: dict[str, Any] | None) -> dict[str, Any] | None:
    """The AOI inside an item's footprint (GeoJSON, WGS84); None when they do not meet. Without a
    footprint the whole AOI (the read decides then)."""
    from .search import geometry_from_geojson

    aoi = geometry_from_geojson(geometry)
    if footprint is None:
        return shapely.geometry.mapping(aoi)
    try:
        part = aoi.intersection(shapely.geometry.shape(footprint))
    except (shapely.errors.GEOSException, ValueError, TypeError, AttributeError):
        return shapely.geometry.mapping(aoi)  # an unreadable footprint decides nothing: the grid will
    if part.is_empty or part.area == 0:
        return None
    return shapely.geometry.mapping(part)


def in_crs(geometry: dict[str, Any], crs: Any) -> BaseGeometry:
    """The AOI in ``crs`` (edges densified first, so a long straight edge in degrees stays an edge)."""
    from rasterio.warp import transform

    from .search import geometry_from_geojson

    geom = shapely.segmentize(geometry_from_geojson(geometry), _DENSIFY_DEGREES)
    return shapely.transform(geom, lambda xy: np.column_stack(transform("EPSG:4326", crs, xy[:, 0], xy[:, 1])))


def aoi_window(shape: BaseGeometry, transform: Any, height: int, width: int) -> Window | None:
    """The window of a grid (north-up ``transform``, ``height`` x ``width``) holding the AOI's envelope,
    snapped outward to whole pixels and cut to the grid; None when the AOI misses the grid."""
    left, bottom, right, top = shape.bounds
    res_x, res_y = transform.a, -transform.e
    col0 = math.floor(round((left - transform.c) / res_x, 6))
    col1 = math.ceil(round((right - transform.c) / res_x, 6))
    row0 = math.floor(round((transform.f - top) / res_y, 6))
    row1 = math.ceil(round((transform.f - bottom) / res_y, 6))
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, width), min(row1, height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(row0, col0, row1 - row0, col1 - col0)


def read_window(window: Window, margin: int, height: int, width: int) -> Window:
    """``window`` widened by ``margin`` px of context on every side, its start moved back to the 32 px lattice
    of the grid, cut to the grid."""
    row0 = max((window.row - margin) // LATTICE * LATTICE, 0)
    col0 = max((window.col - margin) // LATTICE * LATTICE, 0)
    row1 = min(window.row + window.height + margin, height)
    col1 = min(window.col + window.width + margin, width)
    return Window(row0, col0, row1 - row0, col1 - col0)


def inside(shape: BaseGeometry, transform: Any, height: int, width: int) -> np.ndarray:
    """bool (height, width): pixels the AOI touches (so an AOI smaller than a pixel still has one)."""
    from rasterio.features import geometry_mask

    return geometry_mask([shapely.geometry.mapping(shape)], (height, width), transform, all_touched=True, invert=True)
