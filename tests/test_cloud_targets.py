"""Real servers: masks read from and written to S3 (moto server), items published to a STAC API
(stac-fastapi-pgstac on PostgreSQL + PostGIS) through the Transactions extension."""

from __future__ import annotations

import json

import pystac_client
import rasterio
from conftest import upload_tree
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_validate
from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.read import read_scene
from stac_clouds2mask.search import search
from stac_clouds2mask.storage import StorageOptions

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
G = "ccd-s2-l2a-20200403-epsg32737-512-labelled"
D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_run_reads_from_s3_and_writes_catalog_to_s3(
    moto_s3, s3_bucket, s3fs_fs, sample_data_dir, validate_stac, tmp_path
):
    upload_tree(s3fs_fs, sample_data_dir, f"{s3_bucket}/data")
    source = f"s3://{s3_bucket}/data/catalog.json"
    [item] = [i for i in search(source) if i.id == D]
    assert item.assets["blue"].get_absolute_href().startswith(f"s3://{s3_bucket}/data/")
    scene = read_scene(item, ("blue", "green", "red", "nir"), 10)
    local = read_scene(
        next(i for i in search(str(sample_data_dir / "catalog.json")) if i.id == D), ("blue", "green", "red", "nir"), 10
    )
    assert (scene.reflectance == local.reflectance).all()

    out = f"s3://{s3_bucket}/masks"
    result = invoke("run", source, "--output", out, "--ids", f"{F},{D}")
    assert result.exit_code == 0, result.output
    fs = moto_s3.filesystem()
    keys = sorted(fs.find(f"{s3_bucket}/masks"))
    assert not [k for k in keys if ".tmp-" in k]
    assert f"{s3_bucket}/masks/catalog.json" in keys
    for source_id, collection in ((F, "sentinel-2-l2a-samples-cloudmask"), (D, "sentinel-2-l1c-samples-cloudmask")):
        prefix = f"{s3_bucket}/masks/{collection}/{source_id}_cloudmask/{source_id}_cloudmask"
        item_json = json.loads(fs.cat(f"{prefix}.json"))
        validate_stac(item_json)
        data = fs.cat(f"{prefix}.tif")
        assert item_json["assets"]["cloudmask"]["file:size"] == len(data)
        path = tmp_path / f"{source_id}.tif"
        path.write_bytes(data)
        assert cog_validate(str(path))[0]
        with MemoryFile(data) as mem, mem.open() as ds:
            assert ds.nodata == 255
    # the published catalog is itself a readable source, through s3://
    published = search(f"s3://{s3_bucket}/masks/catalog.json", None, StorageOptions())
    assert sorted(i.id for i in published) == sorted([f"{F}_cloudmask", f"{D}_cloudmask"])
    with rasterio.open(
        f"/vsis3/{s3_bucket}/masks/sentinel-2-l2a-samples-cloudmask/{F}_cloudmask/{F}_cloudmask.tif"
    ) as ds:
        assert ds.count == 1


def test_publish_to_stac_api_is_searchable_and_updates(clean_stac_api, sample_catalog, tmp_path, validate_stac):
    api = clean_stac_api.url
    out = tmp_path / "masks"
    first = invoke("run", str(sample_catalog), "--output", str(out), "--publish-api", api, "--ids", f"{F},{G}")
    assert first.exit_code == 0, first.output
    client = pystac_client.Client.open(api)
    found = list(client.search(collections=["sentinel-2-l2a-samples-cloudmask"], bbox=[35.0, 2.0, 36.0, 3.0]).items())
    assert [i.id for i in found] == [f"{F}_cloudmask"]
    both = list(
        client.search(collections=["sentinel-2-l2a-samples-cloudmask"], datetime="2020-01-01/2020-12-31").items()
    )
    assert sorted(i.id for i in both) == sorted([f"{F}_cloudmask", f"{G}_cloudmask"])
    stored = clean_stac_api.get_item("sentinel-2-l2a-samples-cloudmask", f"{F}_cloudmask")
    assert stored["assets"]["cloudmask"]["href"].startswith(str(out))
    assert stored["properties"]["clouds2mask:cloud_percentage"] > 10
    stamp = stored["properties"]["processing:datetime"]

    again = invoke("run", str(sample_catalog), "--output", str(out), "--publish-api", api, "--ids", F)
    assert again.exit_code == 0 and "1 skipped" in again.output
    # a second publish of the same item through the API (the static copy removed) updates it
    forced = invoke(
        "run", str(sample_catalog), "--output", str(tmp_path / "other"), "--publish-api", api, "--ids", F, "--overwrite"
    )
    assert forced.exit_code == 0, forced.output
    updated = clean_stac_api.get_item("sentinel-2-l2a-samples-cloudmask", f"{F}_cloudmask")
    assert updated["assets"]["cloudmask"]["href"].startswith(str(tmp_path / "other"))
    assert updated["properties"]["processing:datetime"] >= stamp
    assert len(list(client.search(collections=["sentinel-2-l2a-samples-cloudmask"]).items())) == 2


def test_publish_api_without_transactions_is_a_clear_error(stac_api, sample_catalog, tmp_path):
    result = invoke(
        "run",
        str(sample_catalog),
        "--output",
        str(tmp_path / "m"),
        "--ids",
        D,
        "--publish-api",
        stac_api.url + "/nonexistent-prefix",
    )
    text = " ".join(result.output.split())
    assert result.exit_code != 0 and "Transactions" in text
