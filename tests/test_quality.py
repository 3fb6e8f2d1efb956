"""The quality guard: masks judged by labels, not by bit-agreement with the reference runtime.

Every labelled chip of ../shared/data (F and G at native 10 m with cloud labels; crop B with cloud
and shadow labels) goes through this engine (the public array API, real pretrained weights) and
through ukis-csmask's own onnxruntime runtime, on the same pixels. The engine may place its patches
differently from the reference (the models are not shift-invariant, so any other grid changes ~2 %
of classes) as long as, for every runtime (OpenVINO, torch) and precision it can run in on this CPU:
  - mean cloud IoU is at most 0.005 below the reference's, and no chip's more than 0.01 below;
  - shadow IoU on B at most 0.01 below the reference's;
  - agreement with the reference on valid pixels stays >= 97.5 %.
The figures come from benchmarks/label_iou.py, which prints the same table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import label_iou  # noqa: E402

from stac_clouds2mask.infer.cpu import cpu_has_native_bf16  # noqa: E402


def runs() -> list[tuple[str, str]]:
    """Every runtime and precision the engine may choose on this CPU (auto picks one of them by the CPU's
    instruction set): OpenVINO, a dependency of the package, and torch, the fallback; fp32, and bf16
    where the CPU has it natively."""
    precisions = ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]
    return [(runtime, precision) for runtime in ("openvino", "torch") for precision in precisions]


@pytest.mark.parametrize(("runtime", "precision"), runs())
def test_label_iou_is_not_below_the_reference_runtime(runtime, precision):
    scores = label_iou.score_all(runtime=runtime, precision=precision)
    print(f"\n{scores[0].ran}\n{label_iou.table(scores)}")
    assert all(s.ran.startswith(f"cpu, {precision},") and f", {runtime} " in s.ran for s in scores), scores
    assert [s.chip for s in scores] == ["F", "G", "B"]
    mean_ours = np.mean([s.cloud_ours for s in scores])
    mean_ref = np.mean([s.cloud_ref for s in scores])
    assert mean_ours >= mean_ref - 0.005
    for s in scores:
        assert s.cloud_ours >= s.cloud_ref - 0.01, s
        assert s.agreement >= 0.975, s
    b = scores[2]
    assert b.shadow_ours is not None and b.shadow_ref is not None
    assert b.shadow_ours >= b.shadow_ref - 0.01


def test_no_visible_seams():
    """Class disagreement with the reference within 8 px of our patch edges is at most 1.5x that
    elsewhere (pooled over the labelled chips, 256 px patches so that every chip has inner edges,
    the default overlap): the overlap and its blending window hide the seams."""
    from stac_clouds2mask import mask_array
    from stac_clouds2mask.infer import DEFAULT_OVERLAP, plan_patches

    near = far = near_n = far_n = 0
    for chip in label_iou.CHIPS:
        x, _ = label_iou.chip_data(chip)
        ours = mask_array(x, chip.bands, level=chip.level, device="cpu", patch_size=256, precision="fp32").classes
        band = plan_patches(ours != 255, 256, DEFAULT_OVERLAP).seam_band()
        assert band.mean() > 0.1
        differ = ours != label_iou.reference_classes(x, chip)
        near, near_n = near + int(differ[band].sum()), near_n + int(band.sum())
        far, far_n = far + int(differ[~band].sum()), far_n + int((~band).sum())
    ratio = (near / near_n) / (far / far_n)
    print(f"\nseam band disagreement {near / near_n:.4%}, elsewhere {far / far_n:.4%}, ratio {ratio:.2f}")
    assert ratio <= 1.5
