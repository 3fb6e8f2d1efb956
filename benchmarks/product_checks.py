"""Checks of the product-folder path: the T29UNU mask against Sen2Cor's SCL, and B8A standing in for B08.

1. The real Level-2A product folder in ../shared/data/safe goes through `stac-clouds2mask run` (at
   60 m, the only resolution whose files it holds); its mask is compared with Sen2Cor's own scene
   classification SCL_60m of the same product (cloud = SCL 8, 9, 10; shadow = SCL 3; nodata = SCL 0).
   SCL is a peer's output, not ground truth: the figures describe, they are never a target.
2. B8A (865 nm) for B08 (842 nm): no labelled chip holds B8A, so the substitution is measured on crop A
   (the real 19UDP tile, L1C, which holds both): class agreement and cloud/shadow shares of the 6-band
   model's mask with nir = B08 and with nir = B8A.

  python benchmarks/product_checks.py
"""

from __future__ import annotations

import glob
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from full_scene import CROP_A, machine, shared_dir  # noqa: E402


def _read(path: str | Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(int((a | b).sum()), 1))


def scl_agreement() -> None:
    safe = glob.glob(str(shared_dir() / "data" / "safe" / "*.SAFE"))[0]
    with tempfile.TemporaryDirectory(prefix="clouds2mask-safe-") as out:
        cli = [sys.executable, "-c", "from stac_clouds2mask.cli import app; app()"]
        subprocess.run([*cli, "run", safe, "--output", out, "--resolution", "60"], check=True, capture_output=True)
        ours = _read(glob.glob(f"{out}/*/*/*_cloudmask.tif")[0])
    scl = _read(glob.glob(f"{safe}/GRANULE/*/IMG_DATA/R60m/*_SCL_60m.jp2")[0])
    both = (ours != 255) & (scl != 0)
    cloud_s, shadow_s = np.isin(scl, (8, 9, 10)) & both, (scl == 3) & both
    cloud_o, shadow_o = (ours == 1) & both, (ours == 2) & both
    n = both.sum()
    print(f"T29UNU at 60 m, pixels valid in both: {n} ({n / both.size:.1%} of the tile)")
    print(f"  cloud: ours {cloud_o.sum() / n:.1%}, SCL {cloud_s.sum() / n:.1%}, IoU {iou(cloud_o, cloud_s):.3f}")
    print(f"  shadow: ours {shadow_o.sum() / n:.1%}, SCL {shadow_s.sum() / n:.1%}, IoU {iou(shadow_o, shadow_s):.3f}")
    ours3 = np.where(cloud_o, 1, np.where(shadow_o, 2, 0))
    scl3 = np.where(cloud_s, 1, np.where(shadow_s, 2, 0))
    print(f"  agreement of clear / cloud / shadow on valid pixels: {(ours3[both] == scl3[both]).mean():.1%}")


def b8a_for_b08() -> None:
    from stac_clouds2mask import mask_array

    folder = shared_dir() / "data" / CROP_A
    names = ["blue", "green", "red", "nir", "swir16", "swir22"]
    bands = {
        b: _read(folder / f"{b}.tif").astype(np.float32) * np.float32(1e-4)
        for b in ("B02", "B03", "B04", "B08", "B8A", "B11", "B12")
    }
    masks = {}
    for nir in ("B08", "B8A"):
        x = np.stack([bands[b] for b in ("B02", "B03", "B04", nir, "B11", "B12")])
        masks[nir] = mask_array(x, names, level="L1C", device="cpu").classes
    valid = (masks["B08"] != 255) & (masks["B8A"] != 255)
    a, b = masks["B08"][valid], masks["B8A"][valid]
    print(
        f"crop A (L1C, 160 m), 6-band model, nir = B08 vs nir = B8A: class agreement {(a == b).mean():.2%}; "
        f"cloud {(a == 1).mean():.1%} vs {(b == 1).mean():.1%}; "
        f"shadow {(a == 2).mean():.1%} vs {(b == 2).mean():.1%}; "
        f"cloud IoU between them {iou(a == 1, b == 1):.3f}"
    )


def main() -> None:
    print(f"machine: {machine()}")
    scl_agreement()
    b8a_for_b08()


if __name__ == "__main__":
    main()
