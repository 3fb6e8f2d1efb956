"""The clouds2mask task on stactask's Task contract: every RunConfig field from a payload, unknown
parameters refused (exit 2, named), the output payload in stactask's shape (as Task.handler makes it).

Runs on the tiny real sample item E (L1C, 10 x 10 px); a run over it takes a second or two.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import item_dict
from stactask.exceptions import InvalidInput
from typer.testing import CliRunner

from stac_clouds2mask import task
from stac_clouds2mask.cli import app
from stac_clouds2mask.config import RunConfig
from stac_clouds2mask.errors import InvalidInputError
from stac_clouds2mask.limits import Limits
from stac_clouds2mask.report import RUNS_DIR
from stac_clouds2mask.storage import StorageOptions, write_json_atomic

E = "s2b-t32upc-20200406-l1c-n0209-10x10"
BROKEN = "broken-e"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


def payload(features: list[dict], root: Path, **params) -> dict:
    return {
        "type": "FeatureCollection",
        "id": "test-payload-1",
        "features": features,
        "process": [
            {
                "description": "masks for the tests",
                "upload_options": {"path_template": f"{root}/${{collection}}/${{id}}"},
                "tasks": {"clouds2mask": params},
            }
        ],
    }


def broken_item(sample_data_dir: Path, tmp_path: Path) -> dict:
    d = item_dict(sample_data_dir, E)
    d["id"] = BROKEN
    d["assets"]["red"]["href"] = str(tmp_path / "nowhere" / "B04.tif")
    return d


# (parameter, payload value, what RunConfig then holds)
FIELDS = [
    ("resolution", 60, lambda c: c.resolution == 60),
    ("model", "model_4b_l1c", lambda c: c.model == "model_4b_l1c"),
    ("device", "cpu", lambda c: c.device == "cpu"),
    ("overwrite", True, lambda c: c.overwrite is True),
    ("batch_size", 7, lambda c: c.batch_size == 7),
    ("publish_api", "https://stac.example.test/api", lambda c: c.publish_api == "https://stac.example.test/api"),
    ("collection_id", "my-masks", lambda c: c.collection_id == "my-masks"),
    ("api_retries", 2, lambda c: c.api_retries == 2),
    ("compile", True, lambda c: c.compile is True),
    ("precision", "fp32", lambda c: c.precision == "fp32"),
    ("runtime", "torch", lambda c: c.runtime == "torch"),
    ("probabilities", True, lambda c: c.probabilities is True),
    ("patch_size", 256, lambda c: c.patch_size == 256),
    ("overlap", 32, lambda c: c.overlap == 32),
    ("cloud_buffer", 60, lambda c: c.cloud_buffer == 60),
    ("shadow_buffer", 30.5, lambda c: c.shadow_buffer == 30.5),
    ("model_href", "https://models.example.test/v1", lambda c: c.model_href == "https://models.example.test/v1"),
    ("fail_fast", True, lambda c: c.fail_fast is True),
    ("write_report", False, lambda c: c.write_report is False),
    ("limits", {"max_pixels": 1000}, lambda c: c.limits == dataclasses.replace(Limits(), max_pixels=1000)),
    ("requester_pays", True, lambda c: c.options.requester_pays is True),
    ("anon", True, lambda c: c.options.anon is True),
    ("endpoint_url", "https://s3.example.test", lambda c: c.options.endpoint_url == "https://s3.example.test"),
    ("header_hosts", ["data.example.test"], lambda c: c.options.header_hosts == ("data.example.test",)),
    ("modifier", "planetary-computer", lambda c: getattr(c.options.modifier, "__name__", None) == "sign_inplace"),
    (
        "clip",
        {"type": "Polygon", "coordinates": [[[35.18, 2.72], [35.2, 2.72], [35.2, 2.74], [35.18, 2.72]]]},
        lambda c: c.clip is not None and c.clip["type"] == "Polygon" and c.aoi_id is not None,
    ),
]


@pytest.fixture
def operator_endpoints(monkeypatch):
    """The operator configures the API and S3 endpoint that payloads may name (trust.check_payload_target)."""
    monkeypatch.setenv("STAC_CLOUDS2MASK_PUBLISH_API", "https://stac.example.test/api")
    monkeypatch.setenv("STAC_CLOUDS2MASK_S3_ENDPOINTS", "https://s3.example.test")
    monkeypatch.delenv("STAC_CLOUDS2MASK_API_TOKEN", raising=False)
    monkeypatch.delenv("STAC_CLOUDS2MASK_MAX_PIXELS", raising=False)


def test_every_run_config_field_is_a_payload_parameter():
    # header values are the operator's too (STAC_CLOUDS2MASK_SOURCE_HEADERS): no payload holds credentials
    storage = {f.name for f in dataclasses.fields(StorageOptions)} - {"headers"}
    # output comes from the path template, options from the storage parameters, api_headers from the operator
    run_config = {f.name for f in dataclasses.fields(RunConfig)} - {"output", "options", "api_headers"}
    assert set(task.PARAMETERS) == run_config | storage
    assert {name for name, _, _ in FIELDS} == set(task.PARAMETERS)


@pytest.mark.parametrize("name,value,holds", FIELDS, ids=[f[0] for f in FIELDS])
def test_each_parameter_reaches_run_config(sample_data_dir, tmp_path, operator_endpoints, name, value, holds):
    defaults = task.parse_payload(payload([item_dict(sample_data_dir, E)], tmp_path)).config(str(tmp_path))
    assert not holds(defaults)  # the value differs from the default
    job = task.parse_payload(payload([item_dict(sample_data_dir, E)], tmp_path, **{name: value}))
    assert holds(job.config(str(tmp_path)))
    # workflow_options reach it too (task parameters win over them)
    over_workflow = payload([item_dict(sample_data_dir, E)], tmp_path)
    over_workflow["process"][0]["workflow_options"] = {name: value, "another_tasks_option": 1}
    assert holds(task.parse_payload(over_workflow).config(str(tmp_path)))


def test_api_token_is_the_operators_and_goes_only_with_publish_api(
    sample_data_dir, tmp_path, operator_endpoints, monkeypatch
):
    monkeypatch.setenv("STAC_CLOUDS2MASK_API_TOKEN", "operator-token")
    publishing = task.parse_payload(
        payload([item_dict(sample_data_dir, E)], tmp_path, publish_api="https://stac.example.test/api")
    )
    assert publishing.config(str(tmp_path)).api_headers == {"Authorization": "Bearer operator-token"}
    plain = task.parse_payload(payload([item_dict(sample_data_dir, E)], tmp_path))
    assert plain.config(str(tmp_path)).api_headers == {}
    with pytest.raises(InvalidInputError, match="unknown parameter"):
        task.parse_payload(payload([item_dict(sample_data_dir, E)], tmp_path, api_headers={"Authorization": "x"}))


@pytest.mark.parametrize(
    "params,message",
    [
        ({"probabilites": True, "compiled": True}, "unknown parameter(s) compiled, probabilites"),
        ({"limits": {"max_pixel": 5}}, "limits has unknown limit(s) max_pixel"),
        ({"limits": {"max_pixels": 10**12}}, "limits.max_pixels 1000000000000 is above the operator's"),
        ({"limits": {"max_pixels": 1.5}}, "limits.max_pixels must be a positive integer"),
        ({"api_retries": -1}, "api_retries: api_retries must be between 0 and 20, got -1"),
        ({"compile": "yes"}, "compile must be bool"),
        ({"precision": "fp64"}, "clouds2mask: precision must be one of"),  # a payload names its parameters
        ({"collection_id": "a/b"}, "clouds2mask: collection_id 'a/b'"),
    ],
)
def test_bad_parameters_exit_2_naming_them(sample_data_dir, tmp_path, monkeypatch, params, message):
    monkeypatch.delenv("STAC_CLOUDS2MASK_MAX_PIXELS", raising=False)
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload([item_dict(sample_data_dir, E)], tmp_path / "masks", **params)))
    result = invoke("run-payload", str(path))
    assert result.exit_code == 2, result.output
    assert message in flat(result.output) and str(path) in flat(result.output)
    assert not (tmp_path / "masks").exists()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"features": {"a": 1}}, "unable to parse 'features': must be type list"),
        ({"process": [{"tasks": "x"}]}, "unable to parse 'tasks'"),
        ({"process": []}, "needs 'process'"),
        ({"href": "s3://elsewhere/payload.json"}, "payload indirection ('href') is not supported"),
    ],
)
def test_bad_payload_shapes_exit_2_naming_the_payload(sample_data_dir, tmp_path, change, message):
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({**payload([item_dict(sample_data_dir, E)], tmp_path / "masks"), **change}))
    result = invoke("run-payload", str(path))
    assert result.exit_code == 2, result.output
    assert message in flat(result.output) and str(path) in flat(result.output)


def test_new_parameters_take_effect_in_a_run(sample_data_dir, tmp_path, validate_stac):
    root = tmp_path / "masks"
    data = payload(
        [item_dict(sample_data_dir, E)], root, probabilities=True, collection_id="custom-masks", write_report=False
    )
    out, report, _ = task.run_payload(data)
    assert report.exit_code == 0
    [feature] = out["features"]
    validate_stac(feature)
    assert feature["collection"] == "custom-masks" and "probabilities" in feature["assets"]
    assert Path(feature["assets"]["probabilities"]["href"]).is_file()
    assert (root / "custom-masks" / feature["id"] / f"{feature['id']}.json").is_file()
    assert not (root / RUNS_DIR).exists()  # write_report false: no run report


def test_fail_fast_lists_the_items_not_run(sample_data_dir, tmp_path):
    data = payload(
        [broken_item(sample_data_dir, tmp_path), item_dict(sample_data_dir, E)], tmp_path / "masks", fail_fast=True
    )
    out, report, _ = task.run_payload(data)
    assert report.exit_code == 1 and out["features"] == []
    failed, not_run = out["clouds2mask:failures"]
    assert (failed["source_item"], failed["status"], failed["stage"]) == (BROKEN, "failed", "read")
    assert (not_run["source_item"], not_run["status"]) == (E, "not_run") and "not run" in not_run["error"]


def test_output_payload_is_stactasks_handler_output(sample_data_dir, tmp_path):
    data = payload([item_dict(sample_data_dir, E)], tmp_path / "masks", resolution=20)
    original = copy.deepcopy(data)
    out, report, _ = task.run_payload(data)
    assert report.exit_code == 0 and data == original  # the input is not changed
    # stactask's own entry point (what a stac-task runner calls) gives the same payload: the input with
    # features replaced by the mask items, every other member kept
    by_handler = task.Clouds2MaskTask.handler(copy.deepcopy(data))
    assert list(by_handler) == list(out) == ["type", "id", "features", "process"]
    assert by_handler == out
    assert {k: v for k, v in out.items() if k != "features"} == {k: v for k, v in data.items() if k != "features"}
    [feature] = out["features"]
    assert feature["id"] == f"{E}_cloudmask" and feature["properties"]["clouds2mask:source_item"] == E
    assert task.Clouds2MaskTask.name == "clouds2mask" and task.Clouds2MaskTask.version


def test_stale_failures_are_dropped_and_indirection_is_refused(sample_data_dir, tmp_path):
    data = payload([item_dict(sample_data_dir, E)], tmp_path / "masks")
    out, _, _ = task.run_payload({**data, "clouds2mask:failures": [{"source_item": "old"}]})
    assert "clouds2mask:failures" not in out
    with pytest.raises(InvalidInputError, match="payload indirection \\('url'\\) is not supported"):
        task.run_payload({**data, "url": "file:///etc/passwd"})


# ------------------------------------------------------------------------------------------
# numbers in payloads: finite, of their type, within the operator's limits
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params,message",
    [
        ({"limits": {"item_seconds": float("nan")}}, "limits.item_seconds must be finite (a positive number), got NaN"),
        (
            {"limits": {"api_seconds": float("inf")}},
            "limits.api_seconds must be finite (a positive number), got Infinity",
        ),
        ({"limits": {"max_pixels": True}}, "limits.max_pixels must be a positive integer, got true"),
        ({"limits": {"max_versions": 2.0}}, "limits.max_versions must be a positive integer, got 2.0"),
        ({"limits": {"item_seconds": 0}}, "limits.item_seconds must be a positive number, got 0"),
        ({"resolution": float("nan")}, "resolution must be a finite number, got NaN"),
        ({"resolution": float("-inf")}, "resolution must be a finite number, got -Infinity"),
        ({"batch_size": True}, "batch_size must be int or null, got true"),
        ({"api_retries": 10**9}, "api_retries must be between 0 and 20, got 1000000000"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else "",
)
def test_numeric_parameters_are_finite_typed_and_within_limits(sample_data_dir, tmp_path, params, message):
    with pytest.raises(InvalidInputError) as info:
        task.parse_payload(payload([item_dict(sample_data_dir, E)], tmp_path / "masks", **params))
    assert message in str(info.value)


def test_nan_never_reaches_a_run(sample_data_dir, tmp_path, monkeypatch):
    """Not in a payload file (NaN is no JSON number), not from the operator's environment, not in the
    run report: the limit a payload sets arrives in the run's report as the finite number it is."""
    path = tmp_path / "payload.json"
    path.write_text(
        json.dumps(payload([item_dict(sample_data_dir, E)], tmp_path / "masks", limits={"item_seconds": 1}))
    )
    path.write_text(path.read_text().replace('"item_seconds": 1', '"item_seconds": NaN'))
    result = invoke("run-payload", str(path))
    assert result.exit_code == 2 and "is not JSON: NaN is not a JSON number" in flat(result.output), result.output
    path.write_text(
        json.dumps(payload([item_dict(sample_data_dir, E)], tmp_path / "masks", limits={"item_seconds": 99.5}))
    )
    monkeypatch.setenv("STAC_CLOUDS2MASK_ITEM_SECONDS", "nan")
    result = invoke("run-payload", str(path))
    assert result.exit_code == 2 and "STAC_CLOUDS2MASK_ITEM_SECONDS='nan' must be finite" in flat(result.output)
    assert not (tmp_path / "masks").exists()
    monkeypatch.delenv("STAC_CLOUDS2MASK_ITEM_SECONDS")
    assert invoke("run-payload", str(path)).exit_code == 0
    [report] = (tmp_path / "masks" / RUNS_DIR).glob("run-*.json")

    def refuse(constant: str) -> None:
        raise AssertionError(f"the run report holds {constant}")

    assert json.loads(report.read_text(), parse_constant=refuse)["settings"]["limits"]["item_seconds"] == 99.5
    with pytest.raises(InvalidInputError, match="limit item_seconds must be finite"):
        Limits(item_seconds=float("nan"))  # the Python API too
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_json_atomic(str(tmp_path / "x.json"), {"seconds": float("nan")})
    assert not list(tmp_path.glob("x.json*"))


# ------------------------------------------------------------------------------------------
# stac-task semantics: a failed item fails the task through stactask's own entry points
# ------------------------------------------------------------------------------------------


def test_a_failed_item_fails_the_task_through_stactasks_handler_and_cli(sample_data_dir, tmp_path):
    data = payload([broken_item(sample_data_dir, tmp_path), item_dict(sample_data_dir, E)], tmp_path / "masks")
    with pytest.raises(task.ItemsFailed) as info:
        task.Clouds2MaskTask.handler(copy.deepcopy(data))
    assert not isinstance(info.value, InvalidInput)  # a missing file may be there on a retry
    assert [f["source_item"] for f in info.value.failures] == [BROKEN]
    assert [f["id"] for f in info.value.features] == [f"{E}_cloudmask"]  # published before the task failed
    assert f"1 of 2 item(s) failed or did not run: '{BROKEN}' (failed, read)" in str(info.value)

    path, out = tmp_path / "payload.json", tmp_path / "out.json"
    path.write_text(json.dumps(data))
    cli = "from stac_clouds2mask.task import Clouds2MaskTask; Clouds2MaskTask.cli()"
    proc = subprocess.run(
        [sys.executable, "-c", cli, "run", str(path), "--output", str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 1 and "ItemsFailed: 1 of 2 item(s) failed" in proc.stderr, proc.stderr[-3000:]
    assert not out.exists()  # no output payload that a runner could take for a success

    unsafe = {**item_dict(sample_data_dir, E), "id": "a/b"}  # what no retry changes: stactask's InvalidInput
    with pytest.raises(task.ItemsInvalid) as info:
        task.Clouds2MaskTask.handler(payload([unsafe], tmp_path / "masks"))
    assert isinstance(info.value, InvalidInput) and info.value.failures[0]["stage"] == "validate"

    path.write_text(json.dumps(data))  # run-payload keeps its contract: the output payload, exit 1
    result = invoke("run-payload", str(path), "--output", str(out))
    assert result.exit_code == 1, result.output
    written = json.loads(out.read_text())
    assert [f["source_item"] for f in written["clouds2mask:failures"]] == [BROKEN] and len(written["features"]) == 1
