"""How much context a clipped (AOI) run must read around the AOI: agreement with the whole-scene mask by margin.

For each scene (the real T29UNU product at 60 m, crop A on its own 160 m grid, the labelled chip F at 10 m) the
whole scene is masked once; then AOIs of about 3 % of the scene (one interior, one across the nodata edge where the
scene has one, one at a corner, and seeded random ones) are masked with `read_scene(..., aoi=, margin=)` for each
margin, and compared with the same pixels of the whole-scene mask (valid pixels inside the AOI). The model is not
shift-invariant and sees less context near a window edge: the margin is the context read and inferred but not
published. The AOI windows start on the encoder's 32 px lattice of the scene (aoi.read_window), so any difference
comes from context and patch placement, not from the lattice phase.

Agreement with the whole-scene mask is not a quality measure (labels are: benchmarks/label_iou.py); it says how
close an AOI mask is to the pixels the same run would publish for the whole scene.

  python benchmarks/aoi_margin.py                     # margins 0 32 64 96 128 192
  python benchmarks/aoi_margin.py --margins 0 64 --random 2

Last line: ``chosen_margin=<px>``, the smallest margin whose mean agreement over the AOIs of the native-resolution
scenes (T29UNU and chip F) is within 0.1 percentage point of the best margin's: more context costs read and
inference time (the window grows by twice the margin per axis) for no gain past that. Crop A (160 m, out of the
models' scale, the whole scene one patch) is printed but does not decide.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

AOI_SHARE = 0.03
WITHIN = 0.1  # percentage points of the best margin's mean agreement
DECIDING = ("T29UNU", "chip F")


def shared_data() -> Path:
    env = os.environ.get("STAC_CLOUDS2MASK_SHARED")
    return (Path(env) if env else Path(__file__).resolve().parents[2] / "shared") / "data"


def scenes() -> list[tuple[str, object, float]]:
    """(name, source item, resolution) of every scene measured."""
    import pystac

    from stac_clouds2mask.products import product_item

    data = shared_data()
    safe = next((data / "safe").glob("*.SAFE"))
    out = [("T29UNU product, 60 m", product_item(str(safe)), 60.0)]
    for name, crop, res in (
        ("crop A, 160 m", "s2a-t19udp-20170729-l1c-160m", 20.0),
        ("chip F, 10 m", "ccd-s2-l2a-20200908-epsg32636-512-labelled", 10.0),
    ):
        out.append((name, pystac.Item.from_file(str(data / crop / f"{crop}.json")), res))
    return out


def pixel_aoi(scene, row: int, col: int, size: int) -> dict:
    """The WGS84 polygon of a square of ``size`` px of the scene's grid at (row, col)."""
    from rasterio.warp import transform

    t = scene.transform
    xs = [t.c + t.a * c for c in (col, col + size, col + size, col)]
    ys = [t.f + t.e * r for r in (row, row, row + size, row + size)]
    lon, lat = transform(scene.crs, "EPSG:4326", xs, ys)
    ring = [[float(x), float(y)] for x, y in zip(lon, lat)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def positions(valid: np.ndarray, size: int, count: int, seed: int) -> list[tuple[str, int, int]]:
    """Named AOI origins: interior (all valid, nearest the scene's centre), across the nodata edge (about half
    valid, where the scene has nodata), the most valid corner, and `count` seeded random ones (> 20 % valid)."""
    h, w = valid.shape
    table = np.pad(valid.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    share = (table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]) / size**2
    rows, cols = np.mgrid[0 : share.shape[0], 0 : share.shape[1]]
    centre = ((rows - (h - size) / 2) ** 2 + (cols - (w - size) / 2) ** 2) ** 0.5
    full = share >= min(0.999, share.max())
    r, c = np.unravel_index(int(np.argmin(np.where(full, centre, np.inf))), share.shape)
    out = [("interior", int(r), int(c))]
    if share.min() < 0.5:
        r, c = np.unravel_index(int(np.argmin(np.abs(share - 0.5) + centre * 1e-9)), share.shape)
        out.append(("nodata edge", int(r), int(c)))
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    out.append(("corner", *max(corners, key=lambda rc: share[rc])))
    rng, named = np.random.default_rng(seed), len(out)
    while len(out) < named + count:
        r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        if share[r, c] > 0.2:
            out.append((f"random {r},{c}", r, c))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--margins", type=int, nargs="+", default=[0, 32, 64, 96, 128, 192])
    parser.add_argument("--random", type=int, default=3, help="random AOIs per scene besides the named ones")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args()

    from stac_clouds2mask.config import select_model
    from stac_clouds2mask.infer import predict, resolve_device
    from stac_clouds2mask.model import load_model
    from stac_clouds2mask.read import read_scene

    device = resolve_device("cpu")
    models: dict[str, object] = {}
    rows = []
    for name, item, res in scenes():
        spec = select_model(item, "auto")
        model = models.setdefault(spec.name, load_model(spec, device, fold_bn=True))
        whole = read_scene(item, spec.bands, res)
        t0 = time.perf_counter()
        ref = predict(whole.dn, whole.valid, spec, model, scale=whole.scale, offset=whole.offset, nodata=whole.nodata)
        print(
            f"{name}: {whole.shape[1]} x {whole.shape[0]} px, whole scene {time.perf_counter() - t0:.1f} s", flush=True
        )
        size = max(int(round(np.sqrt(AOI_SHARE * whole.valid.size))), 32)
        for where, r, c in positions(whole.valid, size, args.random, args.seed):
            aoi = pixel_aoi(whole, r, c, size)
            for margin in args.margins:
                scene = read_scene(item, spec.bands, res, aoi=aoi, margin=margin)
                pred = predict(
                    scene.dn, scene.valid, spec, model, scale=scene.scale, offset=scene.offset, nodata=scene.nodata
                )
                mine = scene.crop(pred.classes, 255)
                published = scene.published()
                col = round((published.transform.c - whole.transform.c) / whole.transform.a)
                row = round((published.transform.f - whole.transform.f) / whole.transform.e)
                theirs = ref.classes[row : row + mine.shape[0], col : col + mine.shape[1]]
                ok = published.valid & (theirs != 255)
                agree = 100.0 * float((mine[ok] == theirs[ok]).mean()) if ok.any() else float("nan")
                rows.append(
                    {
                        "scene": name,
                        "aoi": where,
                        "margin": margin,
                        "agreement": agree,
                        "valid_px": int(ok.sum()),
                        "read_px": int(scene.valid.size),
                    }
                )
                print(
                    f"  {where:<18} margin {margin:>3}: agreement {agree:7.3f} % of {int(ok.sum())} valid px",
                    flush=True,
                )
    print("\nmargin  worst %  mean %  (T29UNU and chip F)  worst %  mean % (all)")
    means = {}
    for margin in args.margins:
        ours = [r for r in rows if r["margin"] == margin and not np.isnan(r["agreement"])]
        deciding = [r["agreement"] for r in ours if r["scene"].startswith(DECIDING)]
        every = [r["agreement"] for r in ours]
        means[margin] = float(np.mean(deciding))
        print(f"{margin:>6}  {min(deciding):7.3f}  {means[margin]:6.3f}  {min(every):27.3f}  {np.mean(every):6.3f}")
    best = max(means.values())
    chosen = min(m for m, v in means.items() if v >= best - WITHIN)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"chosen_margin={chosen}")


if __name__ == "__main__":
    main()
