"""A small palette PNG of a class mask: the legend's colours (legend.py), nodata transparent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..classes import NODATA
from .legend import rgb

MAX_SIZE = 256


def thumbnail_array(classes: np.ndarray, max_size: int = MAX_SIZE) -> np.ndarray:
    """Nearest-neighbour subsample (classes are never averaged) so the longer side is at most max_size."""
    step = max(1, -(-max(classes.shape) // max_size))
    return np.ascontiguousarray(classes[step // 2 :: step, step // 2 :: step])


def write_thumbnail(classes: np.ndarray, path: str | Path, max_size: int = MAX_SIZE) -> None:
    """Write `classes` (uint8 H, W) as an indexed PNG with the fixed palette; nodata fully transparent."""
    small = thumbnail_array(classes, max_size).astype(np.uint8, copy=False)
    img = Image.frombytes("P", (small.shape[1], small.shape[0]), small.tobytes())
    img.putpalette([channel for value in range(256) for channel in rgb(value)])
    img.save(str(path), format="PNG", transparency=NODATA, optimize=True)
