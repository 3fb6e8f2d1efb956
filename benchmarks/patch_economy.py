"""Patch economy: how many pixels each patch layout runs through the network, and what that costs here.

Two real nodata footprints, each at 20 m and 10 m (nearest-upsampled masks, so the footprint is real
and the grid full size):
  A       tile 19UDP from crop A (160 m, 38 % nodata wedge);
  T29UNU  the real Level-2A product folder in ../shared/data/safe (60 m JP2, 40 % nodata).
For each: patches and processed pixels / valid pixels of
  naive       a plain grid over the whole tile;
  skip        the same grid without all-nodata patches;
  offset      skip, with every other patch row shifted by half a step (CloudS2Mask's "offset grid");
  fitted      this engine's planner (runs from the first valid pixel, last patch slid inward).
Then the patch size: the network's cost per pixel at each size is timed on this machine (the engine's
own CPU runtime) and multiplied by the fitted layout's processed pixels, and the engine's own choice of
size per tile is shown. The last line names the patch size with the lowest predicted time on the
20 m tiles.

  python benchmarks/patch_economy.py
"""

from __future__ import annotations

import glob
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from full_scene import CROP_A, SIX, machine, shared_dir  # noqa: E402

SAFE_60M = "safe/*.SAFE/GRANULE/*/IMG_DATA/R60m/*_{band}_60m.jp2"
SAFE_BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
SIZES = (256, 384, 512, 768, 1024)
TILE = {20: 5490, 10: 10980}


def _read(path: str | Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1)


def footprints() -> dict[str, np.ndarray]:
    """Valid masks at their own resolution: every model band non-zero."""
    data = shared_dir() / "data"
    a = np.all([_read(data / CROP_A / f"{b}.tif") != 0 for b in SIX.values()], axis=0)
    t = np.all([_read(glob.glob(str(data / SAFE_60M.format(band=b)))[0]) != 0 for b in SAFE_BANDS], axis=0)
    return {"A": a, "T29UNU": t}


def upsample(valid: np.ndarray, size: int) -> np.ndarray:
    factor = math.ceil(size / valid.shape[0])
    return np.kron(valid, np.ones((factor, factor), bool))[:size, :size]


def grid_counts(valid: np.ndarray, patch: int, overlap: int) -> tuple[int, int, int]:
    """naive, skip and offset-grid patch counts of a plain grid from pixel 0."""
    h, w = valid.shape
    step = patch - overlap
    ys = list(range(0, max(h - overlap, 1), step))
    xs = list(range(0, max(w - overlap, 1), step))
    rows_any = [valid[y : y + patch].any(axis=0) for y in ys]
    cum = [np.concatenate([[0], np.cumsum(r)]) for r in rows_any]

    def kept(r: int, x0: int) -> bool:
        a, b = max(x0, 0), min(x0 + patch, w)
        return a < b and cum[r][b] > cum[r][a]

    skip = sum(kept(r, x) for r in range(len(ys)) for x in xs)
    offset = 0
    for r in range(len(ys)):
        shift = step // 2 if r % 2 else 0
        offset += sum(kept(r, x) for x in ([x - shift for x in xs] + ([xs[-1] + step - shift] if shift else [])))
    return len(ys) * len(xs), skip, offset


def time_per_pixel(sizes: tuple[int, ...]) -> tuple[dict[int, float], str]:
    """Seconds per processed pixel of the 6-band model at each patch size, in the engine's own CPU runtime."""
    import torch

    from stac_clouds2mask.infer import open_network
    from stac_clouds2mask.model import choose_model

    net = open_network(choose_model("L1C", list(SIX)), torch.device("cpu"))
    cost = {}
    with torch.inference_mode():
        for size in sizes:
            x = torch.randn(net.execution.batch_size, 6, size, size)  # a patch per stream, as the engine calls it
            net(x)
            best = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                net(x)
                best = min(best, time.perf_counter() - t)
            cost[size] = best / (len(x) * size**2)
    return cost, net.execution.describe()


def main() -> None:
    from stac_clouds2mask.infer import DEFAULT_OVERLAP, PATCH_SIZES, fitted_plan, plan_patches

    print(f"machine: {machine()}")
    masks = footprints()
    print(
        f"{'tile':8s} {'res':>4s} {'valid':>6s} {'patch':>5s} {'ovl':>4s} {'naive':>7s} {'skip':>7s} {'offset':>7s} "
        f"{'fitted':>7s} {'naive px/valid':>15s} {'fitted px/valid':>16s}"
    )
    processed: dict[tuple[str, int, int], int] = {}
    for name, small in masks.items():
        for res, size in TILE.items():
            valid = upsample(small, size)
            for patch in SIZES:
                for overlap in (32, DEFAULT_OVERLAP):
                    naive, skip, offset = grid_counts(valid, patch, overlap)
                    plan = plan_patches(valid, patch, overlap)
                    if overlap == DEFAULT_OVERLAP:
                        processed[(name, res, patch)] = plan.processed_pixels
                    nv = valid.sum()
                    print(
                        f"{name:8s} {res:>3d}m {valid.mean():6.1%} {patch:5d} {overlap:4d} {naive:7d} {skip:7d} "
                        f"{offset:7d} {plan.count:7d} {naive * patch * patch / nv:15.2f} "
                        f"{plan.processed_pixels / nv:16.2f}",
                        flush=True,
                    )
            for streams in (1, 2):
                best = fitted_plan(valid, streams=streams)
                print(
                    f"{name:8s} {res:>3d}m  the engine's choice (fitted_plan, {streams} stream(s), each side "
                    f"{PATCH_SIZES[0]}-{PATCH_SIZES[-1]} px): {best.patch_h} x {best.patch_w} px, {best.count} "
                    f"patches, {best.processed_pixels / valid.sum():.2f} processed px per valid px",
                    flush=True,
                )
    cost, mode = time_per_pixel(SIZES)
    print(f"network cost on this machine ({mode}): " + ", ".join(f"{s}: {cost[s] * 1e6:.3f} s/MP" for s in SIZES))
    totals = {}
    for patch in SIZES:
        totals[patch] = sum(processed[(name, 20, patch)] * cost[patch] for name in masks)
        print(f"predicted network seconds for both 20 m tiles at patch {patch}: {totals[patch]:.1f}")
    print(f"best_patch_size_20m={min(totals, key=totals.__getitem__)}")


if __name__ == "__main__":
    main()
