"""The values a user chooses for a run (resolution, precision, device, batch size) and their checks, kept
free of torch and rasterio so the command line refuses a bad value at once, before the engine loads."""

from __future__ import annotations

import re

from .errors import OptionError

RESOLUTIONS = (10, 20, 30, 60)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MAX_API_RETRIES = 20  # each request is bounded as a whole by STAC_CLOUDS2MASK_API_SECONDS anyway
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_resolution(resolution: float) -> None:
    if resolution not in RESOLUTIONS:
        raise OptionError("resolution", f"must be one of {', '.join(map(str, RESOLUTIONS))} m, got {resolution:g}")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise OptionError("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def check_device(device: str) -> None:
    """The device's name only; whether CUDA is there is infer.resolve_device's question."""
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")


def check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and batch_size < 1:
        raise OptionError("batch_size", f"must be at least 1, got {batch_size}")


def check_api_retries(retries: int) -> None:
    if not 0 <= retries <= MAX_API_RETRIES:
        raise OptionError("api_retries", f"must be between 0 and {MAX_API_RETRIES}, got {retries}")
