"""The JSON run report written after every run, and --fail-fast."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import item_dict
from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.config import RunConfig
from stac_clouds2mask.report import RUNS_DIR
from stac_clouds2mask.runner import Runner
from stac_clouds2mask.search import SearchFilters, search

D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
E = "s2b-t32upc-20200406-l1c-n0209-10x10"


def reports(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / RUNS_DIR).glob("run-*.json"))]


def test_runner_writes_a_report_per_run(sample_data_dir, tmp_path):
    no_nir = item_dict(sample_data_dir, E)
    no_nir["id"] = "e-without-nir"
    del no_nir["assets"]["nir"]
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [item_dict(sample_data_dir, E), no_nir]}))
    out = tmp_path / "out"
    report = Runner(RunConfig(output=str(out), device="cpu", api_headers={"Authorization": "Bearer sekrit-token"})).run(
        search(str(fc))
    )
    [doc] = reports(out)
    assert (
        report.path
        and Path(report.path).name.startswith("run-")
        and Path(report.path) == next((out / RUNS_DIR).glob("*.json"))
    )
    assert doc["type"] == "clouds2mask-run-report" and doc["exit_code"] == 1 and doc["aborted"] is None
    assert doc["totals"] == {"items": 2, "published": 1, "skipped": 0, "failed": 1, "not_run": 0, "s3_retries": 0}
    good, bad = doc["items"]
    assert good["source_id"] == E and good["status"] == "published" and good["mask_item_id"] == f"{E}_cloudmask"
    assert set(good["seconds"]) == {"read", "infer", "publish"} and good["retries"] == 0 and good["error"] is None
    assert bad["status"] == "failed" and bad["stage"] == "model" and bad["error_class"] == "ModelError"
    assert "missing: nir" in bad["error"] and bad["mask_item_id"] is None
    settings = doc["settings"]
    assert (
        settings["api_header_names"] == ["Authorization"]
        and settings["device"] == "cpu"
        and settings["resolution"] == 20
    )
    assert settings["limits"]["max_pixels"] == 130_000_000 and settings["limits"]["item_seconds"] == 3600
    assert "sekrit-token" not in json.dumps(doc)
    # a second run (all skipped) adds a second report and leaves the first alone
    again = Runner(RunConfig(output=str(out), device="cpu")).run(search(str(fc), None))
    assert [o.status for o in again.outcomes] == ["skipped", "failed"]
    assert len(reports(out)) == 2 and doc in reports(out)


def test_report_can_be_switched_off(sample_data_dir, tmp_path):
    out = tmp_path / "out"
    report = Runner(RunConfig(output=str(out), device="cpu", write_report=False)).run([])
    assert report.path is None and not (out / RUNS_DIR).exists()


def test_cli_prints_report_path_and_fail_fast_stops(sample_data_dir, tmp_path):
    bad = item_dict(sample_data_dir, E)
    bad["id"] = "e-bad-href"
    bad["assets"]["red"]["href"] = str(tmp_path / "missing" / "B04.tif")
    fc = tmp_path / "items.json"
    fc.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [item_dict(sample_data_dir, E), bad, item_dict(sample_data_dir, D)],
            }
        )
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", str(fc), "--output", str(out), "--fail-fast", "--device", "cpu"], catch_exceptions=False
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    assert "1 published, 0 skipped, 1 failed, 1 not run of 3 item(s)" in text
    [doc] = reports(out)
    assert f"run report: {out / RUNS_DIR}" in result.output.replace("\n", "")
    assert [(i["source_id"], i["status"]) for i in doc["items"]] == [
        (E, "published"),
        ("e-bad-href", "failed"),
        (D, "not_run"),
    ]
    assert (
        doc["items"][1]["asset"] == "red"
        and doc["items"][1]["stage"] == "read"
        and "cannot open" in doc["items"][1]["error"]
    )
    assert doc["settings"]["fail_fast"] is True and doc["totals"]["not_run"] == 1
    assert not list(out.glob(f"*/{D}_cloudmask"))


def test_no_items_is_exit_3_naming_sources_and_filters_and_nothing_is_written(sample_catalog, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", str(sample_catalog), "--output", str(out), "--ids", "nothing-like-this"], catch_exceptions=False
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 3, text
    assert f"no item found in {sample_catalog} for --ids nothing-like-this" in text
    assert not out.exists()


def test_a_report_that_cannot_be_written_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    import stac_clouds2mask.runner as runner

    def refuse(url, data, options=None):
        raise PermissionError(f"denied: {url}")

    monkeypatch.setattr(runner, "write_json_atomic", refuse)
    report = Runner(RunConfig(output=str(tmp_path / "out"), device="cpu")).run([])
    assert (
        report.path is None and "cannot write the run report" in report.report_error and "denied" in report.report_error
    )
    assert report.exit_code == 0


def test_rerun_only_the_failures_from_a_report(sample_catalog, tmp_path):
    """The report of a run with failures drives a rerun of exactly those items."""
    import glob

    from typer.testing import CliRunner

    from stac_clouds2mask.cli import app

    edge = sample_catalog.parent / "edge-cases" / "catalog.json"
    out = tmp_path / "m"
    first = CliRunner().invoke(
        app,
        [
            "run",
            str(sample_catalog),
            str(edge),
            "-o",
            str(out),
            "--ids",
            "s2b-t32upc-20220615-l1c-n0400-offset-9x8,ukis-csmask-s2-l1c-512-labelled",
        ],
        catch_exceptions=False,
    )
    assert first.exit_code == 1
    [report] = glob.glob(str(out / ".clouds2mask-runs" / "*.json"))
    again = CliRunner().invoke(
        app, ["run", str(sample_catalog), str(edge), "-o", str(out), "--rerun-failed", report], catch_exceptions=False
    )
    text = " ".join(again.output.split())
    assert again.exit_code == 1 and "0 published, 0 skipped, 1 failed of 1 item(s)" in text
    assert "ukis-csmask-s2-l1c-512-labelled" in text
    both = CliRunner().invoke(
        app,
        ["run", str(sample_catalog), "-o", str(out), "--rerun-failed", report, "--ids", "x"],
        catch_exceptions=False,
    )
    assert both.exit_code == 2


def test_an_output_error_is_reported_in_the_stage_that_met_it(sample_data_dir, tmp_path):
    """Reading what is already published is the publish plan, not the model choice: its error says "plan"."""
    out = tmp_path / "out"
    [item] = search(str(sample_data_dir / "catalog.json"), SearchFilters(ids=(E,)))
    out.mkdir()
    (out / f"{item.collection_id}-cloudmask").write_text("a file where the collection folder goes")
    report = Runner(RunConfig(output=str(out), device="cpu")).run([item])
    [outcome] = report.outcomes
    assert (outcome.status, outcome.stage, outcome.error_class) == ("failed", "plan", "NotADirectoryError")
