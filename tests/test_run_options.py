"""The run options that peers' users reach for, shown to arrive where they act: --patch-size and --overlap at the
engine's patch planner (a spy on the plan the engine makes), --cloud-buffer and --shadow-buffer in the published
mask (compared with the unbuffered mask of the same run), and every one of them from `plan` into the shard
payloads. Runs the real model on crop F (512 x 512 at 10 m, L2A)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from stac_clouds2mask import task
from stac_clouds2mask.buffers import buffer_classes
from stac_clouds2mask.cli import app
from stac_clouds2mask.config import RunConfig
from stac_clouds2mask.infer import engine
from stac_clouds2mask.infer.plan import DEFAULT_OVERLAP

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
L2A = "sentinel-2-l2a-samples-cloudmask"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


class PlanSpy:
    """Records how the engine plans its patches: a fixed size (plan_patches) or the size fitted per scene."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[Any, ...]] = []
        fixed, fitted = engine.plan_patches, engine.fitted_plan

        def plan_patches(valid, patch_size, overlap):  # noqa: ANN001, ANN202
            self.calls.append(("fixed", patch_size, overlap))
            return fixed(valid, patch_size, overlap)

        def fitted_plan(valid, overlap, streams):  # noqa: ANN001, ANN202
            plan = fitted(valid, overlap, streams=streams)
            self.calls.append(("fitted", plan.patch_h, overlap))
            return plan

        monkeypatch.setattr(engine, "plan_patches", plan_patches)
        monkeypatch.setattr(engine, "fitted_plan", fitted_plan)


def item(out: Path, version: int = 1) -> dict[str, Any]:
    iid = f"{F}_cloudmask" + (f"_v{version}" if version > 1 else "")
    return json.loads((out / L2A / iid / f"{iid}.json").read_text())


def band(out: Path, version: int = 1, suffix: str = ".tif") -> np.ndarray:
    iid = f"{F}_cloudmask" + (f"_v{version}" if version > 1 else "")
    with rasterio.open(out / L2A / iid / f"{iid}{suffix}") as ds:
        return ds.read()


@pytest.fixture(scope="module")
def baseline(sample_catalog, tmp_path_factory):
    """One default run of crop F at 10 m with probabilities, and the plans its engine made."""
    out = tmp_path_factory.mktemp("baseline")
    with pytest.MonkeyPatch.context() as mp:
        spy = PlanSpy(mp)
        result = invoke("run", str(sample_catalog), "--ids", F, "--resolution", "10", "--probabilities", "-o", str(out))
    assert result.exit_code == 0, result.output
    return out, spy.calls


def test_by_default_the_patch_size_is_fitted_per_scene(baseline):
    out, calls = baseline
    assert calls == [("fitted", calls[0][1], DEFAULT_OVERLAP)] and calls[0][1] in range(512, 769, 32)
    props = item(out)["properties"]
    settings = props["clouds2mask:settings"]
    assert settings["patch_size"] == "auto" and settings["overlap"] == DEFAULT_OVERLAP  # asked for: fitted
    python_api = RunConfig(output=str(out))  # the Python API's defaults are the command line's
    assert (python_api.patch_size, python_api.overlap) == (None, settings["overlap"])
    ran = calls[0][1]
    assert props["clouds2mask:execution"]["patch_size"] == [ran, ran]  # what ran: the size fitted to the scene
    assert f"{ran} x {ran} px patches" in props["processing:lineage"]


def test_patch_size_and_overlap_reach_the_engine(sample_catalog, tmp_path, monkeypatch, validate_stac):
    spy = PlanSpy(monkeypatch)
    args = ("run", str(sample_catalog), "--ids", F, "--resolution", "10", "-o", str(tmp_path))
    result = invoke(*args, "--patch-size", "256", "--overlap", "32")
    assert result.exit_code == 0, result.output
    assert spy.calls == [("fixed", 256, 32)]
    d = item(tmp_path)
    validate_stac(d)
    props = d["properties"]
    assert props["clouds2mask:settings"]["patch_size"] == 256 and props["clouds2mask:settings"]["overlap"] == 32
    assert "256 px patches with 32 px overlap" in props["processing:lineage"]
    assert "patch_size=256, overlap=32" in props["processing:expression"]["expression"]


def test_buffers_reach_the_published_mask_and_leave_the_probabilities(
    baseline, sample_catalog, tmp_path, validate_stac
):
    out = tmp_path / "masks"
    shutil.copytree(baseline[0], out)
    result = invoke(
        "run",
        str(sample_catalog),
        "--ids",
        F,
        "--resolution",
        "10",
        "--probabilities",
        "--cloud-buffer",
        "60",
        "--shadow-buffer",
        "30",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "1 published" in result.output  # other settings: a new version, not a skip
    plain, buffered = band(out, 1)[0], band(out, 2)[0]
    assert np.array_equal(buffered, buffer_classes(plain, 10, cloud_buffer=60, shadow_buffer=30))
    assert (buffered == 1).sum() > (plain == 1).sum() and (buffered == 2).sum() > (plain == 2).sum()
    assert np.array_equal(band(out, 2, "_probabilities.tif"), band(out, 1, "_probabilities.tif"))
    d = item(out, 2)
    validate_stac(d)
    props = d["properties"]
    assert props["clouds2mask:settings"]["cloud_buffer"] == 60 and props["clouds2mask:settings"]["shadow_buffer"] == 30
    valid = buffered != 255
    assert props["clouds2mask:cloud_percentage"] == round(100 * (buffered == 1).sum() / valid.sum(), 4)
    assert "Buffers: clear pixels within 60 m of the model's cloud became cloud" in props["processing:lineage"]
    assert "cloud_buffer=60.0, shadow_buffer=30.0" in props["processing:expression"]["expression"]
    # the same buffers again: the same settings, skipped
    again = invoke("run", str(sample_catalog), "--ids", F, "--resolution", "10", "--probabilities", "-o", str(out),
                   "--cloud-buffer", "60", "--shadow-buffer", "30")  # fmt: skip
    assert again.exit_code == 0 and "1 skipped" in again.output, again.output


def test_plan_puts_the_options_into_every_shard_payload(sample_catalog, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "plan",
        str(sample_catalog),
        "--ids",
        F,
        "-o",
        str(tmp_path / "plan"),
        "--masks",
        str(tmp_path / "masks"),
        "--patch-size",
        "256",
        "--overlap",
        "32",
        "--cloud-buffer",
        "60",
        "--shadow-buffer",
        "30",
        "--model-href",
        "weights",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "plan" / "shards" / "shard-00000.json").read_text())
    params = payload["process"][0]["tasks"]["clouds2mask"]
    assert params["model_href"] == str(tmp_path / "weights")  # absolute: the workers read the plan elsewhere
    config = task.parse_payload(payload).config(str(tmp_path / "masks"))
    assert (config.patch_size, config.overlap, config.cloud_buffer, config.shadow_buffer) == (256, 32, 60, 30)
    assert config.model_href == str(tmp_path / "weights")
