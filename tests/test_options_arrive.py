"""Every option arrives where it acts: one row per option of every command (read from the typer app, so an option
without a row fails), per stac-task payload parameter (task.PARAMETERS) and per RunConfig field. Each row gives a
value other than the default and checks it at its point of use, never only in the parsed configuration: a spy on
the search's result, read_scene, resolve_device, open_network, compile_model, predict, buffer_classes, the
modifier, the fsspec filesystem or stackstac's reader; the HTTP requests a server on 127.0.0.1 received; or the
published item, report, plan or cube. A spy may end the run where the value arrived (Arrived).

Also: every RunConfig field is either part of the recorded settings (config.settings_for: a rerun with it changed
publishes a new version) or leaves the mask as it is (a rerun with it changed skips), and every option of `plan`
reaches every shard payload. Real model (ukis-csmask weights), real sample items: crop D (9 x 8 px, L1C, the
+1000 offset) for runs, D and E in plans, F and G where filters need L2A items; a run of D takes a fraction of a
second.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import logging
import os
import shutil
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pystac
import pytest
import shapely.geometry
import typer.main
import xarray as xr
from conftest import item_dict
from hostile_server import HostileServer, api_landing
from servers import upload_tree
from typer.testing import CliRunner

import stac_clouds2mask
import signing_standin
from stac_clouds2mask import InvalidInputError, RunConfig, SearchFilters, StorageOptions, task
from stac_clouds2mask.cli import app
from stac_clouds2mask.cli.display import OUTPUT
from stac_clouds2mask.config import expected_settings
from stac_clouds2mask.limits import Limits
from stac_clouds2mask.model import get_model_spec
from stac_clouds2mask.report import RUNS_DIR

D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"  # 9 x 8 px at 10 m, L1C, baseline 04.00 (the +1000 offset)
E = "s2b-t32upc-20200406-l1c-n0209-10x10"  # 10 x 10 px at 60 m, L1C, the same place (E's footprint holds D's)
F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
G = "ccd-s2-l2a-20200403-epsg32737-512-labelled"
L1C, L2A = "sentinel-2-l1c-samples", "sentinel-2-l2a-samples"
MASKS = f"{L1C}-cloudmask"
F_BBOX = ("35.17", "2.72", "35.21", "2.76")  # inside F only
G_AREA = {
    "type": "Polygon",
    "coordinates": [[[36.72, -1.66], [36.76, -1.66], [36.76, -1.62], [36.72, -1.62], [36.72, -1.66]]],
}
D_WEST = ("11.7533", "51.6146", "11.7540", "51.6154")  # the west half of D
E_ONLY = ("11.749", "51.611", "11.750", "51.612")  # in E, away from D
KEY = ("X-Key", "source-key-5150")
API_KEY = ("X-Api", "api-key-8086")
TOKEN = "api-token-6502"
TRANSACTIONS = "https://api.stacspec.org/v1.0.0/ogcapi-features/extensions/transaction"
SAFE = "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"


class Arrived(BaseException):
    """A spy ended the run where the value arrived: a BaseException, so no per-item handler takes it for a
    failure of the item."""


# ------------------------------------------------------------------------------------------
# spies at the points of use
# ------------------------------------------------------------------------------------------

POINTS = {  # name -> (module, attribute) patched with a spy that records every call's arguments
    "search": ("stac_clouds2mask.runner", "search_all"),
    "read": ("stac_clouds2mask.runner", "read_scene"),
    "modify": ("stac_clouds2mask.read", "modified"),
    "filesystem": ("stac_clouds2mask.storage", "url_to_fs"),
    "device": ("stac_clouds2mask.infer", "resolve_device"),
    "network": ("stac_clouds2mask.infer", "open_network"),
    "compile": ("stac_clouds2mask.infer.runtimes", "compile_model"),
    "predict": ("stac_clouds2mask.infer", "predict"),
    "buffers": ("stac_clouds2mask.runner", "buffer_classes"),
    "stack_open": ("stac_clouds2mask.stack", "TrustedReader._open"),  # stackstac's reads of sources and masks
}


class Spies:
    """Records the arguments of every call at each point of use (and what it returned); `stop` names the point
    at which the run ends (Arrived is raised there, before the real function runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.stop: str | None = None
        for name, (module, path) in POINTS.items():
            *owners, attribute = path.split(".")
            target = functools.reduce(getattr, owners, importlib.import_module(module))
            monkeypatch.setattr(target, attribute, self._spy(name, getattr(target, attribute)))

    def _spy(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(real)

        @functools.wraps(real)
        def spy(*args: Any, **kwargs: Any) -> Any:
            call = dict(signature.bind(*args, **kwargs).arguments)
            self.calls[name].append(call)
            if name == self.stop:
                raise Arrived(name)
            call["returned"] = real(*args, **kwargs)
            return call["returned"]

        return spy

    def first(self, point: str) -> dict[str, Any]:
        assert self.calls[point], f"the run never reached {point}"
        return self.calls[point][0]


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Spies:
    monkeypatch.delenv("STAC_CLOUDS2MASK_API_TOKEN", raising=False)
    return Spies(monkeypatch)


@pytest.fixture(autouse=True)
def default_output() -> Iterator[None]:
    """-v and -q change the process's logging and display: back to the defaults after each test."""
    yield
    OUTPUT.quiet = False
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("stac_clouds2mask").setLevel(logging.NOTSET)


# ------------------------------------------------------------------------------------------
# where a row runs: sources, output, servers
# ------------------------------------------------------------------------------------------


class HttpSource:
    """D's item on one server (`items`), its band files on another (`files`), both on 127.0.0.1: which requests
    carry which header shows where --header and --header-host went."""

    def __init__(self, data: Path) -> None:
        self.items, self.files = HostileServer(), HostileServer()
        self.item = item_dict(data, D)
        for asset in self.item["assets"].values():
            name = Path(asset["href"]).name
            self.files.routes[f"/{D}/{name}"] = (data / D / name).read_bytes()
            asset["href"] = f"{self.files.url}/{D}/{name}"
        self.url = f"{self.items.url}/{D}.json"
        self.items.routes[f"/{D}.json"] = json.dumps(self.item).encode()

    @staticmethod
    def host(server: HostileServer) -> str:
        return server.url.removeprefix("http://")

    def stop(self) -> None:
        self.items.stop()
        self.files.stop()


def transactions_api(post_status: int = 201) -> HostileServer:
    """A STAC API with the Transactions extension, played on 127.0.0.1: it takes every POST and PUT with
    `post_status` and records every request (headers included)."""
    server = HostileServer(gate=lambda h: (post_status, {}, b"{}") if h.command in ("POST", "PUT") else None)
    landing = json.loads(api_landing(server.url))
    landing["conformsTo"].append(TRANSACTIONS)
    server.routes["/"] = json.dumps(landing).encode()
    return server


@dataclasses.dataclass
class Place:
    """Where a row runs: the sample data, a fresh folder, and what the row needs (set by the fixtures it names)."""

    data: Path
    tmp: Path
    http: HttpSource | None = None
    api: HostileServer | None = None
    s3: str | None = None  # D's item on moto S3
    endpoint: str | None = None  # moto's endpoint URL
    weights: str | None = None  # a folder holding a copy of the 6-band L1C weights
    report: str | None = None  # a run report in which E failed and D was published
    broken: str | None = None  # an ItemCollection: D with a band file missing, then E
    plan: str | None = None  # a plan of D and E in two shards (shard 0: E, shard 1: D), masks into `out`
    masks: str | None = None  # the catalog.json of D's, E's, F's and G's masks

    @property
    def catalog(self) -> str:
        return str(self.data / "catalog.json")

    @property
    def out(self) -> str:
        return str(self.tmp / "masks")

    def sources(self, kind: str) -> list[str]:
        """The command line's sources of a row's kind of source."""
        return {
            "d": [self.catalog, "--ids", D],
            "catalog": [self.catalog],
            "l2a": [str(self.data / L2A / "collection.json")],
            "de": [self.catalog, "--ids", f"{D},{E}"],
            "def": [self.catalog, "--ids", f"{D},{E},{F}"],
            "fg": [self.catalog, "--ids", f"{F},{G}"],
            "g": [self.catalog, "--ids", G],
            "e-item": [str(self.data / E / f"{E}.json")],
            "compact-d": [str(self.tmp / "d" / f"{D}.json")],
            "nested": [str(self.tmp / "nested.json")],
            "product": [str(self.tmp / f"{SAFE}.zip")],
            "http": [self.http.url] if self.http else [],
            "s3": [self.s3 or ""],
            "broken": [self.broken or ""],
        }[kind]

    def features(self, kind: str) -> list[dict[str, Any]]:
        """The payload features of a row's kind of source."""
        if kind == "http":
            assert self.http is not None
            return [self.http.item]
        if kind == "s3":
            assert self.s3 is not None
            d = item_dict(self.data, D)
            for asset in d["assets"].values():
                asset["href"] = f"{self.s3.rsplit('/', 1)[0]}/{Path(asset['href']).name}"
            return [d]
        if kind == "broken":
            assert self.broken is not None
            return json.loads(Path(self.broken).read_text())["features"]
        return [item_dict(self.data, D)]


@pytest.fixture
def place(sample_data_dir: Path, tmp_path: Path) -> Place:
    return Place(sample_data_dir, tmp_path)


@pytest.fixture
def http(place: Place) -> Iterator[HttpSource]:
    place.http = HttpSource(place.data)
    yield place.http
    place.http.stop()


@pytest.fixture
def api(place: Place, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    place.api = transactions_api()
    monkeypatch.setenv("STAC_CLOUDS2MASK_PUBLISH_API", place.api.url)  # the operator's: payloads may name it
    yield place.api
    place.api.stop()


@pytest.fixture
def failing_api(place: Place, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    place.api = transactions_api(post_status=503)
    monkeypatch.setenv("STAC_CLOUDS2MASK_PUBLISH_API", place.api.url)
    yield place.api
    place.api.stop()


@pytest.fixture
def slow_api(place: Place, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    """A Transactions API that takes 3 s to answer a POST."""

    def slowly(handler: Any) -> None:
        time.sleep(3)
        handler.send_response(201)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")

    place.api = transactions_api()
    place.api.gate = lambda h: slowly if h.command == "POST" else None
    yield place.api
    place.api.stop()


@pytest.fixture
def compact_d(place: Place) -> None:
    """D's item written without indentation (the size its mask item is measured in), beside its files."""
    folder = place.tmp / "d"
    folder.mkdir()
    for band in (place.data / D).glob("*.tif"):
        (folder / band.name).symlink_to(band)
    (folder / f"{D}.json").write_text(json.dumps(json.loads((place.data / D / f"{D}.json").read_text())))


@pytest.fixture
def nested(place: Place) -> None:
    """A catalog whose child is the sample catalog: its collections are two levels down."""
    link = {"rel": "child", "href": place.catalog, "type": "application/json"}
    doc = {"type": "Catalog", "stac_version": "1.1.0", "id": "nested", "description": "x", "links": [link]}
    (place.tmp / "nested.json").write_text(json.dumps(doc))


@pytest.fixture
def product(place: Place) -> None:
    """The sample Level-2A product zipped, its metadata files only (the limits refuse it before any band)."""
    folder = place.data / "safe" / SAFE
    with zipfile.ZipFile(place.tmp / f"{SAFE}.zip", "w") as zf:
        for name in ("MTD_MSIL2A.xml", "manifest.safe", "INSPIRE.xml"):
            zf.write(folder / name, f"{SAFE}/{name}")
        for path in folder.glob("GRANULE/*/MTD_TL.xml"):
            zf.write(path, f"{SAFE}/{path.relative_to(folder)}")


@pytest.fixture
def s3(place: Place, moto_s3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: ANN001
    fs = moto_s3.filesystem()
    for url in upload_tree(fs, place.data / D, f"{s3_bucket}/{D}"):
        fs.chmod(url, "public-read")  # also for anonymous requests (--anon)
    place.s3, place.endpoint = f"s3://{s3_bucket}/{D}/{D}.json", moto_s3.endpoint_url
    monkeypatch.setenv("STAC_CLOUDS2MASK_S3_ENDPOINTS", moto_s3.endpoint_url)  # the operator's
    return place.s3


@pytest.fixture
def endpoint_from_option_only(s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No S3 endpoint in the environment: only the option can send the reads to moto."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_S3_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def source_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's source headers (a payload names only the hosts they go to)."""
    monkeypatch.setenv("STAC_CLOUDS2MASK_SOURCE_HEADERS", header(KEY))


@pytest.fixture
def weights(place: Place) -> str:
    """A folder holding the 6-band L1C weights (a link to the wheel's file): one published copy."""
    folder = place.tmp / "weights"
    folder.mkdir()
    spec = get_model_spec("model_6b_l1c")
    (folder / spec.onnx_path.name).symlink_to(spec.onnx_path)
    place.weights = str(folder)
    return place.weights


@pytest.fixture
def report(place: Place) -> str:
    path = place.tmp / "run-earlier.json"
    items = [{"source_id": E, "status": "failed"}, {"source_id": D, "status": "published"}]
    path.write_text(json.dumps({"type": "stac-clouds2mask-run", "items": items}))
    place.report = str(path)
    return place.report


@pytest.fixture
def broken(place: Place) -> str:
    """D first, with a band file that is not there, then E: with --fail-fast E does not run."""
    d = item_dict(place.data, D)
    d["assets"]["blue"]["href"] = str(place.tmp / "nowhere" / "B02.tif")
    path = place.tmp / "broken-then-e.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [d, item_dict(place.data, E)]}))
    place.broken = str(path)
    return place.broken


@pytest.fixture(scope="module")
def published_d(sample_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """D's mask published once with the defaults."""
    out = tmp_path_factory.mktemp("published-d")
    result = CliRunner().invoke(app, ["run", str(sample_catalog), "--ids", D, "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def published(place: Place, published_d: Path) -> None:
    shutil.copytree(published_d, place.out, copy_function=os.link)  # written anew by moving files into place


@pytest.fixture
def two_shards(place: Place) -> str:
    place.plan = str(place.tmp / "plan")
    args = ["plan", place.catalog, "--ids", f"{D},{E}", "-o", place.plan, "--masks", place.out, "-n", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return place.plan


@pytest.fixture(scope="module")
def all_masks(sample_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The masks of D, E, F and G, for `stack`."""
    out = tmp_path_factory.mktemp("all-masks")
    result = CliRunner().invoke(app, ["run", str(sample_catalog), "--ids", f"{D},{E},{F},{G}", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out / "catalog.json"


@pytest.fixture
def s3_masks(place: Place, s3: str, moto_s3) -> str:  # noqa: ANN001
    """D's mask published next to D on S3, everything readable without signing too (for --anon)."""
    root = s3.split("/")[2]
    result = CliRunner().invoke(app, ["run", s3, "-o", f"s3://{root}/masks"])
    assert result.exit_code == 0, result.output
    fs = moto_s3.filesystem()
    for path in fs.find(f"{root}/masks"):
        fs.chmod(path, "public-read")
    place.masks = f"s3://{root}/masks/catalog.json"
    return place.masks


@pytest.fixture
def masks(place: Place, all_masks: Path) -> str:
    place.masks = str(all_masks)
    return place.masks


# ------------------------------------------------------------------------------------------
# a run, and what it left
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    place: Place
    spies: Spies
    exit_code: int | None = None  # None: a spy ended the run (see `arrived`)
    output: str = ""  # standard output and standard error
    stdout: str = ""
    arrived: str | None = None

    def items(self, root: str | None = None) -> dict[str, dict[str, Any]]:
        """The mask items published under `root` (default: the output folder), by id."""
        folder = Path(root or self.place.out)
        docs = (json.loads(p.read_text()) for p in folder.glob("*/*/*.json"))
        return {d["id"]: d for d in docs if d.get("type") == "Feature"}

    def item(self) -> dict[str, Any]:
        """The one mask item published."""
        items = list(self.items().values())
        assert len(items) == 1, f"{len(items)} mask items published (exit {self.exit_code}): {self.output[-2000:]}"
        return items[0]

    def report(self) -> dict[str, Any]:
        """The report of this run (the newest in the output folder)."""
        paths = sorted((Path(self.place.out) / RUNS_DIR).glob("run-*.json"), key=lambda path: path.stat().st_mtime)
        assert paths, f"no run report (exit {self.exit_code}): {self.output[-2000:]}"
        return json.loads(paths[-1].read_text())

    def statuses(self) -> dict[str, str]:
        return {i["source_id"]: i["status"] for i in self.report()["items"]}

    def found(self) -> set[str]:
        return {i.id for i in self.spies.first("search")["returned"]}


def invoke(spies: Spies, place: Place, args: list[str], stop: str | None = None) -> Run:
    """The command line, in this process, with the spies in place."""
    spies.stop = stop
    try:
        result = CliRunner().invoke(app, args, catch_exceptions=False)
    except Arrived as exc:
        return Run(place, spies, arrived=str(exc))
    return Run(place, spies, result.exit_code, result.output, result.stdout)


def payload_file(place: Place, features: list[dict[str, Any]], params: dict[str, Any]) -> str:
    path = place.tmp / "payload.json"
    path.write_text(json.dumps(task.make_payload([pystac.Item.from_dict(f) for f in features], place.out, params)))
    return str(path)


def python_run(spies: Spies, place: Place, sources: list[str], fields: dict[str, Any], stop: str | None) -> Run:
    """stac_clouds2mask.run with a RunConfig, in this process, with the spies in place."""
    spies.stop = stop
    ids = sources[sources.index("--ids") + 1].split(",") if "--ids" in sources else None
    config = RunConfig(**{"output": place.out, **fields})
    try:
        report = stac_clouds2mask.run(sources[:1], config, SearchFilters(ids=tuple(ids) if ids else None))
    except Arrived as exc:
        return Run(place, spies, arrived=str(exc))
    except InvalidInputError as exc:  # as the command line: exit 2 with the reason
        return Run(place, spies, 2, str(exc))
    return Run(place, spies, report.exit_code)


# ------------------------------------------------------------------------------------------
# checks: what a value does where it acts
# ------------------------------------------------------------------------------------------

Check = Callable[[Run], None]


def found(*ids: str) -> Check:
    """The search (the runner's search_all) found exactly these items."""

    def check(r: Run) -> None:
        assert r.found() == set(ids)

    return check


def found_count(n: int) -> Check:
    def check(r: Run) -> None:
        assert len(r.found()) == n, r.found()

    return check


def called(point: str, **expected: Any) -> Check:
    """The first call at `point` had these arguments (a callable expected value is a test of the argument)."""

    def check(r: Run) -> None:
        call = r.spies.first(point)
        for name, want in expected.items():
            got = call.get(name)
            assert want(got) if callable(want) else got == want, f"{point}: {name}={got!r}"

    return check


def stopped_at(point: str) -> Check:
    def check(r: Run) -> None:
        assert r.arrived == point, f"exit {r.exit_code}: {r.output[-2000:]}"

    return check


def recorded(key: str, **expected: Any) -> Check:
    """The published item's clouds2mask:<key> (settings: what was asked; execution: what ran) holds these."""

    def check(r: Run) -> None:
        got = r.item()["properties"][f"clouds2mask:{key}"]
        assert {k: got.get(k) for k in expected} == expected

    return check


def item_has(test: Callable[[dict[str, Any]], bool]) -> Check:
    def check(r: Run) -> None:
        assert test(r.item())

    return check


def status(**statuses: str) -> Check:
    """The run report's status of these source items (D, E)."""

    def check(r: Run) -> None:
        got = r.statuses()
        assert {k: got.get({"D": D, "E": E}[k]) for k in statuses} == statuses, got

    return check


def sent(server: str, header: tuple[str, str], where: Callable[[dict[str, Any]], bool] = lambda q: True) -> Check:
    """Every request `server` (an attribute path of the Place, e.g. http.files) received carries `header`."""

    def check(r: Run) -> None:
        requests = [q for q in functools.reduce(getattr, server.split("."), r.place).requests if where(q)]
        assert requests and all(q["headers"].get(header[0]) == header[1] for q in requests), requests

    return check


def not_sent(server: str, name: str) -> Check:
    def check(r: Run) -> None:
        requests = functools.reduce(getattr, server.split("."), r.place).requests
        assert not any(name in q["headers"] for q in requests)

    return check


def posted(count: int | None = None) -> Check:
    """The API received the mask item (POST to its collection's items), or `count` POSTs of the first URL."""

    def check(r: Run) -> None:
        posts = [q for q in r.place.api.requests if q["method"] == "POST"]
        if count is not None:
            assert [q["path"] for q in posts] == [posts[0]["path"]] * count
            return
        bodies = [json.loads(q["body"]) for q in posts if q["path"] == f"/collections/{MASKS}/items"]
        assert [b["id"] for b in bodies] == [f"{D}_cloudmask"]

    return check


def s3_reads(test: Callable[[Any], bool]) -> Check:
    """The fsspec filesystems that read the band files pass `test`."""

    def check(r: Run) -> None:
        calls = r.spies.calls["filesystem"]
        fss = [c["returned"][0] for c in calls if c["url"].startswith("s3://") and c["url"].endswith(".tif")]
        assert fss and all(test(fs) for fs in fss)

    return check


def refused(text: str) -> Check:
    """The run was refused before any item (exit 2), saying `text`."""

    def check(r: Run) -> None:
        assert r.exit_code == 2 and text in " ".join(r.output.split()), (r.exit_code, r.output[-2000:])

    return check


def failed(text: str) -> Check:
    """D failed, its error saying `text`."""

    def check(r: Run) -> None:
        [entry] = [i for i in r.report()["items"] if i["source_id"] == D]
        assert entry["status"] == "failed" and text in entry["error"], entry

    return check


def same_area(bbox: tuple[str, ...]) -> Callable[[Any], bool]:
    box = shapely.geometry.box(*map(float, bbox))
    return lambda geometry: geometry is not None and shapely.geometry.shape(geometry).equals(box)


def bands(model: str) -> Callable[[Any], bool]:
    return lambda got: tuple(got) == get_model_spec(model).bands


D_MASK = item_has(lambda d: d["id"] == f"{D}_cloudmask")  # D's mask is the one item published, under its first id

# what each setting of a run does where it acts, whichever entry point set it (command line, payload, Python)
ACTS: dict[str, tuple[Check, ...]] = {
    "output": (D_MASK,),
    "publish_api": (posted(),),
    "api_headers": (sent("api", API_KEY),),
    "api_token": (sent("api", ("Authorization", f"Bearer {TOKEN}")),),
    "resolution": (called("read", resolution=10), item_has(lambda d: d["properties"]["proj:shape"] == [8, 9])),
    "device": (called("device", device="cpu"), recorded("execution", device="cpu")),
    "model": (
        called("read", bands=bands("model_4b_l1c")),
        item_has(lambda d: d["properties"]["mlm:name"] == "model_4b_l1c"),
    ),
    "overwrite": (status(D="published"), D_MASK),
    "batch_size": (called("predict", batch_size=3), recorded("execution", batch_size=3)),
    "collection_id": (item_has(lambda d: d["collection"] == "my-masks"),),
    "api_retries": (posted(count=2),),
    "compile": (stopped_at("compile"), called("network", compile=True)),
    "precision": (
        called("network", precision="fp32"),
        recorded("settings", precision="fp32"),
        recorded("execution", precision="fp32"),
    ),
    "runtime": (
        called("network", runtime="torch"),
        recorded("execution", runtime="torch"),
        recorded("settings", runtime="torch"),
    ),
    "probabilities": (called("predict", with_probabilities=True), item_has(lambda d: "probabilities" in d["assets"])),
    "patch_size": (called("predict", patch_size=128), recorded("settings", patch_size=128)),
    "overlap": (called("predict", overlap=32), recorded("execution", overlap=32), recorded("settings", overlap=32)),
    "cloud_buffer": (called("buffers", cloud_buffer=40), recorded("settings", cloud_buffer=40)),
    "shadow_buffer": (called("buffers", shadow_buffer=40), recorded("settings", shadow_buffer=40)),
    "model_href": (item_has(lambda d: d["assets"]["model"]["href"].endswith("/weights/model_6b_l1c.onnx")),),
    "fail_fast": (status(D="failed", E="not_run"),),
    "write_report": (D_MASK, lambda r: not (Path(r.place.out) / RUNS_DIR).exists()),
    "limits": (called("read", limits=lambda lim: lim.max_pixels == 50), status(D="failed")),
    "clip": (called("read", aoi=same_area(D_WEST)), item_has(lambda d: d["id"].startswith(f"{D}_cloudmask-aoi-"))),
    "requester_pays": (s3_reads(lambda fs: fs.req_kw == {"RequestPayer": "requester"}),),
    "anon": (s3_reads(lambda fs: fs.anon is True),),
    "endpoint_url": (
        s3_reads(lambda fs: fs.client_kwargs.get("endpoint_url", "").startswith("http://127.0.0.1")),
        status(D="published"),
    ),
    "header_hosts": (sent("http.files", KEY), not_sent("http.items", KEY[0])),
    "headers": (sent("http.items", KEY), not_sent("http.files", KEY[0])),
    "modifier": (stopped_at("modify"),),
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One option: how it is given a value other than its default (`given`: the command's arguments, the
    payload's parameters or the RunConfig's fields, made from the Place), what that value does (`checks`),
    where a spy ends the run (`stop`), the fixtures the row needs and (payloads, Python) its source."""

    given: Callable[[Place], Any]
    checks: tuple[Check, ...]
    stop: str | None = None
    needs: tuple[str, ...] = ()
    source: str = "d"


Part = str | Callable[[Place], "str | list[str]"]


def cmd(*parts: Part) -> Callable[[Place], list[str]]:
    """A command line of fixed words and words made from the Place."""

    def given(p: Place) -> list[str]:
        words: list[str] = []
        for part in parts:
            value = part(p) if callable(part) else part
            words.extend(value if isinstance(value, list) else [value])
        return words

    return given


def run(*extra: Part, source: str = "d") -> Callable[[Place], list[str]]:
    return cmd("run", lambda p: p.sources(source), "-o", lambda p: p.out, *extra)


def api_url(p: Place) -> str:
    assert p.api is not None
    return p.api.url


def header(pair: tuple[str, str]) -> str:
    return f"{pair[0]}: {pair[1]}"


SEARCH = "read"  # search rows end the run at the first read: the search's result is what they check

RUN = {
    "sources": Row(run(source="l2a"), (found(F, G),), SEARCH),
    "output": Row(cmd("run", lambda p: p.sources("d"), "--output", lambda p: p.out), ACTS["output"]),
    "bbox": Row(run("--bbox", *F_BBOX, source="catalog"), (found(F),), SEARCH),
    "intersects": Row(run("--intersects", json.dumps(G_AREA), source="catalog"), (found(G),), SEARCH),
    "clip": Row(run("--bbox", *D_WEST, "--clip"), ACTS["clip"]),
    "datetime": Row(run("--datetime", "2022", source="catalog"), (found(D),), SEARCH),
    "max_cloud": Row(run("--max-cloud", "1", source="catalog"), (found(E),), SEARCH),
    "ids": Row(run("--ids", E, source="catalog"), (found(E),), SEARCH),
    "limit": Row(run("--limit", "1", source="catalog"), (found_count(1),), SEARCH),
    "max_items": Row(run("--max-items", "2", source="catalog"), (found_count(2),), SEARCH),
    "collection": Row(run("--collection", L2A, source="catalog"), (found(F, G),), SEARCH),
    "header": Row(run("--header", header(KEY), source="http"), ACTS["headers"], needs=("http",)),
    "header_host": Row(
        run("--header", header(KEY), "--header-host", lambda p: HttpSource.host(p.http.files), source="http"),
        ACTS["header_hosts"],
        needs=("http",),
    ),
    "modifier": Row(
        run("--modifier", "signing_standin:sign"),
        (*ACTS["modifier"], called("modify", modifier=lambda m: m is signing_standin.sign)),
        "modify",
    ),
    "publish_api": Row(run("--publish-api", api_url), ACTS["publish_api"], needs=("api",)),
    "api_header": Row(
        run("--publish-api", api_url, "--api-header", header(API_KEY)), ACTS["api_headers"], needs=("api",)
    ),
    "api_token": Row(run("--publish-api", api_url, "--api-token", TOKEN), ACTS["api_token"], needs=("api",)),
    "target_collection": Row(run("--target-collection", "my-masks"), ACTS["collection_id"]),
    "api_retries": Row(
        run("--publish-api", api_url, "--api-retries", "1"), ACTS["api_retries"], needs=("failing_api",)
    ),
    "resolution": Row(run("--resolution", "10"), ACTS["resolution"]),
    "device": Row(run("--device", "cpu"), ACTS["device"]),
    "runtime": Row(run("--runtime", "torch"), ACTS["runtime"]),
    "model": Row(run("--model", "model_4b_l1c"), ACTS["model"]),
    "batch_size": Row(run("--batch-size", "3"), ACTS["batch_size"]),
    "probabilities": Row(run("--probabilities"), ACTS["probabilities"]),
    "precision": Row(run("--precision", "fp32"), ACTS["precision"]),
    "compile_model": Row(run("--compile", "--runtime", "torch"), ACTS["compile"], "compile"),
    "patch_size": Row(run("--patch-size", "128"), ACTS["patch_size"]),
    "overlap": Row(run("--overlap", "32"), ACTS["overlap"]),
    "cloud_buffer": Row(run("--cloud-buffer", "40"), ACTS["cloud_buffer"]),
    "shadow_buffer": Row(run("--shadow-buffer", "40"), ACTS["shadow_buffer"]),
    "model_href": Row(run("--model-href", lambda p: p.weights or ""), ACTS["model_href"], needs=("weights",)),
    "overwrite": Row(run("--overwrite"), ACTS["overwrite"], needs=("published",)),
    "rerun_failed": Row(
        run("--rerun-failed", lambda p: p.report or "", source="catalog"), (found(E),), SEARCH, ("report",)
    ),
    "fail_fast": Row(run("--fail-fast", source="broken"), ACTS["fail_fast"], needs=("broken",)),
    "requester_pays": Row(run("--requester-pays", source="s3"), ACTS["requester_pays"], needs=("s3",)),
    "anon": Row(run("--anon", source="s3"), ACTS["anon"], needs=("s3",)),
    "endpoint_url": Row(
        run("--endpoint-url", lambda p: p.endpoint or "", source="s3"),
        ACTS["endpoint_url"],
        needs=("s3", "endpoint_from_option_only"),
    ),
    "print_items": Row(
        run("--print-items"), (lambda r: [f["id"] for f in json.loads(r.stdout)["features"]] == [f"{D}_cloudmask"],)
    ),
}


def plan_dir(p: Place) -> str:
    return str(p.tmp / "plan")


def plan(*extra: Part, source: str = "de") -> Callable[[Place], list[str]]:
    """`plan` of D and E in two shards (shard 0: E, shard 1: D), masks into the output folder."""
    return cmd("plan", lambda p: p.sources(source), "-o", plan_dir, "--masks", lambda p: p.out, "-n", "2", *extra)


def shard_payloads(r: Run) -> list[dict[str, Any]]:
    folder = Path(plan_dir(r.place))
    assert (folder / "manifest.json").is_file(), f"no plan (exit {r.exit_code}): {r.output[-2000:]}"
    manifest = json.loads((folder / "manifest.json").read_text())
    return [json.loads((folder / s["href"]).read_text()) for s in manifest["shards"]]


def planned(*ids: str) -> Check:
    def check(r: Run) -> None:
        assert {f["id"] for payload in shard_payloads(r) for f in payload["features"]} == set(ids)

    return check


def planned_count(n: int) -> Check:
    def check(r: Run) -> None:
        assert sum(len(payload["features"]) for payload in shard_payloads(r)) == n

    return check


def every_shard(test: Callable[[dict[str, Any], Place], bool]) -> Check:
    """Every shard payload passes `test` (of its tasks.clouds2mask parameters and the Place)."""

    def check(r: Run) -> None:
        payloads = shard_payloads(r)
        for payload in payloads:
            params = payload["process"][0]["tasks"]["clouds2mask"]
            assert test(params, r.place), f"{payload['id']}: {params}"

    return check


def every_shard_holds(**expected: Any) -> Check:
    return every_shard(lambda params, _: {k: params.get(k) for k in expected} == expected)


def no_secret_in_plan(r: Run) -> None:
    texts = [path.read_text() for path in Path(plan_dir(r.place)).rglob("*.json")]
    assert texts and not any(KEY[1] in text for text in texts)


EXAMPLE_API, EXAMPLE_S3 = "https://stac.example.test/api", "https://s3.example.test"

PLAN = {
    "sources": Row(plan(source="l2a"), (planned(F, G),)),
    "output": Row(plan(), (lambda r: len(shard_payloads(r)) == 2,)),
    "masks": Row(
        plan(),
        (
            lambda r: (
                {p["process"][0]["upload_options"]["path_template"] for p in shard_payloads(r)}
                == {f"{r.place.out}/${{collection}}/${{id}}"}
            ),
        ),
    ),
    "shards": Row(plan(), (lambda r: [[f["id"] for f in p["features"]] for p in shard_payloads(r)] == [[E], [D]],)),
    "bbox": Row(plan("--bbox", *F_BBOX, source="catalog"), (planned(F),)),
    "intersects": Row(plan("--intersects", json.dumps(G_AREA), source="catalog"), (planned(G),)),
    "clip": Row(
        plan("--bbox", *D_WEST, "--clip"), (planned(D, E), every_shard(lambda q, _: same_area(D_WEST)(q.get("clip"))))
    ),
    "datetime": Row(plan("--datetime", "2022", source="catalog"), (planned(D),)),
    "max_cloud": Row(plan("--max-cloud", "1", source="catalog"), (planned(E),)),
    "ids": Row(plan("--ids", E, source="catalog"), (planned(E),)),
    "limit": Row(plan("--limit", "1", source="catalog"), (planned_count(1),)),
    "max_items": Row(plan("--max-items", "2", source="catalog"), (planned_count(2),)),
    "collection": Row(plan("--collection", L2A, source="catalog"), (planned(F, G),)),
    "header": Row(
        plan("--header", header(KEY), source="http"),
        (
            sent("http.items", KEY),
            every_shard(lambda q, p: q.get("header_hosts") == [HttpSource.host(p.http.items)]),
            no_secret_in_plan,
        ),
        needs=("http",),
    ),
    "header_host": Row(
        plan("--header", header(KEY), "--header-host", lambda p: HttpSource.host(p.http.files), source="http"),
        (every_shard(lambda q, p: q.get("header_hosts") == [HttpSource.host(p.http.files)]), no_secret_in_plan),
        needs=("http",),
    ),
    "modifier": Row(plan("--modifier", "planetary-computer"), (every_shard_holds(modifier="planetary-computer"),)),
    "resolution": Row(plan("--resolution", "10"), (every_shard_holds(resolution=10),)),
    "model": Row(plan("--model", "model_4b_l1c"), (every_shard_holds(model="model_4b_l1c"),)),
    "batch_size": Row(plan("--batch-size", "3"), (every_shard_holds(batch_size=3),)),
    "patch_size": Row(plan("--patch-size", "128"), (every_shard_holds(patch_size=128),)),
    "overlap": Row(plan("--overlap", "32"), (every_shard_holds(overlap=32),)),
    "cloud_buffer": Row(plan("--cloud-buffer", "40"), (every_shard_holds(cloud_buffer=40),)),
    "shadow_buffer": Row(plan("--shadow-buffer", "40"), (every_shard_holds(shadow_buffer=40),)),
    "model_href": Row(
        plan("--model-href", lambda p: p.weights or ""),
        (every_shard(lambda q, p: q.get("model_href") == p.weights),),
        needs=("weights",),
    ),
    "publish_api": Row(plan("--publish-api", EXAMPLE_API), (every_shard_holds(publish_api=EXAMPLE_API),)),
    "requester_pays": Row(plan("--requester-pays"), (every_shard_holds(requester_pays=True),)),
    "anon": Row(plan("--anon"), (every_shard_holds(anon=True),)),
    "endpoint_url": Row(plan("--endpoint-url", EXAMPLE_S3), (every_shard_holds(endpoint_url=EXAMPLE_S3),)),
    "overwrite": Row(
        plan("--resolution", "10", "--overwrite"), (every_shard_holds(resolution=10),), needs=("two_shards",)
    ),
}


def shard(*extra: Part) -> Callable[[Place], list[str]]:
    return cmd("run-shard", lambda p: p.plan or "", *extra)


RUN_SHARD = {
    "plan_url": Row(shard("--index", "1"), ACTS["output"], needs=("two_shards",)),
    "index": Row(shard("--index", "0"), (item_has(lambda d: d["id"] == f"{E}_cloudmask"),), needs=("two_shards",)),
    "output_payload": Row(
        shard("--index", "1", "--output-payload", lambda p: str(p.tmp / "out.json")),
        (
            lambda r: (
                [f["id"] for f in json.loads((r.place.tmp / "out.json").read_text())["features"]] == [f"{D}_cloudmask"]
            ),
        ),
        needs=("two_shards",),
    ),
    "device": Row(shard("--index", "1", "--device", "cpu"), ACTS["device"], needs=("two_shards",)),
}


def payload_path(p: Place) -> str:
    return payload_file(p, p.features("d"), {})


RUN_PAYLOAD = {
    "payload_url": Row(cmd("run-payload", payload_path), ACTS["output"]),
    "output": Row(
        cmd("run-payload", payload_path, "--output", lambda p: str(p.tmp / "out.json")),
        (
            lambda r: (
                [f["id"] for f in json.loads((r.place.tmp / "out.json").read_text())["features"]] == [f"{D}_cloudmask"]
            ),
        ),
    ),
    "device": Row(cmd("run-payload", payload_path, "--device", "cpu"), ACTS["device"]),
}


def status_json(r: Run) -> dict[str, Any]:
    return json.loads(r.stdout)


STATUS = {
    "plan_url": Row(
        cmd("status", lambda p: p.plan or "", "--json"),
        (
            lambda r: (
                status_json(r)["manifest"] == f"{r.place.plan}/manifest.json" and status_json(r)["missing"] == [0, 1]
            ),
        ),
        needs=("two_shards",),
    ),
    "as_json": Row(
        cmd("status", lambda p: p.plan or "", "--json"),
        (lambda r: len(status_json(r)["shards"]) == 2,),
        needs=("two_shards",),
    ),
}

MODELS = {
    "as_json": Row(
        cmd("models", "--json"),
        (lambda r: [m["name"] for m in json.loads(r.stdout)] == [m.name for m in stac_clouds2mask.list_models()],),
    ),
}

MAIN = {  # the options before the command
    "version": Row(cmd("--version"), (lambda r: r.stdout.strip() == stac_clouds2mask.__version__,)),
    "verbose": Row(
        cmd("-v", run()),
        (lambda r: f"INFO stac_clouds2mask.runner: item {D}: model model_6b_l1c at 20 m" in r.output,),
    ),
    "quiet": Row(cmd("-q", run()), (lambda r: "1 published" in r.output and f"read {D}" not in r.output,)),
}


def cube_path(p: Place) -> str:
    return str(p.tmp / "cube.nc")


def stack(*extra: Part, source: str = "de") -> Callable[[Place], list[str]]:
    return cmd("stack", lambda p: p.sources(source), "--masks", lambda p: p.masks or "", "-o", cube_path, *extra)


def cube(r: Run) -> xr.Dataset:
    assert r.exit_code == 0, r.output[-2000:]
    with xr.open_dataset(cube_path(r.place)) as ds:
        return ds.load()


def cube_ids(*ids: str) -> Check:
    def check(r: Run) -> None:
        assert sorted(cube(r)["id"].values.tolist()) == sorted(ids)

    return check


def kept_only(classes: tuple[int, ...]) -> Check:
    """The cube is NaN exactly where the mask's class is not one of these (G: no nodata), and says which."""

    def check(r: Run) -> None:
        ds = cube(r)
        assert list(ds.attrs["kept_classes"]) == list(classes)
        kept = ds["cloudmask"].isin(list(classes))
        assert bool(kept.any()) and not bool(kept.all())
        assert bool((ds["masked"].isnull().any("band") == ~kept).all())

    return check


def stack_opened(test: Callable[[Any, Place], bool]) -> Check:
    """Every file stackstac's reader opened passes `test` (of the reader and the Place)."""

    def check(r: Run) -> None:
        readers = [c["self"] for c in r.spies.calls["stack_open"]]
        assert readers and all(test(reader, r.place) for reader in readers), r.output[-2000:]

    return check


STACK = {
    "sources": Row(stack(source="e-item"), (cube_ids(E),), needs=("masks",)),
    "masks": Row(
        stack(),
        (
            stack_opened(lambda reader, p: True),
            lambda r: (
                {
                    Path(c["self"].url).parent.parent.parent
                    for c in r.spies.calls["stack_open"]
                    if "cloudmask" in c["self"].url
                }
                == {Path(r.place.masks).parent}
            ),
        ),
        needs=("masks",),
    ),
    "assets": Row(
        stack("--assets", "red,nir"), (lambda r: cube(r)["band"].values.tolist() == ["red", "nir"],), needs=("masks",)
    ),
    "ids": Row(stack("--ids", E, source="catalog"), (cube_ids(E),), needs=("masks",)),
    "bbox": Row(stack("--bbox", *E_ONLY, source="catalog"), (cube_ids(E),), needs=("masks",)),
    "datetime": Row(stack("--datetime", "2022", source="catalog"), (cube_ids(D),), needs=("masks",)),
    "collection": Row(
        stack("--collection", L1C, "--datetime", "2020/2023", source="catalog"), (cube_ids(D, E),), needs=("masks",)
    ),
    "keep": Row(stack("--keep", "1,2", source="g"), (kept_only((1, 2)),), needs=("masks",)),
    "resolution": Row(stack("--resolution", "60"), (lambda r: cube(r).attrs["resolution"] == 60,), needs=("masks",)),
    "epsg": Row(
        stack("--epsg", "32636", source="fg"),  # F's CRS: G, wholly outside F's grid, is left out
        (lambda r: cube(r).attrs["crs"] == "EPSG:32636", cube_ids(F)),
        needs=("masks",),
    ),
    "output": Row(stack(), (lambda r: set(cube(r).data_vars) == {"masked", "cloudmask"},), needs=("masks",)),
    "anon": Row(
        stack("--anon", source="s3"),
        (cube_ids(D), stack_opened(lambda reader, _: reader.gdal_env.always.options["AWS_NO_SIGN_REQUEST"] == "YES")),
        needs=("s3_masks",),
    ),
    "endpoint_url": Row(
        stack("--endpoint-url", lambda p: p.endpoint or "", source="s3"),
        (cube_ids(D), lambda r: bool(cube(r)["masked"].notnull().any())),
        needs=("s3_masks", "endpoint_from_option_only"),
    ),
}

COMMANDS: dict[str, dict[str, Row]] = {
    "": MAIN,
    "run": RUN,
    "plan": PLAN,
    "run-shard": RUN_SHARD,
    "run-payload": RUN_PAYLOAD,
    "status": STATUS,
    "models": MODELS,
    "stack": STACK,
}


def command_options(command: str) -> set[str]:
    """The parameters of a command as typer declares them (the app's callback for "")."""
    group = typer.main.get_command(app)
    return {p.name for p in (group if command == "" else group.commands[command]).params}


def rows_of(tables: dict[str, dict[str, Row]]) -> list[tuple[str, str]]:
    return [(name, key) for name, table in tables.items() for key in table]


def outcome(r: Run, row: Row) -> None:
    for check in row.checks:
        result = check(r)  # None from a check that asserts, a truth value from one written as an expression
        if result is not None and not result:
            pytest.fail(f"{check} is false for exit {r.exit_code}: {r.output[-2000:]}")


def given(**values: Any) -> Callable[[Place], dict[str, Any]]:
    """Payload parameters or RunConfig fields; a callable value is made from the Place."""
    return lambda p: {k: v(p) if callable(v) else v for k, v in values.items()}


D_WEST_AREA = shapely.geometry.mapping(shapely.geometry.box(*map(float, D_WEST)))

# the RunConfig fields a payload names as they are (JSON values), in both tables below
FIELDS = {
    "resolution": Row(given(resolution=10), ACTS["resolution"]),
    "model": Row(given(model="model_4b_l1c"), ACTS["model"]),
    "device": Row(given(device="cpu"), ACTS["device"]),
    "overwrite": Row(given(overwrite=True), ACTS["overwrite"], needs=("published",)),
    "batch_size": Row(given(batch_size=3), ACTS["batch_size"]),
    "publish_api": Row(given(publish_api=api_url), ACTS["publish_api"], needs=("api",)),
    "collection_id": Row(given(collection_id="my-masks"), ACTS["collection_id"]),
    "api_retries": Row(given(publish_api=api_url, api_retries=1), ACTS["api_retries"], needs=("failing_api",)),
    "compile": Row(given(compile=True, runtime="torch"), ACTS["compile"], "compile"),
    "precision": Row(given(precision="fp32"), ACTS["precision"]),
    "runtime": Row(given(runtime="torch"), ACTS["runtime"]),
    "probabilities": Row(given(probabilities=True), ACTS["probabilities"]),
    "patch_size": Row(given(patch_size=128), ACTS["patch_size"]),
    "overlap": Row(given(overlap=32), ACTS["overlap"]),
    "cloud_buffer": Row(given(cloud_buffer=40), ACTS["cloud_buffer"]),
    "shadow_buffer": Row(given(shadow_buffer=40), ACTS["shadow_buffer"]),
    "model_href": Row(given(model_href=lambda p: p.weights), ACTS["model_href"], needs=("weights",)),
    "fail_fast": Row(given(fail_fast=True), ACTS["fail_fast"], needs=("broken",), source="broken"),
    "write_report": Row(given(write_report=False), ACTS["write_report"]),
    "clip": Row(given(clip=D_WEST_AREA), ACTS["clip"]),
}

PAYLOAD = {
    **FIELDS,
    "limits": Row(given(limits={"max_pixels": 50}), ACTS["limits"]),
    "requester_pays": Row(given(requester_pays=True), ACTS["requester_pays"], needs=("s3",), source="s3"),
    "anon": Row(given(anon=True), ACTS["anon"], needs=("s3",), source="s3"),
    "endpoint_url": Row(
        given(endpoint_url=lambda p: p.endpoint),
        ACTS["endpoint_url"],
        needs=("s3", "endpoint_from_option_only"),
        source="s3",
    ),
    "header_hosts": Row(
        given(header_hosts=lambda p: [HttpSource.host(p.http.files)]),
        ACTS["header_hosts"],
        needs=("http", "source_headers"),
        source="http",
    ),
    "modifier": Row(
        given(modifier="planetary-computer"),
        (*ACTS["modifier"], called("modify", modifier=lambda m: m.__name__ == "sign_inplace")),
        "modify",
    ),
}

CONFIG = {
    **FIELDS,
    "output": Row(
        given(output=lambda p: str(p.tmp / "elsewhere")),
        (lambda r: f"{D}_cloudmask" in r.items(str(r.place.tmp / "elsewhere")),),
    ),
    "api_headers": Row(given(publish_api=api_url, api_headers=dict([API_KEY])), ACTS["api_headers"], needs=("api",)),
    "options": Row(
        given(options=StorageOptions(modifier=signing_standin.sign)),
        (*ACTS["modifier"], called("modify", modifier=lambda m: m is signing_standin.sign)),
        "modify",
    ),
    "limits": Row(given(limits=Limits(max_pixels=50)), ACTS["limits"]),
}


def d_item_bytes(p: Place) -> int:
    return (p.tmp / "d" / f"{D}.json").stat().st_size


# every field of RunConfig.limits (a payload may lower them), from the Python API
LIMITS = {
    "max_pixels": Row(given(limits=Limits(max_pixels=50)), (failed("larger than the limit of 50 px"),)),
    "item_seconds": Row(given(limits=Limits(item_seconds=1e-3)), (failed("STAC_CLOUDS2MASK_ITEM_SECONDS"),)),
    "max_depth": Row(
        given(limits=Limits(max_depth=1)), (refused("nested deeper than 1 levels"),), source="nested", needs=("nested",)
    ),
    "max_documents": Row(given(limits=Limits(max_documents=3)), (refused("more than 3 catalogs"),), source="catalog"),
    "api_seconds": Row(
        given(publish_api=api_url, limits=Limits(api_seconds=1)),
        (failed("STAC_CLOUDS2MASK_API_SECONDS"),),
        needs=("slow_api",),
    ),
    "max_body_bytes": Row(  # D's item is read (the search takes it), its larger mask item is not written
        given(probabilities=True, limits=lambda p: Limits(max_body_bytes=d_item_bytes(p) + 100)),
        (failed("STAC_CLOUDS2MASK_MAX_BODY_BYTES"),),
        source="compact-d",
        needs=("compact_d",),
    ),
    "max_versions": Row(
        given(limits=Limits(max_versions=1)), (failed("more than 1 published versions"),), needs=("published",)
    ),
    "max_product_members": Row(
        given(limits=Limits(max_product_members=3)), (refused("more than 3"),), source="product", needs=("product",)
    ),
    "max_product_bytes": Row(
        given(limits=Limits(max_product_bytes=1000)), (refused("more than 1000"),), source="product", needs=("product",)
    ),
}


def test_every_option_parameter_and_field_has_a_row():
    """A new option of any command, payload parameter or RunConfig field fails here until it has a row."""
    assert set(COMMANDS) == {"", *typer.main.get_command(app).commands}
    for command, rows in COMMANDS.items():
        assert set(rows) == command_options(command), command or "(before the command)"
    assert set(PAYLOAD) == set(task.PARAMETERS)
    assert set(CONFIG) == {f.name for f in dataclasses.fields(RunConfig)}
    assert set(LIMITS) == {f.name for f in dataclasses.fields(Limits)}


def needed(request: pytest.FixtureRequest, row: Row) -> Row:
    for fixture in row.needs:
        request.getfixturevalue(fixture)
    return row


@pytest.mark.parametrize("command,option", rows_of(COMMANDS))
def test_each_option_of_each_command_arrives_where_it_acts(command, option, request, spies, place):
    row = needed(request, COMMANDS[command][option])
    outcome(invoke(spies, place, row.given(place), row.stop), row)


@pytest.mark.parametrize("name", PAYLOAD)
def test_each_payload_parameter_arrives_where_it_acts(name, request, spies, place):
    row = needed(request, PAYLOAD[name])
    path = payload_file(place, place.features(row.source), row.given(place))
    outcome(invoke(spies, place, ["run-payload", path], row.stop), row)


@pytest.mark.parametrize("table,name", rows_of({"config": CONFIG, "limits": LIMITS}))
def test_each_run_config_field_and_limit_arrives_where_it_acts(table, name, request, spies, place):
    row = needed(request, {"config": CONFIG, "limits": LIMITS}[table][name])
    outcome(python_run(spies, place, place.sources(row.source), row.given(place), row.stop), row)


# ------------------------------------------------------------------------------------------
# the recorded settings: what a rerun compares
# ------------------------------------------------------------------------------------------

# RunConfig fields that change the mask: recorded in its settings, so a rerun with this value publishes anew
CHANGES_THE_MASK: dict[str, Any] = {
    "resolution": 10,
    "model": "model_4b_l1c",
    "precision": "fp32",
    "runtime": "torch",
    "probabilities": True,
    "patch_size": 128,
    "overlap": 32,
    "cloud_buffer": 40.0,
    "shadow_buffer": 40.0,
    "clip": D_WEST_AREA,  # the AOI's own item
}
# fields that leave the mask as it is (how the run runs, or what the item links to): a rerun with this value skips
SAME_MASK: dict[str, Any] = {
    "device": "cpu",  # what ran is recorded beside the settings (clouds2mask:execution)
    "batch_size": 3,
    "compile": True,
    "api_retries": 1,
    "fail_fast": True,
    "write_report": False,
    "limits": Limits(item_seconds=1800),
    "model_href": "weights",  # the same weights, byte for byte (publish/shared_weights.py)
    "options": StorageOptions(requester_pays=True),
    "api_headers": dict([API_KEY]),
}
# fields that say where masks go, or to replace them: a run with another value is no rerun of the same mask
ELSEWHERE = {"output", "collection_id", "publish_api", "overwrite"}


def test_every_field_either_changes_the_recorded_settings_or_leaves_the_mask_as_it_is(sample_catalog):
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert {*CHANGES_THE_MASK, *SAME_MASK, *ELSEWHERE} == fields
    assert len(CHANGES_THE_MASK) + len(SAME_MASK) + len(ELSEWHERE) == len(fields)
    [item] = stac_clouds2mask.search_all([str(sample_catalog)], SearchFilters(ids=(D,)))
    base = RunConfig(output="masks")
    recorded = expected_settings(item, base)
    for name, value in {**CHANGES_THE_MASK, **SAME_MASK}.items():
        changed = expected_settings(item, dataclasses.replace(base, **{name: value}))
        assert (changed != recorded) == (name in CHANGES_THE_MASK), name


def test_a_rerun_with_a_setting_changed_publishes_and_with_any_other_field_changed_skips(
    published_d, place, spies, weights
):
    """On D's published mask: every other value of a field of SAME_MASK skips (before any model is opened), every
    other value of a field of CHANGES_THE_MASK publishes (a new version, or the AOI's own item)."""
    shutil.copytree(published_d, place.out, copy_function=os.link)
    outcomes = {}
    for name, value in {**SAME_MASK, **CHANGES_THE_MASK}.items():
        value = weights if name == "model_href" else value
        spies.calls.clear()
        report = stac_clouds2mask.run([place.catalog], RunConfig(place.out, **{name: value}), SearchFilters(ids=(D,)))
        outcomes[name] = report.outcomes[0].status
        if name in SAME_MASK:
            assert not spies.calls["network"], f"{name}: a skipped item opened a model"
    assert outcomes == {name: "skipped" for name in SAME_MASK} | {name: "published" for name in CHANGES_THE_MASK}
    assert len(Run(place, spies).items()) == 1 + len(CHANGES_THE_MASK)
