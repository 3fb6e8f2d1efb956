"""Read speed on a real product's JPEG 2000 files, and why the reader does not use resolution levels.

The T29UNU Level-2A product folder in ../shared/data/safe holds the tile's bands at 60 m as JPEG 2000
(1830 x 1830, 40 % nodata). Its six model bands (B8A standing in for B08, which Sen2Cor writes at
10 m only) are read with the project's reader onto the 60 m grid:
  serial    one band after another, one decoder thread (how the reader worked before);
  parallel  one thread per band and GDAL's JPEG 2000 decoder threads (the reader's default).
Then the case for reading 10 m bands at 20/60 m from a JPEG 2000 resolution level: B02 at 120 m from
level 1 against the box average of its 60 m pixels that the reader computes. The last line is
read_seconds_t29unu_60m=<parallel>.

  python benchmarks/read_speed.py
"""

from __future__ import annotations

import glob
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from full_scene import machine, shared_dir  # noqa: E402

BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B8A", "swir16": "B11", "swir22": "B12"}


def band_file(band: str) -> str:
    safe = shared_dir() / "data" / "safe" / "*.SAFE"
    pattern = str(safe / "GRANULE" / "*" / "IMG_DATA" / "R60m" / f"*_{band}_60m.jp2")
    return sorted(glob.glob(pattern))[0]


def item():
    import datetime as dt

    import pystac

    it = pystac.Item(
        "T29UNU-60m", None, None, dt.datetime(2022, 10, 5, 11, 54, 11), {"s2:processing_baseline": "04.00"}
    )
    for key, band in BANDS.items():
        it.add_asset(key, pystac.Asset(band_file(band), media_type="image/jp2"))
    return it


def timed(threads: int, decoder: str) -> tuple[float, np.ndarray]:
    from stac_clouds2mask import read

    read.MAX_READ_THREADS, read.DECODER_THREADS = threads, decoder
    t = time.perf_counter()
    scene = read.read_scene(item(), tuple(BANDS), 60)
    return time.perf_counter() - t, scene.dn


def level_difference() -> str:
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with rasterio.open(band_file("B02")) as ds:
        grid = Affine(120, 0, ds.transform.c, 0, -120, ds.transform.f)
        with WarpedVRT(
            ds, transform=grid, width=915, height=915, src_nodata=0, nodata=0, resampling=Resampling.average
        ) as vrt:
            box = vrt.read(1)
        level = ds.read(1, out_shape=(915, 915), resampling=Resampling.average)
    both = (box > 0) & (level > 0)
    diff = np.abs(box[both].astype(np.float64) - level[both]) * 1e-4
    return (
        f"B02 at 120 m, JPEG 2000 level 1 vs box average of the 60 m pixels: mean |d reflectance| "
        f"{diff.mean():.4f}, 99th percentile {np.percentile(diff, 99):.4f}; validity differs on "
        f"{int(((box > 0) != (level > 0)).sum())} px"
    )


def main() -> None:
    print(f"machine: {machine()}")
    serial, a = timed(1, "1")
    parallel, b = timed(8, "ALL_CPUS")
    assert np.array_equal(a, b)
    print(
        f"T29UNU, 6 bands at 60 m (1830 x 1830 JPEG 2000): serial {serial:.2f} s, parallel {parallel:.2f} s "
        "(identical DNs)"
    )
    print(level_difference())
    print(f"read_seconds_t29unu_60m={parallel:.2f}")


if __name__ == "__main__":
    main()
