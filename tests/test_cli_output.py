"""What the command line prints, for people and for pipes: -q / -v / STAC_CLOUDS2MASK_LOG_LEVEL, plain lines
without a terminal (nothing wrapped or cut, no bar frames), patches done / total with the time left while a scene
is inferred, --print-items as one ItemCollection on standard output and `run-payload -` from standard input."""

from __future__ import annotations

import io
import json
import logging

import pystac
import pytest
from conftest import item_dict
from rich.console import Console
from rich.progress import Progress as RichProgress
from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.cli.display import PlainProgressDisplay, RichProgressDisplay

A = "s2a-t19udp-20170729-l1c-160m"
C = "s2a-t31tdh-20180101-l1c-b01-only"
LONG = "an-item-id-longer-than-any-terminal-" + "x" * 120  # never cut, never wrapped
BAR_GLYPHS = ("━", "…", "╸")


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None):
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env=env, input=input)


@pytest.fixture(autouse=True)
def default_logging():
    """-v / -vv change the root logger: back to the default after each test."""
    yield
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("stac_clouds2mask").setLevel(logging.NOTSET)


@pytest.fixture(scope="module")
def failing_batch(tmp_path_factory, sample_data_dir):
    """One item with a long id that fails at the model stage (B01 only): a run without inference."""
    d = item_dict(sample_data_dir, C)
    d["id"] = LONG
    path = tmp_path_factory.mktemp("batch") / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [d]}))
    return str(path)


def test_plain_lines_without_a_terminal(failing_batch, tmp_path):
    """A pipe gets whole lines: the long id in full on the item's line and in the failure list, no bar."""
    result = invoke("run", failing_batch, "-o", str(tmp_path / "o"), "--device", "cpu", env={"COLUMNS": "40"})
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"[1/1] failed {LONG}: item '{LONG}'") for line in lines), lines
    assert any(line.startswith(f"failed item {LONG} (stage model): ") for line in lines), lines
    assert not any(glyph in result.stderr for glyph in BAR_GLYPHS)
    assert result.stdout == ""


def test_quiet_verbose_and_the_environment(failing_batch, tmp_path):
    out = ["-o", str(tmp_path / "o"), "--device", "cpu"]
    default = invoke("run", failing_batch, *out)
    assert "[1/1] failed" in default.stderr and "INFO" not in default.stderr
    quiet = invoke("-q", "run", failing_batch, *out)
    assert quiet.exit_code == 1 and "[1/1]" not in quiet.stderr and "1 item(s)" not in quiet.stderr.splitlines()
    assert "0 published, 0 skipped, 1 failed of 1 item(s)" in quiet.stderr
    info = "INFO stac_clouds2mask.search: 1 item(s) found in"
    assert info in invoke("-v", "run", failing_batch, *out).stderr
    assert info in invoke("run", failing_batch, *out, env={"STAC_CLOUDS2MASK_LOG_LEVEL": "info"}).stderr
    assert "[1/1]" not in invoke("run", failing_batch, *out, env={"STAC_CLOUDS2MASK_LOG_LEVEL": "ERROR"}).stderr
    debug = invoke("-vv", "run", failing_batch, *out).stderr
    assert "DEBUG " in debug and info in debug


def test_print_items_patches_progress_and_a_rerun(sample_catalog, tmp_path):
    """Standard output holds one ItemCollection and nothing else (the rest is on standard error), also on a rerun
    that skips the item; while the scene is inferred the runner's patch counts reach the display."""
    args = ["run", str(sample_catalog), "--ids", A, "-o", str(tmp_path / "o"), "--device", "cpu"]
    first = invoke(*args, "--print-items")
    assert first.exit_code == 0, first.output
    [mask] = pystac.ItemCollection.from_dict(json.loads(first.stdout)).items
    assert mask.properties["clouds2mask:source_item"] == A
    assert mask.get_self_href().startswith(str(tmp_path)) and mask.assets["cloudmask"].get_absolute_href()
    patches = [line for line in first.stderr.splitlines() if f"infer {A}: patches" in line]
    total = int(patches[-1].rsplit("/", 1)[1])  # (the time left is shown while patches remain: see below)
    assert patches[-1] == f"[0/1] infer {A}: patches {total}/{total}"
    again = invoke(*args, "--print-items")
    assert again.exit_code == 0 and "0 published, 1 skipped" in again.stderr
    assert [i.id for i in pystac.ItemCollection.from_dict(json.loads(again.stdout))] == [mask.id]
    assert invoke(*args).stdout == ""  # without the flag, nothing on standard output


def test_run_payload_reads_standard_input(failing_batch, tmp_path):
    features = json.loads(open(failing_batch).read())["features"]
    payload = {
        "type": "FeatureCollection",
        "features": features,
        "process": [{"upload_options": {"path_template": f"{tmp_path}/masks/${{collection}}/${{id}}"}, "tasks": {}}],
    }
    result = invoke("run-payload", "-", "--device", "cpu", input=json.dumps(payload))
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["features"] == [] and out["clouds2mask:failures"][0]["source_item"] == LONG


def test_rich_display_counts_patches_with_their_own_bar():
    bar = RichProgress(console=Console(file=io.StringIO(), force_terminal=True, width=200), auto_refresh=False)
    display = RichProgressDisplay(bar)
    display.start(2)
    display.stage("scene", "infer")
    display.patches(3, 10)
    task = bar.tasks[1]
    assert (task.completed, task.total, task.visible) == (3, 10, True)
    display.patches(10, 10)
    assert not bar.tasks[1].visible
    display.stage("next", "infer")
    assert bar.tasks[1].completed == 0 and not bar.tasks[1].visible


def test_rich_display_shows_each_retry_as_it_happens():
    """On a terminal too (the S3 retry test runs without one, so it sees the plain display only)."""
    out = io.StringIO()
    display = RichProgressDisplay(RichProgress(console=Console(file=out, width=200), auto_refresh=False))
    display.start(1)
    display.retry("scene", 2, "SlowDown from s3://b/x.tif [escaped]")
    assert "retry 2 scene: SlowDown from s3://b/x.tif [escaped]" in out.getvalue().splitlines()


def test_plain_display_prints_patches_every_tenth(capsys):
    display = PlainProgressDisplay()
    display.start(2)
    display.stage("scene", "infer")
    display.stage("next", "read")  # the next item is read while this one is inferred
    for done in range(1, 101):
        display.patches(done, 100)
    lines = [line for line in capsys.readouterr().err.splitlines() if "patches" in line]
    assert 10 <= len(lines) <= 11 and lines[-1] == "[0/2] infer scene: patches 100/100"
    assert lines[0].startswith("[0/2] infer scene: patches 1/100, ") and lines[1].startswith(
        "[0/2] infer scene: patches 10/100, "
    )
    assert all(line.endswith(" left") for line in lines[:-1])
