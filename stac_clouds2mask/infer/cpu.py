"""The CPU this process was given: how many cores it may use, and the precision its network runs in.

Threads: the cores of the process's CPU affinity (taskset, a container's cpuset), capped by the CPU
bandwidth quota of its cgroup (docker --cpus, Kubernetes limits, AWS Batch vCPUs) and by
OMP_NUM_THREADS when set, so that a run never starts more compute threads than it has cores: on a
shared machine extra threads only wait for each other. (joblib's ``cpu_count`` reads the same limits,
but importing it costs ~0.4 s and the engine must also load where only torch and numpy are, e.g. on a
GPU machine for benchmarks/gpu_check.py.)

Precision: chosen by the CPU's instruction set, never by a timing taken at run time (a timing taken
while the machine was busy once chose fp32 at half speed, and kept that choice). Measured with 640 px
patches of the 6-band model, processed megapixels per second, 2 cores (issue 25, DESIGN.md 4a):

    CPU                       OpenVINO bf16   OpenVINO fp32   torch bf16 cl   torch fp32 cl   torch fp32
    AMD EPYC, avx512_bf16     1.87            1.00            0.90            -               -
    AMD EPYC, AVX2 only       -               0.85            -               0.65            0.43
    Intel Xeon (no bf16)      -               -               -               slower than     ~0.26
                                                                              contiguous

bfloat16 runs ~2x float32 where the CPU has it natively (AVX512-BF16 or AMX-BF16) and is emulated,
slowly, elsewhere; masks in either agree with the reference within the quality guard
(tests/test_quality.py). For the torch fallback the memory layout follows the same table:
channels_last where it was measured faster (AMD, and every bf16 CPU), contiguous on Intel without bf16.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")  # what a container sees of its own cgroup (v2: cpu.max; v1: cpu/cpu.cfs_*)


def _cpuinfo(field: str) -> str:
    """The first value of ``field`` in /proc/cpuinfo ('' where there is none, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.split(":", 1)[0].strip() == field), "")
    except OSError:
        return ""
    return line.split(":", 1)[1].strip() if ":" in line else ""


def cpu_name() -> str:
    return _cpuinfo("model name") or "unknown cpu"


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU flags (without them bfloat16 convolutions are emulated, slowly)."""
    flags = set(_cpuinfo("flags").split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def cpu_is_intel() -> bool:
    return _cpuinfo("vendor_id") == "GenuineIntel"


def cgroup_cpu_limit(root: Path = CGROUP) -> int | None:
    """Cores granted by the cgroup's CPU bandwidth quota, rounded up (None: no quota)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota == "max" or int(quota) <= 0 or int(period) <= 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def cpu_threads() -> int:
    """Compute threads for this process: its CPU affinity, capped by the cgroup quota and OMP_NUM_THREADS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limits = [cores, cgroup_cpu_limit() or cores]
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        limits.append(int(omp))
    return max(1, min(limits))


def cpu_precision(requested: str) -> str:
    """The precision the network runs in on this CPU: ``auto`` is bf16 where the CPU has native bfloat16,
    else fp32; fp32 always; bf16 only where native (emulated bf16 is slower than fp32)."""
    native = cpu_has_native_bf16()
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "fp32" or (requested == "bf16" and native):
        return requested
    raise ValueError(f"precision {requested!r} is not available on this CPU ({cpu_name()}): use auto or fp32")


def cpu_channels_last(precision: str) -> bool:
    """The torch fallback's memory layout on this CPU, from the table above."""
    return precision == "bf16" or not cpu_is_intel()
