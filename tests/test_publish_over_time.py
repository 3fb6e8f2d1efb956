"""Publishing over time: chains of three and more mask versions (every successor-version,
predecessor-version and latest-version link, in the static catalog and in the STAC API's copies, which
link to API URLs), source items with `datetime: null` and a start/end range, and an item's claim lock
released when its publish fails, so that a rerun with other settings is not blocked.

The masks are crops F and G read through read_scene with their real cloud labels as the class map (no
inference is needed to publish); versions differ by the settings recorded with them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pystac
import pystac_client
import pytest
import rasterio
from conftest import unchanged_items

from stac_clouds2mask.errors import PublishError
from stac_clouds2mask.model import get_model_spec
from stac_clouds2mask.publish import Publisher, StacApi, StaticCatalog
from stac_clouds2mask.publish import publisher as publisher_module
from stac_clouds2mask.read import read_scene
from stac_clouds2mask.scene import MaskResult
from stac_clouds2mask.search import SearchFilters, search

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
G = "ccd-s2-l2a-20200403-epsg32737-512-labelled"
L2A = "sentinel-2-l2a-samples-cloudmask"
VERSION_RELS = ("predecessor-version", "successor-version", "latest-version")
SETTINGS = {
    "model": "model_4b_l2a",
    "model_version": "x",
    "resolution": 10,
    "patch_size": 256,
    "overlap": 64,
    "software": "0.1.0",
}


@pytest.fixture(scope="module")
def sources(sample_catalog) -> Iterator[dict[str, pystac.Item]]:
    yield from unchanged_items({i.id: i for i in search(str(sample_catalog), SearchFilters(ids=(F, G)))})


@pytest.fixture(scope="module")
def results(sources, sample_data_dir) -> dict[str, MaskResult]:
    """F and G on their 10 m grid, their real cloud labels (0 clear, 1 cloud) as the classes."""
    out = {}
    for sid in (F, G):
        scene = read_scene(sources[sid], ("blue", "green", "red", "nir"), 10)
        with rasterio.open(sample_data_dir / sid / "labels.tif") as ds:
            classes = ds.read(1).astype(np.uint8)
        classes.setflags(write=False)
        out[sid] = MaskResult(scene=scene, classes=classes, model_name="model_4b_l2a", settings=dict(SETTINGS))
    return out


def spec():
    return get_model_spec("model_4b_l2a")


def with_settings(result: MaskResult, **changes) -> MaskResult:
    return dataclasses.replace(result, settings={**result.settings, **changes})


def read_item(root: Path, item_id: str, collection: str = L2A) -> dict:
    return json.loads((root / collection / item_id / f"{item_id}.json").read_text())


def version_links(d: dict) -> dict[str, list[str]]:
    """The item's version links: rel -> hrefs (each rel should occur at most once)."""
    out: dict[str, list[str]] = {}
    for link in d["links"]:
        if link["rel"] in VERSION_RELS:
            out.setdefault(link["rel"], []).append(link["href"])
    return out


def expected_chain(ids: list[str], k: int, href) -> dict[str, list[str]]:
    """What version k of the chain `ids` links to: its predecessor; its successor and the latest, unless it is
    the latest."""
    links = {}
    if k > 0:
        links["predecessor-version"] = [href(ids[k - 1])]
    if k < len(ids) - 1:
        links["successor-version"] = [href(ids[k + 1])]
        links["latest-version"] = [href(ids[-1])]
    return links


def chain_ids(source_id: str, n: int) -> list[str]:
    return [f"{source_id}_cloudmask"] + [f"{source_id}_cloudmask_v{k}" for k in range(2, n + 1)]


# ------------------------------------------------------------------------------------------
# version chains
# ------------------------------------------------------------------------------------------


def test_a_chain_of_four_versions_links_every_version_to_its_neighbours_and_the_latest(
    results, tmp_path, validate_stac
):
    """Four runs with four resolutions: each version links to the one before and (unless newest) the one after
    and the newest, exactly once each; only the newest is not deprecated; a rerun of any setting skips."""
    pub = Publisher(StaticCatalog(str(tmp_path)))
    resolutions = (10, 20, 30, 60)
    for res in resolutions:
        pub.publish(with_settings(results[F], resolution=res), spec())
    ids = chain_ids(F, 4)
    for k, iid in enumerate(ids):
        d = read_item(tmp_path, iid)
        validate_stac(d)
        assert version_links(d) == expected_chain(ids, k, lambda i: f"../{i}/{i}.json"), iid
        assert d["properties"]["version"] == str(k + 1)
        assert d["properties"]["deprecated"] is (k < len(ids) - 1)
        assert d["properties"]["clouds2mask:settings"]["resolution"] == resolutions[k]
    for res in resolutions:
        assert pub.plan(results[F].scene.item, {**SETTINGS, "resolution": res}).skip


def test_the_stac_api_copies_of_a_three_version_chain_link_to_api_urls(
    clean_stac_api, results, tmp_path, validate_stac
):
    """Published to a static catalog and a STAC API at once: the API's copy of every version links its
    versions by their API URLs (never by the static catalog's relative paths, which mean nothing there) and
    its assets by absolute hrefs; the static copies keep their relative links."""
    api = StacApi(clean_stac_api.url)
    pub = Publisher(StaticCatalog(str(tmp_path)), api)
    for res in (10, 20, 30):
        pub.publish(with_settings(results[F], resolution=res), spec())
    ids = chain_ids(F, 3)
    for k, iid in enumerate(ids):
        served = clean_stac_api.get_item(L2A, iid)
        validate_stac(served)
        assert version_links(served) == expected_chain(ids, k, lambda i: api.item_href(L2A, i)), iid
        assert served["properties"]["deprecated"] is (k < 2)
        hrefs = [a["href"] for a in served["assets"].values()]
        assert all(h.startswith(str(tmp_path)) for h in hrefs), hrefs
        assert version_links(read_item(tmp_path, iid)) == expected_chain(ids, k, lambda i: f"../{i}/{i}.json")


# ------------------------------------------------------------------------------------------
# sources with datetime null and a start/end range
# ------------------------------------------------------------------------------------------

RANGES = {F: ("2020-09-01T00:00:00Z", "2020-09-30T23:59:59Z"), G: ("2020-03-15T00:00:00Z", "2020-04-15T00:00:00Z")}


def ranged(result: MaskResult) -> MaskResult:
    """The result with a source item that has no datetime, only a start/end range (allowed by STAC)."""
    item = result.scene.item.clone()
    start, end = RANGES[item.id]
    item.datetime = None
    item.properties["datetime"] = None
    item.properties["start_datetime"], item.properties["end_datetime"] = start, end
    return dataclasses.replace(result, scene=dataclasses.replace(result.scene, item=item))


def test_sources_with_a_time_range_and_no_datetime_give_masks_with_that_range(
    clean_stac_api, results, tmp_path, validate_stac
):
    """The masks keep `datetime: null` and the source's start/end; the collection's temporal extent spans both
    ranges (static catalog and STAC API); the API finds a mask by a date inside its range only."""
    api = StacApi(clean_stac_api.url)
    pub = Publisher(StaticCatalog(str(tmp_path)), api)
    for sid in (F, G):
        pub.publish(ranged(results[sid]), spec())
    for sid in (F, G):
        static = read_item(tmp_path, f"{sid}_cloudmask")
        validate_stac(static)
        assert static["properties"]["datetime"] is None
        # pgstac 0.10 serves the item without its "datetime": null (stac-utils/pgstac#158, #425): not validated
        served = clean_stac_api.get_item(L2A, f"{sid}_cloudmask")
        for props in (static["properties"], served["properties"]):
            assert props.get("datetime") is None
            assert (props["start_datetime"], props["end_datetime"]) == RANGES[sid]
    span = [RANGES[G][0], RANGES[F][1]]
    collection = json.loads((tmp_path / L2A / "collection.json").read_text())
    assert collection["extent"]["temporal"]["interval"] == [span]
    served = clean_stac_api.session.get(f"{clean_stac_api.url}/collections/{L2A}", timeout=60).json()
    assert served["extent"]["temporal"]["interval"] == [span]
    client = pystac_client.Client.open(clean_stac_api.url)
    found = [i.id for i in client.search(collections=[L2A], datetime="2020-09-20").items()]
    assert found == [f"{F}_cloudmask"]


# ------------------------------------------------------------------------------------------
# claims
# ------------------------------------------------------------------------------------------


def _fail_cog(*args, **kwargs):
    raise OSError("No space left on device")


def _fail_item(self, d, source_collection=None):
    raise OSError("No space left on device")


@pytest.mark.parametrize(
    ("target", "name", "failing"),
    [(publisher_module, "write_mask_cog", _fail_cog), (StaticCatalog, "write_item", _fail_item)],
    ids=["cog-write-fails", "item-write-fails"],
)
def test_a_failed_publish_releases_its_claim_so_a_rerun_with_other_settings_is_not_blocked(
    results, tmp_path, monkeypatch, target, name, failing
):
    """The first run fails while it holds the item's claim (the disk fills up): its lock goes with it, and a
    rerun with other settings publishes the mask at once instead of finding "another run" at it."""
    pub = Publisher(StaticCatalog(str(tmp_path)))
    monkeypatch.setattr(target, name, failing)
    with pytest.raises((PublishError, OSError), match="No space left"):
        pub.publish(results[F], spec())
    monkeypatch.undo()
    assert list(tmp_path.rglob("*.lock")) == []
    pub.publish(with_settings(results[F], resolution=20), spec())
    d = read_item(tmp_path, f"{F}_cloudmask")
    assert d["properties"]["clouds2mask:settings"]["resolution"] == 20
