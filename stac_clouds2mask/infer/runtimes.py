"""The runtimes that run the network on a batch of patches: OpenVINO on CPUs, torch on CUDA (and as fallback).

Both run the same pretrained weights. OpenVINO reads the ONNX graph that the item's mlm model asset
names (the ukis-csmask wheel's ``model_*.onnx``, whose input is fixed at 256 x 256) and makes its
spatial size and batch dynamic, so every patch plan runs through one compiled model. torch runs the
native module (model/unet.py) filled from the same graph's weights. Which one runs is recorded with
every mask (:class:`Execution`), next to the patch plan.

``auto`` picks OpenVINO on a CPU wherever it is installed (it is a dependency of the package) and torch
on CUDA. OpenVINO on a CPU measured 1.5-3.5x the torch path (issue 25; cpu.py has the table), and it
degrades more gently on a busy machine. The CPU runtimes run in cpu.cpu_precision's precision with
cpu.cpu_threads' threads.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..choices import check_runtime
from ..model import ModelSpec, load_model
from .cpu import cpu_channels_last, cpu_name, cpu_precision, cpu_threads
from .device import ExecMode, compile_model, cuda_batch, cuda_mode, mps_mode

OPENVINO_MAX_STREAMS = 8  # patches in flight at once, ~180 MB of activations each at 640 px
TORCH_CPU_BATCH = 1  # measured: batches add memory and oneDNN set-up for a second shape, not speed


@dataclass(frozen=True)
class Execution:
    """How the network ran: recorded in each mask item (``clouds2mask:execution``) beside the patch plan.

    layout: the memory layout of the activations: ``channels_last`` or ``contiguous`` (torch), or
    ``openvino`` (the CPU plugin picks blocked layouts per layer itself); threads: the compute threads
    (None on CUDA); streams: patches run at once, each on threads / streams of them (OpenVINO; torch 1).
    """

    runtime: str
    runtime_version: str
    device: str
    device_name: str
    precision: str
    layout: str
    threads: int | None
    batch_size: int
    streams: int = 1
    compiled: bool = False

    def describe(self) -> str:
        """'cpu, bf16, openvino 2026.4.1, 2 threads, 2 streams', 'cuda, fp16, channels_last, torch 2.13.0'."""
        parts = [self.device, self.precision] + [self.layout] * (self.layout != self.runtime)
        parts += [f"{self.runtime} {self.runtime_version}"] + [f"{self.threads} threads"] * bool(self.threads)
        parts += [f"{self.streams} streams"] * (self.streams > 1) + ["compiled"] * self.compiled
        return ", ".join(parts)

    def record(self) -> dict[str, Any]:
        return asdict(self)


class Network:
    """The network of one model on one device: logits (N, 3, H, W) float32 of a standardised batch (N, C, H, W).

    torch_threads: torch's own threads while this network runs (torch cuts, blends and argmaxes around
    every network call): all of them when torch runs the network, one beside OpenVINO, whose threads
    already take every core (two pools of a thread per core each oversubscribe the cores: measured 1.6x
    slower on a busy machine, benchmarks/cpu_runtime.py).
    """

    execution: Execution
    torch_threads: int | None = None

    def __call__(self, batch: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Logits of ``batch``, one of a run's calls of at most ``batch_size`` patches."""
        raise NotImplementedError

    def submit(self, batch: torch.Tensor, batch_size: int | None = None) -> Callable[[], torch.Tensor]:
        """Start ``batch``; the returned call gives its logits. The engine starts a patch row before it blends
        the row before, so a runtime that runs patches at once (OpenVINO's streams) starts the next row's
        patches as the last ones of a row finish rather than leaving cores idle. Here: run now."""
        logits = self(batch, batch_size)
        return lambda: logits

    def batch_size(self, patch_h: int, patch_w: int) -> int:
        """Patches per call for this patch size, when the caller does not say."""
        return self.execution.batch_size


class TorchNetwork(Network):
    """The native torch module, in ``mode``'s precision (autocast) and memory layout."""

    def __init__(self, module: torch.nn.Module, device: torch.device, mode: ExecMode, threads: int | None) -> None:
        self.device, self.mode = device, mode
        self.layout = torch.channels_last if mode.channels_last else torch.contiguous_format
        self.module = module.to(device).eval().to(memory_format=self.layout)
        self.compiled = hasattr(module, "_orig_mod")
        self.execution = Execution(
            runtime="torch",
            runtime_version=torch.__version__.split("+")[0],
            device=device.type,
            device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
            precision=mode.precision,
            layout="channels_last" if mode.channels_last else "contiguous",
            threads=threads,
            batch_size=TORCH_CPU_BATCH,
            compiled=self.compiled,
        )
        self.torch_threads = threads

    def batch_size(self, patch_h: int, patch_w: int) -> int:
        return cuda_batch(self.device, patch_h, patch_w) if self.device.type == "cuda" else TORCH_CPU_BATCH

    def __call__(self, batch: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        n = batch.shape[0]
        if self.compiled and batch_size and n < batch_size:  # one input shape: another would compile again
            batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
        with self.mode.autocast(self.device):
            logits = self.module(batch.contiguous(memory_format=self.layout))
        return logits[:n].float()


def openvino_graph(spec: ModelSpec) -> Any:
    """The model's ONNX graph as an OpenVINO model with a dynamic batch and patch size (same weights)."""
    import openvino as ov

    graph = ov.Core().read_model(str(spec.onnx_path))
    graph.reshape({graph.inputs[0]: ov.PartialShape([-1, len(spec.bands), -1, -1])})
    return graph


def openvino_config(precision: str, threads: int) -> dict[str, Any]:
    """How OpenVINO's CPU plugin runs the graph: several streams of few threads rather than one stream of
    every thread, unpinned (benchmarks/cpu_runtime.py measures the alternatives). Streams run patches
    independently, so a core that another process holds slows one patch, not every layer of each."""
    return {
        "INFERENCE_PRECISION_HINT": {"bf16": "bf16", "fp32": "f32"}[precision],
        "PERFORMANCE_HINT": "THROUGHPUT",
        "NUM_STREAMS": min(threads, OPENVINO_MAX_STREAMS),
        "INFERENCE_NUM_THREADS": threads,
        "ENABLE_CPU_PINNING": False,  # pinned threads cannot move off a core that another process holds
    }


class OpenVinoNetwork(Network):
    """The model's ONNX graph compiled by OpenVINO for the CPU, with a dynamic batch and patch size; patches
    run as concurrent requests, one per stream, and a batch submitted while another runs fills the requests
    that one leaves free."""

    def __init__(self, spec: ModelSpec, precision: str, threads: int) -> None:
        import openvino as ov

        self.compiled = ov.Core().compile_model(openvino_graph(spec), "CPU", openvino_config(precision, threads))
        streams = int(self.compiled.get_property("NUM_STREAMS"))
        self.requests = [self.compiled.create_infer_request() for _ in range(streams)]
        self.holds: list[tuple[list[np.ndarray], int] | None] = [None] * streams  # whose patch a request runs
        self.started: list[int] = []  # the busy requests, oldest first
        self.lock = threading.Lock()  # networks are shared within a process (open_network)
        self.torch_threads = 1
        self.execution = Execution(
            runtime="openvino",
            runtime_version=ov.get_version().split("-")[0],
            device="cpu",
            device_name=cpu_name(),
            precision=precision,
            layout="openvino",
            threads=int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            batch_size=streams,
            streams=streams,
        )

    def __call__(self, batch: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        return self.submit(batch, batch_size)()

    def submit(self, batch: torch.Tensor, batch_size: int | None = None) -> Callable[[], torch.Tensor]:
        """Each patch of ``batch`` starts on a request of its own as soon as one is free (one per stream).

        A free request is an idle one, else one that has finished, else the one started first, once its
        output has been copied to the batch it belongs to (the request's buffer is reused by the next patch).
        """
        x = batch.detach().contiguous().numpy()
        out: list[np.ndarray] = [np.empty(0)] * len(x)
        with self.lock:
            for i in range(len(x)):
                k = self._free()
                self.requests[k].start_async({0: x[i : i + 1]})
                self.holds[k] = (out, i)
                self.started.append(k)

        def logits() -> torch.Tensor:
            with self.lock:
                for k in [k for k in self.started if self.holds[k][0] is out]:  # type: ignore[index]
                    self._collect(k)
            return torch.from_numpy(np.concatenate(out))

        return logits

    def _free(self) -> int:
        idle = next((k for k, held in enumerate(self.holds) if held is None), None)
        if idle is not None:
            return idle
        k = next((k for k in self.started if self.requests[k].wait_for(0)), self.started[0])
        self._collect(k)
        return k

    def _collect(self, k: int) -> None:
        """Wait for request ``k`` (its error, if any, raised here) and copy its output to its batch."""
        out, i = self.holds[k]  # type: ignore[misc]
        self.holds[k] = None
        self.started.remove(k)
        self.requests[k].wait()
        out[i] = self.requests[k].get_output_tensor(0).data.copy()


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def choose_runtime(runtime: str, device: torch.device) -> str:
    """``auto``: OpenVINO on a CPU where it is installed, else torch; an impossible request is a ValueError."""
    check_runtime(runtime)
    if runtime == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if runtime == "openvino" and device.type != "cpu":
        raise ValueError(f"the openvino runtime runs on the CPU, not on {device}: use --runtime torch or auto")
    if runtime == "openvino" and not openvino_available():
        raise ValueError("the openvino runtime is not installed (pip install openvino); use --runtime torch or auto")
    return runtime


def torch_mode(device: torch.device, precision: str) -> ExecMode:
    """How the torch module runs: cuda_mode on CUDA, mps_mode on Apple's MPS; on a CPU the precision and layout
    of cpu.py's table."""
    if device.type == "cuda":
        return cuda_mode(device, precision)
    if device.type == "mps":
        return mps_mode(precision)
    chosen = cpu_precision(precision)
    return ExecMode(chosen, cpu_channels_last(chosen))


def open_network(
    spec: ModelSpec,
    device: torch.device,
    runtime: str = "auto",
    precision: str = "auto",
    *,
    module: torch.nn.Module | None = None,
    mode: ExecMode | None = None,
    compile: bool = False,
) -> Network:
    """The network for ``spec`` on ``device``. ``module`` (a torch module, e.g. one compiled or a test's
    stand-in) and ``mode`` run as given on torch; otherwise the pretrained weights are loaded, and the
    networks made so far in this process are reused (compiling costs seconds)."""
    threads = cpu_threads() if device.type == "cpu" else None
    check_runtime(runtime)
    if module is not None or mode is not None:
        if runtime not in ("auto", "torch"):
            raise ValueError(f"a torch module or mode runs on the torch runtime, not {runtime!r}")
        net = module if module is not None else load_model(spec, device, fold_bn=device.type == "cpu")
        return TorchNetwork(net, device, mode or torch_mode(device, precision), threads)
    if choose_runtime(runtime, device) == "openvino":
        return _cached(spec, str(device), "openvino", cpu_precision(precision), threads, False)
    return _cached(spec, str(device), "torch", torch_mode(device, precision).precision, threads, compile)


@lru_cache(maxsize=8)
def _cached(spec: ModelSpec, device: str, runtime: str, precision: str, threads: int | None, compile: bool) -> Network:
    if runtime == "openvino":
        return OpenVinoNetwork(spec, precision, threads or 1)
    dev = torch.device(device)
    module = load_model(spec, dev, fold_bn=dev.type == "cpu")
    if compile:
        module = compile_model(module, dev)
    return TorchNetwork(module, dev, torch_mode(dev, precision), threads)
