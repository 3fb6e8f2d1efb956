"""ESA product folders as sources: the real T29UNU Level-2A .SAFE folder and the same product zipped.

The folder holds only its 60 m band files (no B08 at 60 m), so the run also exercises the choice of
the finest present file per band and B8A standing in for B08.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import rasterio
from typer.testing import CliRunner

from stac_clouds2mask import products
from stac_clouds2mask.cli import app
from stac_clouds2mask.errors import InvalidInputError
from stac_clouds2mask.search import search

NAME = "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
SOURCE_ID = "S2A_T29UNU_20221005T115407_L2A"


@pytest.fixture
def safe(sample_data_dir: Path) -> Path:
    return sample_data_dir / "safe" / NAME


@pytest.fixture
def extract_here(tmp_path, monkeypatch):
    """Zipped products are extracted under the cache folder: a fresh one per test."""
    monkeypatch.setattr(products, "cache_dir", lambda: tmp_path / "cache")


def run_product(source: Path, out: Path) -> tuple[dict, Path]:
    result = CliRunner().invoke(app, ["run", str(source), "--output", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    items = list(out.glob("*/*_cloudmask/*_cloudmask.json"))
    assert len(items) == 1, items
    return json.loads(items[0].read_text()), items[0].with_suffix(".tif")


def test_product_names():
    assert products.product_name(f"/data/{NAME}/") == NAME
    assert products.product_name(f"s3://b/{NAME}.zip") == NAME
    assert products.product_name(f"/data/{NAME[:-5]}.zip") == NAME
    assert products.product_name("/data/catalog.json") is None
    assert products.product_name("/data/S2A_MSIL2A_x.zip.json") is None


def test_source_item_from_the_product_metadata(safe):
    [item] = search(str(safe))
    assert item.id == SOURCE_ID
    assert item.properties["s2:product_type"] == "S2MSI2A"
    assert set(item.assets) >= {"blue", "green", "red", "nir", "swir16", "swir22"}
    assert all(Path(item.assets[b].href).is_file() for b in ("blue", "nir", "swir22"))
    assert item.assets["blue"].href.endswith("_B02_60m.jp2") and item.assets["nir"].href.endswith("_B8A_60m.jp2")
    assert item.properties["clouds2mask:band_substitutes"] == {"nir": "B8A"}
    band = item.assets["blue"].extra_fields["raster:bands"][0]
    assert band["offset"] == pytest.approx(-0.1) and band["scale"] == pytest.approx(1e-4)  # BOA_ADD_OFFSET -1000


def test_folder_and_zip_publish_the_same_valid_mask(safe, tmp_path, extract_here, validate_stac):
    item, cog = run_product(safe, tmp_path / "from-folder")
    validate_stac(item)
    assert item["properties"]["mlm:name"] == "model_6b_l2a"
    assert "Band nir read from B8A" in item["properties"]["processing:lineage"]
    [derived] = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
    assert derived.startswith("../../sources/")  # inside the catalog, relative: no machine-local path
    source = json.loads((cog.parent / derived).read_text())
    assert source["id"] == SOURCE_ID and Path(source["assets"]["nir"]["href"]).is_file()
    with rasterio.open(cog) as ds:
        assert (ds.width, ds.height) == (1830, 1830) and ds.res == (60.0, 60.0)
        classes = ds.read(1)
    assert 0.3 < (classes == 255).mean() < 0.5  # the real swath-edge wedge (40 % of the tile)

    archive = tmp_path / f"{NAME}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in safe.rglob("*"):
            zf.write(path, path.relative_to(safe.parent))
    zipped, zipped_cog = run_product(archive, tmp_path / "from-zip")
    assert zipped["id"] == item["id"]
    assert zipped_cog.read_bytes() == cog.read_bytes()


def test_zip_members_cannot_leave_the_product_folder(tmp_path, extract_here):
    archive = tmp_path / f"{NAME}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{NAME}/manifest.safe", "<x/>")
        zf.writestr(f"{NAME}/../../evil.xml", "<x/>")
    with pytest.raises(InvalidInputError, match="leaves the product folder"):
        products.product_item(str(archive))
    assert not (tmp_path / "evil.xml").exists()


def test_not_a_product_is_named(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        products.product_item(str(tmp_path / NAME))


# ------------------------------------------------------------------------------------------
# zipped products and product folders as untrusted input
# ------------------------------------------------------------------------------------------


def _zip(archive: Path, safe: Path, replace: dict[str, bytes] | None = None, extra: dict[str, bytes] | None = None):
    """`safe` zipped as ESA does (the .SAFE folder at the top), some members' bytes replaced or added."""
    replace = replace or {}
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(safe.rglob("*")):
            if path.is_file():
                name = str(path.relative_to(safe.parent))
                zf.writestr(name, replace.get(path.name, None) or path.read_bytes())
        for name, data in (extra or {}).items():
            zf.writestr(f"{NAME}/{name}", data)
    return archive


def _band(item, key: str) -> bytes:
    return Path(item.assets[key].href).read_bytes()


def _cache_entries(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "cache" / "products").iterdir())


def test_zip_cache_is_keyed_by_content_verified_and_safe_under_concurrency(safe, tmp_path, extract_here):
    """A zip of the same name but other bytes, processed first, decides nothing about the real one; a
    cached extraction whose files changed is not used; concurrent extractions of one zip all succeed."""
    real_b02 = next(safe.rglob("*_B02_60m.jp2")).read_bytes()
    b12 = next(safe.rglob("*_B12_60m.jp2")).read_bytes()
    (tmp_path / "hostile").mkdir()
    hostile = _zip(tmp_path / "hostile" / f"{NAME}.zip", safe, replace={next(safe.rglob("*_B02_60m.jp2")).name: b12})
    real = _zip(tmp_path / f"{NAME}.zip", safe)

    first = products.product_item(str(hostile))
    assert _band(first, "blue") == b12
    item = products.product_item(str(real))
    assert _band(item, "blue") == real_b02
    assert _band(first, "blue") == b12  # both extractions stand side by side: one per archive content
    assert len(_cache_entries(tmp_path)) == 2

    Path(item.assets["blue"].href).write_bytes(b12)  # the cache changed behind the tool's back
    assert _band(products.product_item(str(real)), "blue") == real_b02

    shutil.rmtree(tmp_path / "cache")
    with ThreadPoolExecutor(4) as pool:
        items = list(pool.map(lambda _: products.product_item(str(real)), range(4)))
    assert {i.assets["blue"].href for i in items} == {item.assets["blue"].href}
    assert all(_band(i, "blue") == real_b02 for i in items)
    assert not [n for n in _cache_entries(tmp_path) if n.startswith(".partial-")]


def test_zip_extraction_is_bounded_extracts_what_is_read_and_cleans_up(safe, tmp_path, extract_here, monkeypatch):
    real = _zip(tmp_path / f"{NAME}.zip", safe)
    item = products.product_item(str(real))
    [entry] = (tmp_path / "cache" / "products").iterdir()
    extracted = sorted(str(p.relative_to(entry / NAME)) for p in entry.rglob("*") if p.is_file())
    assert len(extracted) == 9 and {Path(n).name for n in extracted} >= {"manifest.safe", "MTD_MSIL2A.xml"}
    assert not [n for n in extracted if "QI_DATA" in n or "_SCL_" in n or "_B01_" in n or "AUX" in n]
    assert Path(item.assets["nir"].href).name.endswith("_B8A_60m.jp2")

    def refused(archive: Path, message: str) -> None:
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        with pytest.raises(InvalidInputError, match=message):
            products.product_item(str(archive))
        assert _cache_entries(tmp_path) == []  # nothing extracted, no partial folder left

    with monkeypatch.context() as m:
        m.setenv("STAC_CLOUDS2MASK_MAX_PRODUCT_MEMBERS", "50")
        refused(real, r"members, more than 50 \(STAC_CLOUDS2MASK_MAX_PRODUCT_MEMBERS\)")
    with monkeypatch.context() as m:
        m.setenv("STAC_CLOUDS2MASK_MAX_PRODUCT_BYTES", "1000000")
        refused(real, r"more than 1000000 \(STAC_CLOUDS2MASK_MAX_PRODUCT_BYTES\)")
    (tmp_path / "bomb").mkdir()
    bomb = _zip(tmp_path / "bomb" / f"{NAME}.zip", safe, replace={next(safe.rglob("*_B02_60m.jp2")).name: bytes(2**26)})
    with zipfile.ZipFile(bomb) as zf:
        [member] = [i for i in zf.infolist() if i.filename.endswith("_B02_60m.jp2")]
    assert member.file_size == 2**26 and member.compress_size < 2**26 // 1000  # 64 MiB from about 64 KB
    refused(bomb, "more than 100 times")
    (tmp_path / "corrupt").mkdir()
    corrupt = tmp_path / "corrupt" / f"{NAME}.zip"
    data = bytearray(real.read_bytes())
    with zipfile.ZipFile(real) as zf:
        info = zf.getinfo(
            f"{NAME}/GRANULE/L2A_T29UNU_A038058_20221005T115407/IMG_DATA/R60m/T29UNU_20221005T115411_B12_60m.jp2"
        )
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF  # a member's bytes damaged: its CRC fails during extraction
    corrupt.write_bytes(bytes(data))
    refused(corrupt, "cannot extract the zipped product")


@pytest.mark.parametrize(
    "attack,message",
    [
        ("metadata-outside", "leaves the product folder"),
        ("metadata-not-a-file", "is not a regular file"),
        ("band-outside", "leaves the product folder"),
        ("absolute-image-file", "leaves the product folder"),
        # last: should the guard break, the cases above fail first (pytest -x) and /dev/zero is never read
        ("metadata-to-dev-zero", "leaves the product folder"),
    ],
)
def test_the_product_folder_is_the_boundary(safe, tmp_path, monkeypatch, attack, message):
    """Metadata and band files are read only from inside the product folder, also with no local roots set."""
    monkeypatch.delenv("STAC_CLOUDS2MASK_LOCAL_ROOTS", raising=False)
    folder = Path(shutil.copytree(safe, tmp_path / "in" / NAME))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    mtd = folder / "MTD_MSIL2A.xml"
    b02 = next(folder.rglob("*_B02_60m.jp2"))
    if attack == "metadata-to-dev-zero":
        mtd.unlink()
        mtd.symlink_to("/dev/zero")
    elif attack == "metadata-outside":
        shutil.move(mtd, elsewhere / "MTD.xml")
        mtd.symlink_to(elsewhere / "MTD.xml")
    elif attack == "metadata-not-a-file":  # a folder here; a FIFO or a device would be opened the same way
        mtd.unlink()
        mtd.mkdir()
    elif attack == "band-outside":
        shutil.move(b02, elsewhere / b02.name)
        b02.symlink_to(elsewhere / b02.name)
    else:
        shutil.move(b02, elsewhere / b02.name)
        text = mtd.read_text()
        image_file = str(b02.relative_to(folder).with_suffix(""))
        assert f"<IMAGE_FILE>{image_file}</IMAGE_FILE>" in text
        mtd.write_text(text.replace(image_file, str(elsewhere / b02.stem)))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(folder), "--output", str(out)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    shown = " ".join(result.output.split())
    assert message in shown and "refused" in shown, shown
    assert not out.exists()


def test_oversized_product_metadata_is_refused(safe, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(safe, tmp_path / NAME))
    monkeypatch.setenv("STAC_CLOUDS2MASK_MAX_BODY_BYTES", "4096")
    with pytest.raises(InvalidInputError, match=r"metadata file .* more than 4096 \(STAC_CLOUDS2MASK_MAX_BODY_BYTES\)"):
        products.product_item(str(folder))
