"""Full-scene benchmark: this project's engine against ukis-csmask's own onnxruntime path, one run, one input.

The scene is built from real pixels: crop A of ../shared/data (the whole MGRS tile 19UDP at 160 m,
13 bands, real cumulus clouds and a real 38 % nodata wedge) nearest-upsampled onto the full tile grid
at 20 m (5490 x 5490) or 10 m (10980 x 10980), written as tiled GeoTIFFs on local disk (untimed). The clouds are
therefore blocky (8x8 or 16x16 px): the timing and memory figures are those of a full scene, the
masks are not those of a native-resolution scene.

Each engine runs in its own child process, so its peak RSS is its own:
  (a) ukis-csmask: read the six bands into an (H, W, 6) float32 array, then CSmask (onnxruntime);
  (b) stac-clouds2mask: read_scene (DN + valid mask on the grid), predict, write the COG.
Printed: seconds per scene (and the read / infer / write split), megapixels per second, patches run
vs the naive full grid, processed pixels per valid pixel, the network's processed megapixels per
second next to this CPU's ceiling (142 GFLOP per megapixel over the matrix-product rate measured in
the same run), peak RSS, agreement of (b) with (a) on valid pixels, the disagreement rate in the 16-px
band around patch borders vs elsewhere, and as the last line ratio_vs_ukis_csmask=a/b. (On these
blocky upsampled pixels the models are far more grid-sensitive than on real ones: agreement here is
no quality measure; benchmarks/label_iou.py scores quality against labels.)

  python benchmarks/full_scene.py --quick          # 2048 x 2048 window at 20 m, < 60 s on 2 cores
  python benchmarks/full_scene.py --quick --valid-window  # a 2048 x 2048 window without nodata
  python benchmarks/full_scene.py                  # full tile at 20 m
  python benchmarks/full_scene.py --resolution 10  # full tile at 10 m (ukis-csmask needs ~15 GB RAM)
  python benchmarks/full_scene.py --device cuda    # GPU for (b); (a) uses onnxruntime's providers
  python benchmarks/full_scene.py --quick --repeat 3 --busy 'python -m pytest -q -p no:cacheprovider tests'
                                                   # quiet and busy figures in one run (medians of 3)

(b) runs in the engine's runtime (--runtime auto: OpenVINO on a CPU), printed on the "runtime:" line;
its network is made once per process before the timed run, as a batch job does (the time is printed).
With --busy, the same runs are repeated while a load command shares the cores, and
ratio_vs_ukis_csmask_busy= is printed before the last line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CROP_A = "s2a-t19udp-20170729-l1c-160m"
SIX = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}
TILE_SIZE_M = 109800.0
QUICK = 2048
QUICK_ORIGIN = (0, 1500)  # rows, cols of the quick window at 20 m: clouds and the swath edge
GFLOP_PER_MP = 142.0  # the 6-band model: 9.3 GFLOP per 256 x 256 patch


def shared_dir() -> Path:
    env = os.environ.get("STAC_CLOUDS2MASK_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores"


def valid_window_origin(resolution: int) -> tuple[int, int]:
    """Origin of the quick window with the most valid pixels: inside the swath, away from its edge
    (crop A has no window free of nodata: ~1 % of its pixels inside the swath are DN 0 in some band)."""
    import rasterio

    src_dir = shared_dir() / "data" / CROP_A
    stack = []
    for band in SIX.values():
        with rasterio.open(src_dir / f"{band}.tif") as ds:
            stack.append(ds.read(1))
    valid = np.all(np.stack(stack) != 0, axis=0).astype(np.int64)
    size = QUICK // (160 // resolution)
    table = np.pad(valid.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    counts = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    r, c = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return int(r) * (160 // resolution), int(c) * (160 // resolution)


def build_scene(workdir: Path, resolution: int, quick: bool, valid_window: bool = False) -> Path:
    """GeoTIFFs (made through VRTs) that upsample crop A onto the tile grid (nearest), and an item naming them."""
    import rasterio
    import rasterio.shutil

    src_dir = shared_dir() / "data" / CROP_A
    item = json.loads((src_dir / f"{CROP_A}.json").read_text())
    full = int(round(TILE_SIZE_M / resolution))
    rows0, cols0 = (valid_window_origin(resolution) if valid_window else QUICK_ORIGIN) if quick else (0, 0)
    size = QUICK if quick else full
    with rasterio.open(src_dir / "B02.tif") as ds:
        left, top = ds.transform.c, ds.transform.f
        wkt = ds.crs.to_wkt()
        src_w, src_h = ds.width, ds.height
    x0, y0 = left + cols0 * resolution, top - rows0 * resolution
    for key, band in SIX.items():
        vrt = f"""<VRTDataset rasterXSize="{size}" rasterYSize="{size}">
  <SRS>{wkt.replace('"', "&quot;")}</SRS>
  <GeoTransform>{x0}, {resolution}, 0, {y0}, 0, {-resolution}</GeoTransform>
  <VRTRasterBand dataType="UInt16" band="1">
    <NoDataValue>0</NoDataValue>
    <SimpleSource resampling="nearest">
      <SourceFilename relativeToVRT="0">{src_dir / f"{band}.tif"}</SourceFilename>
      <SourceBand>1</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="{src_w}" ySize="{src_h}"/>
      <DstRect xOff="{-cols0}" yOff="{-rows0}" xSize="{full}" ySize="{full}"/>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""
        (workdir / f"{band}.vrt").write_text(vrt)
        # the reader opens GeoTIFF and JPEG 2000 only (a VRT can name any file): materialise, untimed
        rasterio.shutil.copy(
            workdir / f"{band}.vrt",
            workdir / f"{band}.tif",
            driver="GTiff",
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="deflate",
        )
        asset = item["assets"][key]
        asset["href"] = str(workdir / f"{band}.tif")
        asset["type"] = "image/tiff; application=geotiff"
        asset["bands"][0]["raster:spatial_resolution"] = resolution
    item["id"] = f"{CROP_A}-upsampled-{resolution}m" + ("-quick" if quick else "") + ("-valid" if valid_window else "")
    item["assets"] = {k: v for k, v in item["assets"].items() if k in SIX}
    item["properties"]["proj:shape"] = [size, size]
    item["properties"]["proj:transform"] = [resolution, 0, x0, 0, -resolution, y0]
    path = workdir / "item.json"
    path.write_text(json.dumps(item))
    return path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ukis(item_path: Path, out: Path) -> dict:
    import rasterio
    from ukis_csmask.mask import CSmask

    item = json.loads(item_path.read_text())
    t0 = time.perf_counter()
    bands = []
    for key in SIX:
        with rasterio.open(item["assets"][key]["href"]) as ds:
            bands.append(ds.read(1))
    img = np.stack(bands, axis=-1).astype(np.float32) * np.float32(0.0001)
    del bands
    t1 = time.perf_counter()
    csm = CSmask(img, band_order=list(SIX), product_level="l1c", nodata_value=0).csm[..., 0]
    t2 = time.perf_counter()
    np.save(out, csm)
    h, w = csm.shape
    # ukis-csmask pads 51 px before and 51 + 257 after each axis, then tiles 256 px with step 204
    tiles = ((h + 359 - 256) // 204 + 1) * ((w + 359 - 256) // 204 + 1)
    return {
        "read": t1 - t0,
        "infer": t2 - t1,
        "write": 0.0,
        "patches": tiles,
        "naive": tiles,
        "rss_mib": peak_rss_mib(),
        "device": "onnxruntime " + ",".join(_ort_providers()),
    }


def _ort_providers() -> list[str]:
    import onnxruntime

    return [p.replace("ExecutionProvider", "") for p in onnxruntime.get_available_providers()]


def matmul_gflops(device: str, precision: str) -> float:
    """The matrix-product rate of this device in the engine's precision: the arithmetic ceiling."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16 if precision == "fp16" else torch.float32
    a = torch.randn(2048, 2048, device=device).to(dtype)
    a @ a  # warm-up: the library picks and builds its kernel on the first call
    best = float("inf")
    for _ in range(10):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ a
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best / 1e9


def run_ours(
    item_path: Path,
    out: Path,
    device: str,
    batch_size: int | None,
    compile_model: bool,
    precision: str = "auto",
    runtime: str = "auto",
) -> dict:
    import pystac
    import torch

    from stac_clouds2mask.infer import open_network, predict, resolve_device
    from stac_clouds2mask.model import choose_model
    from stac_clouds2mask.publish.cog import write_mask_cog
    from stac_clouds2mask.read import read_scene

    dev = resolve_device(device)
    item = pystac.Item.from_file(str(item_path))
    spec = choose_model("L1C", SIX)
    t = time.perf_counter()
    net = open_network(spec, dev, runtime, precision, compile=compile_model)  # once per process, as a batch does
    if compile_model:  # torch.compile compiles on the first call: outside the timed run, as a batch job does once
        predict(
            np.ones((6, 256, 256), np.uint16),
            np.ones((256, 256), bool),
            spec,
            net,
            device=str(dev),
            batch_size=batch_size,
            scale=[1e-4] * 6,
            offset=[0.0] * 6,
            patch_size=256,
        )
    ready_s = time.perf_counter() - t
    resolution = item.properties["proj:transform"][0]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    scene = read_scene(item, spec.bands, resolution)
    t1 = time.perf_counter()
    pred = predict(
        scene.dn,
        scene.valid,
        spec,
        net,
        device=str(dev),
        batch_size=batch_size,
        scale=scene.scale,
        offset=scene.offset,
        nodata=scene.nodata,
    )
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    write_mask_cog(pred.classes, scene.crs, scene.transform, out.with_suffix(".tif"))
    t3 = time.perf_counter()
    np.save(out, pred.classes)
    np.save(out.with_name("seams.npy"), pred.plan.seam_band())
    name = f"{pred.mode}, network ready in {ready_s:.1f} s once per process, not in the time"
    return {
        "read": t1 - t0,
        "infer": t2 - t1,
        "write": t3 - t2,
        "patches": pred.patches_run,
        "naive": pred.patches_run + pred.patches_skipped,
        "rss_mib": peak_rss_mib(),
        "device": name,
        "runtime": pred.mode,
        "valid_fraction": float(scene.valid.mean()),
        "processed": pred.processed_pixels,
        "valid": int(scene.valid.sum()),
        "gflops": matmul_gflops(str(dev), pred.execution.precision),
        "load": os.getloadavg()[0],  # during this run, not after the conditions that follow it
    }


def child(
    engine: str,
    item: Path,
    out: Path,
    device: str,
    batch_size: int | None,
    compile_model: bool = False,
    precision: str = "auto",
    runtime: str = "auto",
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        engine,
        "--item",
        str(item),
        "--out",
        str(out),
        "--device",
        device,
        "--precision",
        precision,
        "--runtime",
        runtime,
    ]
    if compile_model:
        cmd.append("--compile")
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(name: str, r: dict, size: int) -> None:
    total = r["read"] + r["infer"] + r["write"]
    print(
        f"{name:22s} {total:8.2f} s/scene (read {r['read']:.2f}, infer {r['infer']:.2f}, write {r['write']:.2f}) "
        f"{size * size / 1e6 / total:6.3f} MP/s  patches {r['patches']} of naive {r['naive']}  "
        f"peak RSS {r['rss_mib']:.0f} MiB  [{r['device']}]"
    )


def economy(b: dict) -> None:
    """Processed pixels per valid pixel, and the network's rate next to the arithmetic ceiling."""
    rate = b["processed"] / 1e6 / b["infer"]
    ceiling = b["gflops"] / GFLOP_PER_MP
    print(
        f"(b) processed pixels / valid pixels: {b['processed'] / max(b['valid'], 1):.2f}; network rate "
        f"{rate:.2f} processed MP/s; ceiling {ceiling:.2f} MP/s ({GFLOP_PER_MP:.0f} GFLOP per MP at "
        f"{b['gflops']:.0f} GFLOP/s, a matrix product measured in this run)"
    )


def total(r: dict) -> float:
    return r["read"] + r["infer"] + r["write"]


def measure(item: Path, work: Path, args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """``--repeat`` interleaved runs of (b) then (a), each in a fresh child process."""
    a_runs: list[dict] = []
    b_runs: list[dict] = []
    for _ in range(args.repeat):
        b_runs.append(
            child(
                "ours", item, work / "b.npy", args.device, args.batch_size, args.compile, args.precision, args.runtime
            )
        )
        if not args.skip_peer:
            a_runs.append(child("ukis", item, work / "a.npy", args.device, args.batch_size))
    return a_runs, b_runs


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=total)[len(runs) // 2]


def condition(label: str, a_runs: list[dict], b_runs: list[dict], size: int) -> float | None:
    """Report one condition (the median run of each engine, the spread over runs); the ratio of the medians."""
    spread = ", ".join(
        f"{name} {min(map(total, runs)):.2f}-{max(map(total, runs)):.2f} s"
        for name, runs in (("(a)", a_runs), ("(b)", b_runs))
        if runs
    )
    load = sorted(r["load"] for r in b_runs)[len(b_runs) // 2]
    print(f"--- {label}; load average {load:.1f} as (b) ran; median of {len(b_runs)} run(s); min-max {spread}")
    if a_runs:
        report("(a) ukis-csmask", median_run(a_runs), size)
    report("(b) stac-clouds2mask", median_run(b_runs), size)
    print(f"runtime: {b_runs[0]['runtime']}")
    return total(median_run(a_runs)) / total(median_run(b_runs)) if a_runs else None


def add_busy_options(parser: argparse.ArgumentParser) -> None:
    """--busy COMMAND and --busy-warmup SECONDS, for the benchmarks that measure quiet, then busy."""
    parser.add_argument(
        "--busy",
        metavar="COMMAND",
        help="then measure again while this shell command loads the machine (e.g. the test suite: "
        "'python -m pytest -q -p no:cacheprovider tests'); it is stopped afterwards",
    )
    parser.add_argument("--busy-warmup", type=float, default=20.0, help="seconds the load runs before measuring")


def busy_load(command: str, warmup: float) -> subprocess.Popen:
    """Start the load command in its own process group and give it ``warmup`` seconds to get going."""
    load = subprocess.Popen(command, shell=True, start_new_session=True, stdout=subprocess.DEVNULL)
    time.sleep(warmup)
    return load


def stop(load: subprocess.Popen) -> bool:
    """Stop the load's process group; whether it was still running (else it ended during the measurement)."""
    running = load.poll() is None
    if running:
        os.killpg(load.pid, signal.SIGTERM)
        try:
            load.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(load.pid, signal.SIGKILL)
            load.wait()
    return running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2048 x 2048 window of the 20 m scene")
    parser.add_argument("--resolution", type=int, choices=(10, 20), default=20)
    parser.add_argument("--device", default="cpu", help="device for this project's engine: cpu, cuda or auto")
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=("auto", "openvino", "torch"),
        help="this project's runtime (auto: OpenVINO on a CPU, torch on CUDA)",
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile this project's model (compile time reported, not timed)"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="this project's engine precision (auto: bf16 where the CPU has native bfloat16, else fp32; CUDA fp16)",
    )
    parser.add_argument(
        "--valid-window",
        action="store_true",
        help="with --quick: the 2048 x 2048 window inside the swath with the most valid pixels, so "
        "the engine's speed is seen apart from what skipping nodata saves",
    )
    parser.add_argument(
        "--skip-peer",
        action="store_true",
        help="run only this project's engine (e.g. the 10 m tile, where ukis-csmask needs ~15 GB); "
        "no agreement figures, and the ratio line reads n/a",
    )
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of each engine; medians are reported")
    add_busy_options(parser)
    parser.add_argument("--child", choices=("ukis", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--item", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = (
            run_ukis(args.item, args.out)
            if args.child == "ukis"
            else run_ours(args.item, args.out, args.device, args.batch_size, args.compile, args.precision, args.runtime)
        )
        print(json.dumps(result))
        return

    if not args.skip_peer and importlib.util.find_spec("onnxruntime") is None:
        raise SystemExit(
            "the peer (ukis-csmask) needs onnxruntime: run the README's test set-up command first "
            "(pip install -e '.[test]'), or pass --skip-peer"
        )
    if args.valid_window and not args.quick:
        raise SystemExit("--valid-window goes with --quick")
    resolution = 20 if args.quick else args.resolution
    with tempfile.TemporaryDirectory(prefix="clouds2mask-bench-") as tmp:
        work = Path(tmp)
        item = build_scene(work, resolution, args.quick, args.valid_window)
        size = QUICK if args.quick else int(round(TILE_SIZE_M / resolution))
        window = (", 2048 x 2048 window" + (" inside the swath" if args.valid_window else "")) if args.quick else ""
        print(
            f"scene: crop A ({CROP_A}, real L1C pixels, 160 m) nearest-upsampled onto the 19UDP grid at "
            f"{resolution} m{window}: {size} x {size} px, 6 bands, read "
            "from local disk as tiled GeoTIFFs (real clouds and nodata wedge, blocky at this scale)"
        )
        print(f"machine: {machine()}")
        a_runs, b_runs = measure(item, work, args)
        if not args.skip_peer:
            ca, cb = np.load(work / "a.npy"), np.load(work / "b.npy")
            band = np.load(work / "seams.npy")
        busy: tuple[list[dict], list[dict], bool] | None = None
        if args.busy:
            load = busy_load(args.busy, args.busy_warmup)
            try:
                busy_a, busy_b = measure(item, work, args)
            finally:
                lasted = stop(load)
            busy = (busy_a, busy_b, lasted)
    ratio = condition("without added load", a_runs, b_runs, size)
    economy(median_run(b_runs))
    if ratio is not None:
        valid = cb != 255
        agree = float((ca[valid] == cb[valid]).mean())
        dis = ca != cb
        near, far = float(dis[valid & band].mean()), float(dis[valid & ~band].mean())
        print(
            f"valid pixels: {b_runs[0]['valid_fraction']:.1%}; agreement of (b) with (a) on valid pixels: {agree:.4%}"
        )
        print(
            f"class disagreement in the 16-px band around patch borders: {near:.4%}; elsewhere: {far:.4%}; "
            f"ratio {near / far if far else float('inf'):.2f}"
        )
    if busy is not None:
        busy_a, busy_b, lasted = busy
        busy_ratio = condition(f"while {args.busy!r} runs", busy_a, busy_b, size)
        if not lasted:
            print("(the load command ended before the measurement did: part of it ran without the load)")
        print("ratio_vs_ukis_csmask_busy=" + (f"{busy_ratio:.3f}" if busy_ratio is not None else "n/a"))
    print("ratio_vs_ukis_csmask=" + (f"{ratio:.3f}" if ratio is not None else "n/a"))


if __name__ == "__main__":
    main()
