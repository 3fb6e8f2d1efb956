"""GPU check of the inference engine, made to run in one call on a lent accelerator machine.

That machine has torch (CUDA) and numpy but no rasterio, pystac or the ukis-csmask wheel, and reaches
no network. So the check is prepared here and carried there (~45 MB):

  python benchmarks/gpu_check.py --prepare .gpu-check      # here: weights (fp16 state dict), model
                                                          # constants, crop A's six bands as .npy
  python benchmarks/gpu_check.py --run .gpu-check          # there (or here with --device cpu --quick)

The scene is crop A (the real 19UDP tile at 160 m, 38 % nodata wedge) nearest-upsampled in memory to
the full tile at 20 m (5490 x 5490) and 10 m (10980 x 10980), as benchmarks/full_scene.py does with
VRTs. "read" is loading and upsampling the .npy from local disk, "write" is saving the class map as
.npy (no GeoTIFF writer there); "infer" is the engine's predict, synchronised. Printed: the split per
resolution and precision (fp16, bf16, fp32), agreement of fp16 and bf16 with fp32, peak GPU memory,
and as the last line gpu_seconds_per_scene_20m=<read + infer + write, fp16>.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC_NAME = "model_6b_l1c"
SIX = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}
CROP_A = "s2a-t19udp-20170729-l1c-160m"
TILE = {20: 5490, 10: 10980}


def engine_modules() -> tuple[types.ModuleType, types.ModuleType]:
    """``stac_clouds2mask.infer`` and ``.model`` without the package's __init__ (which imports the
    STAC stages and rasterio, absent on the device machine)."""
    if "stac_clouds2mask" not in sys.modules:
        package = types.ModuleType("stac_clouds2mask")
        package.__path__ = [str(ROOT / "stac_clouds2mask")]
        sys.modules["stac_clouds2mask"] = package
    import stac_clouds2mask.infer as infer
    import stac_clouds2mask.model as model

    return infer, model


def prepare(folder: Path) -> None:
    """Everything the run needs, from this machine's install and ../shared/data."""
    import rasterio

    from stac_clouds2mask.model import get_model_spec, load_state_dict

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from full_scene import shared_dir

    folder.mkdir(parents=True, exist_ok=True)
    spec = get_model_spec(SPEC_NAME)
    import torch

    torch.save(load_state_dict(spec), folder / f"{SPEC_NAME}.pt")
    (folder / f"{SPEC_NAME}.json").write_text(
        json.dumps(
            {
                "name": spec.name,
                "level": spec.level,
                "bands": spec.bands,
                "mean": spec.mean,
                "std": spec.std,
                "version": spec.version,
            }
        )
    )
    bands = []
    for key in spec.bands:
        with rasterio.open(shared_dir() / "data" / CROP_A / f"{SIX[key]}.tif") as ds:
            bands.append(ds.read(1))
    np.save(folder / "crop_a_dn.npy", np.stack(bands))
    size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    print(f"prepared {folder} ({size:.0f} MiB): carry it and run: python benchmarks/gpu_check.py --run {folder}")


def scene(folder: Path, size: int) -> np.ndarray:
    small = np.load(folder / "crop_a_dn.npy")
    factor = -(-size // small.shape[1])
    return np.repeat(np.repeat(small, factor, axis=1), factor, axis=2)[:, :size, :size]


def run(folder: Path, device: str, quick: bool) -> None:
    import torch

    infer, model_pkg = engine_modules()
    meta = json.loads((folder / f"{SPEC_NAME}.json").read_text())
    spec = model_pkg.ModelSpec(
        name=meta["name"],
        level=meta["level"],
        bands=tuple(meta["bands"]),
        mean=tuple(meta["mean"]),
        std=tuple(meta["std"]),
        version=meta["version"],
        onnx_path=folder / "none.onnx",
    )
    dev = infer.resolve_device(device)
    net = model_pkg.build_model(spec)
    net.load_state_dict(torch.load(folder / f"{SPEC_NAME}.pt", map_location="cpu", weights_only=True), strict=True)
    net = net.eval().to(device=dev, dtype=torch.float32)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}")
    precisions = ["fp16", "bf16", "fp32"] if dev.type == "cuda" else ["fp32"]
    sizes = {160: 687} if quick else TILE
    seconds_20m = None
    for res, size in sizes.items():
        classes = {}
        for precision in precisions:
            mode = infer.ExecMode(precision, dev.type == "cuda")
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
                warm = scene(folder, 1024)  # kernels and cuDNN plans chosen outside the timing
                infer.predict(
                    warm, warm[0] != 0, spec, net, device=str(dev), mode=mode, scale=[1e-4] * 6, offset=[0.0] * 6
                )
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            dn = scene(folder, size)
            valid = np.all(dn != 0, axis=0)
            t1 = time.perf_counter()
            pred = infer.predict(dn, valid, spec, net, device=str(dev), mode=mode, scale=[1e-4] * 6, offset=[0.0] * 6)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t2 = time.perf_counter()
            np.save(folder / f"classes-{res}m-{precision}.npy", pred.classes)
            t3 = time.perf_counter()
            classes[precision] = pred.classes
            peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
            total = t3 - t0
            print(
                f"{res:>3d} m {size} x {size} {precision}: {total:.3f} s (read {t1 - t0:.3f}, infer {t2 - t1:.3f}, "
                f"write {t3 - t2:.3f}); {pred.patches_run} patches of {pred.processed_pixels / 1e6:.1f} MP "
                "processed, "
                f"{pred.processed_pixels / 1e6 / (t2 - t1):.1f} MP/s; peak GPU memory {peak:.2f} GiB",
                flush=True,
            )
            if res == 20 and precision == precisions[0]:
                seconds_20m = total
        if "fp32" in classes:
            ok = classes["fp32"] != 255
            for precision in precisions[:-1]:
                agree = float((classes[precision][ok] == classes["fp32"][ok]).mean())
                print(f"{res:>3d} m: {precision} agrees with fp32 on {agree:.4%} of valid pixels")
    print(
        f"gpu_seconds_per_scene_20m={seconds_20m:.3f}"
        if seconds_20m is not None
        else "gpu_seconds_per_scene_20m=n/a (--quick)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--prepare", type=Path, metavar="DIR", help="write the carried folder (here)")
    group.add_argument("--run", type=Path, metavar="DIR", help="run the check from the carried folder")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a plumbing run")
    parser.add_argument("--quick", action="store_true", help="crop A at its own 160 m only (plumbing)")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
    elif importlib.util.find_spec("torch") is None:
        raise SystemExit("torch is needed")
    else:
        run(args.run, args.device, args.quick)


if __name__ == "__main__":
    main()
