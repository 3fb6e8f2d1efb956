"""ESA Sentinel-2 product folders (.SAFE, and the zipped products ESA distributes) as sources.

The source STAC item is built from the product's own metadata by stactools-sentinel2 (L1C and L2A,
with the scale and the RADIO_ADD_OFFSET / BOA_ADD_OFFSET the metadata declares in `raster:bands`).
That library describes every band file a full product holds; a product folder may hold fewer (the
sample T29UNU folder keeps only its 60 m files), so each model band takes the finest file that is
really there, and where a band is missing at every resolution its declared stand-in is used (B8A,
865 nm, for B08, 842 nm: Sen2Cor writes B08 at 10 m only) and recorded in the item under
`clouds2mask:band_substitutes` (scene.BAND_SUBSTITUTES), which the mask item's lineage repeats.

A zipped product is extracted once (metadata and the band files the model reads) into the user
cache folder, because the reader opens plain files and URLs only (no GDAL /vsizip/ paths: see trust.py).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import pystac

from .errors import InvalidInputError
from .model import cache_dir
from .model.registry import SIX_BANDS
from .scene import BAND_SUBSTITUTES

log = logging.getLogger(__name__)

PRODUCT_NAME = re.compile(r"^S2[A-D]_MSIL(1C|2A)_[0-9A-Z_T]+\.SAFE$")
STAND_INS = {"nir": ("nir08", "B8A")}  # band -> (stactools key of the stand-in, its band name)
_RESOLUTIONS = ("", "_20m", "_60m")
_BAND_FILE = re.compile(r"_(B0[1-9]|B1[0-2]|B8A)(_[1-6]0m)?\.jp2$")


def product_name(source: str) -> str | None:
    """The .SAFE name of a product folder (``X.SAFE``) or zipped product (``X.SAFE.zip``, ``X.zip``), else None."""
    name = os.path.basename(source.rstrip("/"))
    if not name.endswith((".SAFE", ".zip")):
        return None
    stem = name.removesuffix(".zip")
    safe = stem if stem.endswith(".SAFE") else f"{stem}.SAFE"
    return safe if PRODUCT_NAME.match(safe) else None


def is_product(source: str) -> bool:
    return product_name(source) is not None


def _extract(archive: Path, safe: str) -> Path:
    """The product folder of a zipped product: metadata and 10/20/60 m band files, extracted once."""
    target = cache_dir() / "products" / safe
    if (target / "manifest.safe").is_file():
        return target
    tmp = target.with_name(f"{safe}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [
                m
                for m in zf.namelist()
                if m.startswith(f"{safe}/")
                and not m.endswith("/")
                and (m.endswith((".xml", ".safe")) or _BAND_FILE.search(m))
            ]
            if not members:
                raise InvalidInputError(f"{archive}: no {safe}/ product folder inside the zip")
            for member in members:
                path = (tmp / member[len(safe) + 1 :]).resolve()
                if not str(path).startswith(str(tmp.resolve()) + os.sep):
                    raise InvalidInputError(f"{archive}: member {member!r} leaves the product folder")
                path.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        os.replace(tmp, target)
    except (OSError, zipfile.BadZipFile) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InvalidInputError(f"cannot extract the zipped product {archive}: {exc}") from exc
    return target


def product_item(source: str) -> pystac.Item:
    """The source item of a local product folder or zipped product, with one asset per model band."""
    from stactools.sentinel2.stac import create_item

    safe = product_name(source)
    if safe is None:
        raise InvalidInputError(f"{source}: not a Sentinel-2 product folder (S2x_MSIL1C/2A_...SAFE[.zip])")
    path = Path(source)
    if not path.exists():
        raise InvalidInputError(f"product {source} not found")
    folder = _extract(path, safe) if path.is_file() else path
    try:
        with warnings.catch_warnings():  # antimeridian re-winds ESA's clockwise footprints, as it should
            warnings.filterwarnings("ignore", message="The exterior ring of this shape is wound clockwise")
            item = create_item(str(folder.resolve()))
    except Exception as exc:  # the library raises many kinds for unreadable metadata
        raise InvalidInputError(f"cannot read the metadata of product {source}: {type(exc).__name__}: {exc}") from exc
    item = _with_present_bands(item, source)
    item.add_link(pystac.Link("via", os.path.abspath(source), title=f"ESA product {safe}"))
    return item


def from_product(item: pystac.Item) -> bool:
    """An item built here from a product folder: it lives nowhere else until it is published."""
    return item.get_self_href() is None and any(link.rel == "via" and is_product(link.href) for link in item.links)


def _exists(asset: pystac.Asset) -> bool:
    return os.path.isfile(asset.href)


def _with_present_bands(item: pystac.Item, source: str) -> pystac.Item:
    """Model bands keyed by common name, each the finest file present; stand-ins recorded."""
    chosen: dict[str, pystac.Asset] = {}
    substitutes: dict[str, str] = {}
    for band in SIX_BANDS:
        keys = [band + r for r in _RESOLUTIONS]
        if band in STAND_INS:
            keys += [STAND_INS[band][0] + r for r in _RESOLUTIONS]
        present = [k for k in keys if k in item.assets and _exists(item.assets[k])]
        if not present:
            continue
        key = present[0]
        chosen[band] = item.assets[key]
        if band in STAND_INS and key.startswith(STAND_INS[band][0]):
            substitutes[band] = STAND_INS[band][1]
    if not chosen:
        raise InvalidInputError(f"product {source}: none of the bands {', '.join(SIX_BANDS)} is present")
    others = {k: a for k, a in item.assets.items() if not _BAND_FILE.search(a.href) and _exists(a)}
    item.assets.clear()
    for key, asset in {**chosen, **others}.items():
        item.add_asset(key, asset)
    if substitutes:
        item.properties[BAND_SUBSTITUTES] = substitutes
    log.info(
        "product %s: bands %s%s",
        source,
        ", ".join(f"{b} <- {os.path.basename(a.href)}" for b, a in chosen.items()),
        f"; stand-ins {substitutes}" if substitutes else "",
    )
    return item
