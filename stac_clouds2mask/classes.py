"""The values of a published class map, shared by every stage that makes, changes or writes one (kept free of
torch and rasterio, so that publishing and the buffers need neither the engine nor the reader)."""

from __future__ import annotations

CLEAR, CLOUD, SHADOW = 0, 1, 2
NODATA = 255
PROBABILITY_SCALE = 254  # probabilities as uint8 softmax x 254, so that 255 is free for nodata
