"""Cloud-Optimized GeoTIFF writing with rio-cogeo: internal tiles, overviews that never average classes, and
files that explain themselves to GDAL and QGIS (colour table, category names, band descriptions, nodata).

The class names live in a GDAL PAM sidecar (`<mask>.tif.aux.xml`, GeoTIFF has no tag for them), which GDAL
also treats as its cache: it writes there what it computes, e.g. the statistics of `gdalinfo -stats` or of a
QGIS layer. So that computing them never changes the published (checksummed) sidecar, the mask COG carries
its exact statistics (GDAL finds them and computes nothing), and the sidecar is written as GDAL itself
serialises it (a rewrite of the same content gives the same bytes: the no-valid-pixel case, where GDAL
records its finding anyway). Histograms (`gdalinfo -hist`) are still added by GDAL: the checksum is that of
the file as published."""

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
    """The class mask: uint8, nodata 255, mode overviews, the legend's colours as a colour table, its exact
    statistics as GDAL band metadata."""
    _write(classes[np.newaxis], crs, transform, path, "mode", (MASK_DESCRIPTION,), colormap(), gdal_statistics(classes))


def gdal_statistics(classes: np.ndarray) -> dict[str, str]:
    """GDAL's exact band statistics of the mask (STATISTICS_* metadata as `gdalinfo -stats` computes them:
    nodata excluded, population standard deviation); none when no pixel is valid (GDAL computes none)."""
    valid = classes[classes != NODATA]
    if valid.size == 0:
        return {}
    values = {
        "MINIMUM": valid.min(),
        "MAXIMUM": valid.max(),
        "MEAN": valid.mean(dtype=np.float64),
        "STDDEV": valid.std(dtype=np.float64),
        "VALID_PERCENT": 100.0 * valid.size / classes.size,
    }
    return {f"STATISTICS_{key}": f"{float(value):.14g}" for key, value in values.items()}


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
    band_tags: dict[str, str] | None = None,
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
            if band_tags:
                ds.update_tags(1, **band_tags)
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
                forward_band_tags=True,
            )


def category_sidecar(classes: np.ndarray) -> bytes:
    """A GDAL PAM sidecar (`<file>.aux.xml`) naming the mask's classes: GeoTIFF has no tag for category
    names, and GDAL (so QGIS) reads them from this file beside the COG, locally and over HTTP or S3.

    Laid out as GDAL serialises PAM (see the module docstring); for a mask without a valid pixel it holds
    what GDAL records when asked for statistics (valid percent 0)."""
    lines = [
        "<PAMDataset>",
        '  <PAMRasterBand band="1">',
        f"    <Description>{escape(MASK_DESCRIPTION)}</Description>",
        "    <CategoryNames>",
        *(f"      <Category>{escape(n)}</Category>" for n in category_names()),
        "    </CategoryNames>",
    ]
    if not (classes != NODATA).any():
        lines += ["    <Metadata>", '      <MDI key="STATISTICS_VALID_PERCENT">0</MDI>', "    </Metadata>"]
    return "\n".join([*lines, "  </PAMRasterBand>", "</PAMDataset>", ""]).encode()


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
