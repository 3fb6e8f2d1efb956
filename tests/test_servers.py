"""Small tests proving the server fixtures (moto S3, stac-fastapi-pgstac) and the offline STAC
validation helper work."""

from __future__ import annotations

import copy
import json
import os
import socket
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pystac_client import Client
from servers import upload_tree
from stac_schemas import SchemaNotAvailableOffline, offline_validator, validate_stac

L1C_COLLECTION = "sentinel-2-l1c-samples"
CROP_E = "s2b-t32upc-20200406-l1c-n0209-10x10"  # 10x10 px, 2020-04-06, Germany
CROP_D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"  # 9x8 px, 2022-06-15, same place
CROP_A = "s2a-t19udp-20170729-l1c-160m"  # 2017-07-29, Quebec


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _item_dict(sample_data_dir: Path, crop: str) -> dict:
    return _read_json(sample_data_dir / crop / f"{crop}.json")


def _api_ready(d: dict) -> dict:
    """Drop the static catalog's relative links (the API makes its own)."""
    d = copy.deepcopy(d)
    d["links"] = [lk for lk in d.get("links", []) if lk["href"].startswith("http")]
    return d


# ------------------------------------------------------------------------------------------
# shared data
# ------------------------------------------------------------------------------------------


def test_shared_data_present(shared_dir: Path, sample_catalog: Path) -> None:
    assert sample_catalog.is_file()
    assert _read_json(sample_catalog)["type"] == "Catalog"
    assert (shared_dir / "stac-schemas" / "eo" / "v2.0.0" / "schema.json").is_file()


# ------------------------------------------------------------------------------------------
# S3 (moto)
# ------------------------------------------------------------------------------------------


def test_moto_env(moto_s3) -> None:
    assert moto_s3.endpoint_url == f"http://127.0.0.1:{moto_s3.port}"
    assert os.environ["AWS_ENDPOINT_URL"] == moto_s3.endpoint_url
    assert os.environ["AWS_S3_ENDPOINT"] == f"127.0.0.1:{moto_s3.port}"
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert os.environ["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert os.environ["AWS_HTTPS"] == "NO"


def test_s3_round_trip(moto_s3, s3_bucket: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**moto_s3.storage_options, skip_instance_cache=True)
    fs.pipe(f"{s3_bucket}/a/b.txt", b"hello")
    assert fs.cat(f"{s3_bucket}/a/b.txt") == b"hello"
    assert fs.ls(f"{s3_bucket}/a") == [f"{s3_bucket}/a/b.txt"]


def test_s3_bucket_is_fresh(moto_s3, s3_bucket: str) -> None:
    fs = moto_s3.filesystem()
    assert fs.ls(s3_bucket) == []
    assert fs.ls("") == [s3_bucket]  # previous tests' buckets are gone


def test_upload_tree_and_rasterio_vsis3(moto_s3, s3_bucket: str, sample_data_dir: Path) -> None:
    fs = moto_s3.filesystem()
    local = sample_data_dir / CROP_E
    urls = upload_tree(fs, local, f"s3://{s3_bucket}/data/{CROP_E}")
    assert f"s3://{s3_bucket}/data/{CROP_E}/B01.tif" in urls
    assert len(urls) == sum(1 for p in local.rglob("*") if p.is_file())

    with rasterio.open(local / "B04.tif") as src:
        expected = src.read(1)
        expected_crs = src.crs
    # GDAL through /vsis3/ (endpoint from AWS_S3_ENDPOINT & co)
    with rasterio.open(f"/vsis3/{s3_bucket}/data/{CROP_E}/B04.tif") as src:
        assert src.crs == expected_crs
        np.testing.assert_array_equal(src.read(1), expected)
    # rasterio on an fsspec file object
    with fs.open(f"{s3_bucket}/data/{CROP_E}/B04.tif", "rb") as f, rasterio.open(f) as src:
        np.testing.assert_array_equal(src.read(1), expected)


# ------------------------------------------------------------------------------------------
# STAC API (stac-fastapi-pgstac)
# ------------------------------------------------------------------------------------------


def test_stac_api_transactions_and_search(stac_api, sample_data_dir: Path) -> None:
    stac_api.reset()
    collection = _read_json(sample_data_dir / L1C_COLLECTION / "collection.json")
    stac_api.create_collection(_api_ready(collection))
    items = [_api_ready(_item_dict(sample_data_dir, c)) for c in (CROP_A, CROP_D, CROP_E)]
    stac_api.add_items(L1C_COLLECTION, items)
    assert stac_api.collection_ids() == [L1C_COLLECTION]

    client = Client.open(stac_api.url)
    # bbox around crops D and E (Germany), not A (Quebec)
    found = client.search(collections=[L1C_COLLECTION], bbox=[11.7, 51.6, 11.8, 51.7])
    assert sorted(i.id for i in found.items()) == sorted([CROP_D, CROP_E])
    found = client.search(
        collections=[L1C_COLLECTION],
        bbox=[11.7, 51.6, 11.8, 51.7],
        datetime="2020-01-01/2020-12-31",
    )
    assert [i.id for i in found.items()] == [CROP_E]
    found = client.search(collections=[L1C_COLLECTION], datetime="2017-07-29")
    assert [i.id for i in found.items()] == [CROP_A]

    # PUT update
    item = stac_api.get_item(L1C_COLLECTION, CROP_E)
    item["properties"]["eo:cloud_cover"] = 42.0
    stac_api.update_item(item)
    assert stac_api.get_item(L1C_COLLECTION, CROP_E)["properties"]["eo:cloud_cover"] == 42.0
    found = client.search(collections=[L1C_COLLECTION], query={"eo:cloud_cover": {"gt": 40}})
    assert [i.id for i in found.items()] == [CROP_E]

    stac_api.reset()
    assert stac_api.collection_ids() == []
    assert stac_api.session.get(f"{stac_api.url}/collections/{L1C_COLLECTION}").status_code == 404


def test_clean_stac_api_is_empty(clean_stac_api) -> None:
    r = clean_stac_api.session.get(f"{clean_stac_api.url}/collections", timeout=30)
    r.raise_for_status()
    assert r.json()["collections"] == []


# ------------------------------------------------------------------------------------------
# offline STAC validation
# ------------------------------------------------------------------------------------------


def _stac_1_1_files(sample_data_dir: Path) -> list[Path]:
    out = []
    for p in sorted(sample_data_dir.rglob("*.json")):
        if "items-real" in p.parts:
            continue  # STAC 1.0 / beta: core schemas not bundled offline
        d = _read_json(p)
        if d.get("stac_version") == "1.1.0":
            out.append(p)
    return out


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a non-loopback connection fails the test."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"network access attempted: {address!r}")
        return real_connect(self, address)

    def no_dns(*args, **kwargs):
        raise AssertionError(f"DNS lookup attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(socket, "create_connection", no_dns)


def test_validate_sample_data_offline(sample_data_dir: Path, no_network) -> None:
    files = _stac_1_1_files(sample_data_dir)
    assert len(files) >= 10
    exts = set()
    for p in files:
        d = _read_json(p)
        exts.update(d.get("stac_extensions", []))
        validate_stac(d)
    assert "https://stac-extensions.github.io/classification/v1.1.0/schema.json" in exts


def test_validate_broken_item_raises(sample_data_dir: Path, no_network) -> None:
    good = _item_dict(sample_data_dir, CROP_E)
    validate_stac(good)

    no_geometry = copy.deepcopy(good)
    del no_geometry["geometry"]
    with pytest.raises(pystac.errors.STACValidationError):
        validate_stac(no_geometry)

    bad_ext = copy.deepcopy(good)  # eo v2.0.0: eo:cloud_cover must be 0..100
    bad_ext["properties"]["eo:cloud_cover"] = 250
    with pytest.raises(pystac.errors.STACValidationError):
        validate_stac(bad_ext)

    bad_proj = copy.deepcopy(good)  # projection v2.0.0: proj:shape is two integers
    bad_proj["properties"]["proj:shape"] = ["ten", "ten"]
    with pytest.raises(pystac.errors.STACValidationError):
        validate_stac(bad_proj)


def test_validate_classification_item(sample_data_dir: Path, no_network) -> None:
    crop = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
    d = _item_dict(sample_data_dir, crop)
    validate_stac(d)
    broken = copy.deepcopy(d)
    broken["assets"]["labels"]["classification:classes"][0]["value"] = "not-an-integer"
    with pytest.raises(pystac.errors.STACValidationError):
        validate_stac(broken)


def test_no_network_guard_works(no_network) -> None:
    """The guard used above really blocks a fetch (pystac's own validator would fetch
    the STAC 1.0.0 core schema, which is not bundled)."""
    with pytest.raises(AssertionError, match="attempted"):
        socket.create_connection(("example.org", 443), timeout=1)
    with pytest.raises(AssertionError, match="attempted"):
        socket.getaddrinfo("example.org", 443)


def test_unknown_schema_is_not_fetched(sample_data_dir: Path, no_network) -> None:
    d = _item_dict(sample_data_dir, CROP_E)
    d["stac_extensions"] = d["stac_extensions"] + ["https://stac-extensions.github.io/sat/v1.0.0/schema.json"]
    with pytest.raises(SchemaNotAvailableOffline):
        validate_stac(d)


def test_cross_extension_refs_resolve_offline(no_network) -> None:
    """mlm v1.5.2 refers to processing/classification/raster v1.1.0 by URL; processing
    v1.1.0's file declares the v1.0.0 $id: all must resolve from the offline cache."""
    registry = offline_validator().registry
    for url in (
        "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
        "https://stac-extensions.github.io/mlm/v1.5.2/schema.json",
    ):
        resolver = registry.resolver()
        resolved = resolver.lookup(url)
        assert resolved.contents["$id"].startswith(url)
    resolver = registry.resolver()
    for ref in (
        "https://stac-extensions.github.io/processing/v1.1.0/schema.json"
        "#/definitions/fields/properties/processing:expression",
        "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
        "#/definitions/fields/properties/classification:classes",
        "https://stac-extensions.github.io/raster/v1.1.0/schema.json#/definitions/bands/items/properties/data_type",
    ):
        assert resolver.lookup(ref).contents


def test_pystac_registered_validator_has_extension_schemas() -> None:
    from stac_schemas import install_into_pystac

    install_into_pystac()
    cache = pystac.validation.RegisteredValidator.get_validator().schema_cache
    assert "https://stac-extensions.github.io/eo/v2.0.0/schema.json" in cache
    assert "https://stac-extensions.github.io/processing/v1.1.0/schema.json" in cache
