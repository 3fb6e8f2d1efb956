"""The class legend of the masks, the one place its values, names and colours are declared: the item's
`classification:classes`, the COG's colour table and category names and the thumbnail's palette all
derive from it, so QGIS, GDAL, a STAC browser and the thumbnail show the same colours."""

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
    },
    {"value": 1, "name": "cloud", "title": "Cloud", "description": "Cloud", "color_hint": "FFFFFF"},
    {
        "value": 2,
        "name": "cloud-shadow",
        "title": "Cloud shadow",
        "description": "Cloud shadow",
        "color_hint": "5A3C8C",
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


def category_names() -> list[str]:
    """GDAL category names, indexed by value (empty for values outside the legend)."""
    names = [""] * (NODATA + 1)
    for c in CLASSES:
        names[c["value"]] = c["name"]
    return names
