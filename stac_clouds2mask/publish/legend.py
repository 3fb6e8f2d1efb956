"""The class legend of the masks, the one place its values, names and colours are declared: the item's
`classification:classes`, the COG's colour table and category names and the thumbnail's palette all
derive from it, so QGIS, GDAL, a STAC browser, a tile server and the thumbnail show the same colours.

Every class says `nodata` (false or true), not only the nodata class: columnar copies of the items (stac-geoparquet)
give every class object the same fields, and a field absent from some classes comes back null, which the
classification schema refuses."""

from __future__ import annotations

from typing import Any

from ..classes import NODATA

CLASSES: list[dict[str, Any]] = [
    {
        "value": 0,
        "name": "clear",
        "title": "Clear",
        "description": "Clear: valid pixel without cloud or cloud shadow",
        "color_hint": "3C8C3C",
        "nodata": False,
    },
    {"value": 1, "name": "cloud", "title": "Cloud", "description": "Cloud", "color_hint": "FFFFFF", "nodata": False},
    {
        "value": 2,
        "name": "cloud-shadow",
        "title": "Cloud shadow",
        "description": "Cloud shadow",
        "color_hint": "5A3C8C",
        "nodata": False,
    },
    {
        "value": NODATA,
        "name": "nodata",
        "title": "No data",
        "description": "No data in the source item",
        "color_hint": "000000",
        "nodata": True,
    },
]
# names follow the classification extension's pattern (no spaces) and the STAC roles `cloud`, `cloud-shadow`
CLASS_NAMES = tuple(c["name"] for c in CLASSES if not c.get("nodata"))  # model outputs, in value order


def rgb(value: int) -> tuple[int, int, int]:
    """The colour of a class value (its color_hint); black for values outside the legend."""
    for c in CLASSES:
        if c["value"] == value:
            return tuple(int(c["color_hint"][i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    return (0, 0, 0)


def colormap() -> dict[int, tuple[int, int, int, int]]:
    """A GDAL colour table for all 256 uint8 values: the legend's colours, nodata transparent."""
    return {v: (*rgb(v), 0 if v == NODATA else 255) for v in range(256)}


def render_colormap() -> dict[str, list[int]]:
    """The legend's colours as the STAC render extension's `colormap` (titiler's JSON colormap: value ->
    RGBA), nodata transparent."""
    return {str(v): list(rgba) for v, rgba in colormap().items() if any(c["value"] == v for c in CLASSES)}


def category_names() -> list[str]:
    """GDAL category names, indexed by value: the classes the model outputs (0..2). Names are positional in
    GDAL, so naming nodata (255) would make GDAL and QGIS list 256 categories, 253 of them empty; nodata is
    the band's nodata value instead."""
    names = [""] * (max(c["value"] for c in CLASSES if not c.get("nodata")) + 1)
    for c in CLASSES:
        if not c.get("nodata"):
            names[c["value"]] = c["name"]
    return names
