"""Source bands and their published masks as one aligned, lazily read xarray: the analyst's one-liner.

    from stac_clouds2mask.stack import stack_masked
    cube = stack_masked(source_items, "./masks/catalog.json", assets=["blue", "green", "red", "nir"])
    cube  # (time, band, y, x) float64, NaN where the mask says cloud, cloud shadow or nodata

Both stacks are made by stackstac on one explicit grid (EPSG code, bounds and resolution given,
`snap_bounds=False`), so a source pixel and its mask pixel are the same cell: by default the finest
native resolution of the requested source assets over the masks' own bounds (the mask grid starts at
the source grid's top-left corner, so a 20 m mask falls exactly on 2x2 cells of a 10 m source grid;
nearest resampling copies it there).

Files are opened under the same rules as `run` (trust.py): every asset href stacked is judged against the
item that names it (trust.check_reference), rasters open with the GeoTIFF and JPEG 2000 drivers only and
without sidecar probing (TrustedReader), and neither a file nor the grid may exceed
STAC_CLOUDS2MASK_MAX_PIXELS.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pystac

from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT

from .errors import InvalidInputError, LimitExceededError
from .limits import Limits
from .publish import versions
from .publish.items import MASK_ASSET, mask_collection_id
from .storage import S3_SCHEMES, StorageOptions
from .trust import GDAL_SAFE_ENV, check_reference, open_raster_safely

try:
    import stackstac
    import xarray as xr
    from stackstac.rio_reader import (
        DEFAULT_GDAL_ENV,
        MULTITHREADED_DRIVER_ALLOWLIST,
        AutoParallelRioReader,
        SelfCleaningDatasetReader,
        SingleThreadedRioDataset,
        ThreadLocalRioDataset,
    )
except ImportError as exc:  # the optional "stack" extra
    raise InvalidInputError('stacking needs stackstac and xarray: pip install "stac-clouds2mask[stack]"') from exc

CLEAR = 0
DEFAULT_ASSETS = ("blue", "green", "red", "nir")
TRUSTED_GDAL_ENV = DEFAULT_GDAL_ENV.updated(always=GDAL_SAFE_ENV)  # no sidecar probing, also on re-opens


class TrustedReader(AutoParallelRioReader):
    """stackstac's reader, opening files as `run` does: GeoTIFF and JPEG 2000 drivers only (a VRT could
    name any local file), at most STAC_CLOUDS2MASK_MAX_PIXELS per file (from its header).

    stackstac opens whatever GDAL recognises and has no option to name the driver, so its `_open` (0.5.1)
    is written again here with one; the per-thread re-opens then keep the driver of the first open."""

    def _open(self) -> ThreadLocalRioDataset | SingleThreadedRioDataset:
        limit = Limits.from_env().max_pixels
        with self.gdal_env.open:
            try:
                ds = open_raster_safely(self.url, factory=SelfCleaningDatasetReader, sharing=False)
            except RasterioIOError as exc:
                raise RuntimeError(f"Error opening {self.url!r}: {exc}") from exc
            count, width, height = ds.count, ds.width, ds.height
            if count != 1 or width * height > limit:
                ds.close()
                if count != 1:
                    raise RuntimeError(f"{self.url!r} has {count} bands: each asset must hold exactly one")
                raise LimitExceededError(
                    f"{self.url!r} is {width} x {height} px, larger than the limit of {limit} px "
                    "(STAC_CLOUDS2MASK_MAX_PIXELS)"
                )
        vrt = None
        own = {"crs": ds.crs.to_epsg(), "transform": ds.transform, "height": ds.height, "width": ds.width}
        if self.spec.vrt_params != own:
            # not inside `open`: without open_vrt options stackstac's open_vrt *is* the open rasterio.Env, and
            # entering one Env twice leaves it active in the thread (its options, e.g. --anon, then leak into
            # every later read of that thread)
            with self.gdal_env.open_vrt:
                vrt = WarpedVRT(
                    ds, sharing=False, resampling=self.resampling, add_alpha=ds.nodata is None, **self.spec.vrt_params
                )
        threads = ThreadLocalRioDataset if ds.driver in MULTITHREADED_DRIVER_ALLOWLIST else SingleThreadedRioDataset
        return threads(self.gdal_env, ds, vrt=vrt)


def _check_hrefs(items: Sequence[dict[str, Any]], keys: Sequence[Sequence[str]]) -> None:
    """Each asset href to be stacked, judged against the document that names it (its item's self href;
    none for items given without one): UntrustedReferenceError names the item, the asset and why."""
    for d, item_keys in zip(items, keys):
        source = next((link.get("href") for link in d.get("links", []) if link.get("rel") == "self"), None)
        for key in item_keys:
            check_reference(d["assets"][key]["href"], source, what=f"asset {key!r} of item {d['id']!r}:")


def _absolute_dict(item: pystac.Item | dict[str, Any]) -> dict[str, Any]:
    """Item dict with absolute asset hrefs (stackstac reads `href` as given)."""
    if isinstance(item, dict):
        item = pystac.Item.from_dict(item)
    d = item.to_dict(include_self_link=True, transform_hrefs=False)
    for key, asset in item.assets.items():
        d["assets"][key]["href"] = asset.get_absolute_href() or asset.href
    return d


def _epsg(d: dict[str, Any]) -> int | None:
    props = d.get("properties", {})
    code = props.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    return props.get("proj:epsg")


def _asset_resolution(d: dict[str, Any], key: str) -> float | None:
    asset = d["assets"].get(key, {})
    transform = asset.get("proj:transform") or d["properties"].get("proj:transform")
    if transform:
        return abs(float(transform[0]))
    for bands_key in ("bands", "raster:bands"):
        for band in asset.get(bands_key) or []:
            res = band.get("raster:spatial_resolution") or band.get("spatial_resolution")
            if res:
                return float(res)
    gsd = asset.get("gsd") or d["properties"].get("gsd")
    return float(gsd) if gsd else None


def _asset_key(d: dict[str, Any], band: str) -> str:
    """The asset key of a band: the key itself, else the asset whose band's common name matches."""
    if band in d["assets"]:
        return band
    for key, asset in d["assets"].items():
        for bands_key in ("bands", "eo:bands"):
            for b in asset.get(bands_key) or []:
                if band in (b.get("eo:common_name"), b.get("common_name")):
                    return key
    raise ValueError(f"source item {d['id']!r} has no asset for band {band!r}")


def find_masks(
    sources: Sequence[pystac.Item | dict[str, Any]],
    masks: str | Iterable[pystac.Item | dict[str, Any]],
    options: StorageOptions | None = None,
    collections: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The latest (not deprecated, highest version) published mask of each source, in source order.

    masks: the published items themselves, or where they are (a static catalog at any fsspec URL, or
    a STAC API root URL, asked for version 1, 2, ... of each source's mask as publish.versions walks
    them, within STAC_CLOUDS2MASK_MAX_VERSIONS, in `collections`: by default each source collection's
    default mask collection). ValueError names the sources that have no mask there.
    """
    ids = [s.id if isinstance(s, pystac.Item) else s["id"] for s in sources]
    if collections is None:
        collections = sorted(
            {
                mask_collection_id(s.collection_id if isinstance(s, pystac.Item) else s.get("collection"))
                for s in sources
            }
        )
    with warnings.catch_warnings():  # pystac warns on every deprecated (superseded) version it reads
        warnings.simplefilter("ignore", pystac.DeprecatedWarning)
        if isinstance(masks, str):
            from .search import SearchFilters, is_api, search

            if is_api(masks):
                where, in_collections = masks, tuple(collections)

                def fetch(wanted: list[str]) -> dict[str, tuple[dict[str, Any], str]]:
                    filters = SearchFilters(ids=tuple(wanted), collections=in_collections)
                    found = (_absolute_dict(m) for m in search(where, filters, options))
                    return {d["id"]: (d, where) for d in found}

                walked = versions.walk(ids, fetch, Limits.from_env().max_versions)
                candidates = [v.item for found in walked.values() for v in found]
            else:
                candidates = [_absolute_dict(m) for m in search(masks, None, options)]
        else:
            candidates = [_absolute_dict(m) for m in masks]
    best = versions.latest_per_source((m for m in candidates if MASK_ASSET in m.get("assets", {})), ids)
    missing = [i for i in ids if i not in best]
    if missing:
        where = masks if isinstance(masks, str) else "the given mask items"
        raise ValueError(f"no published mask in {where} for source item(s): {', '.join(missing)}")
    return [best[i] for i in ids]


def stack_sources_and_masks(
    sources: Sequence[pystac.Item | dict[str, Any]],
    masks: str | Iterable[pystac.Item | dict[str, Any]],
    assets: Sequence[str] = DEFAULT_ASSETS,
    *,
    resolution: float | None = None,
    epsg: int | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    dtype: str = "float64",
    rescale: bool = True,
    chunksize: int = 1024,
    options: StorageOptions | None = None,
):
    """(sources, masks): two stackstac DataArrays on the same grid and the same time axis.

    sources: (time, band, y, x) of `dtype`, NaN where the source has no data;
    masks: (time, y, x) uint8 classes (0 clear, 1 cloud, 2 shadow, 255 nodata; 255 outside the mask).
    Items wholly outside the grid (those of another CRS than `epsg`'s, far away) are left out, as stackstac does.
    """
    src = [_absolute_dict(s) for s in sources]
    if not src:
        raise ValueError("no source items to stack")
    msk = find_masks(src, masks, options)
    order = sorted(range(len(src)), key=lambda i: (src[i]["properties"].get("datetime") or "", src[i]["id"]))
    src, msk = [src[i] for i in order], [msk[i] for i in order]
    keys = [[_asset_key(d, a) for a in assets] for d in src]
    if epsg is None:
        codes = {_epsg(m) for m in msk}
        if len(codes) != 1 or None in codes:
            raise ValueError(
                f"the masks are in more than one CRS ({sorted(map(str, codes))}): pass epsg= to pick one grid"
            )
        epsg = codes.pop()
    if resolution is None:
        found = [r for d, ks in zip(src, keys) for k in ks if (r := _asset_resolution(d, k))]
        found += [abs(m["properties"]["proj:transform"][0]) for m in msk if m["properties"].get("proj:transform")]
        if not found:
            raise ValueError("cannot tell a resolution from the items: pass resolution=")
        resolution = min(found)
    if bounds is None:
        boxes = [m["properties"]["proj:bbox"] for m in msk if m["properties"].get("proj:bbox") and _epsg(m) == epsg]
        if not boxes:
            raise ValueError("cannot tell the bounds from the masks: pass bounds= (in the grid's CRS)")
        bounds = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
    width, height, limit = (bounds[2] - bounds[0]) / resolution, (bounds[3] - bounds[1]) / resolution, Limits.from_env()
    if width * height > limit.max_pixels:
        raise LimitExceededError(
            f"the grid of {width:.0f} x {height:.0f} px is larger than the limit of {limit.max_pixels} px "
            "(STAC_CLOUDS2MASK_MAX_PIXELS): pass bounds= or a coarser resolution="
        )
    _check_hrefs(src, keys)
    _check_hrefs(msk, [[MASK_ASSET]] * len(msk))
    hrefs = [d["assets"][k]["href"] for d, ks in zip([*src, *msk], [*keys, *[[MASK_ASSET]] * len(msk)]) for k in ks]
    # stackstac opens the files with GDAL, not fsspec: the S3 options reach it as GDAL's configuration
    s3_config = (options or StorageOptions()).gdal_config() if any(h.startswith(S3_SCHEMES) for h in hrefs) else {}
    grid = {
        "epsg": int(epsg),
        "resolution": float(resolution),
        "bounds": tuple(bounds),
        "snap_bounds": False,
        "sortby_date": False,
        "chunksize": chunksize,
        "xy_coords": "topleft",
    }
    # one asset key per band across items (stackstac stacks by key); rename to the band names asked for
    for d, ks in zip(src, keys):
        for band, key in zip(assets, ks):
            if band != key:
                d["assets"][band] = d["assets"].pop(key)
    grid.update(reader=TrustedReader, gdal_env=TRUSTED_GDAL_ENV.updated(always=s3_config))
    data = stackstac.stack(src, assets=list(assets), dtype=dtype, fill_value=np.nan, rescale=rescale, **grid)
    # fill_value as np.uint8: stackstac checks np.can_cast(type(fill_value), dtype), and a Python int is int64
    raw = stackstac.stack(msk, assets=[MASK_ASSET], dtype="uint8", fill_value=np.uint8(255), rescale=False, **grid)
    if not (np.array_equal(raw["x"].values, data["x"].values) and np.array_equal(raw["y"].values, data["y"].values)):
        raise RuntimeError(
            "stackstac put the masks on another grid than the sources"
        )  # cannot happen with explicit grids
    # stackstac leaves out the items wholly outside the grid (those of another CRS, with epsg=); a mask has its
    # source's footprint, so the two are left out together
    kept, mask_of = [str(i) for i in data["id"].values], {s["id"]: m["id"] for s, m in zip(src, msk)}
    if [mask_of[i] for i in kept] != [str(i) for i in raw["id"].values]:
        raise RuntimeError("stackstac left out other masks than sources")  # a mask's footprint is its source's
    classes = xr.DataArray(
        raw.isel(band=0).data,
        dims=("time", "y", "x"),
        name="cloudmask",
        attrs=dict(raw.attrs),
        coords={
            "time": data["time"].values,
            "y": data["y"].values,
            "x": data["x"].values,
            "id": ("time", kept),
            "mask_id": ("time", [mask_of[i] for i in kept]),
        },
    )
    return data, classes


def stack_masked(
    sources: Sequence[pystac.Item | dict[str, Any]],
    masks: str | Iterable[pystac.Item | dict[str, Any]],
    assets: Sequence[str] = DEFAULT_ASSETS,
    *,
    keep: Sequence[int] = (CLEAR,),
    with_mask: bool = True,
    **kwargs: Any,
):
    """Source bands with every pixel whose mask class is not in `keep` (default: clear only) set to NaN.

    Lazy (dask) like stackstac; `.compute()` reads. With `with_mask`, the classes ride along as the
    `cloudmask` coordinate (time, y, x). Other keyword arguments: see stack_sources_and_masks.
    """
    data, classes = stack_sources_and_masks(sources, masks, assets, **kwargs)
    ok = xr.DataArray(
        classes.isin(list(keep)).data,
        dims=("time", "y", "x"),
        coords={"time": data["time"].values, "y": data["y"].values, "x": data["x"].values},
    )
    out = data.where(ok)
    out.attrs.update(data.attrs)
    out.attrs["clouds2mask:kept_classes"] = list(keep)
    if with_mask:
        out = out.assign_coords(
            cloudmask=(("time", "y", "x"), classes.data), mask_id=("time", classes["mask_id"].values)
        )
    return out
