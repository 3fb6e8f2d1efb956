"""Small pictures of a mask: the item's palette PNG (the legend's colours, legend.py, nodata transparent) and
the run page's preview of the mask over the scene's true colour."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..classes import NODATA
from ..scene import Scene
from ..storage import StorageOptions, get_fs
from .legend import rgb

MAX_SIZE = 256
THUMBNAIL_ASSET = "thumbnail"  # the item asset of the palette PNG (publish/items.py adds it)


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


PREVIEW_SIZE = 192  # px, longer side of the run page's previews (a few KB each as JPEG)
PREVIEW_ALPHA = 0.55  # opacity of cloud and shadow over the true colour
_TRUE_COLOUR = ("red", "green", "blue")
_GAIN = 3.5  # reflectance 0-0.29 spans the display range, as Sentinel-2's own true-colour images do


def overlay_preview(scene: Scene, classes: np.ndarray, max_size: int = PREVIEW_SIZE) -> bytes | None:
    """A small JPEG of the published mask over the scene's true colour (cloud and shadow in the legend's
    colours, clear as the image is, nodata dark), for the run page; None where the scene has no red, green
    and blue bands."""
    if not all(b in scene.bands for b in _TRUE_COLOUR):
        return None
    step = max(1, -(-max(classes.shape) // max_size))
    rows, cols = scene.aoi.window.slices() if scene.aoi is not None else (slice(None), slice(None))
    small = classes[step // 2 :: step, step // 2 :: step]
    picked = [scene.bands.index(b) for b in _TRUE_COLOUR]
    dn = scene.dn[picked][:, rows, cols][:, step // 2 :: step, step // 2 :: step].astype(np.float32)
    scale = np.asarray([scene.scale[i] for i in picked], np.float32)[:, None, None]
    offset = np.asarray([scene.offset[i] for i in picked], np.float32)[:, None, None]
    image = np.clip((dn * scale + offset) * _GAIN, 0, 1) ** (1 / 1.2) * 255
    image = np.moveaxis(image, 0, -1)
    for value in (1, 2):
        hit = small == value
        image[hit] = (1 - PREVIEW_ALPHA) * image[hit] + PREVIEW_ALPHA * np.asarray(rgb(value), np.float32)
    image[small == NODATA] = 24
    out = io.BytesIO()
    Image.fromarray(image.astype(np.uint8), "RGB").save(out, format="JPEG", quality=82)
    return out.getvalue()


PREVIEW_MAX_BYTES = 2**20  # a published thumbnail larger than this is not embedded in the run page


def published_thumbnail(item: dict[str, Any], options: StorageOptions | None = None) -> bytes | None:
    """The PNG thumbnail of a published mask item (absolute hrefs), for the run page of a rerun that skipped
    it; None where it has none or it cannot be read (the page then says so: it is no reason to fail)."""
    href = item.get("assets", {}).get(THUMBNAIL_ASSET, {}).get("href")
    if not isinstance(href, str) or "://" in href and not href.startswith(("s3://", "http://", "https://")):
        return None
    try:
        fs, path = get_fs(href, options)
        with fs.open(path, "rb") as f:
            data = f.read(PREVIEW_MAX_BYTES + 1)
    except (OSError, ValueError):
        return None
    return data if len(data) <= PREVIEW_MAX_BYTES and data.startswith(b"\x89PNG") else None
