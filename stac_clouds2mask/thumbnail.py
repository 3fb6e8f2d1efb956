"""A small palette PNG of a class mask: the same colours everywhere, nodata transparent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .cog import NODATA

# class value -> RGB; the colours of the legend's color_hint in stac_item.CLASSES
PALETTE = {0: (0x3C, 0x8C, 0x3C), 1: (0xFF, 0xFF, 0xFF), 2: (0x5A, 0x3C, 0x8C), NODATA: (0, 0, 0)}
MAX_SIZE = 256


def thumbnail_array(classes: np.ndarray, max_size: int = MAX_SIZE) -> np.ndarray:
    """Nearest-neighbour subsample (classes are never averaged) so the longer side is at most max_size."""
    step = max(1, -(-max(classes.shape) // max_size))
    return np.ascontiguousarray(classes[step // 2 :: step, step // 2 :: step])


def write_thumbnail(classes: np.ndarray, path: str | Path, max_size: int = MAX_SIZE) -> None:
    """Write `classes` (uint8 H, W) as an indexed PNG with the fixed palette; nodata fully transparent."""
    small = thumbnail_array(classes, max_size).astype(np.uint8, copy=False)
    img = Image.frombytes("P", (small.shape[1], small.shape[0]), small.tobytes())
    palette = [0] * (256 * 3)
    for value, rgb in PALETTE.items():
        palette[value * 3 : value * 3 + 3] = rgb
    img.putpalette(palette)
    img.save(str(path), format="PNG", transparency=NODATA, optimize=True)
