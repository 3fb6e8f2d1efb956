"""Scale-out: stac-task payloads, plan -> run-shard -> status on a moto S3 server, reruns of missing shards.

Uses the tiny real sample items D, E (L1C) and F, G (L2A); each CLI run over them takes seconds.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import unchanged_items
from hostile_server import HostileServer
from typer.testing import CliRunner

from stac_clouds2mask import batch, task
from stac_clouds2mask.cli import app
from stac_clouds2mask.errors import InvalidInputError
from stac_clouds2mask.search import SearchFilters, search

D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
E = "s2b-t32upc-20200406-l1c-n0209-10x10"
F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
G = "ccd-s2-l2a-20200403-epsg32737-512-labelled"
C = "s2a-t31tdh-20180101-l1c-b01-only"
COLLECTION = {
    D: "sentinel-2-l1c-samples",
    E: "sentinel-2-l1c-samples",
    F: "sentinel-2-l2a-samples",
    G: "sentinel-2-l2a-samples",
}


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env=env)


@pytest.fixture(scope="module")
def sample_items(sample_catalog) -> Iterator[dict[str, object]]:
    yield from unchanged_items({i.id: i for i in search(str(sample_catalog), SearchFilters(ids=(D, E, F, G)))})


def mask_prefix(bucket: str, source_id: str) -> str:
    return f"{bucket}/masks/{COLLECTION[source_id]}-cloudmask/{source_id}_cloudmask"


# ------------------------------------------------------------------------------------------
# plan -> run-shard -> status on S3, with a rerun of a shard whose outputs were deleted
# ------------------------------------------------------------------------------------------


def test_plan_run_every_shard_status_then_rerun_a_deleted_shard(moto_s3, s3_bucket, sample_catalog, validate_stac):
    plan_url, masks = f"s3://{s3_bucket}/plan", f"s3://{s3_bucket}/masks"
    fs = moto_s3.filesystem()
    # the sources on S3 too: a payload on S3 may only name remote files (trust.check_reference)
    data = sample_catalog.parent
    for path in sorted(data.rglob("*")):
        rel = path.relative_to(data)
        if path.is_file() and (path.suffix == ".json" or rel.parts[0] in (D, E, F, G)):
            fs.put_file(str(path), f"{s3_bucket}/data/{rel.as_posix()}")
    result = invoke(
        "plan",
        f"s3://{s3_bucket}/data/catalog.json",
        "--ids",
        f"{D},{E},{F},{G}",
        "--shards",
        "3",
        "--output",
        plan_url,
        "--masks",
        masks,
        "--resolution",
        "20",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["shards"] == 3 and summary["items"] == 4 and summary["manifest"] == f"{plan_url}/manifest.json"

    manifest = json.loads(fs.cat(f"{s3_bucket}/plan/manifest.json"))
    assert [s["item_count"] for s in manifest["shards"]] == [2, 1, 1]
    assert sorted(k.split("/")[1] for s in manifest["shards"] for k in s["items"]) == sorted([D, E, F, G])
    for s in manifest["shards"]:
        payload = json.loads(fs.cat(f"{s3_bucket}/plan/shards/shard-{s['index']:05d}.json"))
        assert payload["type"] == "FeatureCollection"
        assert payload["process"][0]["upload_options"]["path_template"] == f"{masks}/${{collection}}/${{id}}"
        assert payload["process"][0]["tasks"]["clouds2mask"] == {"resolution": 20, "model": "auto"}
        assert [f"{f['collection']}/{f['id']}" for f in payload["features"]] == s["items"]

    result = invoke("status", plan_url)
    assert result.exit_code == 1 and "0 done, 0 failed, 3 missing of 3 shard(s); rerun indices: 0,1,2" in result.output

    # index 0 from AWS Batch's environment variable, the others explicitly
    result = invoke("run-shard", plan_url, env={"AWS_BATCH_JOB_ARRAY_INDEX": "0"})
    assert result.exit_code == 0, result.output
    assert "shard 0:" in result.output and "2 published" in result.output
    for index in (1, 2):
        out_payload = f"s3://{s3_bucket}/out/shard-{index}.json"
        result = invoke("run-shard", plan_url, "--index", str(index), "--output-payload", out_payload)
        assert result.exit_code == 0, result.output
        out = json.loads(fs.cat(out_payload))
        [feature] = out["features"]
        assert feature["properties"]["clouds2mask:source_item"] == manifest["shards"][index]["items"][0].split("/")[1]
        assert feature["assets"]["cloudmask"]["href"].startswith(f"{masks}/")
        validate_stac(feature)

    result = invoke("status", plan_url, "--json")
    assert result.exit_code == 0, result.output
    st = json.loads(result.stdout)
    assert st["complete"] and st["done"] == [0, 1, 2] and st["missing"] == [] and st["failed"] == []
    for source_id in (D, E, F, G):
        assert fs.exists(f"{mask_prefix(s3_bucket, source_id)}/{source_id}_cloudmask.tif")

    # a rerun of the whole array does no work: every item is skipped
    result = invoke("run-shard", plan_url, "--index", "0")
    assert result.exit_code == 0 and "0 published, 2 skipped" in result.output

    # delete shard 0's outputs: status reports it missing, rerunning index 0 finishes exactly that work
    lost = [k.split("/")[1] for k in manifest["shards"][0]["items"]]
    for source_id in lost:
        moto_s3.filesystem().rm(mask_prefix(s3_bucket, source_id), recursive=True)
    result = invoke("status", plan_url, "--json")
    assert result.exit_code == 1
    st = json.loads(result.stdout)
    assert st["missing"] == [0] and st["done"] == [1, 2] and not st["complete"]
    assert sorted(p["item"].split("/")[1] for p in st["shards"][0]["problems"]) == sorted(lost)
    result = invoke("run-shard", plan_url, "--index", "0")
    assert result.exit_code == 0 and "2 published, 0 skipped" in result.output
    result = invoke("status", plan_url)
    assert result.exit_code == 0, result.output
    assert "3 done, 0 failed, 0 missing of 3 shard(s)" in result.output
    # the catalog links every mask once
    root = f"{s3_bucket}/masks"
    published = search(f"s3://{root}/catalog.json")
    assert sorted(i.id for i in published) == sorted(f"{s}_cloudmask" for s in (D, E, F, G))


def test_status_reports_failed_items_from_the_run_record_and_the_model_check(tmp_path, sample_catalog, sample_items):
    broken = sample_items[D].clone()
    broken.id = "broken-asset-d"
    broken.assets["blue"].href = str(tmp_path / "does-not-exist" / "B02.tif")
    [b01_only] = search(str(sample_catalog.parent / "edge-cases" / "catalog.json"), SearchFilters(ids=(C,)))
    plan_url, masks = str(tmp_path / "plan"), str(tmp_path / "masks")
    manifest = batch.write_plan(plan_url, [broken, b01_only, sample_items[E]], masks, shards=3)
    index = {k.split("/")[1]: s["index"] for s in manifest["shards"] for k in s["items"]}

    st = batch.status(plan_url)
    states = {s.index: s.state for s in st.shards}
    assert states[index[C]] == "failed"  # no model fits a B01-only item: it can never succeed
    assert states[index["broken-asset-d"]] == "missing" and states[index[E]] == "missing"
    [c_status] = st.shards[index[C]].items
    assert "missing: blue, green, red, nir" in c_status.detail

    result = invoke("run-shard", plan_url, "--index", str(index["broken-asset-d"]))
    assert result.exit_code == 1, result.output
    assert "broken-asset-d" in " ".join(result.output.split())
    st = batch.status(plan_url)
    shard = st.shards[index["broken-asset-d"]]
    assert shard.state == "failed" and "broken-asset-d" in shard.items[0].detail
    result = invoke("status", plan_url)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "0 done, 2 failed, 1 missing of 3 shard(s)" in text
    assert f"rerun indices: {','.join(map(str, sorted(index.values())))}" in text


def test_status_judges_mask_versions_by_the_publish_rule(tmp_path, sample_catalog, sample_items):
    """status decides through publish.versions: a mask published as version 2 (version 1 was made with
    other settings) is done; a version chain beyond STAC_CLOUDS2MASK_MAX_VERSIONS is failed, not a crash."""
    masks, plan_url = tmp_path / "masks", str(tmp_path / "plan")
    batch.write_plan(plan_url, [sample_items[E]], str(masks), shards=1)
    assert invoke("run", str(sample_catalog), "--output", str(masks), "--ids", E, "--resolution", "10").exit_code == 0
    assert batch.status(plan_url).shards[0].state == "missing"  # version 1 has other settings
    assert invoke("run-shard", plan_url, "--index", "0").exit_code == 0
    assert (masks / f"{COLLECTION[E]}-cloudmask" / f"{E}_cloudmask_v2").is_dir()
    assert batch.status(plan_url).shards[0].state == "done"
    st = invoke("status", plan_url, env={"STAC_CLOUDS2MASK_MAX_VERSIONS": "1"})
    assert st.exit_code == 1 and "more than 1 published versions" in " ".join(st.output.split())


# ------------------------------------------------------------------------------------------
# stac-task payload round trip
# ------------------------------------------------------------------------------------------


def _comparable(item: dict) -> dict:
    props = {k: v for k, v in item["properties"].items() if k != "processing:datetime"}
    asset = {k: v for k, v in item["assets"]["cloudmask"].items() if k != "href"}
    return {
        "id": item["id"],
        "collection": item["collection"],
        "geometry": item["geometry"],
        "bbox": item["bbox"],
        "properties": props,
        "cloudmask": asset,
        "derived_from": [l["href"] for l in item["links"] if l["rel"] == "derived_from"],
    }


def test_payload_round_trip_gives_the_same_items_as_run(tmp_path, sample_catalog, sample_items, validate_stac):
    by_run = tmp_path / "by-run"
    result = invoke("run", str(sample_catalog), "--ids", f"{D},{G}", "--output", str(by_run))
    assert result.exit_code == 0, result.output
    expected = {d["id"]: d for d in (json.loads(p.read_text()) for p in by_run.glob("*/*/*.json"))}
    assert len(expected) == 2

    by_payload = tmp_path / "by-payload"
    payload = task.make_payload([sample_items[D], sample_items[G]], str(by_payload), {"resolution": 20})
    payload["process"][0]["workflow_options"] = {"some_other_task_option": 1}
    payload_path = tmp_path / "payload.json"
    payload_path.write_text(json.dumps(payload))
    out_path = tmp_path / "out.json"
    result = invoke("run-payload", str(payload_path), "--output", str(out_path))
    assert result.exit_code == 0, result.output
    out = json.loads(out_path.read_text())
    assert out["type"] == "FeatureCollection" and out["process"] == payload["process"]
    assert "clouds2mask:failures" not in out
    got = {f["id"]: f for f in out["features"]}
    assert set(got) == set(expected) == {f"{D}_cloudmask", f"{G}_cloudmask"}
    for item_id, feature in got.items():
        validate_stac(feature)
        assert _comparable(feature) == _comparable(expected[item_id])
        href = feature["assets"]["cloudmask"]["href"]
        assert href.startswith(str(by_payload)) and Path(href).is_file()
        assert [l["href"] for l in feature["links"] if l["rel"] == "self"] == [
            str(by_payload / feature["collection"] / item_id / f"{item_id}.json")
        ]

    # the same payload again: nothing to do, the same items come out (stdout this time)
    result = invoke("run-payload", str(payload_path))
    assert result.exit_code == 0
    again = json.loads(result.stdout)
    assert [_comparable(f) for f in again["features"]] == [_comparable(f) for f in out["features"]]
    assert "0 published, 2 skipped" in result.output


def test_payload_with_a_failing_item_lists_it_and_exits_1(tmp_path, sample_items):
    broken = sample_items[D].clone()
    broken.id = "broken-asset-d"
    broken.assets["red"].href = str(tmp_path / "nowhere" / "B04.tif")
    payload = task.make_payload([broken], str(tmp_path / "masks"))
    out, report, _ = task.run_payload(payload)
    assert report.exit_code == 1 and out["features"] == []
    [failure] = out["clouds2mask:failures"]
    assert failure["source_item"] == "broken-asset-d" and failure["stage"] == "read"


def _good_payload(items, root) -> dict:
    return task.make_payload(items, root, {"resolution": 20})


BAD_PAYLOADS = [
    (lambda p: {"type": "Feature"}, "must be a GeoJSON FeatureCollection"),
    (lambda p: {k: v for k, v in p.items() if k != "process"}, "needs 'process'"),
    (lambda p: {**p, "features": {"a": 1}}, "unable to parse 'features': must be type list"),
    (lambda p: {**p, "process": ["x"]}, "first element of the list must be type dict"),
    (lambda p: _set(p, ["upload_options"], {}), "no upload_options.path_template"),
    (lambda p: _set(p, ["upload_options", "path_template"], "s3://b/${year}/${collection}/${id}"), "fixed root"),
    (lambda p: _set(p, ["upload_options", "path_template"], "s3://b/masks/${id}"), "is not supported"),
    (lambda p: _set(p, ["tasks", "clouds2mask", "resolutoin"], 20), "unknown parameter(s) resolutoin"),
    (lambda p: _set(p, ["tasks", "clouds2mask", "resolution"], "20"), "resolution must be int or float"),
    (lambda p: _set(p, ["tasks", "clouds2mask", "overwrite"], "yes"), "overwrite must be bool"),
    (lambda p: _set(p, ["tasks", "clouds2mask", "resolution"], 15), "clouds2mask: resolution must be one of"),
    (lambda p: _set(p, ["tasks", "clouds2mask", "model"], "no-such-model"), "no-such-model"),
    (
        lambda p: _set(p, ["tasks", "clouds2mask"], [1]),
        "unable to parse options for task 'clouds2mask': must be type dict",
    ),
    (
        lambda p: _set(p, ["collection_matchers"], [{"type": "catch_all", "collection_name": "x"}]),
        "collection_matchers",
    ),
    (lambda p: {**p, "features": p["features"] + p["features"][:1]}, "appears twice"),
    (lambda p: {**p, "features": [{"type": "Feature", "id": "x", "properties": {}}]}, "is not a valid STAC item"),
    (lambda p: {**p, "features": [{"id": "x"}]}, "is not a STAC item"),
]


def _set(payload: dict, path: list[str], value) -> dict:
    p = json.loads(json.dumps(payload))
    target = p["process"][0]
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return p


@pytest.mark.parametrize("mutate,message", BAD_PAYLOADS, ids=[m for _, m in BAD_PAYLOADS])
def test_bad_payloads_are_rejected_clearly(tmp_path, sample_items, mutate, message):
    payload = mutate(_good_payload([sample_items[D], sample_items[F]], str(tmp_path / "masks")))
    url = str(tmp_path / "payload.json")  # local: a payload on S3 may not name these local files at all
    with pytest.raises(InvalidInputError) as err:
        task.parse_payload(payload, url)
    assert message in str(err.value) and url in str(err.value)


def test_run_payload_cli_exits_2_on_a_bad_payload(tmp_path, sample_items):
    bad = _set(_good_payload([sample_items[D]], str(tmp_path / "masks")), ["tasks", "clouds2mask", "resolution"], 15)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "not-json.json").write_text("{")
    for name, message in (
        ("bad.json", "clouds2mask: resolution must be one of"),
        ("not-json.json", "is not JSON"),
        ("missing.json", "payload not found"),
    ):
        result = invoke("run-payload", str(tmp_path / name))
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
    assert not (tmp_path / "masks").exists()


def test_payload_accepts_stac_task_variants_and_collection_options(tmp_path, sample_items):
    p = _good_payload([sample_items[D], sample_items[F]], str(tmp_path / "masks"))
    legacy = {**p, "process": {**p["process"][0], "tasks": [{"name": "clouds2mask", "parameters": {"resolution": 30}}]}}
    with pytest.warns(DeprecationWarning, match="will be unsupported in a future version"):  # stactask's
        parsed = task.parse_payload(legacy)
    assert parsed.parameters == {"resolution": 30}
    p["process"][0]["workflow_options"] = {"resolution": 60, "unrelated": True}
    p["process"][0]["tasks"] = {"clouds2mask": {"model": "auto"}, "other-task": {"x": 1}}
    p["process"][0]["collection_options"] = {
        "sentinel-2-l2a-samples-cloudmask": {
            "upload_options": {"path_template": f"{tmp_path}/l2a/${{collection}}/${{id}}"}
        }
    }
    parsed = task.parse_payload(p)
    assert parsed.parameters == {"resolution": 60, "model": "auto"}
    roots = {i.id: parsed.root_for(i) for i in parsed.items}
    assert roots == {D: str(tmp_path / "masks"), F: str(tmp_path / "l2a")}
    assert parsed.config(roots[D]).resolution == 60


def test_payload_collection_options_send_a_collection_to_its_own_catalog(tmp_path, sample_items):
    payload = task.make_payload([sample_items[D], sample_items[G]], str(tmp_path / "main"))
    payload["process"][0]["collection_options"] = {
        "sentinel-2-l2a-samples-cloudmask": {
            "upload_options": {"path_template": f"{tmp_path}/l2a/${{collection}}/${{id}}/"}
        }
    }
    out, report, _ = task.run_payload(payload)
    assert report.exit_code == 0
    hrefs = {f["id"]: f["assets"]["cloudmask"]["href"] for f in out["features"]}
    assert hrefs[f"{D}_cloudmask"].startswith(str(tmp_path / "main" / "sentinel-2-l1c-samples-cloudmask"))
    assert hrefs[f"{G}_cloudmask"].startswith(str(tmp_path / "l2a" / "sentinel-2-l2a-samples-cloudmask"))
    assert all(Path(h).is_file() for h in hrefs.values())
    assert (tmp_path / "main" / "catalog.json").is_file() and (tmp_path / "l2a" / "catalog.json").is_file()
    assert not (tmp_path / "main" / "sentinel-2-l2a-samples-cloudmask").exists()


# ------------------------------------------------------------------------------------------
# plans: balanced, deterministic, guarded
# ------------------------------------------------------------------------------------------


def test_shards_are_balanced_and_deterministic(sample_catalog):
    items = search(str(sample_catalog))
    assert len(items) == 5
    for n in range(1, 7):
        shards = batch.shard_items(items, n)
        sizes = [len(s) for s in shards]
        assert len(shards) == min(n, 5) and max(sizes) - min(sizes) <= 1 and sum(sizes) == 5
        shuffled = items[:] + items[:2]  # another order, with duplicates
        random.Random(n).shuffle(shuffled)
        assert [[i.id for i in s] for s in batch.shard_items(shuffled, n)] == [[i.id for i in s] for s in shards]


def test_plan_is_reproducible_and_refuses_to_replace_another(tmp_path, sample_catalog):
    plan_url = str(tmp_path / "plan")
    args = (
        "plan",
        str(sample_catalog),
        "--ids",
        f"{D},{E},{F}",
        "--shards",
        "2",
        "-o",
        plan_url,
        "--masks",
        str(tmp_path / "m"),
    )
    assert invoke(*args).exit_code == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "plan").rglob("*.json")}
    assert set(first) == {"manifest.json", "shard-00000.json", "shard-00001.json"}
    assert invoke(*args).exit_code == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "plan").rglob("*.json")} == first

    other = (
        "plan",
        str(sample_catalog),
        "--ids",
        f"{D},{E}",
        "--shards",
        "2",
        "-o",
        plan_url,
        "--masks",
        str(tmp_path / "m"),
    )
    result = invoke(*other)
    assert result.exit_code == 2 and "a different plan" in " ".join(result.output.split())
    assert invoke(*other, "--overwrite").exit_code == 0

    result = invoke(
        "plan",
        str(sample_catalog),
        "--ids",
        D,
        "--shards",
        "4",
        "-o",
        str(tmp_path / "p2"),
        "--masks",
        str(tmp_path / "m"),
    )
    assert result.exit_code == 0 and json.loads(result.stdout.splitlines()[-1])["shards"] == 1
    # a one-shard plan runs without --index or AWS_BATCH_JOB_ARRAY_INDEX (a plain, non-array job)
    assert batch.array_index(None, 1) == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (("--shards", "0"), "--shards must be between 1 and 10000"),
        (("--shards", "10001"), "--shards must be between 1 and 10000"),
        (("--ids", "no-such-item"), "no item found"),
        (("--resolution", "15"), "--resolution must be one of"),
    ],
)
def test_plan_rejects_bad_invocations(tmp_path, sample_catalog, args, message):
    result = invoke("plan", str(sample_catalog), "-o", str(tmp_path / "plan"), "--masks", str(tmp_path / "m"), *args)
    assert result.exit_code == (3 if "no item found" in message else 2), result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "plan").exists()


def test_run_shard_rejects_bad_indices_and_missing_plans(tmp_path, sample_catalog, monkeypatch):
    plan_url = str(tmp_path / "plan")
    assert (
        invoke(
            "plan",
            str(sample_catalog),
            "--ids",
            f"{D},{E}",
            "--shards",
            "2",
            "-o",
            plan_url,
            "--masks",
            str(tmp_path / "m"),
        ).exit_code
        == 0
    )
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_INDEX", raising=False)
    for args, env, message in (
        (("--index", "2"), None, "outside the plan's 0..1"),
        ((), None, "pass --index or set AWS_BATCH_JOB_ARRAY_INDEX"),
        ((), {"AWS_BATCH_JOB_ARRAY_INDEX": "x"}, "is not an integer"),
    ):
        result = invoke("run-shard", plan_url, *args, env=env)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
    for command in ("run-shard", "status"):
        result = (
            invoke(command, str(tmp_path / "nothing-here"), "--index", "0")
            if command == "run-shard"
            else invoke(command, str(tmp_path / "nothing-here"))
        )
        assert result.exit_code == 2 and "no plan at" in " ".join(result.output.split())
    assert not (tmp_path / "m").exists()


def test_shard_index_comes_from_the_array_index_else_from_the_array_child_job_id(monkeypatch):
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_INDEX", raising=False)
    monkeypatch.setenv("AWS_BATCH_JOB_ID", "4f1c2a9e-8d0b-4c55-9a3e-2b7f0c6d1e88:2")  # an array child (moto, AWS)
    assert batch.array_index(None, 3) == 2
    assert batch.array_index(1, 3) == 1  # --index wins
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "0")  # AWS sets both: the index variable wins
    assert batch.array_index(None, 3) == 0
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_INDEX")
    for job_id, message in (("4f1c2a9e:x", "is not an integer"), ("4f1c2a9e", "pass --index or set")):
        monkeypatch.setenv("AWS_BATCH_JOB_ID", job_id)  # a plain job id carries no index
        with pytest.raises(InvalidInputError, match=message):
            batch.array_index(None, 3)
    assert batch.array_index(None, 1) == 0


# ------------------------------------------------------------------------------------------
# run-shard and status do not trust the plan's manifest
# ------------------------------------------------------------------------------------------


def _plan(tmp_path: Path, sample_catalog: Path) -> tuple[Path, dict]:
    plan_dir = tmp_path / "plan"
    args = ("plan", str(sample_catalog), "--ids", D, "-o", str(plan_dir), "--masks", str(tmp_path / "masks"))
    assert invoke(*args).exit_code == 0
    return plan_dir, json.loads((plan_dir / "manifest.json").read_text())


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "change,env,message",
    [
        ({"id": "../../../escaped"}, {}, "id '../../../escaped' contains '/': refused"),
        (
            {"output": "{tmp}/elsewhere"},
            {"STAC_CLOUDS2MASK_OUTPUT_ROOTS": "{tmp}/masks"},
            "not under an allowed output",
        ),
        ({"output": "{tmp}/masks/../elsewhere"}, {}, "contains '..': refused"),
        (
            {"shards": [{"index": 0, "href": "/etc/passwd"}]},
            {"STAC_CLOUDS2MASK_LOCAL_ROOTS": "{tmp}"},
            "outside the allowed local roots",
        ),
    ],
    ids=["id-escapes-the-plan", "output-not-allowed", "output-with-dot-dot", "shard-outside-local-roots"],
)
def test_run_shard_refuses_what_a_local_manifest_may_not_name(
    tmp_path, sample_catalog, monkeypatch, change, env, message
):
    plan_dir, manifest = _plan(tmp_path, sample_catalog)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    manifest.update({k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in change.items()})
    (plan_dir / "manifest.json").write_text(json.dumps(manifest))
    before = _files(tmp_path)
    for command in (("run-shard", str(plan_dir), "--index", "0"), ("status", str(plan_dir))):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()) and "plan manifest" in result.output
    assert _files(tmp_path) == before  # no mask, no run record, nothing outside the plan


def test_a_remote_manifest_names_shards_on_allowed_hosts_only(tmp_path, sample_catalog, monkeypatch):
    _, manifest = _plan(tmp_path, sample_catalog)
    server = HostileServer()
    try:
        manifest["output"] = "s3://masks-bucket/masks"  # a remote document may name remote outputs only
        manifest["shards"][0]["href"] = f"http://localhost:{server.port}/plan/shards/shard-00000.json"
        server.routes["/plan/manifest.json"] = json.dumps(manifest).encode()
        server.routes["/plan/shards/shard-00000.json"] = b"{}"
        monkeypatch.setenv("STAC_CLOUDS2MASK_ALLOWED_HOSTS", f"127.0.0.1:{server.port},masks-bucket")
        result = invoke("run-shard", f"{server.url}/plan", "--index", "0")
        assert result.exit_code == 2, result.output
        assert "host 'localhost' is not among the allowed hosts" in " ".join(result.output.split())
        assert set(server.paths()) == {"/plan/manifest.json"}  # the shard was never asked for
    finally:
        server.stop()
