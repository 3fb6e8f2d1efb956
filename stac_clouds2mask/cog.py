"""Cloud-Optimized GeoTIFF writing with rio-cogeo: internal tiles, overviews that never average classes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

NODATA = 255
BLOCKSIZE = 512


def write_cog(
    data: np.ndarray,
    crs: CRS,
    transform: Affine,
    path: str | Path,
    *,
    nodata: int | None = NODATA,
    resampling: str = "mode",
    descriptions: tuple[str, ...] | None = None,
) -> None:
    """Write a uint8 (H, W) or (bands, H, W) array as a deflate COG with `resampling` overviews."""
    arr = data[np.newaxis] if data.ndim == 2 else data
    count, height, width = arr.shape
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": count,
        "height": height,
        "width": width,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    dst_profile = cog_profiles.get("deflate")
    dst_profile.update(blockxsize=BLOCKSIZE, blockysize=BLOCKSIZE, predictor=2)
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(arr.astype(np.uint8, copy=False))
            if descriptions:
                for i, text in enumerate(descriptions, start=1):
                    ds.set_band_description(i, text)
        with mem.open() as src:
            cog_translate(
                src,
                str(path),
                dst_profile,
                nodata=nodata,
                overview_resampling=resampling,
                in_memory=True,
                quiet=True,
                use_cog_driver=False,
            )


def multihash_sha256(path: str | Path) -> str:
    """The file extension's multihash: 0x12 (sha2-256), 0x20 (32 bytes), then the digest, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "1220" + digest.hexdigest()
