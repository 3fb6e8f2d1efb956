"""Cloud-Optimized GeoTIFF writing with rio-cogeo: internal tiles, overviews that never average classes, and
files that explain themselves to GDAL and QGIS (colour table, category names, band descriptions, nodata)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from ..classes import NODATA
from .legend import CLASS_NAMES, CLASSES, category_names, colormap

BLOCKSIZE = 512
MASK_DESCRIPTION = "cloud mask: " + ", ".join(f"{c['value']} {c['name']}" for c in CLASSES)


def write_mask_cog(classes: np.ndarray, crs: CRS, transform: Affine, path: str | Path) -> None:
    """The class mask: uint8, nodata 255, mode overviews, the legend's colours as a colour table."""
    _write(classes[np.newaxis], crs, transform, path, "mode", (MASK_DESCRIPTION,), colormap())


def write_probabilities_cog(probabilities: np.ndarray, crs: CRS, transform: Affine, path: str | Path) -> None:
    """The per-class probabilities: uint8 softmax x 254 per band (named after the classes), nodata 255,
    average overviews (probabilities, unlike classes, may be averaged), grey bands rather than RGB."""
    _write(probabilities, crs, transform, path, "average", CLASS_NAMES, None)


def _write(
    arr: np.ndarray,
    crs: CRS,
    transform: Affine,
    path: str | Path,
    resampling: str,
    descriptions: tuple[str, ...],
    cmap: dict[int, tuple[int, int, int, int]] | None,
) -> None:
    count, height, width = arr.shape
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": count,
        "height": height,
        "width": width,
        "crs": crs,
        "transform": transform,
        "nodata": NODATA,
        "photometric": "PALETTE" if cmap else "MINISBLACK",
    }
    dst_profile = cog_profiles.get("deflate")
    dst_profile.update(blockxsize=BLOCKSIZE, blockysize=BLOCKSIZE, predictor=2, photometric=profile["photometric"])
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(arr.astype(np.uint8, copy=False))
            for i, text in enumerate(descriptions, start=1):
                ds.set_band_description(i, text)
            if cmap:
                ds.write_colormap(1, cmap)
        with mem.open() as src:
            cog_translate(
                src,
                str(path),
                dst_profile,
                nodata=NODATA,
                overview_resampling=resampling,
                colormap=cmap,
                in_memory=True,
                quiet=True,
                use_cog_driver=False,
            )


def category_sidecar() -> bytes:
    """A GDAL PAM sidecar (`<file>.aux.xml`) naming the mask's classes: GeoTIFF has no tag for category
    names, and GDAL (so QGIS) reads them from this file beside the COG, locally and over HTTP or S3."""
    names = "".join(f"<Category>{escape(n)}</Category>" for n in category_names())
    return (
        '<PAMDataset>\n  <PAMRasterBand band="1">\n'
        f"    <Description>{escape(MASK_DESCRIPTION)}</Description>\n"
        f"    <CategoryNames>{names}</CategoryNames>\n"
        "  </PAMRasterBand>\n</PAMDataset>\n"
    ).encode()


def multihash_sha256(source: str | Path | BinaryIO) -> str:
    """The file extension's multihash: 0x12 (sha2-256), 0x20 (32 bytes), then the digest, in hex.

    `source`: a local path, or a binary file object (e.g. fsspec's) read from where it stands to its end."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            return multihash_sha256(f)
    digest = hashlib.sha256()
    for chunk in iter(lambda: source.read(1 << 20), b""):
        digest.update(chunk)
    return "1220" + digest.hexdigest()
