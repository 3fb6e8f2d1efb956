"""Stage 2: read only the bands the model needs, through fsspec, onto one processing grid, as reflectance."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import numpy as np
import pystac
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from .access import modified
from .aoi import CONTEXT_MARGIN, aoi_id, aoi_window, footprint_part, in_crs, inside, read_window
from .errors import NothingToMask, SourceDataError, UntrustedReferenceError
from .limits import Limits
from .model.registry import BAND_IDS
from .scene import AoiCut, Scene
from .storage import StorageOptions, carrying_retries, check_readable, get_fs
from .trust import check_reference, gdal_env, is_local, local_path, open_raster_safely

L2A_PRODUCT_TYPES = ("S2MSI2A",)
GDAL_CACHE_BYTES = 128 * 2**20
MAX_READ_THREADS = 8
DECODER_THREADS = "ALL_CPUS"
OFFSET_BASELINE = (4, 0)  # processing baseline from which L1C/L2A DNs carry +1000
READ_ROWS = 1024  # rows per read, so the item's deadline is checked while a large band is read
WINDOW_BLOCK_BYTES = 64 * 2**10  # remote read-ahead of windowed reads: the header, then little past each tile


def product_level(item: pystac.Item) -> str:
    """'L2A' when the item says so (product type, level or collection), else 'L1C'."""
    props = item.properties
    hints = [
        str(props.get("s2:product_type", "")),
        str(props.get("sample:product_level", "")),
        str(props.get("processing:level", "")),
        str(item.collection_id or ""),
    ]
    joined = " ".join(hints).upper()
    return "L2A" if ("2A" in str(props.get("s2:product_type", "")).upper() or "L2A" in joined) else "L1C"


def _asset_band(asset: pystac.Asset) -> dict[str, Any]:
    """The single band description of an asset, merged from STAC 1.1 bands, eo:bands and raster:bands."""
    merged: dict[str, Any] = {}
    for key in ("raster:bands", "eo:bands", "bands"):
        bands = asset.extra_fields.get(key)
        if isinstance(bands, list) and len(bands) == 1 and isinstance(bands[0], dict):
            merged.update(bands[0])
    return merged


def common_name(asset: pystac.Asset) -> str | None:
    band = _asset_band(asset)
    return band.get("eo:common_name") or band.get("common_name")


def available_bands(item: pystac.Item) -> set[str]:
    """Common names of the single-band data assets of the item, and their keys (find_asset looks a band
    up by key first, e.g. a product's stand-in asset 'nir' holding B8A, common name nir08)."""
    names = set()
    for key, asset in item.assets.items():
        names.update({common_name(asset) or key, key})
    return names


def find_asset(item: pystac.Item, band: str) -> tuple[str, pystac.Asset]:
    """The asset holding a band: the asset keyed by the common name, else one whose band says so."""
    if band in item.assets:
        return band, item.assets[band]
    for key, asset in item.assets.items():
        if common_name(asset) == band:
            return key, asset
    raise SourceDataError(
        item.id,
        f"no asset for band {band!r}{band_id(band)}: none keyed {band!r} and none with eo:common_name {band!r}",
        asset=band,
        stage="read",
    )


def band_id(band: str) -> str:
    """' (B02)' after a common name the models use, as messages show it; '' for other names."""
    return f" ({BAND_IDS[band]})" if band in BAND_IDS else ""


def scale_offset(item: pystac.Item, key: str, asset: pystac.Asset) -> tuple[float, float]:
    """DN -> reflectance: the asset's own scale/offset, else from the processing baseline."""
    band = _asset_band(asset)
    scale = band.get("raster:scale", band.get("scale"))
    offset = band.get("raster:offset", band.get("offset"))
    if scale is not None:
        return float(scale), float(offset or 0.0)
    baseline = item.properties.get("s2:processing_baseline")
    if baseline is None:
        raise SourceDataError(
            item.id, "no raster scale/offset and no s2:processing_baseline to derive them", asset=key, stage="read"
        )
    try:
        major, minor = (int(p) for p in str(baseline).split(".")[:2])
    except ValueError as exc:
        raise SourceDataError(
            item.id, f"unreadable s2:processing_baseline {baseline!r}", asset=key, stage="read"
        ) from exc
    return 0.0001, (-0.1 if (major, minor) >= OFFSET_BASELINE else 0.0)


def declared_nodata(asset: pystac.Asset) -> float | None:
    band = _asset_band(asset)
    return band.get("nodata")


def item_crs(item: pystac.Item, asset: pystac.Asset | None = None) -> CRS | None:
    """CRS from proj:code (projection v2) or proj:epsg (v1), on the asset or the item."""
    for fields in ((asset.extra_fields if asset else {}), item.properties):
        code = fields.get("proj:code")
        if code:
            return CRS.from_user_input(code)
        epsg = fields.get("proj:epsg")
        if epsg:
            return CRS.from_epsg(int(epsg))
    return None


def open_raster(
    href: str, options: StorageOptions | None = None, source: str | None = None, block_size: int | None = None
) -> rasterio.DatasetReader:
    """Open a COG or JP2 at a local path or any fsspec URL (streamed, not downloaded), if the document
    at `source` may name it (trust.check_reference); GeoTIFF and JPEG 2000 drivers only.

    Remote files are fetched in blocks of `block_size` bytes (read ahead): small ones for a window, so that
    only the header and the tiles under it travel; None keeps fsspec's (for s3, 50 MiB: a whole band in one
    request or a few, the fastest way to read all of it)."""
    check_reference(href, source, what="asset href")
    if is_local(href):
        return open_raster_safely(local_path(href))
    fs, path = get_fs(href, options, block_size)
    check_readable(fs, path, href)
    return open_raster_safely(path, opener=fs)


def _gdal_detail(exc: BaseException) -> str:
    """The message of an exception and of the GDAL error behind it ("Read failed. See previous exception"
    says little)."""
    cause = exc.__cause__ or exc.__context__
    detail = str(exc)
    if cause is not None and str(cause) and str(cause) not in detail:
        detail = f"{detail} ({cause})"
    return detail


def _href(item: pystac.Item, key: str, asset: pystac.Asset) -> str:
    href = asset.get_absolute_href()
    if href is None:
        raise SourceDataError(
            item.id,
            f"relative href {asset.href!r} and the item has no self link to resolve it",
            asset=key,
            stage="read",
        )
    return href


def target_grid(bounds: tuple[float, float, float, float], resolution: float) -> tuple[Affine, int, int]:
    """A north-up grid at `resolution` whose top-left corner is that of `bounds`."""
    left, bottom, right, top = bounds
    width = max(1, math.ceil(round((right - left) / resolution, 6)))
    height = max(1, math.ceil(round((top - bottom) / resolution, 6)))
    return Affine(resolution, 0.0, left, 0.0, -resolution, top), width, height


def _on_file_grid(ds: rasterio.DatasetReader, crs: CRS, transform: Affine, height: int, width: int) -> Window | None:
    """The window of the file that is exactly the grid (same CRS and pixel size, whole-pixel offset, inside
    the file), else None: then the band goes through the warper."""
    if ds.crs != crs or not np.allclose((ds.transform.a, ds.transform.e), (transform.a, transform.e)):
        return None
    col, row = (transform.c - ds.transform.c) / transform.a, (transform.f - ds.transform.f) / transform.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    col, row = round(col), round(row)
    if col < 0 or row < 0 or col + width > ds.width or row + height > ds.height:
        return None
    return Window(col, row, width, height)


def _read_band(
    ds: rasterio.DatasetReader,
    crs: CRS,
    transform: Affine,
    out: np.ndarray,
    res: float,
    src_nodata: float,
    in_time: Callable[[], None],
) -> None:
    """One band onto the grid (the whole scene's, or a window of it): finer data averaged down, coarser
    taken nearest-neighbour, DN 0 outside. Only the file's blocks under the grid are read (COG tiles by
    range requests, JPEG 2000 code-stream tiles decoded).

    Read in blocks of READ_ROWS rows, calling ``in_time`` before each, so a deadline can stop a slow
    read. Always from the full-resolution data: JPEG 2000 resolution levels (and overviews of unknown
    making) are not the box average of the pixels (benchmarks/read_speed.py measures the difference).
    """
    height, width = out.shape
    with ExitStack() as stack:
        direct = _on_file_grid(ds, crs, transform, height, width)
        if direct is not None:
            source, col0, row0 = ds, int(direct.col_off), int(direct.row_off)  # the file is on the grid: no warper
        else:
            resampling = Resampling.average if abs(ds.transform.a) < res - 1e-6 else Resampling.nearest
            col0 = row0 = 0
            source = stack.enter_context(
                WarpedVRT(
                    ds,
                    crs=crs,
                    src_crs=crs,
                    transform=transform,
                    width=width,
                    height=height,
                    src_nodata=src_nodata,
                    nodata=0,
                    resampling=resampling,
                )
            )
        for row in range(0, height, READ_ROWS):
            in_time()
            rows = min(READ_ROWS, height - row)
            source.read(1, out=out[row : row + rows], window=Window(col0, row0 + row, width, rows))
    if direct is not None and src_nodata != 0:
        out[out == src_nodata] = 0


def read_scene(
    item: pystac.Item,
    bands: Sequence[str],
    resolution: float = 20.0,
    options: StorageOptions | None = None,
    limits: Limits | None = None,
    deadline: float | None = None,
    aoi: dict[str, Any] | None = None,
    margin: int = CONTEXT_MARGIN,
) -> Scene:
    """Read `bands` of `item` onto a grid of `resolution` metres (or the data's own, if coarser).

    The grid covers the extent of the finest needed band in the item's CRS. Finer bands are
    averaged down, coarser ones taken nearest-neighbour, so nodata never bleeds into data.
    With `aoi` (a GeoJSON geometry in WGS84) only a window of that grid is read: the AOI's envelope
    snapped outward to whole pixels plus `margin` px of context (aoi.py); NothingToMask when the AOI
    misses the item's footprint or grid. Files and the grid (or window) larger than
    `limits.max_pixels` are refused from their headers, before any pixel is allocated; past
    `deadline` (time.monotonic()) the read stops between row blocks.
    """
    part = None
    if aoi is not None:
        part = footprint_part(aoi, item.geometry)
        if part is None:
            raise NothingToMask(item.id, "its footprint does not meet the AOI")
    limits = limits or Limits.from_env()
    # a signed copy opens the files; the Scene keeps the item as found (no signature may reach a published item)
    signed = modified(item, options.modifier) if options else item
    found = [(band, *find_asset(signed, band)) for band in bands]
    with ExitStack() as stack:
        # each band is read once: a large GDAL block cache would only add to peak memory
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES))
        stack.enter_context(gdal_env())
        datasets = []
        for band, key, asset in found:
            href = _href(signed, key, asset)
            try:
                block = WINDOW_BLOCK_BYTES if aoi is not None else None
                ds = stack.enter_context(open_raster(href, options, item.get_self_href(), block))
            except UntrustedReferenceError as exc:
                raise SourceDataError(item.id, str(exc), asset=key, stage="read") from exc
            except (RasterioIOError, OSError) as exc:
                raise SourceDataError(item.id, f"cannot open {href}: {exc}", asset=key, stage="read") from exc
            if ds.width * ds.height > limits.max_pixels:
                raise SourceDataError(
                    item.id,
                    f"{ds.width} x {ds.height} px is larger than the limit of "
                    f"{limits.max_pixels} px (STAC_CLOUDS2MASK_MAX_PIXELS)",
                    asset=key,
                    stage="read",
                )
            try:
                declared = item_crs(item, asset)
            except (CRSError, ValueError, TypeError) as exc:
                if ds.crs is None:
                    raise SourceDataError(
                        item.id,
                        f"unreadable proj:code/proj:epsg and no CRS in the file: {exc}",
                        asset=key,
                        stage="read",
                    ) from exc
                declared = None  # the file's own CRS is used
            crs = ds.crs or declared
            if crs is None:
                raise SourceDataError(
                    item.id, "no CRS: no proj:code/proj:epsg in the item and none in the file", asset=key, stage="read"
                )
            if (
                ds.crs
                and declared
                and ds.crs != declared
                and None not in (ds.crs.to_epsg(), declared.to_epsg())
                and ds.crs.to_epsg() != declared.to_epsg()
            ):
                raise SourceDataError(
                    item.id,
                    f"wrong CRS: the file {href} is in {ds.crs} but the item declares {declared} (proj:code/proj:epsg)",
                    asset=key,
                    stage="read",
                )
            if ds.transform.is_identity or ds.transform.b or ds.transform.d:
                raise SourceDataError(
                    item.id,
                    f"no usable north-up geotransform in {href} (not georeferenced, or a truncated file)",
                    asset=key,
                    stage="read",
                )
            datasets.append((band, key, asset, ds, crs))

        finest = min(datasets, key=lambda d: abs(d[3].transform.a))
        grid_crs = finest[4]
        native = abs(finest[3].transform.a)
        res = max(float(resolution), native)
        transform, width, height = target_grid(tuple(finest[3].bounds), res)
        cut = None
        if part is not None:
            transform, width, height, cut = _clip(item, part, aoi_id(aoi), grid_crs, transform, height, width, margin)
        if width * height > limits.max_pixels:
            raise SourceDataError(
                item.id,
                f"the processing grid of {width} x {height} px is larger than the limit "
                f"of {limits.max_pixels} px (STAC_CLOUDS2MASK_MAX_PIXELS)",
                asset=finest[1],
                stage="read",
            )

        dn = np.empty((len(bands), height, width), dtype=np.result_type(*(d[3].dtypes[0] for d in datasets)))
        for band, key, asset, ds, crs in datasets:
            if crs != grid_crs:
                raise SourceDataError(
                    item.id, f"CRS {crs} differs from {grid_crs} of the other bands", asset=key, stage="read"
                )

        def in_time(key: str) -> None:
            if deadline is not None and time.monotonic() > deadline:
                raise SourceDataError(
                    item.id,
                    "reading took longer than the per-item limit (STAC_CLOUDS2MASK_ITEM_SECONDS)",
                    asset=key,
                    stage="read",
                )

        def read(i: int) -> None:
            band, key, asset, ds, crs = datasets[i]
            nodata = declared_nodata(asset)
            src_nodata = ds.nodata if ds.nodata is not None else (nodata if nodata is not None else 0)
            try:
                with rasterio.Env(GDAL_NUM_THREADS=DECODER_THREADS):  # JPEG 2000 decodes its code blocks in threads
                    _read_band(ds, crs, transform, dn[i], res, src_nodata, lambda: in_time(key))
            except (RasterioIOError, OSError) as exc:
                raise SourceDataError(
                    item.id,
                    f"cannot read {ds.name}, truncated or corrupt: {_gdal_detail(exc)}",
                    asset=key,
                    stage="read",
                ) from exc

        # one thread per band: GDAL releases the GIL while it reads, decodes and resamples
        with ThreadPoolExecutor(max_workers=min(len(datasets), MAX_READ_THREADS)) as pool:
            list(pool.map(carrying_retries(read), range(len(datasets))))
        valid = np.ones((height, width), dtype=bool)
        scales, offsets, nodatas = [], [], []
        hrefs = {}
        for i, (band, key, asset, ds, crs) in enumerate(datasets):
            nodata = declared_nodata(asset)
            valid &= dn[i] != 0
            if nodata is not None:
                valid &= dn[i] != nodata
            nodatas.append(nodata)
            scale, offset = scale_offset(item, key, asset)
            scales.append(scale)
            offsets.append(offset)
            hrefs[key] = ds.name
    return Scene(
        item=item,
        dn=dn,
        scale=tuple(scales),
        offset=tuple(offsets),
        nodata=tuple(nodatas),
        valid=valid,
        bands=tuple(bands),
        crs=grid_crs,
        transform=transform,
        level=product_level(item),
        assets=hrefs,
        aoi=cut,
    )


def _clip(
    item: pystac.Item,
    part: dict[str, Any],
    identity: str,
    crs: CRS,
    transform: Affine,
    height: int,
    width: int,
    margin: int,
) -> tuple[Affine, int, int, AoiCut]:
    """The read window of a clipped scene (the AOI's window plus the margin) and where the AOI lies on it."""
    shape = in_crs(part, crs)
    window = aoi_window(shape, transform, height, width)
    if window is None:
        raise NothingToMask(item.id, "the AOI lies outside the item's raster grid")
    read = read_window(window, margin, height, width)
    grid = transform * Affine.translation(read.col, read.row)
    published = transform * Affine.translation(window.col, window.row)
    cut = AoiCut(window.within(read), inside(shape, published, window.height, window.width), identity, part)
    return grid, read.width, read.height, cut
