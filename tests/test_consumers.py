"""The published outputs opened by the tools downstream users run, as they are: stackstac (item dicts and
pystac items), odc-stac, rio-tiler, titiler (its STAC endpoint and the render extension), GDAL (STACIT driver,
gdalinfo), pystac-client, stac-geoparquet, stac-validator and pystac (offline schemas), stac-check, and
rasterio on the COGs themselves (colour table, category names, statistics, nodata, band names).

Two real runs (real weights) are shared by the module and only read: the sample catalog with probabilities
into a local folder (a self-contained catalog: relative hrefs), and two of its items into S3 on a moto server
(a published catalog: absolute hrefs and self links), so that both kinds of item JSON are opened as read
straight from where they were written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.enums import ColorInterp
from typer.testing import CliRunner

from stac_clouds2mask import StaticCatalog
from stac_clouds2mask.cli import app
from stac_clouds2mask.publish.cog import category_sidecar, write_mask_cog
from stac_clouds2mask.publish.legend import CLASS_NAMES, CLASSES

from conftest import validate_published
from stac_schemas import install_into_pystac, offline_validator, write_schema_config

MASK = "cloudmask"
F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"  # L2A crop, clouds with crisp shadows
D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"  # tiny L1C crop


F_AOI = ("35.18", "2.725", "35.20", "2.745")  # about a quarter of chip F


@pytest.fixture(scope="module")
def published(sample_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample catalog's five whole-scene masks and, beside them, an AOI mask of chip F (--clip)."""
    out = tmp_path_factory.mktemp("consumers") / "masks"
    result = CliRunner().invoke(app, ["run", str(sample_catalog), "-o", str(out), "--probabilities"])
    assert result.exit_code == 0, result.output
    clipped = CliRunner().invoke(
        app, ["run", str(sample_catalog), "-o", str(out), "--probabilities", "--ids", F, "--bbox", *F_AOI, "--clip"]
    )
    assert clipped.exit_code == 0 and "1 published" in clipped.output, clipped.output
    assert len(list(out.glob("*/*-aoi-*/*.json"))) == 1
    return out


@pytest.fixture(scope="module")
def published_s3(moto_s3, sample_catalog: Path) -> tuple[Any, str]:
    """Two masks published into S3 (moto): the filesystem and the catalog's URL."""
    bucket = moto_s3.create_bucket("consumers-masks")
    url = f"s3://{bucket}/masks"
    result = CliRunner().invoke(app, ["run", str(sample_catalog), "-o", url, "--ids", f"{F},{D}"])
    assert result.exit_code == 0, result.output
    return moto_s3.filesystem(), url


def item_paths(out: Path) -> list[Path]:
    paths = sorted(out.glob("*/*/*.json"))
    assert len(paths) == 6
    return paths


def local_items(out: Path) -> list[dict[str, Any]]:
    """The published items as item dicts with absolute asset hrefs (StaticCatalog.iter_items, the README's
    route for a local folder, whose files keep relative hrefs)."""
    items = sorted(StaticCatalog(str(out)).iter_items(), key=lambda d: d["id"])
    assert len(items) == 6
    return items


def s3_items(published_s3: tuple[Any, str]) -> list[dict[str, Any]]:
    """The item JSON as read straight from the S3 files, nothing resolved."""
    fs, url = published_s3
    keys = sorted(k for k in fs.find(url) if k.endswith("_cloudmask.json"))
    assert len(keys) == 2
    return [json.loads(fs.cat(key)) for key in keys]


def cog_grid(path: str) -> tuple[np.ndarray, rasterio.Affine, rasterio.crs.CRS]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs


def check_stackstac_native_grid(d: dict[str, Any]) -> bool:
    """stackstac stacks the item dict with no extra arguments, on the COG's grid, pixel for pixel; True when the
    grid is aligned to its pixel size (then even stackstac's default `snap_bounds=True` keeps it)."""
    import stackstac

    classes, transform, crs = cog_grid(d["assets"][MASK]["href"])
    arr = stackstac.stack([d], assets=[MASK])
    assert arr.attrs["crs"] == f"epsg:{crs.to_epsg()}", d["id"]
    assert np.allclose(arr.attrs["resolution"], (transform.a, -transform.e))
    aligned = transform.c % transform.a == 0 and transform.f % transform.a == 0
    if not aligned:
        arr = stackstac.stack([d], assets=[MASK], snap_bounds=False)
    assert arr.shape == (1, 1, *classes.shape), d["id"]
    assert arr.attrs["transform"].almost_equals(transform)
    np.testing.assert_array_equal(np.nan_to_num(arr.values[0, 0], nan=255).astype(np.uint8), classes)
    return aligned


def test_stackstac_stacks_item_dicts_of_a_local_catalog_on_their_native_grid(published: Path) -> None:
    """The dict route: stackstac takes CRS, resolution and grid from the item (proj:epsg, which stackstac 0.5
    needs, and proj:transform / proj:shape). Its default `snap_bounds=True` moves bounds to multiples of the
    pixel size: a grid aligned so (Sentinel-2 tiles at 10, 20 and 60 m are: their origins are multiples of
    60 m) comes back exactly; the sample crops, whose origins are not, come back exactly with
    `snap_bounds=False`. A local catalog's files keep relative hrefs (it can be moved): its item dicts with
    absolute hrefs come from StaticCatalog.iter_items()."""
    aligned = sum(check_stackstac_native_grid(d) for d in local_items(published))
    assert aligned >= 1  # the 60 m crop of tile 32UPC


def test_stackstac_stacks_item_dicts_read_straight_from_s3(published_s3: tuple[Any, str]) -> None:
    """A catalog published to S3 holds absolute asset hrefs: its item JSON, read as it is, opens in stackstac."""
    for d in s3_items(published_s3):
        assert d["assets"][MASK]["href"].startswith(published_s3[1] + "/"), d["assets"][MASK]["href"]
        check_stackstac_native_grid(d)


def test_stackstac_pystac_route_needs_epsg_and_the_items_own_grid(published: Path) -> None:
    """The pystac route as the README documents it: pystac (1.12+) migrates the items to projection v2.0 on read
    and drops proj:epsg, so stackstac 0.5 needs `epsg=`; `resolution=` and `bounds=` from the item's
    proj:transform / proj:bbox with `snap_bounds=False` give the native grid (without `bounds` stackstac
    rebuilds them from the geometry, a pixel or two off)."""
    import stackstac

    for path in item_paths(published):
        item = pystac.Item.from_file(str(path))
        item.make_asset_hrefs_absolute()
        assert "proj:epsg" not in item.properties and item.properties["proj:code"].startswith("EPSG:")
        classes, transform, _ = cog_grid(item.assets[MASK].href)
        arr = stackstac.stack(
            [item],
            assets=[MASK],
            epsg=int(item.properties["proj:code"].removeprefix("EPSG:")),
            resolution=item.properties["proj:transform"][0],
            bounds=item.properties["proj:bbox"],
            snap_bounds=False,
        )
        assert arr.shape == (1, 1, *classes.shape), path.name
        assert arr.attrs["transform"].almost_equals(transform)
        np.testing.assert_array_equal(np.nan_to_num(arr.values[0, 0], nan=255).astype(np.uint8), classes)


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


def stacit_check(d: dict[str, Any], collection: Path, read: Any) -> None:
    """A FeatureCollection of one mask read through STACIT comes back with the COG's size, grid and pixels."""
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": [d]}))
    mosaic, m_transform, m_crs = read(f"STACIT:{collection}:asset={MASK}")
    classes, transform, crs = cog_grid(d["assets"][MASK]["href"])
    assert mosaic.shape == classes.shape and m_crs == crs, d["id"]
    assert m_transform.almost_equals(transform)
    np.testing.assert_array_equal(mosaic, classes)


def test_gdal_stacit_reads_a_feature_collection_of_local_items(published: Path, tmp_path: Path) -> None:
    """Debian's GDAL (3.6, which reads the CRS from proj:epsg only) opens a FeatureCollection of the local
    catalog's item dicts (StaticCatalog.iter_items: absolute hrefs): all of them as one subdataset per CRS, and
    each one alone with its COG's grid and pixels."""
    gdalinfo, translate = gdal_tool("gdalinfo"), gdal_tool("gdal_translate")

    def read(name: str) -> tuple[np.ndarray, Any, Any]:
        out = tmp_path / f"mosaic-{hashlib.sha1(name.encode()).hexdigest()[:8]}.tif"
        subprocess.run([translate, "-q", name, str(out)], check=True, capture_output=True, timeout=120)
        return cog_grid(str(out))

    items = local_items(published)
    everything = tmp_path / "items.json"
    everything.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    run = subprocess.run([gdalinfo, "-json", str(everything)], check=True, capture_output=True, text=True, timeout=120)
    subdatasets = json.loads(run.stdout)["metadata"]["SUBDATASETS"]
    crs_of = {f"EPSG_{d['properties']['proj:epsg']}" for d in items}
    assert {v.rsplit("crs=", 1)[1] for k, v in subdatasets.items() if k.endswith("_NAME")} == crs_of
    for i, d in enumerate(items):
        stacit_check(d, tmp_path / f"items-{i}.json", read)


def test_gdal_stacit_reads_item_json_read_straight_from_s3(published_s3: tuple[Any, str], tmp_path: Path) -> None:
    """Items published to S3 carry s3:// hrefs, which GDAL's STACIT opens through /vsis3/ since GDAL 3.7.2
    (here the GDAL of rasterio's wheel; Debian 12's GDAL 3.6 does not map s3:// hrefs)."""
    assert tuple(int(v) for v in rasterio.__gdal_version__.split(".")[:2]) >= (3, 8)
    for i, d in enumerate(s3_items(published_s3)):
        stacit_check(d, tmp_path / f"s3-items-{i}.json", cog_grid)


def test_a_catalog_at_a_url_is_published_a_local_one_stays_self_contained(
    published: Path, published_s3: tuple[Any, str]
) -> None:
    """At a URL (S3): every document links to itself (its known URL) and assets have absolute hrefs; in a local
    folder: no self link and every href relative (the folder can be moved), relative links between documents in
    both."""
    fs, url = published_s3
    for key in sorted(k for k in fs.find(url) if k.endswith(".json") and "/.clouds2mask-runs/" not in k):
        d = json.loads(fs.cat(key))
        assert [l["href"] for l in d["links"] if l["rel"] == "self"] == [f"s3://{key}"], key
        assert all(a["href"].startswith(url + "/") for a in d.get("assets", {}).values()), key
        assert all(not l["href"].startswith("s3://") for l in d["links"] if l["rel"] in ("root", "parent", "child"))
    for path in stac_documents(published):
        d = json.loads(path.read_text())
        assert not [l for l in d["links"] if l["rel"] == "self"], path.name
        hrefs = [a["href"] for a in d.get("assets", {}).values()] + [
            l["href"] for l in d["links"] if l["rel"] not in ("license", "related", "derived_from")
        ]
        assert all(h.startswith(("./", "../")) for h in hrefs), (path.name, hrefs)


def test_gdal_shows_classes_colours_and_names(published: Path) -> None:
    """What QGIS shows comes from GDAL: a palette band with the legend's colours, the names of the classes the
    model outputs as categories (from the PAM sidecar published beside the COG; three, not 256: nodata is the
    band's nodata value) and a band description."""
    gdalinfo = gdal_tool("gdalinfo")
    # GDAL's defaults, as QGIS runs it: GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR (set for the moto tests) makes
    # GDAL look for no sidecar, and then the names are only in the item's classification:classes
    env = {k: v for k, v in os.environ.items() if k != "GDAL_DISABLE_READDIR_ON_OPEN"}
    for d in local_items(published):
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
        assert band["categories"] == list(CLASS_NAMES)
        for c in CLASSES:
            rgba = band["colorTable"]["entries"][c["value"]]
            assert "".join(f"{v:02X}" for v in rgba[:3]) == c["color_hint"]
            assert rgba[3] == (0 if c.get("nodata") else 255)


def test_cogs_read_back_with_rasterio(published: Path) -> None:
    """The mask: colour table equal to the legend; the probabilities: nodata 255, grey (never RGB) bands
    named after the classes exactly as the item's bands, no statistics claimed."""
    for d in local_items(published):
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
    assert len(docs) == 9
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
    assert len(list(catalog.get_items(recursive=True))) == 6


# stac-check best practices our documents knowingly differ from, with the reason:
ACCEPTED_BEST_PRACTICES = {
    "check_links_self": "a local (self-contained) catalog has no known URL, so relative links and no self links",
    "bloated_metadata": "the mlm extension asks for its model description in item properties",
}


def lint(docs: list[Path], accepted: set[str]) -> None:
    from stac_check.lint import Linter

    for doc in docs:
        linter = Linter(str(doc))
        practices = set(linter.create_best_practices_dict())
        assert practices <= accepted, (doc.name, practices - accepted)
        assert linter.check_links_title_field() and linter.check_bbox_matches_geometry() is not False


def test_stac_check_finds_no_errors(published: Path, published_s3: tuple[Any, str], tmp_path: Path) -> None:
    """stac-check's linting (its schema step needs the network; stac-validator above covers it): a catalog at a
    URL has its self links, so only the mlm fields' size remains; a local one also lacks self links."""
    lint(stac_documents(published), set(ACCEPTED_BEST_PRACTICES))
    fs, url = published_s3
    fs.get(url + "/", str(tmp_path / "s3"), recursive=True)
    docs = [tmp_path / "s3" / "catalog.json", *sorted((tmp_path / "s3").glob("*/collection.json"))]
    docs += sorted((tmp_path / "s3").glob("*/*/*_cloudmask.json"))
    assert len(docs) == 5
    lint(docs, {"bloated_metadata"})


def render_query(item_url: str, render: dict[str, Any]) -> dict[str, Any]:
    """titiler's query parameters for a STAC render object, mapped as the render extension says (`colormap` as
    titiler's JSON colormap text, as titiler-pgstac sends it)."""
    query = {"url": item_url, **{k: v for k, v in render.items() if k not in ("title", "colormap")}}
    return {**query, "colormap": json.dumps(render["colormap"])}


def titiler_client() -> Any:
    """titiler.core's STAC and COG endpoints as titiler.application 2.4 mounts them (the STAC factory's renders
    are the item's `renders`, with the /renders extension), through starlette's TestClient."""
    from fastapi import FastAPI
    from rio_tiler.io import STACReader
    from starlette.testclient import TestClient
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
    from titiler.core.factory import MultiBaseTilerFactory, TilerFactory
    from titiler.extensions import stacRenderExtension

    tiler = FastAPI()
    stac = MultiBaseTilerFactory(
        reader=STACReader,
        router_prefix="/stac",
        extensions=[stacRenderExtension()],
        get_renders=lambda src: src.item.properties.get("renders", {}),
    )
    tiler.include_router(stac.router, prefix="/stac")
    tiler.include_router(TilerFactory(router_prefix="/cog").router, prefix="/cog")
    add_exception_handlers(tiler, DEFAULT_STATUS_CODES)
    return TestClient(tiler)


def tile_rgba(client: Any, path: str, params: dict[str, Any]) -> np.ndarray:
    from PIL import Image

    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))


def test_titiler_stac_endpoint_draws_the_legend_colours_from_the_render_extension(published: Path) -> None:
    """titiler lists the item's render as valid, and its parameters make the STAC endpoint draw the tile in the
    legend's colours (nodata transparent), the same tile as the COG endpoint draws from the COG's own colour
    table; with the asset alone the STAC endpoint draws grey (the classes 0, 1, 2 as grey levels)."""
    import morecantile

    client = titiler_client()
    legend = {tuple(int(c["color_hint"][i : i + 2], 16) for i in (0, 2, 4)) for c in CLASSES if not c.get("nodata")}
    for path in (p for p in item_paths(published) if "ccd-s2-l2a" in p.name):
        url, d = str(path), json.loads(path.read_text())
        listed = client.get("/stac/renders", params={"url": url}).json()["renders"]
        assert list(listed) == [MASK] and listed[MASK]["valid"], listed
        render = d["properties"]["renders"][MASK]
        assert listed[MASK]["params"]["colormap"] == render["colormap"]
        lon, lat = np.mean(np.asarray(d["geometry"]["coordinates"][0])[:, :2], axis=0)
        tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 13)
        where = f"tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        drawn = tile_rgba(client, f"/stac/{where}", render_query(url, render))
        opaque = {tuple(p[:3]) for p in drawn.reshape(-1, 4) if p[3] == 255}
        assert opaque <= legend and len(opaque) >= 2, (path.name, opaque)
        assert (drawn[..., 3] == 0).any()  # outside the crop: nodata, transparent
        cog = d["assets"][MASK]["href"]
        by_cog = tile_rgba(client, f"/cog/{where}", {"url": str(path.parent / cog), "resampling": "nearest"})
        np.testing.assert_array_equal(drawn, by_cog)
        grey = tile_rgba(client, f"/stac/{where}", {"url": url, "assets": MASK})
        assert not {tuple(p[:3]) for p in grey.reshape(-1, 4) if p[3] == 255} & (legend - {(255, 255, 255)})


def test_stac_geoparquet_round_trip_stays_valid(published: Path, tmp_path: Path) -> None:
    """stac-geoparquet writes a collection's items to GeoParquet and reads back items that are still valid (the
    class objects all say `nodata`, so none comes back null) with the same legend."""
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, stac_table_to_items, to_parquet

    for collection in sorted(published.glob("*/collection.json")):
        items = [json.loads(p.read_text()) for p in sorted(collection.parent.glob("*/*_cloudmask.json"))]
        out = tmp_path / f"{collection.parent.name}.parquet"
        to_parquet(parse_stac_items_to_arrow(items).read_all(), out)
        back = list(stac_table_to_items(pq.read_table(out)))
        assert [b["id"] for b in back] == [d["id"] for d in items]
        for b in back:
            validate_published(b)
            assert b["assets"][MASK]["classification:classes"] == CLASSES
            assert b["properties"]["renders"] == items[0]["properties"]["renders"]


def test_pystac_client_opens_the_root_without_warnings(published: Path) -> None:
    """The root says it conforms to no STAC API class (`conformsTo: []`): pystac-client opens it without its
    NoConformsTo warning, then walks it (warning that it falls back to pystac) and finds every mask."""
    import pystac_client

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = pystac_client.Client.open(str(published / "catalog.json"))
    with pytest.warns(pystac_client.warnings.FallbackToPystac):
        found = sorted(item.id for item in client.get_items(recursive=True))
    assert found == sorted(json.loads(p.read_text())["id"] for p in item_paths(published))


def test_odc_stac_names_the_probability_bands(published: Path) -> None:
    """odc-stac names the bands of the 3-band probabilities asset `probabilities.1` to `.3` (in the order of the
    asset's `bands`: clear, cloud, cloud-shadow), and takes the class names as aliases from `stac_cfg` (it reads
    aliases only from `eo:bands`, which the eo v2.0.0 extension of STAC 1.1 no longer has)."""
    import odc.stac

    aliases = {name: ("probabilities", i) for i, name in enumerate(CLASS_NAMES, start=1)}
    for path in item_paths(published):
        item = pystac.Item.from_file(str(path))
        with rasterio.open(item.assets["probabilities"].get_absolute_href()) as ds:
            probs = ds.read()
        by_index = odc.stac.load([item], bands=[f"probabilities.{i}" for i in (1, 2, 3)])
        by_name = odc.stac.load([item], bands=list(CLASS_NAMES), stac_cfg={"*": {"aliases": aliases}})
        assert [b["name"] for b in item.assets["probabilities"].extra_fields["bands"]] == list(CLASS_NAMES)
        for i, name in enumerate(CLASS_NAMES):
            np.testing.assert_array_equal(by_index[f"probabilities.{i + 1}"].values[0], probs[i])
            np.testing.assert_array_equal(by_name[name].values[0], probs[i])


def test_gdalinfo_stats_leave_the_published_sidecar_as_its_checksum_says(published: Path, tmp_path: Path) -> None:
    """`gdalinfo -stats` finds the statistics the COG carries and writes nothing into the class-name sidecar,
    whose published checksum still holds; the statistics are GDAL's own (nodata excluded). A mask without a
    valid pixel, where GDAL records its finding in the sidecar anyway, gets the very same bytes back."""
    gdalinfo = gdal_tool("gdalinfo")
    env = {k: v for k, v in os.environ.items() if k != "GDAL_DISABLE_READDIR_ON_OPEN"}

    def stats(tif: Path) -> dict[str, float]:
        run = subprocess.run([gdalinfo, "-json", "-stats", str(tif)], capture_output=True, text=True, env=env)
        found = json.loads(run.stdout)["bands"][0].get("metadata", {}).get("", {})
        return {k.removeprefix("STATISTICS_"): float(v) for k, v in found.items() if k.startswith("STATISTICS_")}

    for path in item_paths(published):
        d = json.loads(path.read_text())
        copy = tmp_path / path.parent.name
        shutil.copytree(path.parent, copy)
        tif, sidecar = copy / d["assets"][MASK]["href"], copy / d["assets"]["cloudmask-categories"]["href"]
        before = sidecar.read_bytes()
        found = stats(tif)
        assert sidecar.read_bytes() == before, path.name
        assert "1220" + hashlib.sha256(before).hexdigest() == d["assets"]["cloudmask-categories"]["file:checksum"]
        classes, _, _ = cog_grid(str(tif))
        valid = classes[classes != 255].astype(np.float64)
        assert found == pytest.approx(
            {
                "MINIMUM": valid.min(),
                "MAXIMUM": valid.max(),
                "MEAN": valid.mean(),
                "STDDEV": valid.std(),
                "VALID_PERCENT": 100 * valid.size / classes.size,
            }
        )
    empty = np.full((64, 64), 255, np.uint8)
    tif = tmp_path / "empty" / "m.tif"
    tif.parent.mkdir()
    write_mask_cog(empty, rasterio.crs.CRS.from_epsg(32632), rasterio.Affine(20, 0, 5e5, 0, -20, 5e6), tif)
    Path(f"{tif}.aux.xml").write_bytes(category_sidecar(empty))
    assert stats(tif) == {"VALID_PERCENT": 0}
    assert Path(f"{tif}.aux.xml").read_bytes() == category_sidecar(empty)
