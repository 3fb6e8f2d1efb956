"""Private and signed sources: a local STAC API on 127.0.0.1 that answers only with its header and serves the
files only when they are signed (tests/signing_standin.py), the Planetary Computer's own signer against a local
token service, and the rule that credentials reach their hosts and nowhere else (no item, report or log)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pystac
import pytest
from conftest import item_dict
from hostile_server import HostileServer, api_landing
from signing_standin import SIGNATURE, sign
from typer.testing import CliRunner

from stac_clouds2mask import InvalidInputError, OptionError, StorageOptions, read_scene
from stac_clouds2mask.cli import app
from stac_clouds2mask.report import RUNS_DIR
from stac_clouds2mask.search import search  # the package's `search` becomes the module once that is imported
from stac_clouds2mask.storage import read_json
from stac_clouds2mask.task import parse_payload

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
KEY = "private-key-31337-do-not-leak"
BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def quiet_logging():
    """-vv sets the root logger to DEBUG: back to the default after each test."""
    yield
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("stac_clouds2mask").setLevel(logging.NOTSET)


def remote_item(sample_data_dir: Path, files_url: str, item_id: str = F) -> dict:
    """Crop F's item with its four bands served at `files_url`/assets/."""
    d = item_dict(sample_data_dir, F)
    d["id"] = item_id
    d["assets"] = {k: dict(d["assets"][k], href=f"{files_url}/assets/{band}.tif") for k, band in BANDS.items()}
    return d


def serve_bands(server: HostileServer, sample_data_dir: Path) -> None:
    for band in BANDS.values():
        server.routes[f"/assets/{band}.tif"] = (sample_data_dir / F / f"{band}.tif").read_bytes()


def private_gate(handler):  # noqa: ANN001, ANN201
    """401 without the key (echoing what came, as careless servers do), 403 for an unsigned file."""
    got = handler.headers.get("X-Api-Key")
    if got != KEY:
        return 401, {}, f"invalid key {got!r}".encode()
    if handler.path.startswith("/assets/") and SIGNATURE not in handler.path:
        return 403, {}, b"AuthenticationFailed: the URL is not signed"
    return None


@pytest.fixture
def private_api(sample_data_dir):
    """A STAC API with one item (crop F), its files on the same host: key header needed everywhere,
    signatures on the files."""
    server = HostileServer(gate=private_gate)
    server.routes["/"] = api_landing(server.url)
    page = {"type": "FeatureCollection", "features": [remote_item(sample_data_dir, server.url)], "links": []}
    server.routes["/search"] = json.dumps(page).encode()
    serve_bands(server, sample_data_dir)
    yield server
    server.stop()


def test_private_api_and_signed_files_end_to_end(private_api, tmp_path):
    """--header reaches the API and, through fsspec, every file read; --modifier signs the files; neither
    the key nor the signature reaches the published item, the run report, stdout or the log (-vv)."""
    out = tmp_path / "out"
    result = invoke(
        "-vv",
        "run",
        private_api.url,
        "-c",
        "sentinel-2-l2a-samples",
        "-o",
        str(out),
        "--device",
        "cpu",
        "--header",
        f"X-Api-Key: {KEY}",
        "--modifier",
        "signing_standin:sign",
        "--print-items",
    )
    assert result.exit_code == 0, result.output
    assert "1 published" in result.output
    files = [r for r in private_api.requests if r["path"].startswith("/assets/")]
    assert {r["path"] for r in files} == {f"/assets/{b}.tif" for b in BANDS.values()}
    assert all(r["headers"].get("X-Api-Key") == KEY for r in private_api.requests)
    assert all(SIGNATURE in r["query"] for r in files)
    [report] = (out / RUNS_DIR).glob("run-*.json")
    written = [p.read_text() for p in out.rglob("*.json")]
    for text in [result.stdout, result.stderr, *written]:
        assert KEY not in text and "standin-secret" not in text
    storage = json.loads(report.read_text())["settings"]["storage"]
    assert storage["header_names"] == ["X-Api-Key"] and storage["header_hosts"] == [private_api.url[7:]]
    assert storage["modifier"] == "signing_standin.sign"
    [mask] = pystac.ItemCollection.from_dict(json.loads(result.stdout)).items
    assert mask.properties["clouds2mask:source_item"] == F


def test_without_the_signer_the_files_are_refused(private_api, tmp_path):
    """The modifier is what makes the files readable: without it the item fails at read (HTTP 403)."""
    result = invoke(
        "run", private_api.url, "-c", "x", "-o", str(tmp_path / "o"), "--device", "cpu", "--header", f"X-Api-Key={KEY}"
    )
    assert result.exit_code == 1, result.output
    assert "failed item" in result.output and "read" in result.output and KEY not in result.output


def test_a_wrong_key_is_refused_and_not_shown(private_api, tmp_path):
    wrong = "wrong-key-that-the-server-echoes"
    result = invoke("run", private_api.url, "-o", str(tmp_path / "o"), "--header", f"X-Api-Key: {wrong}")
    assert result.exit_code == 2, result.output
    assert "cannot open the STAC API" in result.output and "401" in result.output
    assert wrong not in result.output
    assert not (tmp_path / "o").exists()
    # the Python API's error holds no key either (the terminal redacts again, a caller's log would not)
    with pytest.raises(InvalidInputError, match="401") as caught:
        search(private_api.url, None, StorageOptions(headers={"X-Api-Key": wrong}).for_sources([private_api.url]))
    assert wrong not in str(caught.value)


def test_headers_go_only_to_their_hosts(sample_data_dir):
    """API on host A, files and a next page on host B: the key goes to A only, unless B is named too."""
    files = HostileServer()
    api = HostileServer()
    try:
        serve_bands(files, sample_data_dir)
        api.routes["/"] = api_landing(api.url)
        first = {
            "type": "FeatureCollection",
            "features": [remote_item(sample_data_dir, files.url)],
            "links": [{"rel": "next", "href": f"{files.url}/page2", "method": "GET"}],
        }
        api.routes["/search"] = json.dumps(first).encode()
        files.routes["/page2"] = json.dumps({"type": "FeatureCollection", "features": [], "links": []}).encode()
        options = StorageOptions(headers={"X-Api-Key": KEY}).for_sources([api.url])
        assert options.header_hosts == (api.url[7:],)
        [item] = search(api.url, None, options)
        read_scene(item, ["nir"], 20.0, options)
        assert api.requests and all(r["headers"].get("X-Api-Key") == KEY for r in api.requests)
        assert "/page2" in files.paths() and "/assets/B08.tif" in files.paths()
        assert not any("X-Api-Key" in r["headers"] for r in files.requests)
        both = StorageOptions(headers={"X-Api-Key": KEY}, header_hosts=(api.url[7:], files.url[7:]))
        files.requests.clear()
        read_scene(item, ["nir"], 20.0, both)
        assert files.requests and all(r["headers"].get("X-Api-Key") == KEY for r in files.requests)
    finally:
        files.stop()
        api.stop()


def test_headers_need_a_host_to_go_to(sample_catalog):
    with pytest.raises(OptionError, match="header_hosts must name the hosts"):
        StorageOptions(headers={"X-Api-Key": KEY}).for_sources([str(sample_catalog)])
    with pytest.raises(OptionError, match="headers name 'Bad Name' is not a valid HTTP header name"):
        StorageOptions(headers={"Bad Name": "x"})
    with pytest.raises(OptionError, match="header_hosts must be a list"):
        StorageOptions(header_hosts="example.org")


def test_the_published_item_keeps_the_unsigned_hrefs(private_api, sample_data_dir):
    """read_scene opens a signed copy; the Scene's item, which is published, is the one found."""
    item = pystac.Item.from_dict(remote_item(sample_data_dir, private_api.url))
    options = StorageOptions(headers={"X-Api-Key": KEY}, header_hosts=(private_api.url[7:],), modifier=sign)
    scene = read_scene(item, ["nir"], 20.0, options)
    assert scene.item is item and SIGNATURE not in json.dumps(item.to_dict())
    assert scene.dn.shape[1:] == (256, 256) and scene.valid.any()


@pytest.fixture
def token_service(monkeypatch):
    """The Planetary Computer's SAS token endpoint, played on 127.0.0.1 (PC_SDK_SAS_URL)."""
    import planetary_computer
    from planetary_computer import sas, settings

    server = HostileServer()
    token = {"msft:expiry": "2099-01-01T00:00:00Z", "token": "sv=2024&se=2099&sp=rl&sig=PCSECRET"}
    server.default = json.dumps(token).encode()
    monkeypatch.setenv("PC_SDK_SAS_URL", f"{server.url}/token")
    settings.Settings.get.cache_clear()
    sas.TOKEN_CACHE.clear()
    yield server
    settings.Settings.get.cache_clear()
    sas.TOKEN_CACHE.clear()
    server.stop()
    assert planetary_computer.sign_inplace


def test_planetary_computer_signer_by_name(token_service, shared_dir):
    """`modifier="planetary-computer"` is the planetary-computer package's sign_inplace: it asks the token
    service for the item's storage account and container and signs a copy; the item itself stays unsigned."""
    from stac_clouds2mask.access import modified

    real = shared_dir / "data" / "items-real"
    [path] = real.glob("planetary-computer_*.json")
    item = pystac.Item.from_file(str(path))
    options = StorageOptions(modifier="planetary-computer")
    signed = modified(item, options.modifier)
    assert signed.assets["B02"].href.endswith("?sv=2024&se=2099&sp=rl&sig=PCSECRET")
    assert "sig=" not in item.assets["B02"].href
    assert token_service.paths() == ["/token/sentinel2l2a01/sentinel2-l2"]


def test_payload_names_a_modifier_and_header_hosts_but_holds_no_header(sample_data_dir, tmp_path, monkeypatch):
    """Header values come from the worker's STAC_CLOUDS2MASK_SOURCE_HEADERS; a payload may name a modifier by
    name only (an import path would run code of its choosing) and the hosts the headers go to."""
    monkeypatch.setenv("STAC_CLOUDS2MASK_SOURCE_HEADERS", f"X-Api-Key: {KEY}\nX-Other=2")
    payload = {
        "type": "FeatureCollection",
        "features": [item_dict(sample_data_dir, F)],
        "process": [
            {
                "upload_options": {"path_template": f"{tmp_path}/masks/${{collection}}/${{id}}"},
                "tasks": {"clouds2mask": {"header_hosts": ["data.example.org"], "modifier": "planetary-computer"}},
            }
        ],
    }
    job = parse_payload(payload)
    options = job.config(job.default_root, "cpu").options
    assert options.headers_for("https://data.example.org/x.tif") == {"X-Api-Key": KEY, "X-Other": "2"}
    assert options.headers_for("https://elsewhere.example.org/x.tif") == {}
    assert options.modifier.__name__ == "sign_inplace"
    for bad, fragment in (
        ({"modifier": "signing_standin:sign"}, "modifier 'signing_standin:sign' is not one of the named modifiers"),
        ({"headers": {"X-Api-Key": "x"}}, "unknown parameter(s) headers"),
        ({"header_hosts": "data.example.org"}, "header_hosts must be list"),
    ):
        payload["process"][0]["tasks"]["clouds2mask"] = bad
        with pytest.raises(InvalidInputError) as exc:
            parse_payload(payload)
        assert fragment in str(exc.value)


def test_static_catalog_over_http_with_headers(private_api, sample_data_dir):
    """A private static catalog: read_json sends the headers to the catalog's host through fsspec."""
    private_api.routes["/item.json"] = json.dumps(remote_item(sample_data_dir, private_api.url)).encode()
    options = StorageOptions(headers={"X-Api-Key": KEY}).for_sources([f"{private_api.url}/item.json"])
    assert read_json(f"{private_api.url}/item.json", options)["id"] == F
    sent = len(private_api.requests)
    assert sent and all(r["headers"].get("X-Api-Key") == KEY for r in private_api.requests)
    with pytest.raises(InvalidInputError, match="STAC source not found"):  # fsspec tells a 401 as not found
        search(f"{private_api.url}/item.json")
    assert not any("X-Api-Key" in r["headers"] for r in private_api.requests[sent:])
