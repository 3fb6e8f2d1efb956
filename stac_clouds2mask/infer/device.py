"""Which torch device runs the network, and how there: numeric precision, memory layout, batch size.

On CUDA the choice is fixed: half precision autocast, channels_last, batches sized from free memory.
On a CPU (the torch fallback) precision and layout come from the table in cpu.py, decided by the
CPU's instruction set rather than by a timing taken at run time.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch

from ..choices import check_device

_CUDA_BYTES_PER_PIXEL = 1200  # activation memory per input pixel and batch element under half precision
_CUDA_MAX_BATCH = 64


@dataclass(frozen=True)
class ExecMode:
    """How the torch module runs: ``precision`` of the autocast region (fp32: none) and ``channels_last``."""

    precision: str  # fp32, bf16 or fp16
    channels_last: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self, device: torch.device) -> torch.autocast:
        dtype = self.autocast_dtype
        return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def describe(self) -> str:
        return f"{self.precision}{', channels_last' if self.channels_last else ''}"


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; asking for CUDA or MPS where there is none is an error,
    not a silent (and much slower) CPU run. ``auto`` never picks Apple's MPS: that path has not been run
    where this project is tested, so it is used only when asked for by name."""
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but CUDA is not available (torch {torch.__version__}); "
            "use --device cpu or auto"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device 'mps' requested but Apple's MPS is not available here (torch {torch.__version__} on "
            f"{platform.system()} {platform.machine()}; MPS needs an Apple-silicon Mac with macOS 12.3 or later "
            "and torch built for it); use --device cpu or auto"
        )
    return dev


def cuda_batch(device: torch.device, ph: int, pw: int) -> int:
    """As many patches as half the free CUDA memory holds."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(max(free * 0.5 // (_CUDA_BYTES_PER_PIXEL * ph * pw), 1), _CUDA_MAX_BATCH))


def cuda_mode(device: torch.device, precision: str) -> ExecMode:
    """float16 by default (every CUDA GPU has it); bf16 or fp32 on request."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}")
    return ExecMode("fp16" if precision == "auto" else precision, True)


def mps_mode(precision: str) -> ExecMode:
    """Apple's MPS: float32 unless another precision is asked for (nothing was measured on a Mac)."""
    return ExecMode("fp32" if precision == "auto" else precision, False)


def compile_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile`` with inductor's cache in the user cache folder, so the warm-up (minutes on a
    small CPU) is paid once per machine and survives temporary folders being cleaned; on CUDA in
    "reduce-overhead" mode (CUDA graphs: one launch per batch instead of hundreds of kernels)."""
    from ..model import cache_dir

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
    return torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None)
