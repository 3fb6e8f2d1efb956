"""Whole scene against --clip for the same item: read and inference seconds, in one run, interleaved.

Scenes (real pixels):
  jp2  the real T29UNU Level-2A product folder (JPEG 2000, 60 m, 1830 x 1830, 40 % nodata; 192 px code-stream
       tiles), as `stac-clouds2mask run <folder>.SAFE --resolution 60` reads it;
  cog  the quick benchmark's scene (benchmarks/full_scene.py --quick: crop A nearest-upsampled onto tile 19UDP
       at 20 m, a 2048 x 2048 window across the swath edge), written as COGs (deflate, 512 px tiles, overviews).
The AOI is a square of about 3 % of the scene inside its data (benchmarks/aoi_margin.py picks it). Each
repetition reads and infers the whole scene, then the AOI (the reader's window plus its context margin,
as a clipped run does), with the engine's default settings; medians are printed.

Then what the JPEG 2000 decoder really decodes: Sentinel-2 JPEG 2000 files are tiled (192 px at 60 m, 640 px at
20 m, 1024 px at 10 m) and GDAL's OpenJPEG driver decodes only the code-stream tiles a window touches. Measured on
the real 60 m file, and on 20 m and 10 m files encoded here with the same tiling from real pixels (the shared data
holds no 10 m or 20 m JPEG 2000 file): seconds to read a whole 4 x 4-tile area against an AOI-sized window.

  python benchmarks/aoi.py                 # 3 repetitions
  python benchmarks/aoi.py --repeat 5 --no-jp2-tiles

The last line is ``aoi_speedup=<read+infer ratio, the smaller of the two scenes>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aoi_margin import AOI_SHARE, pixel_aoi, positions  # noqa: E402
from full_scene import build_scene, machine, shared_dir  # noqa: E402

S2_JP2_TILES = {60: 192, 20: 640, 10: 1024}  # code-stream tile size of Sentinel-2 JPEG 2000 files, px


def cog_scene(workdir: Path, profile: str = "deflate", tile: int = 512):
    """The quick benchmark's scene with its bands rewritten as COGs (rio-cogeo `profile`, `tile` px internal
    tiles, overviews); the pystac item naming them."""
    import json

    import pystac
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    item_path = build_scene(workdir, 20, quick=True)
    d = json.loads(item_path.read_text())
    for asset in d["assets"].values():
        src = Path(asset["href"])
        dst = src.with_name(src.stem + "-cog.tif")
        cog = cog_profiles.get(profile)
        cog.update(blockxsize=tile, blockysize=tile)
        cog_translate(str(src), str(dst), cog, quiet=True)
        asset["href"] = str(dst)
    cog_path = workdir / "item-cog.json"
    cog_path.write_text(json.dumps(d))
    return pystac.Item.from_file(str(cog_path))


def measure(item, resolution: float, repeat: int) -> dict[str, float]:
    """Median read and inference seconds of the whole scene and of the AOI, and the figures around them."""
    from stac_clouds2mask.config import select_model
    from stac_clouds2mask.infer import predict, resolve_device
    from stac_clouds2mask.model import load_model
    from stac_clouds2mask.read import read_scene

    spec = select_model(item, "auto")
    model = load_model(spec, resolve_device("cpu"), fold_bn=True)
    whole = read_scene(item, spec.bands, resolution)
    size = max(int(round(np.sqrt(AOI_SHARE * whole.valid.size))), 32)
    _, row, col = positions(whole.valid, size, 0, 0)[0]
    aoi = pixel_aoi(whole, row, col, size)
    times: dict[str, list[float]] = {k: [] for k in ("whole_read", "whole_infer", "aoi_read", "aoi_infer")}
    out: dict[str, float] = {}
    predict(whole.dn[:, :256, :256], whole.valid[:256, :256], spec, model, scale=whole.scale, offset=whole.offset)
    for _ in range(repeat):
        for name, kwargs in (("whole", {}), ("aoi", {"aoi": aoi})):
            t0 = time.perf_counter()
            scene = read_scene(item, spec.bands, resolution, **kwargs)
            t1 = time.perf_counter()
            pred = predict(
                scene.dn, scene.valid, spec, model, scale=scene.scale, offset=scene.offset, nodata=scene.nodata
            )
            t2 = time.perf_counter()
            times[f"{name}_read"].append(t1 - t0)
            times[f"{name}_infer"].append(t2 - t1)
            out[f"{name}_px"] = float(scene.valid.size)
            out[f"{name}_processed"] = float(pred.processed_pixels)
            if name == "aoi":
                out["aoi_published_px"] = float(scene.published().valid.size)
    out.update({k: statistics.median(v) for k, v in times.items()})
    out["infer_ratio"] = out["whole_infer"] / out["aoi_infer"]
    out["read_ratio"] = out["whole_read"] / out["aoi_read"]
    out["total_ratio"] = (out["whole_read"] + out["whole_infer"]) / (out["aoi_read"] + out["aoi_infer"])
    return out


def jp2_tiles(workdir: Path, repeat: int) -> list[tuple[str, int, int, float, float, int, int]]:
    """(what, resolution, tile px, whole-area seconds, window seconds, tiles of the area, tiles the window
    touches) for the real 60 m file and 20 m / 10 m files encoded with Sentinel-2's tiling."""
    import rasterio
    from rasterio.windows import Window

    real = sorted((shared_dir() / "data" / "safe").glob("*.SAFE/GRANULE/*/IMG_DATA/R60m/*_B02_60m.jp2"))[0]
    with rasterio.open(real) as ds:
        pixels, crs, origin = ds.read(1), ds.crs, ds.transform
    out = []
    for res, tile in sorted(S2_JP2_TILES.items(), reverse=True):
        if res == 60:
            path, what = real, "real file"
        else:
            factor = 60 // res
            area = 4 * tile
            block = pixels[: -(-area // factor), : -(-area // factor)].repeat(factor, 0).repeat(factor, 1)[:area, :area]
            path, what = workdir / f"B02_{res}m.jp2", "encoded here"
            profile = {
                "driver": "JP2OpenJPEG",
                "width": area,
                "height": area,
                "count": 1,
                "dtype": "uint16",
                "crs": crs,
            }
            profile["transform"] = rasterio.Affine(res, 0, origin.c, 0, -res, origin.f)
            opts = {"blockxsize": tile, "blockysize": tile, "reversible": "YES", "quality": 100, "resolutions": 5}
            with rasterio.open(path, "w", **profile, **opts) as dst:
                dst.write(block, 1)
        with rasterio.open(path) as ds:
            side = min(4 * tile, ds.width)
        win = min(max(int(round(np.sqrt(AOI_SHARE) * 10980 * 10 / res)), 32), side // 2)
        r0 = c0 = (side - win) // 2
        touched = ((r0 + win - 1) // tile - r0 // tile + 1) * ((c0 + win - 1) // tile - c0 // tile + 1)
        whole_s, window_s = [], []
        for _ in range(repeat):
            for window, seconds in ((Window(0, 0, side, side), whole_s), (Window(c0, r0, win, win), window_s)):
                with rasterio.Env(GDAL_CACHEMAX=0), rasterio.open(path) as ds:  # decoded afresh every time
                    t = time.perf_counter()
                    ds.read(1, window=window)
                    seconds.append(time.perf_counter() - t)
        tiles = (-(-side // tile)) ** 2
        out.append((what, res, tile, statistics.median(whole_s), statistics.median(window_s), tiles, touched))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-jp2-tiles", action="store_true", help="skip the JPEG 2000 decoding measurement")
    args = parser.parse_args()

    from stac_clouds2mask.aoi import CONTEXT_MARGIN
    from stac_clouds2mask.products import product_item

    print(f"machine: {machine()}; AOI {AOI_SHARE:.0%} of the scene, context margin {CONTEXT_MARGIN} px")
    safe = next((shared_dir() / "data" / "safe").glob("*.SAFE"))
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="aoi-bench-") as tmp:
        for name, item, res in (
            ("jp2", product_item(str(safe)), 60.0),
            ("cog", cog_scene(Path(tmp)), 20.0),
        ):
            m = measure(item, res, args.repeat)
            ratios[name] = m["total_ratio"]
            print(
                f"{name}: whole {m['whole_px'] / 1e6:.2f} MP read {m['whole_read']:.2f} s "
                f"infer {m['whole_infer']:.2f} s "
                f"({m['whole_processed'] / 1e6:.2f} MP through the network); AOI {m['aoi_published_px'] / 1e6:.3f} MP "
                f"published, {m['aoi_px'] / 1e6:.3f} MP read, read {m['aoi_read']:.2f} s infer {m['aoi_infer']:.2f} s "
                f"({m['aoi_processed'] / 1e6:.2f} MP)",
                flush=True,
            )
            print(
                f"{name}: infer_ratio={m['infer_ratio']:.1f} read_ratio={m['read_ratio']:.1f} "
                f"aoi_speedup_{name}={m['total_ratio']:.1f}",
                flush=True,
            )
        if not args.no_jp2_tiles:
            print("\nJPEG 2000: what is decoded (GDAL OpenJPEG driver, one decoder thread per band read)")
            print("file          res  tile  area tiles  window tiles  area s  window s  window/area")
            for what, res, tile, whole_s, window_s, tiles, touched in jp2_tiles(Path(tmp), args.repeat):
                print(
                    f"{what:<12} {res:>3} m {tile:>5} {tiles:>10} {touched:>12} {whole_s:>7.2f} {window_s:>9.3f} "
                    f"{window_s / whole_s:>11.2f} (tiles {touched / tiles:.2f})",
                    flush=True,
                )
    print(f"aoi_speedup={min(ratios.values()):.1f}")


if __name__ == "__main__":
    main()
