"""Boundaries and limits: a root admits its own folder, never a sibling whose name merely starts the same
(`.../masks-private` is not under `.../masks`, on S3 and locally); every limit refuses 0, anything below
and NaN with a message naming it, however it is given; one item id in two collections stays two items of
a plan, through its shards, their runs and the plan's status."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from conftest import item_dict, unchanged_items

from stac_clouds2mask import batch
from stac_clouds2mask.errors import InvalidInputError, SourceDataError, UntrustedReferenceError
from stac_clouds2mask.limits import ENV_PREFIX, Limits
from stac_clouds2mask.publish import StaticCatalog
from stac_clouds2mask.read import read_scene
from stac_clouds2mask.search import SearchFilters, search
from stac_clouds2mask.task import check_parameters, parse_payload, read_payload
from stac_clouds2mask.trust import ENV_LOCAL_ROOTS, ENV_OUTPUT_ROOTS, under_root

D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
E = "s2b-t32upc-20200406-l1c-n0209-10x10"
SIX = ("blue", "green", "red", "nir", "swir16", "swir22")
LIMITS = [f.name for f in dataclasses.fields(Limits)]


@pytest.fixture(scope="module")
def sources(sample_catalog):
    yield from unchanged_items({i.id: i for i in search(str(sample_catalog), SearchFilters(ids=(D,)))})


# ------------------------------------------------------------------------------------------
# roots compare path segments
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("root", ["s3://bucket/masks", "s3://bucket/masks/", "/srv/masks", "/srv/masks/"])
def test_under_root_admits_the_root_and_below_but_no_sibling_with_the_same_prefix(root):
    base = root.rstrip("/")
    for inside in (base, f"{base}/c/i/i.json", f"{base}/c/../c/i.json"):
        assert under_root(inside, root) == inside
    for outside in (f"{base}-private/c/i.json", f"{base}x", f"{base}-private", base[:-1], f"{base}/../masks-2/i.json"):
        with pytest.raises(UntrustedReferenceError, match="is not under the output root"):
            under_root(outside, root)


def _payload(sample_data_dir: Path, root: str) -> dict:
    return {
        "type": "FeatureCollection",
        "features": [item_dict(sample_data_dir, E)],
        "process": [{"upload_options": {"path_template": f"{root}/${{collection}}/${{id}}"}, "tasks": {}}],
    }


@pytest.mark.parametrize("s3", [True, False], ids=["s3", "local"])
def test_the_operators_output_root_admits_payload_roots_below_it_but_not_a_sibling(
    sample_data_dir, tmp_path, monkeypatch, s3
):
    """STAC_CLOUDS2MASK_OUTPUT_ROOTS=.../masks: a payload may write under .../masks/run-1, not to
    .../masks-private (the same string prefix, another folder)."""
    allowed = "s3://operator-bucket/masks" if s3 else str(tmp_path / "masks")
    monkeypatch.setenv(ENV_OUTPUT_ROOTS, allowed)
    job = parse_payload(_payload(sample_data_dir, f"{allowed}/run-1"))
    assert job.default_root == f"{allowed}/run-1"
    for sibling in (f"{allowed}-private", f"{allowed}-private/run-1", f"{allowed}x"):
        with pytest.raises(InvalidInputError, match="not under an allowed output root"):
            parse_payload(_payload(sample_data_dir, sibling))


def test_a_catalog_at_the_output_root_cannot_lead_reads_into_a_sibling_folder(tmp_path):
    """A planted child link of the root catalog (../masks-private/...) names a folder beside the root whose
    name starts the same: walking the catalog's items (as sync_api does) refuses it."""
    root, sibling = tmp_path / "masks", tmp_path / "masks-private" / "c"
    sibling.mkdir(parents=True)
    (sibling / "collection.json").write_text(json.dumps({"type": "Collection", "id": "c", "links": []}))
    root.mkdir()
    child = {"rel": "child", "href": "../masks-private/c/collection.json"}
    (root / "catalog.json").write_text(json.dumps({"type": "Catalog", "id": "x", "links": [child]}))
    with pytest.raises(UntrustedReferenceError, match="is not under the output root"):
        list(StaticCatalog(str(root)).iter_items())


def test_a_local_root_admits_its_own_files_but_not_a_sibling_folders(sources, tmp_path, monkeypatch):
    """STAC_CLOUDS2MASK_LOCAL_ROOTS=<tmp>/data: crop D's files copied under data/ are read, the same files
    under data-private/ are refused, naming the item and the asset."""
    hrefs = {}
    for folder in ("data", "data-private"):
        item = sources[D].clone()
        for band in SIX:
            asset = item.assets[band]
            (tmp_path / folder).mkdir(exist_ok=True)
            target = tmp_path / folder / f"{band}.tif"
            shutil.copyfile(asset.get_absolute_href(), target)
            asset.href = str(target)
        hrefs[folder] = item
    monkeypatch.setenv(ENV_LOCAL_ROOTS, str(tmp_path / "data"))
    assert read_scene(hrefs["data"], SIX, resolution=10).shape == (8, 9)
    with pytest.raises(SourceDataError, match="outside the allowed local roots") as info:
        read_scene(hrefs["data-private"], SIX, resolution=10)
    assert info.value.item_id == D and info.value.asset == "blue"


# ------------------------------------------------------------------------------------------
# every limit refuses 0, below and NaN
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LIMITS)
@pytest.mark.parametrize("text", ["0", "-1", "-0.5", "nan"])
def test_every_limit_refuses_zero_negative_and_nan_from_the_environment(monkeypatch, name, text):
    env = ENV_PREFIX + name.upper()
    monkeypatch.setenv(env, text)
    refused = rf"{env}='{text}' (must be (a positive|finite)|is not (a number|an integer))"
    with pytest.raises(InvalidInputError, match=refused) as info:
        Limits.from_env()
    assert env in str(info.value)
    monkeypatch.setenv(env, "7")
    assert getattr(Limits.from_env(), name) == 7


@pytest.mark.parametrize("name", LIMITS)
@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_every_limit_refuses_zero_negative_and_nan_in_a_payload_and_in_python(name, value):
    """A payload's limits (NaN is valid JSON to Python's json module) and Limits built in Python."""
    payload_limits = json.loads(json.dumps({name: value}))
    with pytest.raises(InvalidInputError, match=rf"limits\.{name} must be (a positive|finite)"):
        check_parameters({}, {"limits": payload_limits})
    with pytest.raises(
        InvalidInputError, match=rf"limit {name} must be (a positive|finite).*{ENV_PREFIX}{name.upper()}"
    ):
        Limits(**{name: value})
    assert check_parameters({}, {"limits": {name: 1}})["limits"] == {name: 1}


# ------------------------------------------------------------------------------------------
# one item id in two collections
# ------------------------------------------------------------------------------------------


def test_one_item_id_in_two_collections_stays_two_items_of_a_plan(sources, tmp_path):
    """Crop D and its twin in another collection (same id): a plan of two shards deals one to each, a plan of
    one shard keeps both features in its payload, its run publishes each mask in its own collection and the
    plan's status counts two done items."""
    twin = sources[D].clone()
    twin.collection_id = "sentinel-2-l1c-mirror"
    keys = sorted([f"sentinel-2-l1c-samples/{D}", f"sentinel-2-l1c-mirror/{D}"])
    out, plan = tmp_path / "masks", tmp_path / "plan"

    two = batch.write_plan(str(tmp_path / "two"), [sources[D], twin], str(out), 2)
    assert two["item_count"] == 2 and sorted(k for s in two["shards"] for k in s["items"]) == keys

    one = batch.write_plan(str(plan), [sources[D], twin], str(out), 1)
    assert one["item_count"] == 2 and one["shards"][0]["items"] == keys
    job = read_payload(str(plan / "shards" / "shard-00000.json"))
    assert sorted(f"{i.collection_id}/{i.id}" for i in job.items) == keys
    run = batch.run_shard(str(plan), 0, device="cpu")
    assert [o.status for o in run.report.outcomes] == ["published", "published"]
    for collection in ("sentinel-2-l1c-samples-cloudmask", "sentinel-2-l1c-mirror-cloudmask"):
        assert (out / collection / f"{D}_cloudmask" / f"{D}_cloudmask.json").is_file()
    state = batch.status(str(plan))
    assert state.complete and sorted(i.key for s in state.shards for i in s.items) == keys
