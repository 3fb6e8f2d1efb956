"""Publishing that downstream catalogs trust: complete, valid STAC metadata; idempotent reruns, new
versions on changed settings, overwrite in place; no item pointing at missing or partial assets, even
after SIGKILL; the STAC API target (collection create/update, search, retries, auth, bulk, no-Transactions).

Most tests publish real scenes (crops F and G read through read_scene) with their real cloud labels
as the class map, so they need no inference; the CLI tests run the real pipeline on tiny items."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pystac
import pystac_client
import pytest
import rasterio
import requests
from conftest import unchanged_items
from PIL import Image
from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.errors import InvalidInputError, PublishError
from stac_clouds2mask.model import get_model_spec
from stac_clouds2mask.publish import Publisher, StacApi, StaticCatalog
from stac_clouds2mask.read import read_scene
from stac_clouds2mask.scene import MaskResult
from stac_clouds2mask.search import SearchFilters, search
from stac_clouds2mask.publish.items import source_href
from stac_clouds2mask.publish.legend import CLASSES

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
G = "ccd-s2-l2a-20200403-epsg32737-512-labelled"
D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
E = "s2b-t32upc-20200406-l1c-n0209-10x10"
L2A = "sentinel-2-l2a-samples-cloudmask"
L1C = "sentinel-2-l1c-samples-cloudmask"
SETTINGS = {
    "model": "model_4b_l2a",
    "model_version": "x",
    "resolution": 10,
    "patch_size": 256,
    "overlap": 52,
    "software": "0.1.0",
}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def multihash(data: bytes) -> str:
    return "1220" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def sources(sample_catalog) -> Iterator[dict[str, pystac.Item]]:
    yield from unchanged_items({i.id: i for i in search(str(sample_catalog), SearchFilters(ids=(F, G, D, E)))})


@pytest.fixture(scope="module")
def results(sources, sample_data_dir) -> dict[str, MaskResult]:
    """F and G on their native 10 m grid with their real cloud labels (0 clear, 1 cloud) as classes,
    plus a band of shadow and a nodata corner so every class occurs."""
    out = {}
    for sid in (F, G):
        scene = read_scene(sources[sid], ("blue", "green", "red", "nir"), 10)
        with rasterio.open(sample_data_dir / sid / "labels.tif") as ds:
            classes = ds.read(1).astype(np.uint8)
        classes[500:, :] = 2
        classes[:8, :8] = 255
        classes.setflags(write=False)  # shared by the module's tests: a test that changes it fails at once
        out[sid] = MaskResult(scene=scene, classes=classes, model_name="model_4b_l2a", settings=dict(SETTINGS))
    return out


def spec():
    return get_model_spec("model_4b_l2a")


def read_item(root: Path, collection: str, item_id: str) -> dict:
    return json.loads((root / collection / item_id / f"{item_id}.json").read_text())


def with_settings(result: MaskResult, **changes) -> MaskResult:
    return MaskResult(
        scene=result.scene,
        classes=result.classes,
        model_name=result.model_name,
        settings={**result.settings, **changes},
    )


# ------------------------------------------------------------------------------------------
# static catalog: metadata
# ------------------------------------------------------------------------------------------


def test_item_and_collection_are_complete_and_valid(results, sources, tmp_path, validate_stac):
    pub = Publisher(StaticCatalog(str(tmp_path)))
    for sid in (F, G):
        pub.publish(results[sid], spec())
    for path in tmp_path.rglob("*.json"):
        validate_stac(json.loads(path.read_text()))

    d = read_item(tmp_path, L2A, f"{F}_cloudmask")
    props, mask = d["properties"], d["assets"]["cloudmask"]
    assert d["geometry"] == sources[F].geometry and d["bbox"] == list(sources[F].bbox)
    assert props["datetime"] == "2020-09-08T08:09:15Z"
    [derived] = [l for l in d["links"] if l["rel"] == "derived_from"]
    assert derived["href"] == sources[F].get_self_href()
    # processing
    assert props["processing:level"] == "L4"
    assert props["processing:software"]["stac-clouds2mask"] == "0.1.0"
    assert (
        "model_4b_l2a" in props["processing:lineage"]
        and "10 m" in props["processing:lineage"]
        and "256 px patches" in props["processing:lineage"]
    )
    assert (
        props["processing:expression"]["format"] == "python"
        and "model_4b_l2a" in props["processing:expression"]["expression"]
    )
    assert props["processing:datetime"].endswith("Z")
    # file: what was actually written
    for key in ("cloudmask", "thumbnail"):
        data = (tmp_path / L2A / d["id"] / d["assets"][key]["href"]).read_bytes()
        assert d["assets"][key]["file:size"] == len(data)
        assert d["assets"][key]["file:checksum"] == multihash(data)
    # classification, bands, proj
    assert mask["classification:classes"] == CLASSES
    assert mask["bands"][0]["nodata"] == 255 and mask["bands"][0]["data_type"] == "uint8"
    assert props["proj:code"] == "EPSG:32636" and props["proj:epsg"] == 32636 and props["proj:shape"] == [512, 512]
    assert props["proj:transform"] == [10.0, 0.0, 741105.0, 0.0, -10.0, 305510.0]
    assert props["proj:bbox"] == [741105.0, 300390.0, 746225.0, 305510.0]
    # mlm and statistics
    assert props["mlm:name"] == "model_4b_l2a" and props["mlm:framework"] in ("OpenVINO", "PyTorch")
    model = d["assets"]["model"]
    assert model["roles"] == ["mlm:model"] and model["mlm:artifact_type"] == "onnx"
    weights = (tmp_path / L2A / d["id"] / model["href"]).resolve()
    assert weights.read_bytes() == get_model_spec("model_4b_l2a").onnx_path.read_bytes()  # the weights used
    assert model["file:checksum"] == multihash(weights.read_bytes())
    classes = results[F].classes
    valid = classes != 255
    assert props["clouds2mask:cloud_percentage"] == pytest.approx(100 * (classes[valid] == 1).mean(), abs=1e-3)
    assert props["clouds2mask:shadow_percentage"] == pytest.approx(100 * (classes[valid] == 2).mean(), abs=1e-3)
    assert props["clouds2mask:clear_percentage"] == pytest.approx(100 * (classes[valid] == 0).mean(), abs=1e-3)
    assert props["clouds2mask:valid_percentage"] == pytest.approx(100 * valid.mean(), abs=1e-3)
    assert props["eo:cloud_cover"] == props["clouds2mask:cloud_percentage"]
    # provenance and version
    assert props["clouds2mask:source_item"] == F and props["clouds2mask:settings"] == SETTINGS
    assert props["version"] == "1" and props["deprecated"] is False
    # thumbnail: indexed PNG, fixed palette, nodata transparent
    thumb = d["assets"]["thumbnail"]
    assert thumb["type"] == "image/png" and "thumbnail" in thumb["roles"]
    img = Image.open(tmp_path / L2A / d["id"] / thumb["href"])
    assert img.mode == "P" and max(img.size) <= 256 and img.info["transparency"] == 255
    palette = img.getpalette()
    for c in CLASSES:
        v = c["value"]
        if v != 255:
            assert bytes(palette[3 * v : 3 * v + 3]).hex().upper() == c["color_hint"]
    px = np.array(img)
    assert px[0, 0] == 255 and set(np.unique(px)) <= {0, 1, 2, 255}

    coll = json.loads((tmp_path / L2A / "collection.json").read_text())
    assert {"cloudmask", "thumbnail", "model"} <= set(coll["item_assets"])
    assert coll["item_assets"]["cloudmask"]["classification:classes"] == CLASSES
    assert coll["summaries"]["mlm:name"]["enum"] == ["model_4b_l2a"]
    assert coll["summaries"]["gsd"] == {"minimum": 10.0, "maximum": 10.0}
    summarised = {k for k in coll["summaries"]}
    carried = set(props) | {k for a in d["assets"].values() for k in a}
    assert summarised <= carried  # summaries only of fields that items carry
    assert {l["title"] for l in coll["links"] if l["rel"] == "license"} == {
        "Copernicus Sentinel data terms (source data)",
        "ukis-csmask model weights (DLR): Apache-2.0",
    }
    assert any("processor" in p["roles"] for p in coll["providers"]) and any(
        "licensor" in p["roles"] for p in coll["providers"]
    )
    assert "https://stac-extensions.github.io/mlm/v1.5.2/schema.json" in coll["stac_extensions"]
    assert coll["extent"]["temporal"]["interval"][0] == ["2020-04-03T08:00:21Z", "2020-09-08T08:09:15Z"]
    assert sorted(l["href"] for l in coll["links"] if l["rel"] == "item") == sorted(
        [f"./{F}_cloudmask/{F}_cloudmask.json", f"./{G}_cloudmask/{G}_cloudmask.json"]
    )


def test_configurable_collection_id(results, tmp_path, validate_stac):
    pub = Publisher(StaticCatalog(str(tmp_path)), collection_id="kenya-cloudmasks")
    item = pub.publish(results[F], spec())
    assert item.collection_id == "kenya-cloudmasks"
    coll = json.loads((tmp_path / "kenya-cloudmasks" / "collection.json").read_text())
    validate_stac(coll)
    assert coll["id"] == "kenya-cloudmasks"
    assert pub.plan(results[F].scene.item, SETTINGS).skip


def test_derived_from_uses_canonical_href_without_self_link(sources):
    d = sources[F].clone().to_dict(include_self_link=False)  # to_dict shares parts with the item
    d["links"] = [{"rel": "canonical", "href": "https://example.org/stac/items/f.json", "type": "application/geo+json"}]
    assert source_href(pystac.Item.from_dict(d)) == "https://example.org/stac/items/f.json"
    d["links"] = [{"rel": "collection", "href": "https://example.org/api/collections/s2", "type": "application/json"}]
    assert source_href(pystac.Item.from_dict(d)) == f"https://example.org/api/collections/s2/items/{F}"


# ------------------------------------------------------------------------------------------
# static catalog: idempotency and versions
# ------------------------------------------------------------------------------------------


def test_rerun_skips_changed_settings_make_a_new_version_overwrite_replaces(results, tmp_path, validate_stac):
    pub = Publisher(StaticCatalog(str(tmp_path)))
    src = results[F].scene.item
    assert pub.plan(src, SETTINGS).action == "new"
    pub.publish(results[F], spec())
    plan = pub.plan(src, SETTINGS)
    assert plan.skip and "same source item, model and settings" in plan.reason

    changed = with_settings(results[F], resolution=20)
    plan = pub.plan(src, changed.settings)
    assert (plan.action, plan.item_id, plan.version) == ("new_version", f"{F}_cloudmask_v2", 2)
    pub.publish(changed, spec(), plan)
    v1, v2 = read_item(tmp_path, L2A, f"{F}_cloudmask"), read_item(tmp_path, L2A, f"{F}_cloudmask_v2")
    for d in (v1, v2):
        validate_stac(d)
    assert v1["properties"]["deprecated"] is True and v2["properties"]["deprecated"] is False
    assert v2["properties"]["version"] == "2" and v2["properties"]["clouds2mask:settings"]["resolution"] == 20
    links = {(l["rel"], l["href"]) for l in v1["links"]}
    assert ("latest-version", f"../{F}_cloudmask_v2/{F}_cloudmask_v2.json") in links
    assert ("successor-version", f"../{F}_cloudmask_v2/{F}_cloudmask_v2.json") in links
    assert ("predecessor-version", f"../{F}_cloudmask/{F}_cloudmask.json") in {
        (l["rel"], l["href"]) for l in v2["links"]
    }
    # the COG of v1 is untouched: v1 still describes its own bytes
    tif = tmp_path / L2A / v1["id"] / f"{v1['id']}.tif"
    assert v1["assets"]["cloudmask"]["file:checksum"] == multihash(tif.read_bytes())
    # either setting is now "already published"
    assert pub.plan(src, SETTINGS).skip and pub.plan(src, changed.settings).skip

    stamp = v2["properties"]["processing:datetime"]
    v2_file = tmp_path / L2A / f"{F}_cloudmask_v2" / f"{F}_cloudmask_v2.json"
    written = {p: p.stat().st_ino for p in v2_file.parent.iterdir()}  # overwritten files are new files (renames)
    plan = pub.plan(src, changed.settings, overwrite=True)
    assert (plan.action, plan.item_id) == ("overwrite", f"{F}_cloudmask_v2")
    pub.publish(changed, spec(), plan)
    v2b = read_item(tmp_path, L2A, f"{F}_cloudmask_v2")
    validate_stac(v2b)
    assert v2b["properties"]["processing:datetime"] >= stamp  # one-second stamps: equal within a second
    assert sorted(written) == sorted(v2_file.parent.iterdir())
    assert all(p.stat().st_ino != inode for p, inode in written.items()), "overwrite left files as they were"
    assert [l["rel"] for l in v2b["links"]].count("predecessor-version") == 1
    coll = json.loads((tmp_path / L2A / "collection.json").read_text())
    items = [l["href"] for l in coll["links"] if l["rel"] == "item"]
    assert sorted(items) == sorted([f"./{F}_cloudmask/{F}_cloudmask.json", f"./{F}_cloudmask_v2/{F}_cloudmask_v2.json"])
    assert coll["summaries"]["gsd"] == {"minimum": 10.0, "maximum": 10.0}  # both grids are the scene's 10 m grid


def test_cli_rerun_says_skipped_and_changed_setting_publishes_a_version(sample_catalog, tmp_path):
    out = tmp_path / "m"
    first = invoke("run", str(sample_catalog), "--output", str(out), "--ids", f"{D},{E}", "--resolution", "10")
    assert first.exit_code == 0 and "2 published, 0 skipped" in first.output
    again = invoke("run", str(sample_catalog), "--output", str(out), "--ids", f"{D},{E}", "--resolution", "10")
    assert again.exit_code == 0 and "0 published, 2 skipped, 0 failed" in again.output
    other = invoke("run", str(sample_catalog), "--output", str(out), "--ids", D, "--resolution", "20")
    assert other.exit_code == 0 and "1 published" in other.output
    assert read_item(out, L1C, f"{D}_cloudmask_v2")["properties"]["clouds2mask:settings"]["resolution"] == 20
    assert read_item(out, L1C, f"{D}_cloudmask")["properties"]["deprecated"] is True


def test_outputs_of_the_previous_version_are_recognised(results, tmp_path):
    """A catalog written before links had titles (root, parent, collection, item and version links) and
    before the lock-free link updates: a rerun skips every mask, adds no link twice and changes no byte."""
    pub = Publisher(StaticCatalog(str(tmp_path)))
    pub.publish(results[F], spec())
    pub.publish(with_settings(results[F], resolution=20), spec())
    pub.publish(results[G], spec())
    added = {"root", "parent", "collection", "item", "predecessor-version", "successor-version", "latest-version"}
    for path in tmp_path.rglob("*.json"):
        d = json.loads(path.read_text())
        for link in d["links"]:
            if link["rel"] in added and not (d["type"] == "Catalog" and link["rel"] == "root"):
                link.pop("title", None)
        path.write_text(json.dumps(d, indent=2))
    (tmp_path / ".clouds2mask-links.lock").write_text("{}")  # the old link lock, as a killed run left it
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for r in (results[F], with_settings(results[F], resolution=20), results[G]):
        assert pub.plan(r.scene.item, r.settings).skip
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------------------
# atomicity
# ------------------------------------------------------------------------------------------


def test_failed_asset_upload_leaves_no_item(results, tmp_path, monkeypatch):
    cat = StaticCatalog(str(tmp_path))
    pub = Publisher(cat)
    real_put = StaticCatalog.put_asset

    def failing_put(self, local, cid, iid, suffix=".tif"):
        if suffix == ".png":
            raise OSError("disk full")
        return real_put(self, local, cid, iid, suffix)

    monkeypatch.setattr(StaticCatalog, "put_asset", failing_put)
    with pytest.raises(Exception, match="disk full"):
        pub.publish(results[F], spec())
    assert not list(tmp_path.rglob("*.json"))  # no item, no collection pointing at it
    monkeypatch.setattr(StaticCatalog, "put_asset", real_put)
    assert pub.plan(results[F].scene.item, SETTINGS).action == "new"
    pub.publish(results[F], spec())
    assert read_item(tmp_path, L2A, f"{F}_cloudmask")["properties"]["clouds2mask:source_item"] == F


def test_rerun_repairs_an_item_that_was_written_but_not_linked(results, tmp_path, monkeypatch):
    """A run killed between writing the item and linking it: the rerun skips the item and links it."""
    pub = Publisher(StaticCatalog(str(tmp_path)))
    pub.publish(results[G], spec())
    monkeypatch.setattr(StaticCatalog, "link_item", lambda self, d: None)
    pub.publish(results[F], spec())
    monkeypatch.undo()
    coll = json.loads((tmp_path / L2A / "collection.json").read_text())
    assert [l["href"] for l in coll["links"] if l["rel"] == "item"] == [f"./{G}_cloudmask/{G}_cloudmask.json"]
    assert pub.plan(results[F].scene.item, SETTINGS).skip
    coll = json.loads((tmp_path / L2A / "collection.json").read_text())
    assert sorted(l["href"] for l in coll["links"] if l["rel"] == "item") == sorted(
        [f"./{F}_cloudmask/{F}_cloudmask.json", f"./{G}_cloudmask/{G}_cloudmask.json"]
    )


def _s3_items(fs, root: str) -> dict[str, dict]:
    return {
        k: json.loads(fs.cat(k))
        for k in fs.find(root)
        if k.endswith("_cloudmask.json") or "_cloudmask_v" in k and k.endswith(".json")
    }


def test_sigkill_mid_batch_on_s3_then_rerun_gives_a_whole_catalog(moto_s3, s3_bucket, sample_catalog, validate_stac):
    out = f"s3://{s3_bucket}/masks"
    ids = f"{D},{E},{F},{G}"
    env = {**os.environ, **{k: v for k, v in moto_s3.env.items() if v is not None}}
    for k, v in moto_s3.env.items():
        if v is None:
            env.pop(k, None)
    cmd = [
        sys.executable,
        "-c",
        "from stac_clouds2mask.cli import app; app()",
        "run",
        str(sample_catalog),
        "--output",
        out,
        "--ids",
        ids,
        "--resolution",
        "20",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fs = moto_s3.filesystem()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            fs.invalidate_cache()
            if any(k.endswith("_cloudmask.json") for k in fs.find(f"{s3_bucket}/masks")):
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    fs.invalidate_cache()
    killed_with = _s3_items(fs, f"{s3_bucket}/masks")
    assert 1 <= len(killed_with) < 4

    again = invoke("run", str(sample_catalog), "--output", out, "--ids", ids, "--resolution", "20")
    assert again.exit_code == 0, again.output
    assert f"{len(killed_with)} skipped" in again.output

    fs.invalidate_cache()
    root = f"{s3_bucket}/masks"
    items = _s3_items(fs, root)
    assert sorted(d["properties"]["clouds2mask:source_item"] for d in items.values()) == sorted([D, E, F, G])
    linked = []
    for cid in (L1C, L2A):
        coll = json.loads(fs.cat(f"{root}/{cid}/collection.json"))
        validate_stac(coll)
        linked += [l["href"] for l in coll["links"] if l["rel"] == "item"]
    assert len(linked) == len(set(linked)) == 4  # every item exactly once
    referenced = set()
    for key, d in items.items():
        validate_stac(d)
        for name in ("cloudmask", "thumbnail"):
            asset = d["assets"][name]
            akey = asset["href"].removeprefix("s3://")  # a catalog at a URL has absolute hrefs
            assert akey.startswith(key.rsplit("/", 1)[0] + "/"), akey
            data = fs.cat(akey)
            assert asset["file:size"] == len(data) and asset["file:checksum"] == multihash(data), akey
            referenced.add(akey)
    with rasterio.open(
        io.BytesIO(fs.cat(next(iter(referenced - {k for k in referenced if k.endswith(".png")}))))
    ) as ds:
        assert ds.nodata == 255
    root_catalog = json.loads(fs.cat(f"{root}/catalog.json"))
    validate_stac(root_catalog)
    assert sorted(l["href"] for l in root_catalog["links"] if l["rel"] == "child") == sorted(
        [f"./{L1C}/collection.json", f"./{L2A}/collection.json"]
    )
    assert not [k for k in fs.find(root) if ".tmp-" in k and "_cloudmask" in k.rsplit("/", 2)[-2]]


# ------------------------------------------------------------------------------------------
# STAC API target
# ------------------------------------------------------------------------------------------


def test_api_collection_items_idempotent_and_searchable(clean_stac_api, sample_catalog, tmp_path, validate_stac):
    api = clean_stac_api.url
    # an existing, bare collection is updated (PUT) with the full metadata
    clean_stac_api.create_collection(
        {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": L1C,
            "description": "placeholder",
            "license": "other",
            "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [["2000-01-01T00:00:00Z", None]]}},
            "links": [],
        }
    )
    out = tmp_path / "masks"
    ids = f"{D},{E},{F}"
    first = invoke("run", str(sample_catalog), "--output", str(out), "--publish-api", api, "--ids", ids)
    assert first.exit_code == 0 and "3 published, 0 skipped" in first.output, first.output
    again = invoke("run", str(sample_catalog), "--output", str(out), "--publish-api", api, "--ids", ids)
    assert again.exit_code == 0 and "0 published, 3 skipped, 0 failed" in again.output, again.output

    session = requests.Session()
    for cid in (L1C, L2A):
        coll = session.get(f"{api}/collections/{cid}").json()
        assert {"cloudmask", "thumbnail", "model"} <= set(coll["item_assets"])
        assert coll["summaries"]["processing:level"] == {"type": "string", "const": "L4"}
        validate_stac({k: v for k, v in coll.items() if k != "links"} | {"links": []})
    updated = session.get(f"{api}/collections/{L1C}").json()
    assert updated["description"] == "placeholder"  # the owner's own text is kept; the rest is filled in
    assert updated["license"] == "other" and {l["rel"] for l in updated["links"]} >= {"license"}
    assert updated["extent"]["spatial"]["bbox"][0][:2] == [0, 0]  # grown, not replaced

    client = pystac_client.Client.open(api)
    by_bbox = [i.id for i in client.search(collections=[L2A, L1C], bbox=[35.0, 2.0, 36.0, 3.0]).items()]
    assert by_bbox == [f"{F}_cloudmask"]
    by_time = sorted(i.id for i in client.search(collections=[L1C], datetime="2022-06-01/2022-06-30").items())
    assert by_time == [f"{D}_cloudmask"]
    f_cloud = clean_stac_api.get_item(L2A, f"{F}_cloudmask")["properties"]["clouds2mask:cloud_percentage"]
    assert f_cloud > 10
    by_query = [
        i.id for i in client.search(collections=[L1C, L2A], query={"clouds2mask:cloud_percentage": {"gt": 10}}).items()
    ]
    assert by_query == [f"{F}_cloudmask"]
    by_filter = [
        i.id
        for i in client.search(
            collections=[L1C, L2A],
            filter_lang="cql2-json",
            filter={"op": "<", "args": [{"property": "clouds2mask:cloud_percentage"}, 10]},
        ).items()
    ]
    assert sorted(by_filter) == sorted([f"{D}_cloudmask", f"{E}_cloudmask"])
    for d in client.search(collections=[L1C, L2A]).item_collection_as_dict()["features"]:  # raw JSON, not migrated
        assert d["assets"]["cloudmask"]["href"].startswith(str(out))
        validate_stac(d)  # as the server returns it, its links included


class FaultProxy:
    """An HTTP proxy in front of the real STAC API that injects faults and records request headers.

    faults: status codes answered (instead of forwarding) to the next requests, in order.
    drop_transactions: strip the Transactions conformance classes from the landing page.
    status_for_all: answer every request with this status (e.g. 401)."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.faults: list[int] = []
        self.drop_transactions = False
        self.status_for_all: int | None = None
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append((self.command, self.path, dict(self.headers)))
                status = proxy.status_for_all or (proxy.faults.pop(0) if proxy.faults else None)
                if status:
                    payload = b'{"detail": "injected"}'
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = requests.request(
                    self.command, proxy.upstream + self.path, data=body or None, headers=headers, timeout=60
                )
                content = r.content
                if proxy.drop_transactions and self.path.rstrip("/") in ("", "/conformance") and self.command == "GET":
                    d = r.json()
                    d["conformsTo"] = [c for c in d.get("conformsTo", []) if "transaction" not in c.lower()]
                    content = json.dumps(d).encode()
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(clean_stac_api):
    p = FaultProxy(clean_stac_api.url)
    yield p
    p.close()


def test_api_retries_5xx_and_429_and_sends_the_token(proxy, clean_stac_api, results, tmp_path):
    api = StacApi(proxy.url, token="s3cret", retries=4, backoff=0.01)
    pub = Publisher(StaticCatalog(str(tmp_path)), api)
    proxy.faults = [503, 429, 502]
    pub.publish(results[F], spec())
    assert clean_stac_api.get_item(L2A, f"{F}_cloudmask")["properties"]["clouds2mask:source_item"] == F
    assert all(h.get("Authorization") == "Bearer s3cret" for _, _, h in proxy.seen)
    assert len(proxy.seen) >= 3 + 4  # the faults were answered and the requests repeated

    proxy.faults = [503] * 10
    api2 = StacApi(proxy.url, retries=2, backoff=0.01)
    with pytest.raises(PublishError, match=f"item '{G}_cloudmask': .*HTTP 503"):
        Publisher(StaticCatalog(str(tmp_path / "b")), api2).publish(results[G], spec())


def test_api_bulk_insert(clean_stac_api, results, tmp_path, proxy):
    pub = Publisher(StaticCatalog(str(tmp_path)))
    items = [pub.publish(results[s], spec()) for s in (F, G)]
    api = StacApi(proxy.url)
    made = api.write_items(items)
    assert made == 1  # one bulk request for both items
    assert [p for m, p, _ in proxy.seen if m == "POST" and "bulk_items" in p] == [f"/collections/{L2A}/bulk_items"]
    for s in (F, G):
        assert clean_stac_api.get_item(L2A, f"{s}_cloudmask")["id"] == f"{s}_cloudmask"
    assert api.write_items(items) == 1  # upsert: again is fine


def test_api_without_transactions_or_with_bad_credentials_is_a_clear_error(proxy, results, tmp_path):
    proxy.drop_transactions = True
    pub = Publisher(StaticCatalog(str(tmp_path)), StacApi(proxy.url))
    with pytest.raises(InvalidInputError, match="Transactions"):
        pub.plan(results[F].scene.item, SETTINGS)
    proxy.drop_transactions = False
    proxy.status_for_all = 401
    with pytest.raises(InvalidInputError, match="refused.*api-token"):
        Publisher(StaticCatalog(str(tmp_path)), StacApi(proxy.url, retries=0)).plan(results[F].scene.item, SETTINGS)


def test_static_catalog_synced_to_api_in_bulk(clean_stac_api, results, tmp_path, proxy, validate_stac):
    """Workers write static catalogs only; one step then pushes them all to the API in bulk."""
    pub = Publisher(StaticCatalog(str(tmp_path)))
    pub.publish(results[F], spec())
    pub.publish(with_settings(results[F], resolution=20), spec())  # a second version, with version links
    pub.publish(results[G], spec())
    assert Publisher(StaticCatalog(str(tmp_path)), StacApi(proxy.url)).sync_api() == 3
    assert len([p for m, p, _ in proxy.seen if m == "POST" and "bulk_items" in p]) == 1
    v1 = clean_stac_api.get_item(L2A, f"{F}_cloudmask")
    validate_stac(v1)
    assert v1["properties"]["deprecated"] is True
    assert v1["assets"]["cloudmask"]["href"] == str(tmp_path / L2A / f"{F}_cloudmask" / f"{F}_cloudmask.tif")
    [latest] = [l["href"] for l in v1["links"] if l["rel"] == "latest-version"]
    assert latest == f"{proxy.url}/collections/{L2A}/items/{F}_cloudmask_v2"


def test_rerun_finishes_marking_older_versions(results, tmp_path, monkeypatch):
    """A run stopped after writing version 2 but before deprecating version 1: the rerun skips and fixes it."""
    pub = Publisher(StaticCatalog(str(tmp_path)))
    pub.publish(results[F], spec())
    changed = with_settings(results[F], resolution=20)
    monkeypatch.setattr(Publisher, "_deprecate", lambda self, previous, latest: None)
    pub.publish(changed, spec())
    monkeypatch.undo()
    assert read_item(tmp_path, L2A, f"{F}_cloudmask")["properties"]["deprecated"] is False
    assert pub.plan(results[F].scene.item, changed.settings).skip
    v1 = read_item(tmp_path, L2A, f"{F}_cloudmask")
    assert v1["properties"]["deprecated"] is True
    assert any(l["rel"] == "latest-version" and l["href"].endswith(f"{F}_cloudmask_v2.json") for l in v1["links"])


def test_parallel_writers_lose_no_link(tmp_path):
    """Eight threads link items into two collections of one static catalog at once (as array-job
    children do): every item is linked exactly once and both collections are linked from the root."""
    import threading

    from stac_clouds2mask.publish import StaticCatalog

    catalog = StaticCatalog(str(tmp_path / "out"))
    start = threading.Barrier(8)
    errors = []

    def write(i: int) -> None:
        d = {
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": f"item-{i}",
            "collection": f"c{i % 2}",
            "bbox": [i, 0, i + 1, 1],
            "geometry": None,
            "links": [],
            "assets": {},
            "properties": {"datetime": f"2024-01-0{i + 1}T00:00:00Z"},
        }
        start.wait()
        try:
            catalog.link_item(d)
        except Exception as exc:  # collected: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    root = json.loads((tmp_path / "out" / "catalog.json").read_text())
    assert sorted(link["href"] for link in root["links"] if link["rel"] == "child") == [
        "./c0/collection.json",
        "./c1/collection.json",
    ]
    for c in (0, 1):
        coll = json.loads((tmp_path / "out" / f"c{c}" / "collection.json").read_text())
        items = [link["href"] for link in coll["links"] if link["rel"] == "item"]
        assert sorted(items) == sorted(f"./item-{i}/item-{i}.json" for i in range(c, 8, 2))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c0", "c1", "catalog.json"]  # no lock, no temporary
