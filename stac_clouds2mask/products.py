"""ESA Sentinel-2 product folders (.SAFE, and the zipped products ESA distributes) as sources.

The source STAC item is built from the product's own metadata by stactools-sentinel2 (L1C and L2A,
with the scale and the RADIO_ADD_OFFSET / BOA_ADD_OFFSET the metadata declares in `raster:bands`).
That library describes every band file a full product holds; a product folder may hold fewer (the
sample T29UNU folder keeps only its 60 m files), so each model band takes the finest file that is
really there, and where a band is missing at every resolution its declared stand-in is used (B8A,
865 nm, for B08, 842 nm: Sen2Cor writes B08 at 10 m only) and recorded in the item under
`clouds2mask:band_substitutes` (scene.BAND_SUBSTITUTES), which the mask item's lineage repeats.

The product folder is the boundary of what is read: every metadata file stactools-sentinel2 reads and
every file the item names must be a regular file inside it once symbolic links are resolved (no link to
/dev/zero or to files elsewhere, no absolute IMAGE_FILE path), and a metadata file, read whole, is at
most STAC_CLOUDS2MASK_MAX_BODY_BYTES; this holds whether or not STAC_CLOUDS2MASK_LOCAL_ROOTS is set.

A zipped product is extracted (only the members that are read: the metadata stactools-sentinel2 reads and,
per model band, the finest band file) into the user cache folder under the SHA-256 of the archive, because
the reader opens plain files and URLs only (no GDAL /vsizip/ paths: see trust.py). Content-keyed, a zip
that merely has the same name never stands in for another; a cached extraction is used only while each
of its files has the size and CRC-32 the archive declares; an extraction is written to a private folder
and moved into place in one rename, so concurrent runs never see or make a partial one; member count,
extracted bytes and compression ratio are bounded before anything is written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import pystac

from .errors import InvalidInputError
from .limits import Limits
from .model import cache_dir
from .model.registry import SIX_BANDS
from .scene import BAND_SUBSTITUTES

log = logging.getLogger(__name__)

PRODUCT_NAME = re.compile(r"^S2[A-D]_MSIL(1C|2A)_[0-9A-Z_T]+\.SAFE$")
STAND_INS = {"nir": ("nir08", "B8A")}  # band -> (stactools key of the stand-in, its band name)
_RESOLUTIONS = ("", "_20m", "_60m")
_BAND_FILE = re.compile(r"_(B0[1-9]|B1[0-2]|B8A)(_[1-6]0m)?\.jp2$")
# members relative to the .SAFE folder: what stactools-sentinel2 reads, and the band files
_METADATA_MEMBER = re.compile(r"^(manifest\.safe|MTD_MSIL(1C|2A)\.xml|GRANULE/[^/]+/MTD_TL\.xml)$")
_IMAGE_MEMBER = re.compile(r"^GRANULE/[^/]+/IMG_DATA/(R[126]0m/)?[^/]+_(?P<band>B0[1-9]|B1[0-2]|B8A)(_[126]0m)?\.jp2$")
CHUNK = 2**20
MAX_COMPRESSION_RATIO = 100
RATIO_FLOOR_BYTES = 2**20  # smaller members may compress better (a short XML file of repeated tags)
PARTIAL_PREFIX = ".partial-"
PARTIAL_SECONDS = 3600  # a killed run's partial extraction is removed after this long


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _resolution(name: str) -> int:
    """Metres of a band file from its suffix (_10m, _20m, _60m); 0 for L1C's one file per band."""
    match = re.search(r"_([126]0)m\.jp2$", name)
    return int(match[1]) if match else 0


def members_read(names: list[str], safe: str) -> list[str]:
    """The members of a zipped product that are read: the metadata stactools-sentinel2 reads, and per model
    band its finest band file (its stand-in's where the band has none), as _with_present_bands chooses them."""
    from stactools.sentinel2.constants import BANDS_TO_ASSET_NAME

    band_names = {asset: band for band, asset in BANDS_TO_ASSET_NAME.items()}  # blue -> B02, ...
    inside = {n[len(safe) + 1 :]: n for n in names if n.startswith(f"{safe}/") and not n.endswith("/")}
    chosen = [name for rel, name in inside.items() if _METADATA_MEMBER.match(rel)]
    files: dict[str, list[tuple[int, str]]] = {}
    for rel, name in inside.items():
        if match := _IMAGE_MEMBER.match(rel):
            files.setdefault(match["band"], []).append((_resolution(rel), name))
    for band in SIX_BANDS:
        options = (band_names[band], *((STAND_INS[band][1],) if band in STAND_INS else ()))
        present = [files[b] for b in options if b in files]
        if present:
            chosen.append(min(present[0])[1])
    return chosen


def _checked_members(zf: zipfile.ZipFile, archive: Path, safe: str, limits: Limits) -> list[zipfile.ZipInfo]:
    """The members to extract, once the archive passed the bounds: member count, no member leaving the
    folder, extracted bytes, compression ratio (a few MB of zip must not become GBs on disk)."""
    infos = zf.infolist()
    if len(infos) > limits.max_product_members:
        raise InvalidInputError(
            f"{archive}: {len(infos)} members, more than {limits.max_product_members} "
            "(STAC_CLOUDS2MASK_MAX_PRODUCT_MEMBERS): refused"
        )
    for info in infos:
        if info.filename.startswith("/") or ".." in info.filename.replace("\\", "/").split("/"):
            raise InvalidInputError(f"{archive}: member {info.filename!r} leaves the product folder: refused")
    wanted = set(members_read([i.filename for i in infos], safe))
    chosen = [i for i in infos if i.filename in wanted]
    if not chosen:
        raise InvalidInputError(f"{archive}: no {safe}/ product folder inside the zip")
    total = sum(i.file_size for i in chosen)
    if total > limits.max_product_bytes:
        raise InvalidInputError(
            f"{archive}: the members read hold {total} bytes, more than {limits.max_product_bytes} "
            "(STAC_CLOUDS2MASK_MAX_PRODUCT_BYTES): refused"
        )
    for i in chosen:
        if i.file_size > RATIO_FLOOR_BYTES and i.file_size > MAX_COMPRESSION_RATIO * max(i.compress_size, 1):
            raise InvalidInputError(
                f"{archive}: member {i.filename!r} expands {i.compress_size} bytes to {i.file_size}, more than "
                f"{MAX_COMPRESSION_RATIO} times (JPEG 2000 and XML never do; a zip bomb): refused"
            )
    return chosen


def _intact(folder: Path, infos: list[zipfile.ZipInfo]) -> bool:
    """Whether `folder` holds each member as a regular file of the size and CRC-32 the archive declares."""
    for info in infos:
        path = folder / info.filename
        if path.is_symlink() or not path.is_file() or path.stat().st_size != info.file_size:
            return False
        crc = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                crc = zlib.crc32(chunk, crc)
        if crc != info.CRC:
            return False
    return True


def _remove_stale_partials(root: Path) -> None:
    """Partial extractions of killed runs (every error removes its own): those older than PARTIAL_SECONDS."""
    for entry in root.glob(f"{PARTIAL_PREFIX}*"):
        try:
            if time.time() - entry.stat().st_mtime > PARTIAL_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _move_into_place(tmp: Path, target: Path, infos: list[zipfile.ZipInfo]) -> None:
    """`tmp` becomes `target` in one rename; when another run's extraction got there first it is kept if
    intact (same archive, same bytes), else replaced."""
    for _ in range(3):
        try:
            os.rename(tmp, target)
            return
        except OSError:  # target exists (a directory is replaced only while empty)
            if _intact(target, infos):
                return
            stale = target.with_name(f"{PARTIAL_PREFIX}stale-{secrets.token_hex(6)}")
            try:
                os.rename(target, stale)
            except FileNotFoundError:
                continue
            shutil.rmtree(stale, ignore_errors=True)
    raise OSError(f"{target}: could not be put in place (other extractions kept replacing it)")


def _extract(archive: Path, safe: str, limits: Limits) -> Path:
    """The product folder of a zipped product: its members_read, extracted once per archive content."""
    root = cache_dir() / "products"
    tmp: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(root)
        with zipfile.ZipFile(archive) as zf:
            infos = _checked_members(zf, archive, safe, limits)  # before the hash: a refusal costs no read
            target = root / _sha256(archive)
            if _intact(target, infos):
                return target / safe
            tmp = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=root))
            for info in infos:
                path = tmp / info.filename
                path.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(path, "xb") as dst:  # zipfile stops at the declared size
                    shutil.copyfileobj(src, dst, CHUNK)
        _move_into_place(tmp, target, infos)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise InvalidInputError(f"cannot extract the zipped product {archive}: {exc}") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return target / safe


def _inside(root: str, href: str, what: str, max_bytes: int | None = None) -> bool:
    """Whether the file at `href` exists; InvalidInputError when it does but leaves the product folder `root`
    (resolved), is not a regular file, or is larger than `max_bytes`."""
    real = os.path.realpath(href)
    if real != root and not real.startswith(root + os.sep):
        raise InvalidInputError(
            f"{what} {href!r} leaves the product folder {root} (a symbolic link or absolute path to {real!r}): refused"
        )
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"{what} {href!r} is not a regular file: refused")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InvalidInputError(
            f"{what} {href!r} is {st.st_size} bytes, more than {max_bytes} (STAC_CLOUDS2MASK_MAX_BODY_BYTES): refused"
        )
    return True


def product_item(source: str, limits: Limits | None = None) -> pystac.Item:
    """The source item of a local product folder or zipped product, with one asset per model band, read within
    `limits` (default: the environment's)."""
    from stactools.sentinel2.stac import create_item

    safe = product_name(source)
    if safe is None:
        raise InvalidInputError(f"{source}: not a Sentinel-2 product folder (S2x_MSIL1C/2A_...SAFE[.zip])")
    path = Path(source)
    if not path.exists():
        raise InvalidInputError(f"product {source} not found")
    limits = limits or Limits.from_env()
    folder = _extract(path, safe, limits) if path.is_file() else path
    root = os.path.realpath(folder)

    def metadata(href: str) -> str:  # stactools-sentinel2 reads each metadata file through this hook
        _inside(root, href, f"product {source}: metadata file", limits.max_body_bytes)
        return href

    try:
        with warnings.catch_warnings():  # antimeridian re-winds ESA's clockwise footprints, as it should
            warnings.filterwarnings("ignore", message="The exterior ring of this shape is wound clockwise")
            item = create_item(root, read_href_modifier=metadata)
    except InvalidInputError:
        raise
    except Exception as exc:  # the library raises many kinds for unreadable metadata
        raise InvalidInputError(f"cannot read the metadata of product {source}: {type(exc).__name__}: {exc}") from exc
    item = _with_present_bands(item, source, root)
    item.add_link(pystac.Link("via", os.path.abspath(source), title=f"ESA product {safe}"))
    return item


def from_product(item: pystac.Item) -> bool:
    """An item built here from a product folder: it lives nowhere else until it is published."""
    return item.get_self_href() is None and any(link.rel == "via" and is_product(link.href) for link in item.links)


def _with_present_bands(item: pystac.Item, source: str, root: str) -> pystac.Item:
    """Model bands keyed by common name, each the finest file present in the product folder `root`;
    stand-ins recorded. Any file the item names outside `root` refuses the product."""
    present_files = {k for k, a in item.assets.items() if _inside(root, a.href, f"product {source}: asset {k!r}")}
    chosen: dict[str, pystac.Asset] = {}
    substitutes: dict[str, str] = {}
    for band in SIX_BANDS:
        keys = [band + r for r in _RESOLUTIONS]
        if band in STAND_INS:
            keys += [STAND_INS[band][0] + r for r in _RESOLUTIONS]
        present = [k for k in keys if k in present_files]
        if not present:
            continue
        key = present[0]
        chosen[band] = item.assets[key]
        if band in STAND_INS and key.startswith(STAND_INS[band][0]):
            substitutes[band] = STAND_INS[band][1]
    if not chosen:
        raise InvalidInputError(f"product {source}: none of the bands {', '.join(SIX_BANDS)} is present")
    others = {k: a for k, a in item.assets.items() if not _BAND_FILE.search(a.href) and k in present_files}
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
