"""The values a user chooses for a run (resolution, precision, runtime, device, batch size, patches, buffers) and
their checks, kept free of torch and rasterio so the command line refuses a bad value at once, before the engine
loads."""

from __future__ import annotations

import math
import re

from .errors import OptionError

RESOLUTIONS = (10, 20, 30, 60)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MAX_API_RETRIES = 20  # each request is bounded as a whole by STAC_CLOUDS2MASK_API_SECONDS anyway
RUNTIMES = ("auto", "openvino", "torch")  # infer/runtimes.py
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
PATCH_SIZE_RANGE = (64, 2048)  # px; a 2048 px patch holds ~5 GB of activations in half precision (device.py)
MAX_BUFFER = 2000  # metres: the buffers' cost grows with their radius in pixels


def check_resolution(resolution: float) -> None:
    if resolution not in RESOLUTIONS:
        raise OptionError("resolution", f"must be one of {', '.join(map(str, RESOLUTIONS))} m, got {resolution:g}")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise OptionError("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise OptionError("runtime", f"must be one of {', '.join(RUNTIMES)}, got {runtime!r}")


def check_device(device: str) -> None:
    """The device's name only; whether CUDA or MPS is there is infer.resolve_device's question."""
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")


def check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and batch_size < 1:
        raise OptionError("batch_size", f"must be at least 1, got {batch_size}")


def check_api_retries(retries: int) -> None:
    if not 0 <= retries <= MAX_API_RETRIES:
        raise OptionError("api_retries", f"must be between 0 and {MAX_API_RETRIES}, got {retries}")


def check_patch_size(patch_size: int | None) -> None:
    """None: the size fitted per scene (infer.plan.fitted_plan); else a multiple of the model's 32 px stride."""
    from .infer.plan import LATTICE  # numpy: imported when a patch size is given, not by every check

    low, high = PATCH_SIZE_RANGE
    if patch_size is not None and (patch_size % LATTICE or not low <= patch_size <= high):
        raise OptionError("patch_size", f"must be a multiple of {LATTICE} from {low} to {high} px, got {patch_size}")


def check_overlap(overlap: int, patch_size: int | None = None) -> None:
    """A multiple of 32 (patch origins stay on the model's lattice, infer/plan.py), at most half the patch
    (of the smallest fitted patch when the size is fitted per scene)."""
    from .infer.plan import LATTICE, PATCH_SIZES

    most = (patch_size or min(PATCH_SIZES)) // 2
    if overlap < 0 or overlap % LATTICE or overlap > most:
        of = f"a {patch_size} px patch" if patch_size else f"the smallest fitted patch, {min(PATCH_SIZES)} px"
        raise OptionError("overlap", f"must be a multiple of {LATTICE} from 0 to {most} px (half {of}), got {overlap}")


def check_buffer(field: str, metres: float) -> None:
    """A buffer distance (`field`: cloud_buffer or shadow_buffer) in metres."""
    if not math.isfinite(metres) or not 0 <= metres <= MAX_BUFFER:
        raise OptionError(field, f"must be between 0 and {MAX_BUFFER} m, got {metres:g}")
