"""What ran is what the item says: the patch plan recomputed from a published mask, the runtime, precision
and threads read back from the runtime itself, and the documented rerun rule (publish/versions.py: the
requested settings decide skipping, what ran is recorded beside them) on a machine forced to choose
another precision. Real pretrained weights and real sample items throughout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import item_dict
from typer.testing import CliRunner

from stac_clouds2mask import RunConfig, run
from stac_clouds2mask.cli import app
from stac_clouds2mask.infer import cpu, fitted_plan, open_network, predict
from stac_clouds2mask.model import get_model_spec

A = "s2a-t19udp-20170729-l1c-160m"  # 687 x 687 px at 160 m, a 38 % nodata wedge
E = "s2b-t32upc-20200406-l1c-n0209-10x10"  # 10 x 10 px at 60 m


def feature_collection(sample_data_dir: Path, tmp_path: Path, *ids: str) -> Path:
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item_dict(sample_data_dir, i) for i in ids]}))
    return path


def published(out: Path, source_id: str, version: int = 1) -> tuple[dict, Path]:
    name = f"{source_id}_cloudmask" + (f"_v{version}" if version > 1 else "")
    [path] = out.glob(f"*/{name}/{name}.json")
    return json.loads(path.read_text()), path


def test_the_plan_recomputed_from_the_published_mask_is_the_one_the_item_records(sample_data_dir, tmp_path):
    """Crop A through run(): the fitted plan recomputed from the published COG's valid pixels has the patch
    size, overlap and patch count that clouds2mask:execution records, and the lineage says the same; the
    settings record the request (patch_size auto), the execution the runtime, precision and threads used."""
    out = tmp_path / "out"
    report = run(str(feature_collection(sample_data_dir, tmp_path, A)), RunConfig(output=str(out), device="cpu"))
    assert [o.status for o in report.outcomes] == ["published"]
    item, path = published(out, A)
    props = item["properties"]
    ran = props["clouds2mask:execution"]
    with rasterio.open(path.with_name(item["assets"]["cloudmask"]["href"].split("/")[-1])) as ds:
        mask = ds.read(1)
    plan = fitted_plan(mask != 255, ran["overlap"], streams=ran["streams"])
    assert [plan.patch_h, plan.patch_w] == ran["patch_size"] and plan.count == ran["patches"]
    assert ran["patch_size"] != [640, 640]  # the default size is not what this scene ran with
    lineage = props["processing:lineage"]
    assert f"in {plan.patch_h} x {plan.patch_w} px patches with {plan.overlap} px overlap" in lineage
    asked = props["clouds2mask:settings"]
    assert asked["patch_size"] == "auto" and asked["precision"] == "auto" and asked["runtime"] == "auto"
    expected = cpu.cpu_precision("auto")
    assert ran["runtime"] == "openvino" and ran["precision"] == expected and ran["threads"] == cpu.cpu_threads()
    assert ran["device"] == "cpu" and ran["layout"] == "openvino" and ran["device_name"] == cpu.cpu_name()
    assert f"run by OpenVINO {ran['runtime_version']} on the CPU" in lineage
    software = props["processing:software"]
    assert software["openvino"] == ran["runtime_version"] and "torch" not in software
    run_report = json.loads(Path(report.path).read_text())
    assert run_report["items"][0]["execution"] == ran


def test_a_rerun_on_a_machine_that_would_choose_another_precision_skips(
    sample_data_dir, tmp_path, monkeypatch, validate_stac
):
    """As publish/versions.py documents: the request decides. Published where auto chose fp32 (forced: the
    CPU reports no native bf16), a rerun where auto would choose bf16 skips the item and leaves it, fp32
    record and all, untouched; asking for bf16 is another request and publishes version 2, recorded as bf16."""
    fc = str(feature_collection(sample_data_dir, tmp_path, E))
    out = tmp_path / "out"
    monkeypatch.setattr(cpu, "cpu_has_native_bf16", lambda: False)
    assert [o.status for o in run(fc, RunConfig(output=str(out), device="cpu")).outcomes] == ["published"]
    first, path = published(out, E)
    assert first["properties"]["clouds2mask:execution"]["precision"] == "fp32"
    before = path.read_bytes()

    monkeypatch.setattr(cpu, "cpu_has_native_bf16", lambda: True)
    assert cpu.cpu_precision("auto") == "bf16"
    rerun = run(fc, RunConfig(output=str(out), device="cpu"))
    assert [o.status for o in rerun.outcomes] == ["skipped"]
    assert path.read_bytes() == before

    asked = run(fc, RunConfig(output=str(out), device="cpu", precision="bf16"))
    assert [o.status for o in asked.outcomes] == ["published"]
    second, _ = published(out, E, version=2)
    assert second["properties"]["clouds2mask:execution"]["precision"] == "bf16"
    assert second["properties"]["clouds2mask:settings"]["precision"] == "bf16"
    assert "precision='bf16'" in second["properties"]["processing:expression"]["expression"]
    validate_stac(second)


def test_runtime_option_reaches_the_engine_and_the_item(sample_data_dir, tmp_path):
    """`--runtime torch` on the command line: the torch module ran (the item and the run report say so)."""
    fc = str(feature_collection(sample_data_dir, tmp_path, E))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", fc, "-o", str(out), "--device", "cpu", "--runtime", "torch", "--precision", "fp32"]
    )
    assert result.exit_code == 0, result.output
    item, _ = published(out, E)
    ran = item["properties"]["clouds2mask:execution"]
    assert ran["runtime"] == "torch" and ran["runtime_version"] == torch.__version__.split("+")[0]
    assert ran["precision"] == "fp32" and ran["layout"] in ("channels_last", "contiguous")
    assert item["properties"]["clouds2mask:settings"]["runtime"] == "torch"
    assert item["properties"]["processing:software"]["torch"] == ran["runtime_version"]


def test_openvino_runs_in_the_precision_and_threads_it_records():
    """Read back from OpenVINO's compiled model: the precision, threads and streams it runs with are the
    ones the Execution (and so the item) records; each call keeps a patch in flight per stream."""
    spec = get_model_spec("model_4b_l2a")
    for precision in ["fp32", "bf16"] if cpu.cpu_has_native_bf16() else ["fp32"]:
        net = open_network(spec, torch.device("cpu"), "openvino", precision)
        hint = str(net.compiled.get_property("INFERENCE_PRECISION_HINT"))
        assert {"fp32": "float32", "bf16": "bfloat16"}[precision] in hint and net.execution.precision == precision
        assert net.compiled.get_property("INFERENCE_NUM_THREADS") == net.execution.threads == cpu.cpu_threads()
        assert net.compiled.get_property("NUM_STREAMS") == net.execution.streams == net.execution.batch_size
        assert len(net.requests) == net.execution.streams


@pytest.mark.parametrize("limit", [["taskset", "-c", "0"], ["env", "OMP_NUM_THREADS=1"]], ids=["taskset", "omp"])
def test_threads_follow_the_cores_the_process_was_given(limit):
    """One core given (CPU affinity, or OMP_NUM_THREADS): one OpenVINO thread, and the torch runtime runs
    on one thread too (torch's pool set by the engine), never the machine's core count."""
    code = (
        "import numpy as np, torch\n"
        "from stac_clouds2mask.infer import open_network, predict\n"
        "from stac_clouds2mask.model import get_model_spec\n"
        "spec = get_model_spec('model_4b_l2a')\n"
        "ov = open_network(spec, torch.device('cpu'), 'openvino')\n"
        "pt = open_network(spec, torch.device('cpu'), 'torch', 'fp32')\n"
        "predict(np.full((4, 64, 64), 0.2, np.float32), np.ones((64, 64), bool), spec, pt, device='cpu')\n"
        "print(ov.execution.threads, ov.compiled.get_property('INFERENCE_NUM_THREADS'), pt.execution.threads,\n"
        "      torch.get_num_threads())\n"
    )
    done = subprocess.run([*limit, sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "1", "1", "1"], done.stderr


def test_cgroup_cpu_quota_caps_the_threads(tmp_path):
    """cgroup v2 cpu.max and v1 cfs quota/period, as a container sees them (rounded up; no quota: None)."""
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cpu.cgroup_cpu_limit(v2) == 2
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cpu.cgroup_cpu_limit(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu.cgroup_cpu_limit(v1.parent) == 1
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu.cgroup_cpu_limit(v1.parent) is None
    assert cpu.cgroup_cpu_limit(tmp_path / "none") is None


def test_openvino_runs_the_weights_of_the_onnx_file_the_spec_names(tmp_path):
    """The OpenVINO network reads spec.onnx_path, the file the item's mlm model asset copies: a copy whose
    head says "cloud shadow" everywhere gives shadow everywhere, and the original does not."""
    import dataclasses

    import onnx
    from onnx import numpy_helper

    spec = get_model_spec("model_4b_l2a")
    graph = onnx.load(str(spec.onnx_path))
    [bias] = [i for i in graph.graph.initializer if i.name.endswith("segmentation_head.0.bias")]
    value = numpy_helper.to_array(bias).copy()
    value[2] = 1e4
    bias.CopyFrom(numpy_helper.from_array(value.astype(value.dtype), bias.name))
    onnx.save(graph, str(tmp_path / "model_4b_l2a.onnx"))
    shadowy = dataclasses.replace(spec, onnx_path=tmp_path / "model_4b_l2a.onnx")
    x = np.full((4, 96, 96), 0.3, np.float32)
    valid = np.ones((96, 96), bool)
    assert (predict(x, valid, shadowy, device="cpu", runtime="openvino").classes == 2).all()
    assert not (predict(x, valid, spec, device="cpu", runtime="openvino").classes == 2).all()


def test_openvino_and_torch_agree_on_any_plan_shape_and_batch():
    """Real weights on crop B's pixels cut to 200 x 700 (patches of 224 x 256: not square, not the ONNX
    graph's 256 x 256) in batches of 3 with a ragged last one: OpenVINO (fp32) agrees with the torch
    module (fp32) on classes and probabilities, and batching changes nothing."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import label_iou

    x = label_iou.chip_data(label_iou.CHIPS[2])[0]
    x = np.concatenate([x, x[:, :, ::-1]], axis=2)[:, 100:300, :700]
    valid = np.ones(x.shape[1:], bool)
    spec = get_model_spec("model_6b_l1c")
    options = dict(device="cpu", precision="fp32", patch_size=256, with_probabilities=True)
    ov1 = predict(x, valid, spec, runtime="openvino", **options)
    ov3 = predict(x, valid, spec, runtime="openvino", batch_size=3, **options)
    pt = predict(x, valid, spec, runtime="torch", **options)
    assert ov1.record()["patch_size"] == [224, 256] and ov1.patches_run % 3 and ov3.execution.batch_size == 3
    assert (ov1.classes == ov3.classes).all()
    assert np.abs(ov1.probabilities.astype(int) - ov3.probabilities).max() <= 1
    assert (ov1.classes == pt.classes).mean() > 0.999
    assert np.abs(ov1.probabilities.astype(int) - pt.probabilities).max() <= 3
