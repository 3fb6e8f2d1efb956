"""CPU runtimes, threads and streams, on a quiet and on a busy machine: what the engine's CPU defaults rest on.

One process, the 6-band L1C model on standardised real pixels (crop A nearest-upsampled to 20 m, inside
the swath), 640 px patches. Every configuration runs the same patches in turn, repeated and interleaved,
so a change of load hits all of them alike. Printed per configuration: processed megapixels per second
(median, min-max over the repetitions), and its speed against the engine's default. Configurations:
  default        what the engine runs (runtimes.OpenVinoNetwork: precision by the CPU, one stream of one
                 thread per core given, unpinned, a patch per stream in flight)
  1 stream       one stream of every thread (OpenVINO's LATENCY hint), a patch at a time
  1 stream, pinned   the same with ENABLE_CPU_PINNING (OpenVINO's own default for LATENCY on Linux)
  1 stream, batch 4  four patches per call
  1 thread       one stream of one thread
  fp32           the default in float32 (where the default is bf16)
  torch ...      the torch fallback (runtimes.torch_mode's precision and layout, and fp32)
  engine ...     predict() on a 1536 x 1536 window (plan, blending, argmax included; MP/s of the window):
                 the default (torch, which blends between network calls, on one thread beside
                 OpenVINO's) and torch on a thread per core as well
With --busy COMMAND the same is measured again while COMMAND shares the cores (e.g. the test suite,
or N spinning processes), and the load is stopped afterwards. Peak memory is ~3.5 GB (every
configuration stays compiled).

  python benchmarks/cpu_runtime.py
  python benchmarks/cpu_runtime.py --repeat 5 --busy 'python -m pytest -q -p no:cacheprovider tests'
  python benchmarks/cpu_runtime.py --busy 'for i in 1 2 3; do python3 -c "while True: pass" & done; wait'
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from full_scene import CROP_A, QUICK_ORIGIN, SIX, add_busy_options, busy_load, machine, shared_dir, stop  # noqa: E402

PATCH = 640
PATCHES = 4
ENGINE = 1536  # side of the window the engine rows run on


def reflectance(spec, side: int) -> np.ndarray:  # noqa: ANN001
    """(6, side, side) reflectance of crop A at 20 m (8x nearest upsampling), inside the swath: real clouds."""
    import rasterio

    bands = []
    for key in spec.bands:
        with rasterio.open(shared_dir() / "data" / CROP_A / f"{SIX[key]}.tif") as ds:
            bands.append(ds.read(1))
    r0, c0 = QUICK_ORIGIN[0] // 8 + 40, QUICK_ORIGIN[1] // 8
    small = np.stack(bands)[:, r0 : r0 + side // 8, c0 : c0 + side // 8].astype(np.float32) * np.float32(1e-4)
    return np.repeat(np.repeat(small, 8, axis=1), 8, axis=2)


def patches(spec) -> np.ndarray:  # noqa: ANN001
    """(PATCHES, 6, PATCH, PATCH) standardised reflectance, as the engine hands it to the network."""
    window = reflectance(spec, 2 * PATCH)
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]
    tiles = [window[:, y : y + PATCH, x : x + PATCH] for y in (0, PATCH) for x in (0, PATCH)]
    return np.ascontiguousarray((np.stack(tiles)[:PATCHES] - mean) / std)


def configurations(spec, x: np.ndarray, threads: int) -> dict[str, Callable[[], None]]:  # noqa: ANN001
    """name -> a call that runs every patch of ``x`` once."""
    import openvino as ov
    import torch

    from stac_clouds2mask.infer import open_network, predict
    from stac_clouds2mask.infer.cpu import cpu_precision
    from stac_clouds2mask.infer.runtimes import TorchNetwork, openvino_config, openvino_graph, torch_mode
    from stac_clouds2mask.model import load_model

    core = ov.Core()
    graph = openvino_graph(spec)
    precision = cpu_precision("auto")
    latency = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}

    def compiled(**overrides: object) -> ov.CompiledModel:
        return core.compile_model(graph, "CPU", {**openvino_config(precision, threads), **overrides})

    def one_by_one(model: ov.CompiledModel) -> Callable[[], None]:
        request = model.create_infer_request()

        def run() -> None:
            for i in range(len(x)):
                request.infer([x[i : i + 1]])

        return run

    def batched(model: ov.CompiledModel) -> Callable[[], None]:
        request = model.create_infer_request()
        return lambda: request.infer([x]) is None

    def network(net) -> Callable[[], None]:  # noqa: ANN001
        xt = torch.from_numpy(x)
        return lambda: net(xt) is None

    def torch_run(mode) -> Callable[[], None]:  # noqa: ANN001
        net = TorchNetwork(load_model(spec, "cpu", fold_bn=True), torch.device("cpu"), mode, threads)
        xt = torch.from_numpy(x)

        def run() -> None:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                for i in range(len(x)):
                    net(xt[i : i + 1])

        return run

    scene = reflectance(spec, ENGINE)

    def engine(torch_threads: int) -> Callable[[], None]:
        net = copy.copy(open_network(spec, torch.device("cpu")))
        net.torch_threads = torch_threads

        def run() -> None:
            predict(scene, (scene != 0).all(axis=0), spec, net, device="cpu")

        return run

    runs = {
        "default": network(open_network(spec, torch.device("cpu"), "openvino")),
        "1 stream": one_by_one(compiled(**latency)),
        "1 stream, pinned": one_by_one(compiled(**latency, ENABLE_CPU_PINNING=True)),
        "1 stream, batch 4": batched(compiled(**latency)),
        "1 thread": one_by_one(compiled(**latency, INFERENCE_NUM_THREADS=1)),
    }
    if precision == "bf16":
        runs["fp32"] = network(open_network(spec, torch.device("cpu"), "openvino", "fp32"))
    mode = torch_mode(torch.device("cpu"), "auto")
    runs[f"torch {mode.describe()}"] = torch_run(mode)
    if mode.precision != "fp32":
        full = torch_mode(torch.device("cpu"), "fp32")
        runs[f"torch {full.describe()}"] = torch_run(full)
    runs["engine (torch: 1 thread)"] = engine(1)
    runs["engine, torch: a thread per core"] = engine(threads)
    return runs


def measure(runs: dict[str, Callable[[], None]], repeat: int, pixels: dict[str, float]) -> dict[str, list[float]]:
    """Megapixels per second of each run, ``repeat`` interleaved rounds (after one warm-up round)."""
    for run in runs.values():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            rates[name].append(pixels[name] / (time.perf_counter() - t))
    return rates


def table(label: str, rates: dict[str, list[float]]) -> None:
    base = statistics.median(rates["default"])
    print(f"--- {label}; load average {os.getloadavg()[0]:.1f}")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"{name:34s} {med:6.3f} MP/s (min-max {min(values):.3f}-{max(values):.3f})  {med / base:5.2f}x default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    add_busy_options(parser)
    args = parser.parse_args()

    from stac_clouds2mask.infer.cpu import cpu_threads
    from stac_clouds2mask.model import get_model_spec

    spec = get_model_spec("model_6b_l1c")
    threads = cpu_threads()
    x = patches(spec)
    runs = configurations(spec, x, threads)
    pixels = {name: (ENGINE**2 if name.startswith("engine") else x.shape[0] * PATCH * PATCH) / 1e6 for name in runs}
    print(f"machine: {machine()}; threads given to the engine: {threads}; {PATCHES} patches of {PATCH} px per run")
    table("without added load", measure(runs, args.repeat, pixels))
    if args.busy:
        load = busy_load(args.busy, args.busy_warmup)
        try:
            rates = measure(runs, args.repeat, pixels)
        finally:
            lasted = stop(load)
        table(f"while {args.busy!r} runs" + ("" if lasted else " (it ended before the measurement did)"), rates)


if __name__ == "__main__":
    main()
