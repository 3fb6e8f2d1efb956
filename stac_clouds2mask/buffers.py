"""Cloud and cloud-shadow buffers: clear pixels near the model's clouds (or shadows) published as cloud (or shadow).

Users mask with a margin because the edges of clouds and shadows are where the models miss (ukis-csmask's
`invalid_buffer`, s2cloudless's `dilation_size`); here each class has its own distance, in metres, so that
one setting means the same on a 10 m and on a 20 m grid. The rule, applied to the class map after
inference and before publishing (the probabilities stay as the network gave them):

- a clear pixel whose centre lies within `cloud_buffer` metres of the centre of a pixel the model called
  cloud becomes cloud; then a clear pixel within `shadow_buffer` metres of a pixel the model called
  shadow becomes shadow. So where both buffers reach a clear pixel, cloud wins;
- a buffer only claims clear pixels: where a cloud buffer meets the model's shadow the shadow stays
  shadow (and the reverse), and nodata (255) is never overwritten. Buffers grow from the model's own
  pixels only, never from other buffered pixels.

The disk is built from one-dimensional maximum filters (scipy.ndimage), one per distinct half-width of
its rows, so the cost grows with the radius in pixels, not with its square, and memory stays at three
masks of the scene.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import maximum_filter1d

from .classes import CLEAR, CLOUD, SHADOW


def disk_rows(radius: float) -> dict[int, list[int]]:
    """Half-width of the disk of `radius` px (pixel centres within it) -> the row offsets of that width."""
    reach = math.floor(radius + 1e-9)
    rows: dict[int, list[int]] = {}
    for dy in range(-reach, reach + 1):
        rows.setdefault(math.floor(math.sqrt(max(radius * radius - dy * dy, 0.0)) + 1e-9), []).append(dy)
    return rows


def dilate(source: np.ndarray, radius: float) -> np.ndarray:
    """bool (H, W): pixels whose centre lies within `radius` px of the centre of a `source` pixel."""
    src = np.ascontiguousarray(source, dtype=bool).view(np.uint8)
    out = np.zeros(src.shape, np.uint8)
    height = src.shape[0]
    for width, offsets in disk_rows(radius).items():
        grown = maximum_filter1d(src, 2 * width + 1, axis=1, mode="constant", cval=0) if width else src
        for dy in offsets:  # row y is reached from source row y - dy
            if dy >= 0:
                out[dy:] |= grown[: height - dy]
            else:
                out[:dy] |= grown[-dy:]
    return out.view(bool)


def buffer_classes(
    classes: np.ndarray, pixel_size: float, cloud_buffer: float = 0, shadow_buffer: float = 0
) -> np.ndarray:
    """The class map with its buffers applied (see the module docstring); `classes` itself is not changed.

    `pixel_size` is the grid's pixel size in metres; the buffers are distances in metres (0: none)."""
    if not (cloud_buffer or shadow_buffer):
        return classes
    if not pixel_size > 0:
        raise ValueError(f"buffers need the pixel size in metres, got {pixel_size!r}")
    out = classes.copy()
    for cls, metres in ((CLOUD, cloud_buffer), (SHADOW, shadow_buffer)):
        if metres:
            out[dilate(classes == cls, metres / pixel_size) & (out == CLEAR)] = cls
    return out
