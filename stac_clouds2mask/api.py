"""Array-level entry point, for users who already hold reflectance in memory (no STAC, no files)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .buffers import buffer_classes
from .choices import check_buffer
from .infer.plan import DEFAULT_OVERLAP
from .model import choose_model, get_model_spec
from .model.registry import missing_bands

if TYPE_CHECKING:
    from .infer import Prediction


def mask_array(
    reflectance: np.ndarray,
    bands: Sequence[str],
    level: str = "L1C",
    valid: np.ndarray | None = None,
    *,
    model: str = "auto",
    device: str = "auto",
    with_probabilities: bool = False,
    patch_size: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    precision: str = "auto",
    cloud_buffer: float = 0,
    shadow_buffer: float = 0,
    pixel_size: float | None = None,
    runtime: str = "auto",
) -> Prediction:
    """Classes (0 clear, 1 cloud, 2 shadow, 255 nodata) of a (bands, H, W) reflectance array.

    `bands` names each input band by its common name (blue, green, red, nir, swir16, swir22); the
    model is picked as for STAC items and the bands are reordered to what it expects. Without
    `valid`, pixels where any band is 0 or NaN (Sentinel-2's nodata) are nodata (255), never clear.
    Digital numbers passed as reflectance (a median above 1.5) are refused: they would read as cloud.
    `cloud_buffer` and `shadow_buffer` (metres; `pixel_size`, the array's pixel size in metres, is then
    needed) grow the classes as in a run (buffers.py); the probabilities stay unbuffered.
    `runtime` (auto: OpenVINO on a CPU, torch on CUDA) and `precision` say how the network runs; the
    Prediction records what ran (`Prediction.record()`). Networks are kept for the next call.
    """
    for option, metres in (("cloud_buffer", cloud_buffer), ("shadow_buffer", shadow_buffer)):
        check_buffer(option, metres)
    if (cloud_buffer or shadow_buffer) and not (pixel_size and pixel_size > 0):
        raise ValueError("cloud_buffer and shadow_buffer are in metres: give pixel_size, the pixel size in metres")
    if reflectance.ndim != 3 or reflectance.shape[0] != len(bands):
        raise ValueError(f"reflectance must be (bands, H, W) with {len(bands)} bands, got shape {reflectance.shape}")
    spec = choose_model(level, bands) if model == "auto" else get_model_spec(model)
    if any(b not in bands for b in spec.bands):
        raise ValueError(missing_bands(spec.name, spec.bands, bands))
    order = [list(bands).index(b) for b in spec.bands]
    data = np.ascontiguousarray(reflectance[order], dtype=np.float32)
    if valid is None:
        mask = np.all((data != 0) & ~np.isnan(data), axis=0)
    else:
        mask = valid.astype(bool)
    data = np.nan_to_num(data, nan=0.0)
    median = float(np.median(data[:, mask])) if mask.any() else 0.0
    if median > 1.5:
        raise ValueError(
            f"reflectance has a median of {median:.0f}: these look like digital "
            "numbers, not reflectance in 0-1 (divide by the quantification value, e.g. 10000, and "
            "remove the processing-baseline offset)"
        )
    from .infer import predict

    prediction = predict(
        data,
        mask,
        spec,
        device=device,
        runtime=runtime,
        with_probabilities=with_probabilities,
        patch_size=patch_size,
        overlap=overlap,
        precision=precision,
    )
    classes = buffer_classes(prediction.classes, pixel_size or 0, cloud_buffer, shadow_buffer)
    return dataclasses.replace(prediction, classes=classes)
