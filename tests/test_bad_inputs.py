"""The bad-input table: every row is one bad input with its expected exit code or error class and a
message fragment. Nothing crashes with a traceback (CliRunner with catch_exceptions=False), nothing is
published for a bad item, and the good items of the same batch are still published.

Invocation rows (exit 2) run the CLI once each and must write nothing. Per-item rows share one batch
(an ItemCollection of bad items around two good ones) and are checked against the run report.
Rule for an all-nodata scene: it is published, every pixel 255, with valid 0 %.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import item_dict
from rasterio.warp import calculate_default_transform, reproject
from typer.testing import CliRunner

from stac_clouds2mask import EmptySearchError, OptionError, RunConfig, SearchFilters, StorageOptions, mask_array
from stac_clouds2mask import run as run_pipeline
from stac_clouds2mask.cli import app
from stac_clouds2mask.report import RUNS_DIR

B = "ukis-csmask-s2-l1c-512-labelled"
C = "s2a-t31tdh-20180101-l1c-b01-only"
D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
E = "s2b-t32upc-20200406-l1c-n0209-10x10"
F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
SIX = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    """The words of an output, without the frame of the panel a usage error is shown in."""
    return " ".join(text.replace("│", " ").split())


def published_items(out: Path) -> dict[str, dict]:
    return {
        d["properties"]["clouds2mask:source_item"]: d
        for d in (json.loads(p.read_text()) for p in out.glob("*/*/*.json"))
    }


def run_report(out: Path) -> dict:
    [path] = (out / RUNS_DIR).glob("run-*.json")
    return json.loads(path.read_text())


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------
# bad invocations: exit 2 (3 for a search that finds nothing), one clear line, nothing written
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sample_catalog) -> dict[str, str]:
    """Bad AOI and source files, by placeholder name."""
    d = tmp_path_factory.mktemp("inputs")
    files = {
        "bowtie": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
        "no_coords": {"type": "Polygon"},
        "json_list": [1, 2, 3],
        "unknown_type": {"type": "Banana", "id": "x"},
        "bad_feature": {"type": "FeatureCollection", "features": [{"type": "Feature"}]},
        "no_features": {"type": "FeatureCollection", "features": "none"},
    }
    paths = {"catalog": str(sample_catalog), "missing": str(d / "missing.json"), "dir": str(d)}
    for name, content in files.items():
        (d / f"{name}.json").write_text(json.dumps(content))
        paths[name] = str(d / f"{name}.json")
    (d / "not_json.json").write_text("this is { not json")
    paths["not_json"] = str(d / "not_json.json")
    (d / "binary.json").write_bytes(bytes(range(256)))
    paths["binary"] = str(d / "binary.json")
    return paths


CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")

# (row id, source placeholder, extra args, expected exit code, message fragment)
INVOCATIONS = [
    ("bbox-order", "catalog", ["--bbox", "10", "52", "11", "51"], 2, "south 52.0 above north 51.0"),
    ("bbox-lon-range", "catalog", ["--bbox", "0", "0", "190", "10"], 2, "outside longitude -180..180"),
    (
        "bbox-lat-range",
        "catalog",
        ["--bbox", "0", "0", "10", "95"],
        2,
        "outside longitude -180..180 / latitude -90..90",
    ),
    ("bbox-count", "catalog", ["--bbox", "1", "2", "3"], 2, "requires 4 arguments"),
    ("bbox-nan", "catalog", ["--bbox", "nan", "0", "1", "1"], 2, "four finite numbers"),
    ("bbox-not-number", "catalog", ["--bbox", "a", "0", "1", "1"], 2, "Invalid value for '--bbox'"),
    ("datetime-malformed", "catalog", ["--datetime", "2024-13-01"], 2, "not RFC 3339"),
    ("datetime-feb-30", "catalog", ["--datetime", "2024-02-30/2024-03-01"], 2, "not RFC 3339"),
    ("datetime-reversed", "catalog", ["--datetime", "2024-06-30/2024-06-01"], 2, "starts after it ends"),
    ("datetime-open-both-ends", "catalog", ["--datetime", "../.."], 2, "open at both ends"),
    (
        "datetime-three-parts",
        "catalog",
        ["--datetime", "2024-01-01/2024-02-01/2024-03-01"],
        2,
        "must be an instant or 'start/end'",
    ),
    ("aoi-self-intersecting", "catalog", ["--intersects", "{bowtie}"], 2, "geometry is invalid: Self-intersection"),
    ("aoi-not-json", "catalog", ["--intersects", "{not_json}"], 2, "is not JSON"),
    ("aoi-missing-file", "catalog", ["--intersects", "{missing}"], 2, "--intersects file not found"),
    ("aoi-no-coordinates", "catalog", ["--intersects", "{no_coords}"], 2, "is not a GeoJSON geometry"),
    ("aoi-json-list", "catalog", ["--intersects", "{json_list}"], 2, "holds a JSON list"),
    ("unknown-model", "catalog", ["--model", "model_9b"], 2, "unknown model"),
    ("bad-resolution", "catalog", ["--resolution", "15"], 2, "--resolution must be one of 10, 20, 30, 60"),
    pytest.param(
        "cuda-without-cuda",
        "catalog",
        ["--device", "cuda"],
        2,
        "CUDA is not available",
        marks=CUDA,
        id="cuda-without-cuda",
    ),
    (
        "unknown-device",
        "catalog",
        ["--device", "banana"],
        2,
        "unknown device 'banana': use auto, cpu, cuda, cuda:N or mps",
    ),
    ("gpu-is-no-device", "catalog", ["--device", "gpu"], 2, "unknown device 'gpu': use auto, cpu, cuda, cuda:N or mps"),
    ("batch-size-zero", "catalog", ["--batch-size", "0"], 2, "--batch-size must be at least 1, got 0"),
    pytest.param(
        "mps-without-mps",
        "catalog",
        ["--device", "mps"],
        2,
        "Apple's MPS is not available here",
        marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is present here"),
        id="mps-without-mps",
    ),
    ("patch-size-not-lattice", "catalog", ["--patch-size", "100"], 2, "--patch-size must be a multiple of 32"),
    ("patch-size-too-big", "catalog", ["--patch-size", "4096"], 2, "from 64 to 2048 px, got 4096"),
    ("overlap-not-lattice", "catalog", ["--overlap", "50"], 2, "--overlap must be a multiple of 32"),
    (
        "overlap-over-half-patch",
        "catalog",
        ["--patch-size", "256", "--overlap", "160"],
        2,
        "--overlap must be a multiple of 32 from 0 to 128 px (half a 256 px patch), got 160",
    ),
    ("cloud-buffer-negative", "catalog", ["--cloud-buffer", "-10"], 2, "--cloud-buffer must be between 0 and 2000 m"),
    ("shadow-buffer-nan", "catalog", ["--shadow-buffer", "nan"], 2, "--shadow-buffer must be between 0 and 2000 m"),
    ("model-href-empty", "catalog", ["--model-href", " "], 2, "--model-href must not be empty"),
    ("unknown-precision", "catalog", ["--precision", "int8"], 2, "--precision must be one of auto, fp32, bf16, fp16"),
    ("unknown-runtime", "catalog", ["--runtime", "onnx"], 2, "--runtime must be one of auto, openvino, torch"),
    (
        "api-header-no-colon",
        "catalog",
        ["--publish-api", "http://127.0.0.1:9", "--api-header", "Authorization Bearer x"],
        2,
        "--api-header must look like 'Name: value'",
    ),
    (
        "api-header-bad-name",
        "catalog",
        ["--publish-api", "http://127.0.0.1:9", "--api-header", "Bad Name: x"],
        2,
        "is not a valid HTTP header name",
    ),
    ("target-collection-traversal", "catalog", ["--target-collection", "../../x"], 2, "must be a single path segment"),
    ("output-empty", "catalog", ["--output", ""], 2, "--output must not be empty"),
    ("output-unknown-protocol", "catalog", ["--output", "foo://bar"], 2, "Protocol not known: foo"),
    ("max-cloud-range", "catalog", ["--max-cloud", "120"], 2, "between 0 and 100"),
    ("limit-zero", "catalog", ["--limit", "0"], 2, "--limit must be at least 1"),
    ("max-items-zero", "catalog", ["--max-items", "0"], 2, "--max-items must be at least 1"),
    ("page-too-large", "catalog", ["--max-items", "9", "--limit", "10001"], 2, "--limit is the page size, at most"),
    ("datetime-month-13", "catalog", ["--datetime", "2024-13"], 2, "--datetime '2024-13' is not RFC 3339"),
    ("aoi-inline-not-json", "catalog", ["--intersects", "[oops"], 2, "--intersects is not JSON"),
    ("header-no-colon", "catalog", ["--header", "X-Api-Key secret"], 2, "--header must look like 'Name: value'"),
    ("header-bad-name", "catalog", ["--header", "Bad Name: x"], 2, "--header name 'Bad Name' is not a valid"),
    ("header-without-host", "catalog", ["--header", "X-Api-Key: k"], 2, "--header-host must name the hosts"),
    ("modifier-unknown-module", "catalog", ["--modifier", "no_such_module:f"], 2, "--modifier 'no_such_module:f'"),
    ("modifier-no-function", "catalog", ["--modifier", "json:no_such"], 2, "the module 'json' has no 'no_such'"),
    ("modifier-not-a-path", "catalog", ["--modifier", "signer"], 2, "is neither a named modifier"),
    ("log-level-unknown", "catalog", [], 2, "STAC_CLOUDS2MASK_LOG_LEVEL='LOUD' is not a log level"),
    ("source-unknown-type", "unknown_type", [], 2, "is not a STAC Catalog, Collection, Item or ItemCollection"),
    ("source-missing", "missing", [], 2, "STAC source not found"),
    ("source-not-json", "not_json", [], 2, "is not JSON"),
    ("source-binary", "binary", [], 2, "is not JSON"),
    ("source-json-list", "json_list", [], 2, "holds a JSON list"),
    ("source-directory", "dir", [], 2, "cannot read the STAC source"),
    ("source-bad-feature", "bad_feature", [], 2, "feature 0 of"),
    ("source-features-not-list", "no_features", [], 2, "without a 'features' list"),
    ("flag-given-a-value", "catalog", ["--overwrite", "true"], 2, "boolean options are flags and take no value"),
    # checked once before any item: the output and the STAC API
    ("output-is-a-file", "catalog", ["--output", "{not_json}"], 2, "not_json.json is a file, not a folder"),
    ("output-under-a-file", "catalog", ["--output", "{not_json}/masks"], 2, "is a file: the folder"),
    (
        "output-s3-unreachable",
        "catalog",
        ["--output", "s3://nope/masks", "--endpoint-url", "http://127.0.0.1:9"],
        2,
        "--output s3://nope/masks: s3://nope/masks cannot be reached at http://127.0.0.1:9",
    ),
    (
        "publish-api-unreachable",
        "catalog",
        ["--publish-api", "http://127.0.0.1:9"],
        2,
        "--publish-api: STAC API http://127.0.0.1:9 unreachable",
    ),
    # searches that find nothing: exit 3, the sources and filters named
    ("unknown-id", "catalog", ["--ids", "no-such-item"], 3, "no item found in {catalog} for --ids no-such-item"),
    ("unknown-collection", "catalog", ["-c", "nope"], 3, "no item found in {catalog} for --collection nope"),
    (
        "dates-without-data",
        "catalog",
        ["--datetime", "1990-01-01/1990-12-31"],
        3,
        "no item found in {catalog} for --datetime 1990-01-01/1990-12-31",
    ),
]


@pytest.mark.parametrize(
    "row, source, args, code, fragment", [r if hasattr(r, "marks") else pytest.param(*r, id=r[0]) for r in INVOCATIONS]
)
def test_bad_invocation(inputs, tmp_path, monkeypatch, row, source, args, code, fragment):
    out = tmp_path / "o"
    if row == "log-level-unknown":
        monkeypatch.setenv("STAC_CLOUDS2MASK_LOG_LEVEL", "loud")
    result = invoke("run", inputs[source], "--output", str(out), *[a.format(**inputs) for a in args])
    text = flat(result.output)
    assert result.exit_code == code, text
    assert fragment.format(**inputs) in text, text
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing written, not even a run report


def test_antimeridian_bbox_is_accepted(sample_catalog, tmp_path):
    """W > E is a bbox across the antimeridian, not an error (none of the samples lies there: exit 3, no item)."""
    result = invoke("run", str(sample_catalog), "--output", str(tmp_path / "o"), "--bbox", "170", "-10", "-170", "10")
    assert result.exit_code == 3, result.output
    assert "no item found" in flat(result.output) and "--bbox 170 -10 -170 10" in flat(result.output)


# ------------------------------------------------------------------------------------------
# bad items: each fails alone (exit 1) with its error in the run report; the good ones publish
# ------------------------------------------------------------------------------------------


def _derived_files(data: Path, d: Path) -> dict[str, Path]:
    """A truncated COG, random bytes, a band of E reprojected to EPSG:32633, all-zero copies of E's bands."""
    src = data / E
    blue = (src / "B02.tif").read_bytes()
    files = {"truncated": d / "truncated.tif", "random": d / "random.tif", "other_crs": d / "B03_32633.tif"}
    files["truncated"].write_bytes(blue[: int(len(blue) * 0.8)])
    files["random"].write_bytes(np.random.default_rng(7).bytes(4096))
    with rasterio.open(src / "B03.tif") as ds:
        transform, width, height = calculate_default_transform(ds.crs, "EPSG:32633", ds.width, ds.height, *ds.bounds)
        profile = {**ds.profile, "crs": "EPSG:32633", "transform": transform, "width": width, "height": height}
        for k in ("blockxsize", "blockysize", "tiled"):
            profile.pop(k, None)
        with rasterio.open(files["other_crs"], "w", **profile) as dst:
            reproject(rasterio.band(ds, 1), rasterio.band(dst, 1))
    for band in SIX.values():
        with rasterio.open(src / f"{band}.tif") as ds:
            files[f"zero_{band}"] = d / f"zero_{band}.tif"
            with rasterio.open(files[f"zero_{band}"], "w", **ds.profile) as dst:
                dst.write(np.zeros((1, ds.height, ds.width), dtype=ds.dtypes[0]))
    return files


def _variant(base: dict, item_id: str, collection: str | None = None) -> dict:
    d = copy.deepcopy(base)
    d["id"] = item_id
    if collection is not None:
        d["collection"] = collection
    return d


def _bad_items(data: Path, files: dict[str, Path]) -> list[tuple[str, dict, str | None, str | None, str]]:
    """(row id, item, expected stage, expected asset, message fragment); stage None = published."""
    e = item_dict(data, E)
    rows = []

    def add(row, item, stage, asset, fragment):
        rows.append((row, item, stage, asset, fragment))

    x = _variant(e, "e-no-nir")
    del x["assets"]["nir"]
    add("missing-band-asset", x, "model", None, "missing: nir")
    x = _variant(e, "e-bad-href")
    x["assets"]["red"]["href"] = str(files["random"].parent / "gone" / "B04.tif")
    add("unreadable-href", x, "read", "red", "cannot open")
    x = _variant(e, "e-truncated")
    x["assets"]["blue"]["href"] = str(files["truncated"])
    add("truncated-cog", x, "read", "blue", "truncated or corrupt")
    x = _variant(e, "e-corrupt")
    x["assets"]["blue"]["href"] = str(files["random"])
    add("corrupt-file", x, "read", "blue", "not recognized as being in a supported file format")
    x = _variant(e, "e-other-crs")
    x["assets"]["green"]["href"] = str(files["other_crs"])
    add("asset-crs-differs-from-item", x, "read", "green", "wrong CRS: the file")
    x = _variant(e, "e-other-crs-undeclared")
    x["assets"]["green"]["href"] = str(files["other_crs"])
    del x["properties"]["proj:code"]
    add("asset-crs-differs-from-bands", x, "read", "green", "of the other bands")
    x = _variant(e, "e-bad-baseline")
    x["properties"]["s2:processing_baseline"] = "new"
    for asset in x["assets"].values():
        for band in asset.get("bands", []):
            band.pop("raster:scale", None)
            band.pop("raster:offset", None)
    add("unreadable-processing-baseline", x, "read", "blue", "unreadable s2:processing_baseline")
    add("no-crs-item-B", item_dict(data, B), "read", "blue", "no CRS")
    add("b01-only-item-C", item_dict(data, C), "model", None, "missing: blue, green, red, nir")
    x = _variant(item_dict(data, B), "b-bogus-proj-code")
    x["properties"]["proj:code"] = "banana"
    add("no-crs-and-bogus-proj-code", x, "read", "blue", "unreadable proj:code/proj:epsg and no CRS in the file")
    add("id-dotdot-traversal", _variant(e, "../../escape"), "validate", None, "contains '/'")
    add("id-absolute-path", _variant(e, "/tmp/clouds2mask-escape"), "validate", None, "contains '/'")
    add("id-backslash", _variant(e, "..\\..\\escape"), "validate", None, "contains '\\\\'")
    add("id-dotdot-only", _variant(e, ".."), "validate", None, "is '..'")
    add("id-empty", _variant(e, ""), "validate", None, "is empty")
    add("id-control-chars", _variant(e, "e-\x1bred\x07"), "validate", None, "contains control characters")
    add("id-query-glob", _variant(e, "e-*?x"), "validate", None, "contains '*' '?'")
    add(
        "collection-traversal",
        _variant(e, "e-bad-collection", collection="../../evil"),
        "validate",
        None,
        "target collection id '../../evil-cloudmask' contains '/'",
    )
    add("id-rich-markup", _variant(e, "e-[bold]markup[/bold]x"), "validate", None, "contains '/'")
    add("id-glob-brackets", _variant(e, "e-[red]markup"), "validate", None, "contains '[' ']'")  # and printed literally
    add("id-fsspec-chain", _variant(e, "collection.json::x"), "validate", None, "contains '::'")
    add("id-450-bytes", _variant(e, "é" * 225), "validate", None, "is 450 bytes long in UTF-8 (at most 200)")
    # accepted, not refused: an all-nodata scene is published (valid 0 %)
    x = _variant(e, "e-bogus-proj-code")
    x["properties"]["proj:code"] = "EPSG:999999"
    add("bogus-proj-code-but-file-crs", x, None, None, "")  # the file's own CRS is used
    x = _variant(e, "e-all-nodata")
    for key, band in SIX.items():
        x["assets"][key]["href"] = str(files[f"zero_{band}"])
    add("all-nodata-scene", x, None, None, "")
    return rows


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory, sample_data_dir):
    root = tmp_path_factory.mktemp("batch")
    files = _derived_files(sample_data_dir, root)
    rows = _bad_items(sample_data_dir, files)
    good = [item_dict(sample_data_dir, E), item_dict(sample_data_dir, D)]
    features = [good[0], *(r[1] for r in rows[: len(rows) // 2]), good[1], *(r[1] for r in rows[len(rows) // 2 :])]
    fc = root / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = root / "out"
    before = files_under(root.parent)
    result = invoke("run", str(fc), "--output", str(out), "--device", "cpu")
    new = files_under(root.parent) - before
    return {"out": out, "result": result, "rows": {r[0]: r for r in rows}, "new": new, "root": root}


BAD_ITEM_ROWS = [
    "missing-band-asset",
    "unreadable-href",
    "truncated-cog",
    "corrupt-file",
    "asset-crs-differs-from-item",
    "asset-crs-differs-from-bands",
    "unreadable-processing-baseline",
    "no-crs-item-B",
    "b01-only-item-C",
    "no-crs-and-bogus-proj-code",
    "id-dotdot-traversal",
    "id-absolute-path",
    "id-backslash",
    "id-dotdot-only",
    "id-empty",
    "id-control-chars",
    "id-query-glob",
    "collection-traversal",
    "id-rich-markup",
    "id-glob-brackets",
    "id-fsspec-chain",
    "id-450-bytes",
]


def test_bad_batch_exits_1_without_traceback(bad_batch):
    result = bad_batch["result"]
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    report = run_report(bad_batch["out"])
    assert report["totals"]["failed"] == len(BAD_ITEM_ROWS)
    assert report["totals"]["published"] == 4  # E, D, the bogus proj:code, the all-nodata scene
    assert f"{report['totals']['published']} published, 0 skipped, {len(BAD_ITEM_ROWS)} failed" in flat(result.output)


@pytest.mark.parametrize("row", BAD_ITEM_ROWS)
def test_bad_item(bad_batch, row):
    _, item, stage, asset, fragment = bad_batch["rows"][row]
    report = run_report(bad_batch["out"])
    [entry] = [i for i in report["items"] if i["source_id"] == item["id"]]
    assert entry["status"] == "failed", entry
    expected_class = {
        "model": "ModelError",
        "read": "SourceDataError",
        "publish": "PublishError",
        "validate": "ItemError",
    }[stage]
    assert entry["error_class"] == expected_class and entry["stage"] == stage, entry
    assert entry["asset"] == asset, entry
    if asset is not None:
        assert entry["href"] == item["assets"][asset]["href"], entry
    assert fragment in entry["error"], entry
    assert entry["error"].startswith(f"item {item['id']!r}"), entry  # names the item
    assert item["id"] not in published_items(bad_batch["out"])
    assert entry["mask_item_id"] is None


def test_good_items_of_the_batch_are_published(bad_batch):
    published = published_items(bad_batch["out"])
    assert set(published) == {E, D, "e-bogus-proj-code", "e-all-nodata"}
    assert published["e-bogus-proj-code"]["properties"]["proj:code"] == "EPSG:32632"
    assert "e-[red]markup" in flat(bad_batch["result"].output)  # printed literally, not eaten as markup


def test_all_nodata_scene_is_published_with_valid_0(bad_batch):
    props = published_items(bad_batch["out"])["e-all-nodata"]["properties"]
    assert props["clouds2mask:valid_percentage"] == 0
    for k in ("cloud", "shadow", "clear"):
        assert props[f"clouds2mask:{k}_percentage"] == 0
    [tif] = bad_batch["out"].glob("*/e-all-nodata_cloudmask/*.tif")
    with rasterio.open(tif) as ds:
        assert (ds.read(1) == 255).all()


def test_nothing_is_written_outside_the_output(bad_batch):
    out = bad_batch["out"]
    outside = {p for p in bad_batch["new"] if out not in p.parents}
    assert outside == set()
    assert not Path("/tmp/clouds2mask-escape_cloudmask").exists() and not Path("/tmp/clouds2mask-escape").exists()
    assert not any("escape" in p.name or "evil" in p.name for p in out.rglob("*"))


def test_model_level_mismatch_and_missing_model_band(sample_data_dir, tmp_path):
    """--model model_6b_l1c: the L2A item F and an L1C item without swir16 fail; E is published."""
    no_swir = _variant(item_dict(sample_data_dir, E), "e-no-swir16")
    del no_swir["assets"]["swir16"]
    fc = tmp_path / "items.json"
    fc.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [item_dict(sample_data_dir, F), no_swir, item_dict(sample_data_dir, E)],
            }
        )
    )
    out = tmp_path / "out"
    result = invoke("run", str(fc), "--output", str(out), "--model", "model_6b_l1c", "--device", "cpu")
    assert result.exit_code == 1, result.output
    entries = {i["source_id"]: i for i in run_report(out)["items"]}
    assert (
        entries[F]["status"] == "failed" and "model model_6b_l1c is for L1C but the item is L2A" in entries[F]["error"]
    )
    assert (
        entries["e-no-swir16"]["asset"] == "swir16" and "no asset for band(s) swir16" in entries["e-no-swir16"]["error"]
    )
    assert entries[E]["status"] == "published"
    assert set(published_items(out)) == {E}


# ------------------------------------------------------------------------------------------
# the Python API speaks Python: its errors name the fields, never the command line's flags
# ------------------------------------------------------------------------------------------

PYTHON_ERRORS = [
    (lambda out: RunConfig(output=out, resolution=15), "resolution must be one of 10, 20, 30, 60 m, got 15"),
    (lambda out: RunConfig(output=out, precision="fp8"), "precision must be one of auto, fp32, bf16, fp16"),
    (lambda out: RunConfig(output=out, batch_size=0), "batch_size must be at least 1, got 0"),
    (lambda out: RunConfig(output=""), "output must not be empty"),
    (lambda out: RunConfig(output=out, collection_id="a/b"), "collection_id 'a/b' contains '/'"),
    (lambda out: RunConfig(output=out, model="model_9b"), "model: unknown model 'model_9b'"),
    (lambda out: SearchFilters(max_cloud=120), "max_cloud must be between 0 and 100, got 120"),
    (lambda out: SearchFilters(max_items=0), "max_items must be at least 1, got 0"),
    (lambda out: SearchFilters(bbox=(10, 52, 11, 51)), "bbox [10.0, 52.0, 11.0, 51.0] has south 52.0 above north"),
    (lambda out: SearchFilters(datetime="2024-13"), "datetime '2024-13' is not RFC 3339"),
    (lambda out: SearchFilters(intersects={"type": "Polygon"}), "intersects is not a GeoJSON geometry"),
    (lambda out: StorageOptions(headers={"Bad Name": "x"}), "headers name 'Bad Name' is not a valid HTTP header"),
    (lambda out: StorageOptions(modifier="nope"), "modifier 'nope' is neither a named modifier"),
]


@pytest.mark.parametrize("make, message", PYTHON_ERRORS, ids=[m for _, m in PYTHON_ERRORS])
def test_python_api_errors_name_the_python_field(tmp_path, make, message):
    with pytest.raises(OptionError) as exc:
        make(str(tmp_path / "o"))
    assert message in str(exc.value) and "--" not in str(exc.value)


def test_run_names_python_fields_and_the_cli_its_flags(sample_catalog, tmp_path):
    """The same empty search: run() says `ids=...`, the command line `--ids ...`."""
    config = RunConfig(output=str(tmp_path / "o"), device="cpu")
    with pytest.raises(EmptySearchError, match="for ids=no-such, datetime=1990") as exc:
        run_pipeline(str(sample_catalog), config, SearchFilters(ids=("no-such",), datetime="1990"))
    assert "--" not in str(exc.value)
    result = invoke("run", str(sample_catalog), "-o", str(tmp_path / "o"), "--ids", "no-such", "--datetime", "1990")
    assert result.exit_code == 3 and "for --ids no-such --datetime 1990" in flat(result.output)


def test_band_names_say_what_is_accepted():
    """mask_array takes common names: Sentinel-2 band ids are told apart and renamed in the message."""
    data = np.full((4, 64, 64), 0.2, dtype=np.float32)
    for model in ("auto", "model_4b_l1c"):
        with pytest.raises(ValueError) as exc:
            mask_array(data, ["B02", "B03", "B04", "B08"], model=model, device="cpu")
        text = str(exc.value)
        assert "blue (B02), green (B03), red (B04), nir (B08) by common name" in text
        assert "'B02' is 'blue'" in text and "'B08' is 'nir'" in text
