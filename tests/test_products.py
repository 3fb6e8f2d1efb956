"""ESA product folders as sources: the real T29UNU Level-2A .SAFE folder and the same product zipped.

The folder holds only its 60 m band files (no B08 at 60 m), so the run also exercises the choice of
the finest present file per band and B8A standing in for B08.
"""

from __future__ import annotations

import json
import zipfile
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
