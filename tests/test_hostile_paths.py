"""Hostile inputs on the paths beyond `run` on static catalogs (issue 21, findings 1-4 and 10-12): `stack`, STAC
API search (links, methods, headers, redirects), hosts in other spellings, credentials in source URLs, terminal
escapes, STAC API path segments and unbounded inputs. Servers on 127.0.0.1 only (hostile_server.py); each test
names the class it covers and checks what was refused, what was sent and what was written."""

from __future__ import annotations

import base64
import json
import math
import time
from pathlib import Path

import pystac
import pytest
import shapely
import shapely.geometry
from conftest import item_dict
from hostile_server import HostileServer
from test_hostile import E, SECRET, flat, invoke, report_of

from stac_clouds2mask.errors import UntrustedReferenceError

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
E_BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}
PASSWORD = "userinfo-canary-pw"
SIGNATURE = "presign-canary-signature"
CORE = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"]


def serving(s: HostileServer):
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def server():
    yield from serving(HostileServer())


@pytest.fixture
def other():
    """A second server: another origin (another port) on 127.0.0.1."""
    yield from serving(HostileServer(default=b""))


def serve_bands(server: HostileServer, sample_data_dir: Path, d: dict, item_id: str, bands: dict[str, str]) -> dict:
    for key, band in bands.items():
        server.routes[f"/data/{band}.tif"] = (sample_data_dir / item_id / f"{band}.tif").read_bytes()
        d["assets"][key]["href"] = f"{server.url}/data/{band}.tif"
    return d


def serve_collection(server: HostileServer, *features: dict) -> str:
    server.routes["/items.json"] = json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()
    return f"{server.url}/items.json"


def feature(item_id: str = "x") -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "geometry": None,
        "links": [],
        "assets": {},
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
    }


def stac_api(server: HostileServer, next_link: dict | None = None, items: list[dict] | None = None) -> None:
    """A STAC API at server.url: landing page, POST /search answering one page (with `next_link`)."""
    server.routes["/"] = json.dumps(
        {
            "type": "Catalog",
            "id": "api",
            "stac_version": "1.1.0",
            "description": "x",
            "conformsTo": CORE,
            "links": [
                {"rel": "search", "href": f"{server.url}/search", "type": "application/geo+json", "method": "POST"},
                {"rel": "self", "href": server.url},
                {"rel": "root", "href": server.url},
            ],
        }
    ).encode()
    page = {"type": "FeatureCollection", "features": items or [feature()], "links": [next_link] if next_link else []}
    server.routes["/search"] = json.dumps(page).encode()


# ------------------------------------------------------------------------------------------
# 1. stack: reference rules, driver allow-list and limits, as for `run`
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def masks_f(sample_catalog, tmp_path_factory):
    out = tmp_path_factory.mktemp("masks-f")
    result = invoke("run", str(sample_catalog), "--output", str(out), "--ids", F, "--resolution", "20")
    assert result.exit_code == 0, result.output
    return out / "catalog.json"


def remote_f(server: HostileServer, sample_data_dir: Path) -> dict:
    d = item_dict(sample_data_dir, F)
    del d["assets"]["labels"]
    return serve_bands(server, sample_data_dir, d, F, {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"})


def stack(source: str, masks: Path, *extra: str):
    return invoke("stack", source, "--masks", str(masks), "--ids", F, "--assets", "blue", *extra)


def test_stack_reads_a_remote_item_under_the_trust_rule(server, masks_f, sample_data_dir, tmp_path, monkeypatch):
    secret_file = tmp_path / "secret.bin"
    secret_file.write_bytes(SECRET * 10_000)
    d = remote_f(server, sample_data_dir)
    assert stack(serve_collection(server, d), masks_f).exit_code == 0  # the remote item itself stacks
    # a file:// href named by a remote item: refused before anything is opened
    d["assets"]["blue"]["href"] = f"file://{sample_data_dir / F / 'B02.tif'}"
    result = stack(serve_collection(server, d), masks_f)
    assert result.exit_code == 2, result.output
    assert f"asset 'blue' of item '{F}'" in flat(result.output)
    assert "is a local file named by the remote document" in flat(result.output)
    # a remote VRT over a local file: the GeoTIFF / JPEG 2000 drivers do not open it, the secret is not read
    server.routes["/data/evil.vrt"] = (
        f'<VRTDataset rasterXSize="512" rasterYSize="512"><VRTRasterBand dataType="Byte" band="1" '
        f'subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">{secret_file}</SourceFilename>'
        "<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>1</LineOffset>"
        "</VRTRasterBand></VRTDataset>"
    ).encode()
    d["assets"]["blue"]["href"] = f"{server.url}/data/evil.vrt"
    result = stack(serve_collection(server, d), masks_f, "-o", str(tmp_path / "x.nc"))
    assert result.exit_code == 2, result.output
    assert "only GTiff and JP2OpenJPEG are opened" in flat(result.output) and "/data/evil.vrt" in server.paths()
    assert SECRET.decode() not in result.output and not (tmp_path / "x.nc").exists()
    # a host outside the operator's list is not asked
    d["assets"]["blue"]["href"] = f"http://localhost:{server.port}/data/B02.tif"
    monkeypatch.setenv("STAC_CLOUDS2MASK_ALLOWED_HOSTS", "127.0.0.1")
    server.requests.clear()
    result = stack(serve_collection(server, d), masks_f)
    assert result.exit_code == 2 and "host 'localhost' is not among the allowed hosts" in flat(result.output)
    assert "/data/B02.tif" not in server.paths()


def test_stack_pixel_limits_apply_to_the_grid_and_to_each_file(masks_f, sample_catalog, sample_data_dir, monkeypatch):
    import rasterio

    from stac_clouds2mask.errors import LimitExceededError
    from stac_clouds2mask.search import SearchFilters, search
    from stac_clouds2mask.stack import stack_masked

    monkeypatch.setenv("STAC_CLOUDS2MASK_MAX_PIXELS", "100000")  # the 512 x 512 files and grid are larger
    result = invoke("stack", str(sample_catalog), "--masks", str(masks_f), "--ids", F, "--assets", "blue")
    assert result.exit_code == 2 and "grid of 512 x 512 px is larger than the limit" in flat(result.output)
    with rasterio.open(sample_data_dir / F / "B02.tif") as ds:
        left, top = ds.bounds.left, ds.bounds.top
    corner = (left, top - 1000, left + 1000, top)  # 100 x 100 px of the 10 m grid: the grid is small, the file not
    cube = stack_masked(search(str(sample_catalog), SearchFilters(ids=(F,))), str(masks_f), ["blue"], bounds=corner)
    with pytest.raises(LimitExceededError, match="512 x 512 px, larger than the limit of 100000 px"):
        cube.compute()


# ------------------------------------------------------------------------------------------
# 2. STAC API search: links, methods, headers, bodies and redirects under the trust rule
# ------------------------------------------------------------------------------------------


@pytest.fixture
def few_pages(monkeypatch):
    """A search whose links are followed when they should not be ends after a few pages, not 100,000."""
    monkeypatch.setenv("STAC_CLOUDS2MASK_MAX_DOCUMENTS", "5")


def search_api(url: str, tmp_path: Path):
    return invoke("run", url, "-o", str(tmp_path / "out"), "--device", "cpu", "-c", "x")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_next_link_with_another_method_is_refused(server, tmp_path, method, few_pages):
    stac_api(
        server,
        {"rel": "next", "href": f"{server.url}/search", "method": method, "headers": {"X-Danger": "1"}},
    )
    result = search_api(server.url, tmp_path)
    assert result.exit_code == 2, result.output
    assert f"asks for {method}" in flat(result.output) and "only GET and POST" in flat(result.output)
    assert [r["method"] for r in server.requests] == ["GET", "POST"]  # landing page, first page: nothing else
    assert not (tmp_path / "out").exists() and "Traceback" not in result.output


@pytest.mark.parametrize(
    "href", ["http://169.254.169.254/latest/api/token", "http://2852039166/latest", "file:///etc/passwd", "/etc/passwd"]
)
def test_next_link_to_metadata_or_local_files_is_refused(server, tmp_path, href, few_pages):
    stac_api(server, {"rel": "next", "href": href, "method": "GET"})
    t0 = time.monotonic()
    result = search_api(server.url, tmp_path)
    assert result.exit_code == 2 and time.monotonic() - t0 < 30, result.output
    assert "refused" in flat(result.output) and "Traceback" not in result.output
    assert "root:" not in result.output  # /etc/passwd was not read


def test_link_headers_and_body_only_towards_the_named_origin(server, other, tmp_path, few_pages):
    # same origin: the spec's method, headers, body and merge are honoured
    stac_api(
        server,
        {
            "rel": "next",
            "href": f"{server.url}/page2",
            "method": "POST",
            "headers": {"X-Page-Token": "t2"},
            "body": {"token": "next"},
            "merge": True,
        },
    )
    server.routes["/page2"] = json.dumps({"type": "FeatureCollection", "features": [], "links": []}).encode()
    from stac_clouds2mask.search import SearchFilters, search

    assert [i.id for i in search(server.url, SearchFilters(collections=("x",)))] == ["x"]
    [page2] = [r for r in server.requests if r["path"] == "/page2"]
    assert page2["method"] == "POST" and page2["headers"]["X-Page-Token"] == "t2"
    assert json.loads(page2["body"]) == {"collections": ["x"], "token": "next"}  # merged with the search
    # another origin: a link with headers or a body is refused, the other server is not asked
    for extra in ({"headers": {"X-aws-ec2-metadata-token": "x"}}, {"method": "POST", "body": {"a": 1}}):
        stac_api(server, {"rel": "next", "href": f"{other.url}/page2", **extra})
        result = search_api(server.url, tmp_path)
        assert result.exit_code == 2 and "link to another origin" in flat(result.output), result.output
    assert other.requests == []


def test_no_credential_goes_to_another_origin(server, other, tmp_path, few_pages):
    from stac_clouds2mask.search_io import TrustedStacApiIO

    other.default = json.dumps({"type": "FeatureCollection", "features": [feature("y")], "links": []}).encode()
    stac_api(server, {"rel": "next", "href": f"{other.url}/page2", "method": "GET"})
    # the user's headers, query parameters, URL user info and request modifier: all for the named API only
    io = TrustedStacApiIO(server.url.replace("http://", f"http://reader:{PASSWORD}@"))
    from pystac_client import Client

    client = Client.open(
        io.home,
        stac_io=io,
        headers={"X-Api-Key": "key-canary"},
        parameters={"subscription-key": "param-canary"},
        request_modifier=lambda r: r.headers.update({"X-Signed": "modifier-canary"}),
    )
    assert [i.id for i in client.search(collections=["x"]).items()] == ["x", "y"]
    expected = "Basic " + base64.b64encode(f"reader:{PASSWORD}".encode()).decode()
    for r in server.requests:  # landing page and search: every credential of the user
        assert r["headers"]["Authorization"] == expected and r["headers"]["X-Api-Key"] == "key-canary"
        assert r["headers"]["X-Signed"] == "modifier-canary"
    [page2] = other.requests
    assert not {"Authorization", "X-Api-Key", "X-Signed"} & set(page2["headers"]), page2["headers"]
    assert "canary" not in json.dumps(page2, default=str)


def test_redirects_are_checked_hop_by_hop(server, other, tmp_path, few_pages):
    stac_api(server)
    # a 302 to another origin answering an empty body: followed, without credentials, then a clear error
    server.routes["/search"] = (302, {"Location": f"{other.url}/elsewhere"}, b"")
    result = search_api(server.url.replace("http://", f"http://reader:{PASSWORD}@"), tmp_path)
    assert result.exit_code == 2, result.output
    assert "/elsewhere' is not JSON" in flat(result.output) and "Traceback" not in result.output
    [hop] = other.requests
    assert hop["method"] == "GET" and "Authorization" not in hop["headers"]
    assert PASSWORD not in result.output
    # a 307 (method and body kept) to another origin: refused, the body stays with the API
    other.requests.clear()
    server.routes["/search"] = (307, {"Location": f"{other.url}/elsewhere"}, b"")
    result = search_api(server.url, tmp_path)
    assert result.exit_code == 2 and "the body stays with the API named" in flat(result.output)
    assert other.requests == []
    # to the instance metadata service, in any spelling: refused before connecting
    for target in ("http://169.254.169.254/latest/api/token", "http://0xa9fea9fe/latest/api/token"):
        server.routes["/search"] = (302, {"Location": target}, b"")
        t0 = time.monotonic()
        result = search_api(server.url, tmp_path)
        assert result.exit_code == 2 and "link-local address 169.254.169.254" in flat(result.output)
        assert time.monotonic() - t0 < 30
    # endless redirects end
    server.routes["/search"] = (302, {"Location": f"{server.url}/search"}, b"")
    result = search_api(server.url, tmp_path)
    assert result.exit_code == 2 and "more than 5 redirects" in flat(result.output)


@pytest.mark.parametrize(
    "page, fragment",
    [
        (b"[1, 2]", "is a JSON list, not an object"),
        (b"<html>", "is not JSON"),
        (
            json.dumps({"type": "FeatureCollection", "features": [feature()], "links": [{"href": 1}]}).encode(),
            "KeyError",
        ),
        (json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature"}]}).encode(), "STACTypeError"),
        (b'{"features": 3}', "is not a STAC ItemCollection: TypeError"),
    ],
)
def test_a_bad_page_is_a_clear_error(server, tmp_path, page, fragment):
    stac_api(server)
    server.routes["/search"] = page
    result = search_api(server.url, tmp_path)
    assert result.exit_code == 2, result.output
    assert fragment in flat(result.output) and "Traceback" not in result.output
    assert f"{server.url}" in flat(result.output)


# ------------------------------------------------------------------------------------------
# 3. hosts in other spellings: judged as the resolver reads them; IPv6 literals by their address
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "href",
    [
        "http://2852039166/latest/meta-data/",
        "http://0xa9fea9fe/latest/meta-data/",
        "http://169.254.43518/latest/meta-data/",
        "http://0251.0376.0251.0376/latest/meta-data/",
        "http://169%2e254%2e169%2e254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "s3://0xA9FEA9FE/key.tif",
    ],
)
def test_metadata_address_in_any_spelling_is_refused(href):
    from stac_clouds2mask.trust import check_reference

    with pytest.raises(UntrustedReferenceError, match="link-local address 169.254.169.254"):
        check_reference(href, "https://example.org/catalog.json")


def test_ipv6_literals_are_decided_by_their_address(monkeypatch):
    from stac_clouds2mask.storage import get_fs
    from stac_clouds2mask.trust import check_reference

    remote = "https://example.org/catalog.json"
    assert check_reference("http://[::1]:8080/a/B02.tif", remote)  # no longer mistaken for an fsspec chain
    assert get_fs("http://[::1]:8080/a/B02.tif")[1] == "http://[::1]:8080/a/B02.tif"  # and read as that URL
    with pytest.raises(UntrustedReferenceError, match="link-local address fe80::1"):
        check_reference("http://[fe80::1%25eth0]/x.tif", remote)
    with pytest.raises(UntrustedReferenceError, match="instance metadata service"):
        check_reference("http://[fd00:ec2::254]/latest/meta-data/", remote)
    with pytest.raises(UntrustedReferenceError, match="fsspec URL chain"):
        check_reference("http://[::1]::simplecache/x.tif", remote)  # '::' outside the brackets still is one
    monkeypatch.setenv("STAC_CLOUDS2MASK_ALLOWED_HOSTS", "127.0.0.1,::1")
    assert check_reference("http://2130706433:9/x.tif", remote)  # 127.0.0.1, spelled as one number
    assert check_reference("http://[0:0::1]:9/x.tif", remote)
    with pytest.raises(UntrustedReferenceError, match="host 'localhost' is not among the allowed hosts"):
        check_reference("http://localhost:9/x.tif", remote)


def test_spelled_hosts_reach_the_address_the_resolver_gives(server, sample_data_dir, tmp_path):
    """The normalisation is the resolver's: the hex spelling of 127.0.0.1 is read from the local server (so
    0xa9fea9fe would have reached 169.254.169.254), and an item naming that one fails at read, unconnected."""
    good = serve_bands(server, sample_data_dir, item_dict(sample_data_dir, E), E, E_BANDS)
    for asset in good["assets"].values():
        asset["href"] = asset["href"].replace("127.0.0.1", "0x7f000001")
    bad = json.loads(json.dumps(good))
    bad["id"] = "metadata-e"
    bad["assets"]["red"]["href"] = "http://0xa9fea9fe/latest/meta-data/B04.tif"
    out = tmp_path / "out"
    t0 = time.monotonic()
    result = invoke("run", serve_collection(server, good, bad), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 1 and time.monotonic() - t0 < 120, result.output
    entries = {i["source_id"]: i for i in report_of(out)["items"]}
    assert entries[E]["status"] == "published" and "/data/B04.tif" in server.paths()
    assert entries["metadata-e"]["asset"] == "red" and entries["metadata-e"]["stage"] == "read"
    assert "link-local address 169.254.169.254" in entries["metadata-e"]["error"]


# ------------------------------------------------------------------------------------------
# 4. credentials in source URLs reach no item, plan, payload, report or terminal
# ------------------------------------------------------------------------------------------


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://reader:{PASSWORD}@") + f"?X-Amz-Credential=AKIA&X-Amz-Signature={SIGNATURE}"


def leaks(text: str) -> list[str]:
    return [c for c in (PASSWORD, SIGNATURE) if c in text]


def test_credentials_of_a_source_url_reach_no_output(server, sample_data_dir, tmp_path):
    d = item_dict(sample_data_dir, E)
    for key, band in E_BANDS.items():  # relative hrefs: resolved against the URL with credentials
        server.routes[f"/data/{band}.tif"] = (sample_data_dir / E / f"{band}.tif").read_bytes()
        d["assets"][key]["href"] = f"./data/{band}.tif"
    source = with_credentials(serve_collection(server, d))
    out = tmp_path / "out"
    result = invoke("run", source, "-o", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert server.requests[0]["headers"]["Authorization"].startswith("Basic ")  # the credentials were used
    [path] = out.glob(f"*/{E}_cloudmask/{E}_cloudmask.json")
    item = json.loads(path.read_text())
    [derived] = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
    assert derived == f"{server.url}/items.json"
    assert (
        f"stac_clouds2mask.run('{server.url}/items.json'" in item["properties"]["processing:expression"]["expression"]
    )
    written = "\n".join(p.read_text() for p in out.rglob("*.json"))
    assert leaks(written) == [] and leaks(result.output) == []
    # a plan keeps hrefs for other jobs: refused, nothing written, the credentials not shown
    plan = tmp_path / "plan"
    result = invoke("plan", source, "-o", str(plan), "--masks", str(tmp_path / "masks"), "--shards", "1")
    assert result.exit_code == 2, result.output
    assert "holds a URL with credentials" in flat(result.output) and leaks(result.output) == []
    assert not plan.exists()
    # an error naming the URL names it redacted
    result = invoke("run", with_credentials(f"{server.url}/missing.json"), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 2 and "http://***@127.0.0.1" in flat(result.output), result.output
    assert leaks(result.output) == []


def test_a_run_config_repr_holds_no_header_value(tmp_path):
    """A RunConfig's repr (tracebacks, logs, debuggers) shows neither the publish API's nor the sources' headers."""
    from stac_clouds2mask.config import RunConfig
    from stac_clouds2mask.storage import StorageOptions

    config = RunConfig(
        str(tmp_path),
        api_headers={"Authorization": "Bearer publish-secret"},
        options=StorageOptions(headers={"X-Api-Key": "source-secret"}),
    )
    assert "secret" not in repr(config) and "secret" not in str(config)


def test_a_plan_from_an_api_with_credentials_keeps_none(server, tmp_path):
    item = feature("api-item")
    item["links"] = [{"rel": "self", "href": f"{server.url}/collections/x/items/api-item"}]
    stac_api(server, items=[item])
    plan = tmp_path / "plan"
    source = server.url.replace("http://", f"http://reader:{PASSWORD}@")
    result = invoke("plan", source, "-o", str(plan), "--masks", str(tmp_path / "masks"), "-c", "x", "--shards", "1")
    assert result.exit_code == 0, result.output
    manifest = json.loads((plan / "manifest.json").read_text())
    assert manifest["sources"] == [server.url]
    assert leaks("\n".join(p.read_text() for p in plan.rglob("*.json"))) == [] and leaks(result.output) == []


# ------------------------------------------------------------------------------------------
# 10. terminal injection: what others wrote is shown with its control characters escaped
# ------------------------------------------------------------------------------------------

ESCAPES = "\x1b[2J\x1b[1;1H\nAll items published\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\ \u009b31m \u202e"


def no_escapes(output: str) -> None:
    assert not {"\x1b", "\u009b", "\u202e"} & set(output), repr(output)
    assert not any(line.startswith("All items published") for line in output.splitlines())


def test_an_api_error_body_reaches_the_terminal_escaped(server, tmp_path):
    stac_api(server)
    server.routes["/search"] = (400, {"Content-Type": "text/plain; charset=utf-8"}, ESCAPES.encode())
    result = search_api(server.url, tmp_path)
    assert result.exit_code == 2, result.output
    no_escapes(result.output)
    assert "HTTP 400" in result.output and "\\x1b[2J\\x1b[1;1H\\nAll items published" in flat(result.output)


def test_status_shows_ids_of_a_plan_escaped(sample_data_dir, tmp_path):
    from stac_clouds2mask import batch

    item = pystac.Item.from_dict(item_dict(sample_data_dir, E))
    item.collection_id = f"evil{ESCAPES}"
    batch.write_plan(str(tmp_path / "plan"), [item], str(tmp_path / "masks"), 1)
    result = invoke("status", str(tmp_path / "plan"))
    assert result.exit_code == 1, result.output
    no_escapes(result.output)
    assert "shard 0: evil\\x1b[2J" in result.output


def test_plain_escapes_and_redacts():
    from stac_clouds2mask.cli.display import markup, plain

    assert plain("a\x1bb\nc\td\x9be\u202ef é") == "a\\x1bb\\nc\\td\\x9be\\u202ef é"
    assert plain(f"at http://u:{PASSWORD}@h/x?sig=1") == "at http://***@h/x?***"
    assert markup("[red]x[/]") == "\\[red]x\\[/]"


# ------------------------------------------------------------------------------------------
# 11. ids as quoted path segments of STAC API URLs; dot segments refused, also percent-encoded
# ------------------------------------------------------------------------------------------


@pytest.fixture
def transactions_api(server):
    """A STAC API with Transactions that has no collection yet (GET 404), where every resource POSTed
    exists already (409), so a PUT follows, which it takes (200)."""

    def answer(handler):
        status = {"GET": 404, "POST": 409}.get(handler.command, 200)
        handler.send_response(status)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")

    server.routes["/"] = json.dumps({"type": "Catalog", "id": "api", "conformsTo": ["transaction"]}).encode()
    server.default = answer
    return server


@pytest.mark.parametrize(
    "collection, item_id",
    [("..", "x"), ("%2e%2e", "x"), ("%2E.", "x"), ("%252e%252e", "x"), ("a/b", "x"), ("c", "a%2f..%2fb")],
)
def test_dot_segments_never_reach_the_api(transactions_api, sample_data_dir, collection, item_id):
    from stac_clouds2mask.publish import StacApi

    d = item_dict(sample_data_dir, E)
    d.update(id=item_id, collection=collection)
    with pytest.raises(UntrustedReferenceError, match="collection id|item id"):
        StacApi(transactions_api.url, token="operator-token", retries=0).write_item(d)
    assert [p for p in transactions_api.paths() if "/items" in p or ".." in p] == []


def test_ids_are_quoted_path_segments(transactions_api, sample_data_dir):
    from stac_clouds2mask.publish import StacApi

    d = item_dict(sample_data_dir, E)
    d.update(id="x%25y:z é", collection="c:d%")
    StacApi(transactions_api.url, retries=0).write_item(d)
    assert [f"{r['method']} {r['path']}" for r in transactions_api.requests] == [
        "GET /",
        "GET /collections/c%3Ad%25",
        "POST /collections",
        "PUT /collections/c%3Ad%25",
        "POST /collections/c%3Ad%25/items",
        "PUT /collections/c%3Ad%25/items/x%2525y%3Az%20%C3%A9",
    ]


def test_payload_collection_id_with_a_dot_segment_is_refused(transactions_api, sample_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STAC_CLOUDS2MASK_PUBLISH_API", transactions_api.url)
    monkeypatch.setenv("STAC_CLOUDS2MASK_API_TOKEN", "operator-token-canary")
    payload = {
        "type": "FeatureCollection",
        "features": [item_dict(sample_data_dir, E)],
        "process": [
            {
                "upload_options": {"path_template": f"{tmp_path}/out/${{collection}}/${{id}}"},
                "tasks": {"clouds2mask": {"publish_api": transactions_api.url, "collection_id": "%2e%2e"}},
            }
        ],
    }
    p = tmp_path / "payload.json"
    p.write_text(json.dumps(payload))
    result = invoke("run-payload", str(p), "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "percent-encoded '..'" in flat(result.output) and transactions_api.requests == []


# ------------------------------------------------------------------------------------------
# 12. unbounded inputs: item counts, payload sizes, footprints and mask items stay within the limits
# ------------------------------------------------------------------------------------------


def payload_of(features: list[dict], root: Path) -> dict:
    return {
        "type": "FeatureCollection",
        "features": features,
        "process": [{"upload_options": {"path_template": f"{root}/${{collection}}/${{id}}"}, "tasks": {}}],
    }


def test_item_collections_and_payloads_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("STAC_CLOUDS2MASK_MAX_DOCUMENTS", "20")
    features = [feature(f"f{i}") for i in range(21)]
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    t0 = time.monotonic()
    result = invoke("run", str(fc), "-o", str(tmp_path / "out"), "--device", "cpu")
    assert result.exit_code == 2 and time.monotonic() - t0 < 30, result.output
    assert "holds 21 features, more than 20 (STAC_CLOUDS2MASK_MAX_DOCUMENTS)" in flat(result.output)
    p = tmp_path / "payload.json"
    p.write_text(json.dumps(payload_of(features, tmp_path / "out")))
    result = invoke("run-payload", str(p), "--device", "cpu")
    assert result.exit_code == 2 and "holds 21 features, more than 20" in flat(result.output), result.output
    # a payload file larger than a document may be: refused from its size, not read whole
    monkeypatch.delenv("STAC_CLOUDS2MASK_MAX_DOCUMENTS")
    monkeypatch.setenv("STAC_CLOUDS2MASK_MAX_BODY_BYTES", "100000")
    p.write_text(json.dumps({**payload_of([], tmp_path / "out"), "pad": "x" * 200_000}))
    result = invoke("run-payload", str(p), "--device", "cpu")
    assert result.exit_code == 2 and "is larger than 100000 bytes" in flat(result.output), result.output
    assert "xxxx" not in result.output and not (tmp_path / "out").exists()


def test_a_huge_footprint_is_published_simplified_and_covering(sample_data_dir, tmp_path):
    from stac_clouds2mask.publish.items import MAX_FOOTPRINT_VERTICES
    from stac_clouds2mask.search import search

    d = item_dict(sample_data_dir, E)
    (cx, cy), n = shapely.geometry.shape(d["geometry"]).centroid.coords[0], 200_000
    ring = [(cx + 0.05 * math.cos(2 * math.pi * i / n), cy + 0.05 * math.sin(2 * math.pi * i / n)) for i in range(n)]
    d["geometry"] = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [d]}))
    out = tmp_path / "out"
    result = invoke("run", str(fc), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    [path] = out.glob(f"*/{E}_cloudmask/{E}_cloudmask.json")
    published = json.loads(path.read_text())
    footprint = shapely.geometry.shape(published["geometry"])
    assert shapely.get_num_coordinates(footprint) <= MAX_FOOTPRINT_VERTICES
    assert footprint.covers(shapely.geometry.shape(d["geometry"]))
    assert footprint.area < 1.01 * shapely.geometry.shape(d["geometry"]).area  # close to it, not a box
    assert published["bbox"] == list(footprint.bounds)
    assert [i.id for i in search(str(out / "catalog.json"))] == [f"{E}_cloudmask"]  # our own reader takes it


def test_a_mask_item_larger_than_our_reader_takes_is_not_written(sample_data_dir, tmp_path, monkeypatch):
    d = item_dict(sample_data_dir, E)
    d["assets"] = {key: {"href": asset["href"]} for key, asset in d["assets"].items()}  # a lean source item
    d["properties"] = {
        "datetime": d["properties"]["datetime"],
        "s2:processing_baseline": "02.09",
        "proj:epsg": d["properties"].get("proj:epsg") or int(d["properties"]["proj:code"].split(":")[1]),
        "instruments": ["msi" + "x" * 25_000],  # copied into the mask item, which adds some 8 KB of its own
    }
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [d]}))
    assert fc.stat().st_size < 30_000
    monkeypatch.setenv("STAC_CLOUDS2MASK_MAX_BODY_BYTES", "30000")
    out = tmp_path / "out"
    result = invoke("run", str(fc), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 1, result.output
    [entry] = report_of(out)["items"]
    assert entry["stage"] == "publish" and "more than the 30000 that this tool reads back" in entry["error"]
    assert not list(out.glob(f"*/{E}_cloudmask/{E}_cloudmask.json"))
