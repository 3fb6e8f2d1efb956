"""Hostile catalogs, items, payloads and servers (issue 11): each row tried as an attacker would, with
servers on 127.0.0.1 only. Nothing is read, written, leaked or exhausted; no traceback; the exit status
and the message name the item, the asset and the reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from conftest import item_dict
from hostile_server import HostileServer
from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.errors import UntrustedReferenceError
from stac_clouds2mask.publish import StaticCatalog
from stac_clouds2mask.report import RUNS_DIR

E = "s2b-t32upc-20200406-l1c-n0209-10x10"
D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}
SECRET = b"TOP-SECRET-LOCAL-FILE-CONTENT"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


def report_of(out: Path) -> dict:
    [path] = (out / RUNS_DIR).glob("run-*.json")
    return json.loads(path.read_text())


def published(out: Path) -> list[Path]:
    return [p for p in out.glob("*/*/*.json")]


@pytest.fixture
def server():
    s = HostileServer()
    yield s
    s.stop()


@pytest.fixture
def secret_file(tmp_path) -> Path:
    p = tmp_path / "secret.bin"
    p.write_bytes(SECRET * 4)
    return p


def remote_item(server: HostileServer, sample_data_dir: Path, item_id: str = "remote-e") -> dict:
    """Item E served by `server`: the item JSON at /items/<id>.json, its bands at /data/<band>.tif."""
    d = item_dict(sample_data_dir, E)
    d["id"] = item_id
    for key, band in BANDS.items():
        server.routes[f"/data/{band}.tif"] = (sample_data_dir / E / f"{band}.tif").read_bytes()
        d["assets"][key]["href"] = f"{server.url}/data/{band}.tif"
    return d


def serve_item(server: HostileServer, d: dict) -> str:
    server.routes[f"/items/{d['id']}.json"] = json.dumps(d).encode()
    return f"{server.url}/items/{d['id']}.json"


# ------------------------------------------------------------------------------------------
# 1. references: a remote source never makes the tool open a local file, a VRT or a sidecar
# ------------------------------------------------------------------------------------------


def test_remote_vrt_over_a_local_file_is_refused(server, sample_data_dir, secret_file, tmp_path):
    vrt = (
        f'<VRTDataset rasterXSize="10" rasterYSize="10"><VRTRasterBand dataType="Byte" band="1" '
        f'subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">{secret_file}</SourceFilename>'
        "<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>10</LineOffset>"
        "</VRTRasterBand></VRTDataset>"
    ).encode()
    server.routes["/data/evil.vrt"] = vrt
    d = remote_item(server, sample_data_dir)
    d["assets"]["blue"]["href"] = f"{server.url}/data/evil.vrt"
    out = tmp_path / "out"
    result = invoke("run", serve_item(server, d), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 1, result.output
    [entry] = report_of(out)["items"]
    assert entry["status"] == "failed" and entry["stage"] == "read" and entry["asset"] == "blue", entry
    assert "only GTiff and JP2OpenJPEG" in entry["error"], entry
    assert published(out) == [] and "Traceback" not in result.output
    assert SECRET.decode() not in result.output + json.dumps(entry)


@pytest.mark.parametrize("kind", ["file-url", "absolute-path", "vsicurl", "fsspec-chain", "gdal-prefix"])
def test_remote_item_cannot_name_local_or_virtual_files(server, sample_data_dir, secret_file, tmp_path, kind):
    local_tif = sample_data_dir / E / "B02.tif"
    href = {
        "file-url": f"file://{local_tif}",
        "absolute-path": str(local_tif),
        "vsicurl": f"/vsicurl?url=http%3A%2F%2F127.0.0.1%3A{server.port}%2Fdata%2FB02.tif",
        "fsspec-chain": f"simplecache::{server.url}/data/B02.tif",
        "gdal-prefix": f"GTIFF_DIR:1:{local_tif}",
    }[kind]
    d = remote_item(server, sample_data_dir)
    d["assets"]["blue"]["href"] = href
    out = tmp_path / "out"
    result = invoke("run", serve_item(server, d), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 1, result.output
    [entry] = report_of(out)["items"]
    assert entry["status"] == "failed" and entry["asset"] == "blue" and entry["stage"] == "read", entry
    if kind in ("absolute-path", "gdal-prefix"):  # resolved against the remote self href: asked of the server
        assert entry["href"].startswith(server.url), entry
        assert any(p.endswith(f"{E}/B02.tif") for p in server.paths()), server.paths()
    else:
        assert "refused" in entry["error"], entry
    assert published(out) == []


def test_local_item_may_name_local_files_but_not_vsi(sample_data_dir, tmp_path):
    """The rule is about remote sources: a local item keeps naming local files; /vsi paths never."""
    d = item_dict(sample_data_dir, E)
    bad = json.loads(json.dumps(d))
    bad["id"] = "vsi-e"
    bad["assets"]["red"]["href"] = "/vsicurl?url=http%3A%2F%2F127.0.0.1%3A9%2Fx.tif"
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [d, bad]}))
    out = tmp_path / "out"
    result = invoke("run", str(fc), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 1, result.output
    entries = {i["source_id"]: i for i in report_of(out)["items"]}
    assert entries[E]["status"] == "published"
    assert "GDAL virtual file system path" in entries["vsi-e"]["error"] and entries["vsi-e"]["asset"] == "red"


@pytest.mark.parametrize(
    "href, source, fragment",
    [
        ("/data/x.tif", "https://example.org/item.json", "local file named by the remote document"),
        ("file:///etc/passwd", "s3://bucket/item.json", "local file named by the remote document"),
        ("GTIFF_DIR:1:/data/x.tif", None, "GDAL driver prefix"),
        ("/vsis3/bucket/x.tif", None, "GDAL virtual file system path"),
        ("simplecache::s3://b/x.tif", "/local/item.json", "fsspec URL chain"),
        ("memory://x.tif", "/local/item.json", "uses the scheme 'memory'"),
        ("http://169.254.169.254/latest/meta-data/", "https://example.org/c.json", "link-local address"),
    ],
)
def test_reference_rule(href, source, fragment):
    from stac_clouds2mask.trust import check_reference

    with pytest.raises(UntrustedReferenceError, match=fragment):
        check_reference(href, source)


def test_operator_allowlists(monkeypatch, tmp_path):
    from stac_clouds2mask.trust import check_reference

    monkeypatch.setenv("STAC_CLOUDS2MASK_ALLOWED_HOSTS", "sentinel-cogs,earth-search.aws.element84.com")
    monkeypatch.setenv("STAC_CLOUDS2MASK_LOCAL_ROOTS", str(tmp_path))
    assert check_reference("s3://sentinel-cogs/a/B02.tif", "https://earth-search.aws.element84.com/v1")
    assert check_reference(str(tmp_path / "x.tif"), None)
    with pytest.raises(UntrustedReferenceError, match="not among the allowed hosts"):
        check_reference("s3://my-private-bucket/secret.tif", "https://earth-search.aws.element84.com/v1")
    with pytest.raises(UntrustedReferenceError, match="outside the allowed local roots"):
        check_reference("/etc/passwd", None)


def test_remote_catalog_cannot_link_a_local_collection(server, sample_data_dir, tmp_path):
    collection = sample_data_dir / "sentinel-2-l1c-samples" / "collection.json"
    server.routes["/catalog.json"] = json.dumps(
        {
            "type": "Catalog",
            "id": "evil",
            "stac_version": "1.1.0",
            "description": "x",
            "links": [{"rel": "child", "href": f"file://{collection}"}],
        }
    ).encode()
    out = tmp_path / "out"
    result = invoke("run", f"{server.url}/catalog.json", "-o", str(out), "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "is a local file named by the remote document" in flat(result.output)
    assert not out.exists() and "Traceback" not in result.output


def test_remote_item_self_link_cannot_make_its_assets_local(server, sample_data_dir, tmp_path):
    d = remote_item(server, sample_data_dir)
    d["links"] = [{"rel": "self", "href": str(sample_data_dir / E / f"{E}.json")}]
    for asset in d["assets"].values():
        asset["href"] = "./" + asset["href"].rsplit("/", 1)[1]
    server.routes["/items.json"] = json.dumps({"type": "FeatureCollection", "features": [d]}).encode()
    out = tmp_path / "out"
    result = invoke("run", f"{server.url}/items.json", "-o", str(out), "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "self link of item 'remote-e'" in flat(result.output) and "refused" in result.output


def test_no_sidecar_probing_and_remote_item_is_published(server, sample_data_dir, tmp_path):
    d = remote_item(server, sample_data_dir)
    out = tmp_path / "out"
    result = invoke("run", serve_item(server, d), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    asked = set(server.paths())
    assert asked <= {"/items/remote-e.json", *(f"/data/{b}.tif" for b in BANDS.values())}, sorted(asked)
    assert len(published(out)) == 1


# ------------------------------------------------------------------------------------------
# 2. ids are single path segments, also when read back from an existing output; literal cleanup
# ------------------------------------------------------------------------------------------


def test_planted_item_in_the_output_cannot_redirect_writes(sample_data_dir, tmp_path):
    out = tmp_path / "out"
    coll = "sentinel-2-l1c-samples-cloudmask"
    planted = out / coll / f"{E}_cloudmask" / f"{E}_cloudmask.json"
    planted.parent.mkdir(parents=True)
    d = item_dict(sample_data_dir, E)
    d.update(id="../../../escaped", collection="../../outside")
    d["properties"]["deprecated"] = False
    planted.write_text(json.dumps(d))
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [item_dict(sample_data_dir, E)]}))
    before = {p for p in tmp_path.parent.rglob("*")}
    for extra in ([], ["--overwrite"]):
        result = invoke("run", str(fc), "-o", str(out), "--device", "cpu", *extra)
        assert result.exit_code == 1, result.output
        assert "does not hold that id and collection" in flat(result.output)
    new = {p for p in tmp_path.parent.rglob("*")} - before
    assert all(out in p.parents for p in new), [p for p in new if out not in p.parents]
    assert not list(out.glob(f"{coll}/*/*.tif"))


def test_temp_cleanup_deletes_literal_names_only(tmp_path):
    catalog = StaticCatalog(str(tmp_path))
    victim = tmp_path / "c" / "s2b-victim"
    victim.mkdir(parents=True)
    (victim / "s2b-victim.tif.tmp-1-aa").write_bytes(b"x")
    mine = tmp_path / "c" / "a_cloudmask"
    mine.mkdir()
    (mine / "a_cloudmask.tif.tmp-1-bb").write_bytes(b"x")
    (mine / "a_cloudmask.tif").write_bytes(b"x")
    with pytest.raises(UntrustedReferenceError, match=r"contains '\[' '\]'"):
        catalog.remove_stale_temporaries("c", "[s]2b-victim")
    catalog.remove_stale_temporaries("c", "a_cloudmask")
    assert (victim / "s2b-victim.tif.tmp-1-aa").exists()
    assert sorted(p.name for p in mine.iterdir()) == ["a_cloudmask.tif"]


def test_ids_checked_before_any_read(sample_data_dir, tmp_path, server):
    """A 450-byte id fails at the validate stage: no band of it is ever fetched."""
    d = remote_item(server, sample_data_dir, "é" * 225)
    server.routes["/items.json"] = json.dumps({"type": "FeatureCollection", "features": [d]}).encode()
    out = tmp_path / "out"
    result = invoke("run", f"{server.url}/items.json", "-o", str(out), "--device", "cpu")
    assert result.exit_code == 1, result.output
    [entry] = report_of(out)["items"]
    assert entry["stage"] == "validate" and "450 bytes" in entry["error"]
    assert not [p for p in server.paths() if p.endswith(".tif")]


# ------------------------------------------------------------------------------------------
# 3. payloads cannot redirect credentials or outputs
# ------------------------------------------------------------------------------------------


def _payload(sample_data_dir: Path, root: str, **params) -> dict:
    return {
        "type": "FeatureCollection",
        "features": [item_dict(sample_data_dir, E)],
        "process": [
            {"upload_options": {"path_template": f"{root}/${{collection}}/${{id}}"}, "tasks": {"clouds2mask": params}}
        ],
    }


def test_payload_publish_api_gets_no_token(server, sample_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STAC_CLOUDS2MASK_API_TOKEN", "operator-token-canary")
    p = tmp_path / "payload.json"
    p.write_text(json.dumps(_payload(sample_data_dir, str(tmp_path / "out"), publish_api=server.url)))
    result = invoke("run-payload", str(p), "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "publish_api" in result.output and "is not one the operator configured" in flat(result.output)
    assert server.requests == [] and "operator-token-canary" not in result.output


def test_payload_publish_api_the_operator_configured_is_accepted(server, monkeypatch):
    from stac_clouds2mask.task import parse_payload

    monkeypatch.setenv("STAC_CLOUDS2MASK_PUBLISH_API", server.url + "/")
    data = {
        "type": "FeatureCollection",
        "features": [],
        "process": [
            {
                "upload_options": {"path_template": "/masks/${collection}/${id}"},
                "tasks": {"clouds2mask": {"publish_api": server.url}},
            }
        ],
    }
    assert parse_payload(data).parameters["publish_api"] == server.url


def test_payload_endpoint_url_gets_no_signed_request(server, sample_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACANARYKEYID00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    p = tmp_path / "payload.json"
    p.write_text(json.dumps(_payload(sample_data_dir, "s3://bucket/masks", endpoint_url=server.url)))
    result = invoke("run-payload", str(p), "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "endpoint_url" in result.output and "STAC_CLOUDS2MASK_S3_ENDPOINTS" in flat(result.output)
    assert server.requests == []


@pytest.mark.parametrize(
    "root, fragment",
    [
        ("memory://masks", "uses the scheme 'memory'"),
        ("{tmp}/masks/../escaped", "contains '..'"),
        ("simplecache::s3://bucket/masks", "fsspec URL chain"),
    ],
)
def test_payload_output_root_is_checked(sample_data_dir, tmp_path, root, fragment):
    p = tmp_path / "payload.json"
    p.write_text(json.dumps(_payload(sample_data_dir, root.format(tmp=tmp_path))))
    result = invoke("run-payload", str(p), "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert fragment in flat(result.output) and "Traceback" not in result.output
    assert not (tmp_path / "escaped").exists()


def test_remote_payload_cannot_write_locally_and_roots_follow_the_allowlist(
    server, sample_data_dir, tmp_path, monkeypatch
):
    server.routes["/payload.json"] = json.dumps(_payload(sample_data_dir, str(tmp_path / "out"))).encode()
    result = invoke("run-payload", f"{server.url}/payload.json", "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "local file named by the remote document" in flat(result.output)
    monkeypatch.setenv("STAC_CLOUDS2MASK_OUTPUT_ROOTS", "s3://operator-bucket/masks")
    p = tmp_path / "payload.json"
    p.write_text(json.dumps(_payload(sample_data_dir, "s3://other-bucket/masks")))
    result = invoke("run-payload", str(p), "--device", "cpu")
    assert result.exit_code == 2 and "not under an allowed output root" in flat(result.output), result.output
    assert not (tmp_path / "out").exists()


def test_api_redirect_to_another_origin_is_not_followed(server):
    from stac_clouds2mask.errors import ConfigurationError
    from stac_clouds2mask.publish import StacApi

    other = HostileServer(default=b"{}")
    try:
        server.default = (307, {"Location": f"{other.url}/collections"}, b"")
        api = StacApi(server.url, headers={"X-Api-Key": "header-canary"}, token="token-canary", retries=0)
        with pytest.raises(ConfigurationError, match="redirected POST .* to another origin"):
            api._request("POST", f"{server.url}/collections", {"secret": "body"})
        assert other.requests == []
    finally:
        other.stop()


# ------------------------------------------------------------------------------------------
# 4. limits: grid size from the header, wall clock per item, traversal, API deadline and size
# ------------------------------------------------------------------------------------------


def test_huge_sparse_cog_is_refused_from_its_header(sample_data_dir, tmp_path):
    big = tmp_path / "big.tif"
    with rasterio.open(sample_data_dir / E / "B02.tif") as src:
        profile = {
            "driver": "GTiff",
            "width": 60000,
            "height": 60000,
            "count": 1,
            "dtype": "uint16",
            "crs": src.crs,
            "transform": src.transform,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "sparse_ok": True,
        }
    with rasterio.open(big, "w", **profile):
        pass
    assert big.stat().st_size < 1_000_000
    d = item_dict(sample_data_dir, E)
    for asset in d["assets"].values():
        asset["href"] = str(big)
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [d]}))
    out = tmp_path / "out"
    t0 = time.monotonic()
    result = invoke("run", str(fc), "-o", str(out), "--device", "cpu")
    assert time.monotonic() - t0 < 60
    assert result.exit_code == 1, result.output
    [entry] = report_of(out)["items"]
    assert "60000 x 60000 px is larger than the limit of 130000000 px" in entry["error"], entry
    assert published(out) == []


def test_item_wall_clock_limit(sample_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STAC_CLOUDS2MASK_ITEM_SECONDS", "0.000001")
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [item_dict(sample_data_dir, E)]}))
    out = tmp_path / "out"
    result = invoke("run", str(fc), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 1, result.output
    [entry] = report_of(out)["items"]
    assert "per-item limit" in entry["error"] or "per-item time limit" in entry["error"], entry


def _catalog(links: list[dict]) -> dict:
    return {"type": "Catalog", "id": "c", "stac_version": "1.1.0", "description": "x", "links": links}


def test_catalog_link_cycle_ends(sample_data_dir, tmp_path):
    item = item_dict(sample_data_dir, D)
    (tmp_path / "item.json").write_text(json.dumps(item))
    (tmp_path / "a.json").write_text(
        json.dumps(_catalog([{"rel": "child", "href": "./b.json"}, {"rel": "item", "href": "./item.json"}]))
    )
    (tmp_path / "b.json").write_text(
        json.dumps(_catalog([{"rel": "child", "href": "./a.json"}, {"rel": "item", "href": "./item.json"}]))
    )
    out = tmp_path / "out"
    result = invoke("run", str(tmp_path / "a.json"), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "1 published, 0 skipped, 0 failed" in flat(result.output)


def test_catalog_traversal_limits(server, tmp_path, monkeypatch):
    server.routes["/root.json"] = json.dumps(
        _catalog([{"rel": "child", "href": f"./c{i}.json"} for i in range(10_000)])
    ).encode()
    server.default = json.dumps(_catalog([])).encode()
    monkeypatch.setenv("STAC_CLOUDS2MASK_MAX_DOCUMENTS", "50")
    t0 = time.monotonic()
    result = invoke("run", f"{server.url}/root.json", "-o", str(tmp_path / "out"), "--device", "cpu")
    assert result.exit_code == 2 and time.monotonic() - t0 < 30, result.output
    assert "more than 50 catalogs, collections and items" in flat(result.output)
    assert len(server.requests) <= 2 * 51  # fsspec asks HEAD, then GET
    # nested deeper than the depth limit
    monkeypatch.delenv("STAC_CLOUDS2MASK_MAX_DOCUMENTS")
    for i in range(30):
        server.routes[f"/d{i}.json"] = json.dumps(_catalog([{"rel": "child", "href": f"./d{i + 1}.json"}])).encode()
    result = invoke("run", f"{server.url}/d0.json", "-o", str(tmp_path / "out"), "--device", "cpu")
    assert result.exit_code == 2 and "nested deeper than 16 levels" in flat(result.output), result.output
    assert "Traceback" not in result.output


def test_api_answering_200_to_everything_ends_the_version_walk(server, sample_data_dir, tmp_path):
    from stac_clouds2mask.publish import Publisher, StacApi

    server.default = json.dumps({"type": "Feature", "id": "whatever", "conformsTo": ["transaction"]}).encode()
    item = pystac.Item.from_dict(item_dict(sample_data_dir, E))
    publisher = Publisher(StaticCatalog(str(tmp_path / "out")), StacApi(server.url, retries=0))
    with pytest.raises(UntrustedReferenceError, match="does not hold that id and collection"):
        publisher.plan(item, {})
    assert len(server.requests) <= 3


def test_version_walk_is_bounded(sample_data_dir, tmp_path):
    from stac_clouds2mask.errors import LimitExceededError
    from stac_clouds2mask.publish import Publisher
    from stac_clouds2mask.publish.items import mask_collection_id
    from stac_clouds2mask.publish.versions import mask_item_id

    item = pystac.Item.from_dict(item_dict(sample_data_dir, E))
    coll = mask_collection_id(item.collection_id)
    for v in (1, 2, 3):
        iid = mask_item_id(item.id, v)
        p = tmp_path / coll / iid / f"{iid}.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"id": iid, "collection": coll, "properties": {}}))
    with pytest.raises(LimitExceededError, match="more than 2 published versions"):
        Publisher(StaticCatalog(str(tmp_path)), max_versions=2).plan(item, {})


def test_api_body_cap_and_whole_request_deadline(server):
    from stac_clouds2mask.errors import LimitExceededError
    from stac_clouds2mask.publish import StacApi

    server.routes["/big"] = b"x" * 100_000

    def slow_loris(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000000")
        handler.end_headers()
        for _ in range(200):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.1)

    def slow_headers(handler):
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(200):
            handler.wfile.write(f"X-{i}: y\r\n".encode())
            handler.wfile.flush()
            time.sleep(0.1)

    server.routes["/slow"] = slow_loris
    server.routes["/slow-headers"] = slow_headers
    api = StacApi(server.url, retries=0, max_body_bytes=10_000, deadline=1.0, timeout=5.0)
    with pytest.raises(LimitExceededError, match="larger than 10000 bytes"):
        api._request("GET", f"{server.url}/big")
    for path in ("/slow", "/slow-headers"):
        t0 = time.monotonic()
        with pytest.raises(LimitExceededError, match="did not answer within 1 s"):
            api._request("GET", f"{server.url}{path}")
        assert time.monotonic() - t0 < 4


# ------------------------------------------------------------------------------------------
# 5. interrupted and concurrent runs
# ------------------------------------------------------------------------------------------


def _cli(*args: str, ignore_sigint: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def preexec() -> None:  # as a non-interactive shell starts a background job
        if ignore_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        [sys.executable, "-c", "from stac_clouds2mask.cli import app; app()", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_run_reports_every_item_and_rerun_finishes(server, sample_data_dir, tmp_path, sig):
    stop = False

    def stalls(handler):
        for _ in range(600):
            if stop:
                break
            time.sleep(0.1)
        handler.send_response(503)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    slow = remote_item(server, sample_data_dir, "slow-e")
    for band in BANDS.values():
        server.routes[f"/data/{band}.tif"] = stalls
    d2 = item_dict(sample_data_dir, D)
    d2["id"] = "d-after"
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [item_dict(sample_data_dir, D), slow, d2]}))
    out = tmp_path / "out"
    proc = _cli("run", str(fc), "-o", str(out), "--device", "cpu", ignore_sigint=sig == signal.SIGINT)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(f"*/{D}_cloudmask/{D}_cloudmask.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        stop = True
        proc.kill()
    assert proc.returncode == 128 + sig, output
    assert "Traceback" not in output and "interrupted" in output
    [report_path] = (out / RUNS_DIR).glob("run-*.json")
    report = json.loads(report_path.read_text())
    assert {i["source_id"]: i["status"] for i in report["items"]} == {
        D: "published",
        "slow-e": "not_run",
        "d-after": "not_run",
    }
    assert report["aborted"] == f"Interrupted: {signal.Signals(sig).name}"
    for band in BANDS.values():  # the source is back: the rerun finishes the job
        server.routes[f"/data/{band}.tif"] = (sample_data_dir / E / f"{band}.tif").read_bytes()
    result = invoke("run", str(fc), "-o", str(out), "--device", "cpu", "--rerun-failed", str(report_path))
    assert result.exit_code == 0, result.output
    assert "2 published, 0 skipped, 0 failed" in flat(result.output)


def test_concurrent_runs_with_other_settings_never_overwrite_silently(sample_data_dir, tmp_path):
    """Run B plans (nothing published yet: a new mask), run A then publishes with other settings,
    B publishes: B's item fails with a clear error, A's mask stays as A wrote it."""
    from stac_clouds2mask.config import RunConfig
    from stac_clouds2mask.runner import Runner

    item = pystac.Item.from_dict(item_dict(sample_data_dir, E))
    item.set_self_href(str(sample_data_dir / E / f"{E}.json"))
    out = tmp_path / "out"
    b = Runner(RunConfig(output=str(out), device="cpu", resolution=60, write_report=False))
    work = b.prepare(item)
    assert work.plan.action == "new"
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [item_dict(sample_data_dir, E)]}))
    result = invoke("run", str(fc), "-o", str(out), "--device", "cpu", "--resolution", "20")
    assert result.exit_code == 0, result.output
    [tif] = out.glob(f"*/{E}_cloudmask/{E}_cloudmask.tif")
    before = tif.read_bytes()
    b.infer(work)
    outcome = b.publish(work)
    assert outcome.status == "failed" and "was published by another run after this one planned it" in outcome.error
    assert tif.read_bytes() == before
    [d] = [json.loads(p.read_text()) for p in out.glob(f"*/{E}_cloudmask/{E}_cloudmask.json")]
    assert d["properties"]["clouds2mask:settings"]["resolution"] == 20


def test_a_live_lock_of_other_settings_stops_the_second_run(sample_data_dir, tmp_path):
    from stac_clouds2mask.errors import PublishError

    catalog = StaticCatalog(str(tmp_path))
    with catalog.claim("c", "x_cloudmask", {"resolution": 20}, 3600, "x"):
        with pytest.raises(PublishError, match="another run is publishing 'x_cloudmask' with other settings now"):
            with catalog.claim("c", "x_cloudmask", {"resolution": 60}, 3600, "x"):
                pass
        with catalog.claim("c", "x_cloudmask", {"resolution": 20}, 3600, "x"):  # same settings: same mask
            pass
    with catalog.claim("c", "x_cloudmask", {"resolution": 60}, 3600, "x"):  # released
        pass
    assert not list(tmp_path.rglob("*.lock"))


def test_the_lock_is_exclusive_on_s3(moto_s3, s3_bucket):
    from stac_clouds2mask.errors import PublishError

    catalog = StaticCatalog(f"s3://{s3_bucket}/masks")
    with catalog.claim("c", "x_cloudmask", {"resolution": 20}, 3600, "x"):
        with pytest.raises(PublishError, match="another run is publishing"):
            with catalog.claim("c", "x_cloudmask", {"resolution": 60}, 3600, "x"):
                pass
    assert not [k for k in moto_s3.filesystem().find(s3_bucket) if k.endswith(".lock")]


def test_api_search_with_endless_pages_is_bounded(server, tmp_path, monkeypatch):
    landing = {
        "type": "Catalog",
        "id": "api",
        "stac_version": "1.1.0",
        "description": "x",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
        "links": [
            {"rel": "search", "href": f"{server.url}/search", "type": "application/geo+json", "method": "POST"},
            {"rel": "self", "href": server.url},
            {"rel": "root", "href": server.url},
        ],
    }
    server.routes["/"] = json.dumps(landing).encode()
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "x",
        "geometry": None,
        "links": [],
        "assets": {},
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
    }
    server.routes["/search"] = json.dumps(
        {
            "type": "FeatureCollection",
            "features": [item],
            "links": [{"rel": "next", "href": f"{server.url}/search?page=again", "method": "GET"}],
        }
    ).encode()
    monkeypatch.setenv("STAC_CLOUDS2MASK_MAX_DOCUMENTS", "20")
    t0 = time.monotonic()
    result = invoke("run", server.url, "-o", str(tmp_path / "out"), "--device", "cpu", "-c", "x")
    assert result.exit_code == 2, result.output
    assert "more than 20 pages or items" in flat(result.output) and time.monotonic() - t0 < 30
    assert len(server.requests) < 30


def test_huge_catalog_document_is_refused(server, tmp_path, monkeypatch):
    server.routes["/big.json"] = b'{"type": "Catalog", "pad": "' + b"x" * 200_000 + b'"}'
    monkeypatch.setenv("STAC_CLOUDS2MASK_MAX_BODY_BYTES", "100000")
    result = invoke("run", f"{server.url}/big.json", "-o", str(tmp_path / "out"), "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "is larger than 100000 bytes" in flat(result.output) and "xxxx" not in result.output


def test_api_search_answers_are_capped(server, tmp_path, monkeypatch):
    server.routes["/"] = b'{"type": "Catalog", "pad": "' + b"x" * 200_000 + b'"}'
    monkeypatch.setenv("STAC_CLOUDS2MASK_MAX_BODY_BYTES", "100000")
    result = invoke("run", server.url, "-o", str(tmp_path / "out"), "--device", "cpu", "-c", "x")
    assert result.exit_code == 2, result.output
    assert "is larger than 100000 bytes" in flat(result.output) and "xxxx" not in result.output


def test_deflate_bomb_stops_at_the_item_limit(sample_data_dir, tmp_path, monkeypatch):
    """A ~100 KB deflate file of 8000 x 8000 px (under the pixel limit, 128 MB decompressed per band,
    read six times): the read stops between row blocks once the per-item wall clock is spent. The limit
    (50 ms) is far below what decoding 768 MB takes on any machine, so the read, not a later stage, stops."""
    bomb = tmp_path / "bomb.tif"
    with rasterio.open(sample_data_dir / E / "B02.tif") as src:
        profile = {
            "driver": "GTiff",
            "width": 8000,
            "height": 8000,
            "count": 1,
            "dtype": "uint16",
            "crs": src.crs,
            "transform": src.transform,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "nodata": None,
        }
    with rasterio.open(bomb, "w", **profile) as dst:
        row = np.full((512, 8000), 1234, dtype="uint16")
        for y in range(0, 8000, 512):
            dst.write(row[: min(512, 8000 - y)], 1, window=rasterio.windows.Window(0, y, 8000, min(512, 8000 - y)))
    assert bomb.stat().st_size < 2_000_000
    d = item_dict(sample_data_dir, E)
    for asset in d["assets"].values():
        asset["href"] = str(bomb)
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [d]}))
    monkeypatch.setenv("STAC_CLOUDS2MASK_ITEM_SECONDS", "0.05")
    out = tmp_path / "out"
    t0 = time.monotonic()
    result = invoke("run", str(fc), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 1, result.output
    [entry] = report_of(out)["items"]
    assert entry["stage"] == "read" and "per-item limit" in entry["error"], entry
    assert time.monotonic() - t0 < 30
