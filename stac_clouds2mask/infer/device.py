"""Which device runs the network, and how: numeric precision, memory layout, threads, batch size.

On CUDA the choice is fixed (half precision autocast, channels_last, batches sized from free memory).
On a CPU the fastest layout and precision depend on the processor (measured on this workplace's
machines: channels_last is faster on one AMD EPYC and slower on one Intel Xeon; bfloat16 is ~2x
float32 where the CPU has native bfloat16 instructions and slow where it has not), so the engine
times the candidates once per machine on the real model and keeps the winner in the user cache.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..choices import check_device

log = logging.getLogger(__name__)

_CUDA_BYTES_PER_PIXEL = 1200  # activation memory per input pixel and batch element under half precision
_CUDA_MAX_BATCH = 64
_CPU_BATCH = 1  # measured: batches add memory and oneDNN set-up for a second shape, not speed
_CALIBRATION_FORMAT = 1


@dataclass(frozen=True)
class ExecMode:
    """How the network runs: ``dtype`` of the autocast region (None: float32) and ``channels_last``."""

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


def use_all_cores() -> None:
    """torch threads = the cores this process may run on (containers often pin fewer than the host has)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)


def default_batch(device: torch.device, ph: int, pw: int) -> int:
    """CPU: one patch (measured fastest). CUDA: as many patches as half the free memory holds."""
    if device.type != "cuda":
        return _CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(max(free * 0.5 // (_CUDA_BYTES_PER_PIXEL * ph * pw), 1), _CUDA_MAX_BATCH))


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU flags (without them bfloat16 convolutions are emulated, slowly)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown cpu"


def _calibration_file(cache: Path) -> Path:
    return cache / f"cpu-mode-v{_CALIBRATION_FORMAT}.json"


def _time(run: Callable[[], object], reps: int = 2) -> float:
    run()  # warm-up: oneDNN builds its kernels on the first call
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def candidate_modes(allow_bf16: bool) -> list[ExecMode]:
    modes = [ExecMode("fp32", False), ExecMode("fp32", True)]
    if allow_bf16 and cpu_has_native_bf16():
        modes.append(ExecMode("bf16", True))
    return modes


def choose_cpu_mode(
    model: torch.nn.Module, name: str, channels: int, patch: int, precision: str, cache: Path
) -> ExecMode:
    """The fastest of the candidate CPU modes for this model on this machine, measured once and cached.

    ``precision`` other than auto restricts the candidates to it. The cache key holds the CPU model,
    the core count, torch's version, the model ``name`` and the input shape, so another machine, build
    or model measures again.
    """
    allowed = [
        m for m in candidate_modes(precision in ("auto", "bf16")) if precision == "auto" or m.precision == precision
    ]
    if not allowed:
        raise ValueError(f"precision {precision!r} is not available on this CPU ({cpu_name()}): use auto or fp32")
    if len(allowed) == 1:
        return allowed[0]
    key = (
        f"{cpu_name()}|{torch.get_num_threads()} threads|torch {torch.__version__}|{name}|{channels}x{patch}"
        f"|{precision}"
    )
    path = _calibration_file(cache)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), dict):
        try:
            return ExecMode(**known[key])
        except TypeError:
            pass
    x = torch.randn(1, channels, patch, patch)
    timings: dict[ExecMode, float] = {}
    with torch.inference_mode():
        for mode in allowed:
            layout = torch.channels_last if mode.channels_last else torch.contiguous_format
            net = model.to(memory_format=layout)
            xin = x.contiguous(memory_format=layout)
            with mode.autocast(torch.device("cpu")):
                timings[mode] = _time(lambda: net(xin))
    best = min(timings, key=timings.__getitem__)
    log.info(
        "CPU mode by measurement on %s: %s (%s)",
        cpu_name(),
        best.describe(),
        ", ".join(f"{m.describe()} {t:.2f} s" for m, t in timings.items()),
    )
    known[key] = asdict(best)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not keep the CPU mode choice in %s: %s", path, exc)
    return best


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
