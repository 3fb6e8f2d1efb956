"""The published outputs opened by the tools downstream users run, as they are: stackstac, odc-stac,
rio-tiler, GDAL (STACIT driver, gdalinfo), stac-validator and pystac (offline schemas), stac-check, and
rasterio on the COGs themselves (colour table, category names, nodata, band names).

One real run of the sample catalog (real weights) with probabilities is shared by the module and only read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.enums import ColorInterp
from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.publish.legend import CLASS_NAMES, CLASSES

from stac_schemas import install_into_pystac, offline_validator, write_schema_config

MASK = "cloudmask"


@pytest.fixture(scope="module")
def published(sample_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("consumers") / "masks"
    result = CliRunner().invoke(app, ["run", str(sample_catalog), "-o", str(out), "--probabilities"])
    assert result.exit_code == 0, result.output
    return out


def item_paths(out: Path) -> list[Path]:
    paths = sorted(out.glob("*/*/*.json"))
    assert len(paths) == 5
    return paths


def plain_item(path: Path) -> dict[str, Any]:
    """The item JSON as a STAC API or a file serves it, asset hrefs made absolute (what a client passes on)."""
    d = json.loads(path.read_text())
    for asset in d["assets"].values():
        asset["href"] = str((path.parent / asset["href"]).resolve())
    return d


def cog_grid(path: str) -> tuple[np.ndarray, rasterio.Affine, rasterio.crs.CRS]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs


def test_stackstac_stacks_each_mask_on_its_native_grid(published: Path) -> None:
    """No extra arguments: stackstac takes CRS, resolution and grid from the item (proj:epsg, which
    stackstac 0.5 needs, and proj:transform / proj:shape). Its default `snap_bounds=True` moves bounds to
    multiples of the pixel size: a grid aligned so (Sentinel-2 tiles at 10, 20 and 60 m are: their origins
    are multiples of 60 m) comes back exactly; the sample crops, whose origins are not, come back exactly
    with `snap_bounds=False`. Items as JSON dicts: pystac migrates projection v1.2 to v2.0 on read and
    drops proj:epsg, after which stackstac 0.5 needs `epsg=` (its issue #262)."""
    import stackstac

    aligned = 0
    for path in item_paths(published):
        d = plain_item(path)
        classes, transform, crs = cog_grid(d["assets"][MASK]["href"])
        arr = stackstac.stack([d], assets=[MASK])
        assert arr.attrs["crs"] == f"epsg:{crs.to_epsg()}", path.name
        assert np.allclose(arr.attrs["resolution"], (transform.a, -transform.e))
        if transform.c % transform.a == 0 and transform.f % transform.a == 0:
            aligned += 1
        else:
            arr = stackstac.stack([d], assets=[MASK], snap_bounds=False)
        assert arr.shape == (1, 1, *classes.shape), path.name
        assert arr.attrs["transform"].almost_equals(transform)
        np.testing.assert_array_equal(np.nan_to_num(arr.values[0, 0], nan=255).astype(np.uint8), classes)
    assert aligned >= 1  # the 60 m crop of tile 32UPC


def test_odc_stac_loads_each_mask_on_its_native_grid(published: Path) -> None:
    import odc.stac

    for path in item_paths(published):
        item = pystac.Item.from_file(str(path))
        classes, transform, crs = cog_grid(item.assets[MASK].get_absolute_href())
        ds = odc.stac.load([item], bands=[MASK])
        assert ds[MASK].shape == (1, *classes.shape), path.name
        assert ds.odc.geobox.crs.epsg == crs.to_epsg()
        assert tuple(ds.odc.geobox.affine)[:6] == tuple(transform)[:6]
        assert ds[MASK].attrs.get("nodata") == 255
        np.testing.assert_array_equal(ds[MASK].values[0], classes)


def test_rio_tiler_reads_the_mask_asset_with_its_colour_table(published: Path) -> None:
    from rio_tiler.io import STACReader

    for path in item_paths(published):
        with STACReader(str(path)) as stac:
            assert MASK in stac.assets
            info = stac.info(assets=[MASK])[MASK]
            assert info.dtype == "uint8" and info.nodata_value == 255
            assert info.colorinterp == ["palette"] and info.colormap[1][:3] == (255, 255, 255)
            classes, transform, _ = cog_grid(stac.item.assets[MASK].get_absolute_href())
            row, col = classes.shape[0] // 2, classes.shape[1] // 2
            x, y = transform * (col + 0.5, row + 0.5)
            point = stac.point(x, y, assets=[MASK], coord_crs=stac.item.properties["proj:code"])
            assert int(point.data[0]) == classes[row, col]


def gdal_tool(name: str) -> str:
    """Debian's gdal-bin (.ci/install-test-deps installs it); under CI its absence fails the test."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} (Debian's gdal-bin) is not installed", pytrace=False)
        pytest.skip(f"needs {name} from Debian's gdal-bin (apt install gdal-bin)")
    return path


def test_gdal_stacit_reads_an_item_collection_of_masks(published: Path, tmp_path: Path) -> None:
    """GDAL's STACIT driver (3.6 in Debian 12 reads the CRS from proj:epsg only) mosaics the masks of one
    CRS; each one-item collection comes back with the COG's size, grid and pixels."""
    translate = gdal_tool("gdal_translate")
    for i, path in enumerate(item_paths(published)):
        d = plain_item(path)
        collection = tmp_path / f"items-{i}.json"
        collection.write_text(json.dumps({"type": "FeatureCollection", "features": [d]}))
        out = tmp_path / f"mosaic-{i}.tif"
        subprocess.run(
            [translate, "-q", f"STACIT:{collection}:asset={MASK}", str(out)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        classes, transform, crs = cog_grid(d["assets"][MASK]["href"])
        mosaic, m_transform, m_crs = cog_grid(str(out))
        assert mosaic.shape == classes.shape and m_crs == crs, path.name
        assert m_transform.almost_equals(transform)
        np.testing.assert_array_equal(mosaic, classes)


def test_gdal_shows_classes_colours_and_names(published: Path) -> None:
    """What QGIS shows comes from GDAL: a palette band with the legend's colours, the class names as
    categories (from the PAM sidecar published beside the COG) and a band description."""
    gdalinfo = gdal_tool("gdalinfo")
    # GDAL's defaults, as QGIS runs it: GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR (set for the moto tests) makes
    # GDAL look for no sidecar, and then the names are only in the item's classification:classes
    env = {k: v for k, v in os.environ.items() if k != "GDAL_DISABLE_READDIR_ON_OPEN"}
    for path in item_paths(published):
        d = plain_item(path)
        run = subprocess.run(
            [gdalinfo, "-json", d["assets"][MASK]["href"]],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        info = json.loads(run.stdout)
        [band] = info["bands"]
        assert band["colorInterpretation"] == "Palette" and band["noDataValue"] == 255
        assert band["description"].startswith("cloud mask")
        for c in CLASSES:
            assert band["categories"][c["value"]] == c["name"]
            rgba = band["colorTable"]["entries"][c["value"]]
            assert "".join(f"{v:02X}" for v in rgba[:3]) == c["color_hint"]
            assert rgba[3] == (0 if c.get("nodata") else 255)


def test_cogs_read_back_with_rasterio(published: Path) -> None:
    """The mask: colour table equal to the legend; the probabilities: nodata 255, grey (never RGB) bands
    named after the classes exactly as the item's bands, no statistics claimed."""
    for path in item_paths(published):
        d = plain_item(path)
        with rasterio.open(d["assets"][MASK]["href"]) as ds:
            cmap = ds.colormap(1)
            assert ds.colorinterp == (ColorInterp.palette,) and ds.nodata == 255
            for c in CLASSES:
                assert "%02X%02X%02X" % cmap[c["value"]][:3] == c["color_hint"]
        asset = d["assets"]["probabilities"]
        names = [b["name"] for b in asset["bands"]]
        assert names == list(CLASS_NAMES) == [c["name"] for c in CLASSES[:3]]
        assert all("statistics" not in b and b["nodata"] == 255 for b in asset["bands"])
        with rasterio.open(asset["href"]) as ds:
            assert ds.nodata == 255 and ds.descriptions == tuple(names)
            assert ColorInterp.red not in ds.colorinterp and ColorInterp.green not in ds.colorinterp
            probs = ds.read()
        classes, _, _ = cog_grid(d["assets"][MASK]["href"])
        assert (probs[:, classes == 255] == 255).all() and (probs[:, classes != 255] <= 254).all()


def stac_documents(out: Path) -> list[Path]:
    docs = [out / "catalog.json", *sorted(out.glob("*/collection.json")), *item_paths(out)]
    assert len(docs) == 8
    return docs


def test_stac_validator_offline_on_every_document(published: Path, tmp_path: Path) -> None:
    """stac-validator with --schema-config pointing at local copies of every schema (no network)."""
    config = write_schema_config(tmp_path / "schemas.json")
    for doc in stac_documents(published):
        run = subprocess.run(
            ["stac-validator", "validate", "--schema-config", str(config), str(doc)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        report = json.loads(run.stdout[run.stdout.index("[") : run.stdout.rindex("]") + 1])
        assert run.returncode == 0 and report[0]["valid_stac"], (doc.name, report)
        extensions = json.loads(doc.read_text()).get("stac_extensions", [])
        assert len(report[0]["schema"]) == len(extensions) + 1  # every declared extension was checked


def test_pystac_validate_all_offline(published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_into_pystac()
    monkeypatch.setattr(pystac.validation.RegisteredValidator, "_validator", offline_validator())
    catalog = pystac.Catalog.from_file(str(published / "catalog.json"))
    catalog.validate_all()
    assert len(list(catalog.get_items(recursive=True))) == 5


# stac-check best practices our documents knowingly differ from, with the reason:
ACCEPTED_BEST_PRACTICES = {
    "check_links_self": "a self-contained static catalog carries relative links and no self links",
    "bloated_metadata": "the mlm extension asks for its model description in item properties",
}


def test_stac_check_finds_no_errors(published: Path) -> None:
    """stac-check's linting (its schema step needs the network; stac-validator above covers it)."""
    from stac_check.lint import Linter

    for doc in stac_documents(published):
        linter = Linter(str(doc))
        practices = set(linter.create_best_practices_dict())
        assert practices <= set(ACCEPTED_BEST_PRACTICES), (doc.name, practices - set(ACCEPTED_BEST_PRACTICES))
        assert linter.check_links_title_field() and linter.check_bbox_matches_geometry() is not False
