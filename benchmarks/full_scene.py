"""Full-scene benchmark: this project's engine against ukis-csmask's own onnxruntime path, one run, one input.

The scene is built from real pixels: crop A of ../shared/data (the whole MGRS tile 19UDP at 160 m,
13 bands, real cumulus clouds and a real 38 % nodata wedge) nearest-upsampled onto the full tile grid
at 20 m (5490 x 5490) or 10 m (10980 x 10980) through GDAL VRTs on local disk. The clouds are
therefore blocky (8x8 or 16x16 px): the timing and memory figures are those of a full scene, the
masks are not those of a native-resolution scene.

Each engine runs in its own child process, so its peak RSS is its own:
  (a) ukis-csmask: read the six bands into an (H, W, 6) float32 array, then CSmask (onnxruntime);
  (b) stac-clouds2mask: read_scene (DN + valid mask on the grid), predict, write the COG.
Printed: seconds per scene (and the read / infer / write split), megapixels per second, patches run
vs the naive full grid, peak RSS, agreement of (b) with (a) on valid pixels, the disagreement rate in
the 16-px band around patch borders vs elsewhere, and as the last line ratio_vs_ukis_csmask=a/b.

  python benchmarks/full_scene.py --quick          # 2048 x 2048 window at 20 m, < 60 s on 2 cores
  python benchmarks/full_scene.py                  # full tile at 20 m
  python benchmarks/full_scene.py --resolution 10  # full tile at 10 m (ukis-csmask needs ~15 GB RAM)
  python benchmarks/full_scene.py --device cuda    # GPU for (b); (a) uses onnxruntime's providers
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
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


def build_scene(workdir: Path, resolution: int, quick: bool) -> Path:
    """VRTs that upsample crop A onto the tile grid (nearest), and a STAC item pointing at them."""
    import rasterio

    src_dir = shared_dir() / "data" / CROP_A
    item = json.loads((src_dir / f"{CROP_A}.json").read_text())
    full = int(round(TILE_SIZE_M / resolution))
    rows0, cols0 = QUICK_ORIGIN if quick else (0, 0)
    size = QUICK if quick else full
    with rasterio.open(src_dir / "B02.tif") as ds:
        left, top = ds.transform.c, ds.transform.f
        wkt = ds.crs.to_wkt()
        src_w, src_h = ds.width, ds.height
    x0, y0 = left + cols0 * resolution, top - rows0 * resolution
    for key, band in SIX.items():
        vrt = f"""<VRTDataset rasterXSize="{size}" rasterYSize="{size}">
  <SRS>{wkt.replace('"', '&quot;')}</SRS>
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
        asset = item["assets"][key]
        asset["href"] = str(workdir / f"{band}.vrt")
        asset["type"] = "application/x-ogc-vrt"
        asset["bands"][0]["raster:spatial_resolution"] = resolution
    item["id"] = f"{CROP_A}-upsampled-{resolution}m" + ("-quick" if quick else "")
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
    return {"read": t1 - t0, "infer": t2 - t1, "write": 0.0, "patches": tiles, "naive": tiles,
            "rss_mib": peak_rss_mib(), "device": "onnxruntime " + ",".join(_ort_providers())}


def _ort_providers() -> list[str]:
    import onnxruntime

    return [p.replace("ExecutionProvider", "") for p in onnxruntime.get_available_providers()]


def run_ours(item_path: Path, out: Path, device: str, batch_size: int | None, compile_model: bool) -> dict:
    import pystac
    import torch

    from stac_clouds2mask.cog import write_cog
    from stac_clouds2mask.infer import DEFAULT_OVERLAP, DEFAULT_PATCH_SIZE, plan_patches, predict, resolve_device
    from stac_clouds2mask.model import choose_model, load_model
    from stac_clouds2mask.read import read_scene

    dev = resolve_device(device)
    item = pystac.Item.from_file(str(item_path))
    spec = choose_model("L1C", SIX)
    model = load_model(spec, dev, fold_bn=dev.type == "cpu")
    compile_s = 0.0
    if compile_model:
        t = time.perf_counter()
        model = torch.compile(model)
        with torch.inference_mode():  # compile outside the timed run, as a batch job does once
            predict(np.ones((6, 256, 256), np.uint16), np.ones((256, 256), bool), spec, model, device=str(dev),
                    batch_size=batch_size, scale=[1e-4] * 6, offset=[0.0] * 6)
        compile_s = time.perf_counter() - t
    resolution = item.properties["proj:transform"][0]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    scene = read_scene(item, spec.bands, resolution)
    t1 = time.perf_counter()
    pred = predict(scene.dn, scene.valid, spec, model, device=str(dev), batch_size=batch_size,
                   scale=scene.scale, offset=scene.offset, nodata=scene.nodata)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    write_cog(pred.classes, scene.crs, scene.transform, out.with_suffix(".tif"))
    t3 = time.perf_counter()
    np.save(out, pred.classes)
    plan = plan_patches(scene.valid, DEFAULT_PATCH_SIZE, DEFAULT_OVERLAP)
    borders = {"y": sorted({b for y0 in plan.rows for b in (y0, y0 + plan.patch_h)}),
               "x": sorted({b for xs in plan.rows.values() for x0 in xs for b in (x0, x0 + plan.patch_w)})}
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"torch {torch.__version__} CPU, {torch.get_num_threads()} threads"
    if compile_model:
        name += f", torch.compile ({compile_s:.0f} s once, not in the time)"
    return {"read": t1 - t0, "infer": t2 - t1, "write": t3 - t2, "patches": pred.patches_run,
            "naive": pred.patches_run + pred.patches_skipped, "rss_mib": peak_rss_mib(), "device": name,
            "borders": borders, "valid_fraction": float(scene.valid.mean()), "compile_s": compile_s}


def child(engine: str, item: Path, out: Path, device: str, batch_size: int | None, compile_model: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, "--item", str(item), "--out", str(out), "--device", device]
    if compile_model:
        cmd.append("--compile")
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def border_band(shape: tuple[int, int], borders: dict, half: int = 8) -> np.ndarray:
    """Pixels within `half` px of an inner patch border (a 16-px band for half=8)."""
    h, w = shape
    rows, cols = np.zeros(h, bool), np.zeros(w, bool)
    for b in borders["y"]:
        if 0 < b < h:
            rows[max(b - half, 0):b + half] = True
    for b in borders["x"]:
        if 0 < b < w:
            cols[max(b - half, 0):b + half] = True
    return rows[:, None] | cols[None, :]


def report(name: str, r: dict, size: int) -> None:
    total = r["read"] + r["infer"] + r["write"]
    print(f"{name:22s} {total:8.2f} s/scene (read {r['read']:.2f}, infer {r['infer']:.2f}, write {r['write']:.2f}) "
          f"{size * size / 1e6 / total:6.3f} MP/s  patches {r['patches']} of naive {r['naive']}  "
          f"peak RSS {r['rss_mib']:.0f} MiB  [{r['device']}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2048 x 2048 window of the 20 m scene")
    parser.add_argument("--resolution", type=int, choices=(10, 20), default=20)
    parser.add_argument("--device", default="cpu", help="device for this project's engine: cpu, cuda or auto")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile this project's model (compile time reported, not timed)")
    parser.add_argument("--skip-peer", action="store_true",
                        help="run only this project's engine (e.g. the 10 m tile, where ukis-csmask needs ~15 GB); "
                             "no agreement figures, and the ratio line reads n/a")
    parser.add_argument("--child", choices=("ukis", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--item", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = run_ukis(args.item, args.out) if args.child == "ukis" else run_ours(args.item, args.out, args.device, args.batch_size, args.compile)
        print(json.dumps(result))
        return

    if not args.skip_peer and importlib.util.find_spec("onnxruntime") is None:
        raise SystemExit("the peer (ukis-csmask) needs onnxruntime: run the README's test set-up command first "
                         "(pip install -e '.[test]'), or pass --skip-peer")
    resolution = 20 if args.quick else args.resolution
    with tempfile.TemporaryDirectory(prefix="clouds2mask-bench-") as tmp:
        work = Path(tmp)
        item = build_scene(work, resolution, args.quick)
        size = QUICK if args.quick else int(round(TILE_SIZE_M / resolution))
        print(f"scene: crop A ({CROP_A}, real L1C pixels, 160 m) nearest-upsampled onto the 19UDP grid at "
              f"{resolution} m{', 2048 x 2048 window' if args.quick else ''}: {size} x {size} px, 6 bands, read "
              "from local disk through VRTs (real clouds and nodata wedge, blocky at this scale)")
        print(f"machine: {machine()}")
        b = child("ours", item, work / "b.npy", args.device, args.batch_size, args.compile)
        if args.skip_peer:
            report("(b) stac-clouds2mask", b, size)
            print("ratio_vs_ukis_csmask=n/a")
            return
        a = child("ukis", item, work / "a.npy", args.device, args.batch_size)
        ca, cb = np.load(work / "a.npy"), np.load(work / "b.npy")
    valid = cb != 255
    agree = float((ca[valid] == cb[valid]).mean())
    band = border_band(cb.shape, b["borders"])
    dis = ca != cb
    near, far = float(dis[valid & band].mean()), float(dis[valid & ~band].mean())
    report("(a) ukis-csmask", a, size)
    report("(b) stac-clouds2mask", b, size)
    print(f"valid pixels: {b['valid_fraction']:.1%}; agreement of (b) with (a) on valid pixels: {agree:.4%}")
    print(f"class disagreement in the 16-px band around patch borders: {near:.4%}; elsewhere: {far:.4%}; "
          f"ratio {near / far if far else float('inf'):.2f}")
    ta = a["read"] + a["infer"] + a["write"]
    tb = b["read"] + b["infer"] + b["write"]
    print(f"ratio_vs_ukis_csmask={ta / tb:.3f}")


if __name__ == "__main__":
    main()
