"""The values a user chooses for a run (resolution, precision, runtime, device, batch size) and their checks, kept
free of torch and rasterio so the command line refuses a bad value at once, before the engine loads."""

from __future__ import annotations

import re

RESOLUTIONS = (10, 20, 30, 60)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
RUNTIMES = ("auto", "openvino", "torch")  # infer/runtimes.py
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_resolution(resolution: float) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"--resolution must be one of {', '.join(map(str, RESOLUTIONS))} m, got {resolution:g}")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")


def check_device(device: str) -> None:
    """The device's name only; whether CUDA is there is infer.resolve_device's question."""
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")


def check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
