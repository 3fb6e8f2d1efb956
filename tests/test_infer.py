"""Patch inference: the planner, the blending and nodata plumbing, and the real model on crop B.

The crop-B test uses the real pretrained weights (quality is judged in test_quality.py). The plumbing tests use a
tiny randomly initialised (or constant) convolution in place of the U-Net: they check tiling,
skipping, blending and nodata handling only, and say nothing about cloud detection.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import label_iou  # noqa: E402

from stac_clouds2mask.infer import NODATA, PROBABILITY_SCALE, Prediction, blend_window, predict, resolve_device
from stac_clouds2mask.model import choose_model, get_model_spec

SIX = ("blue", "green", "red", "nir", "swir16", "swir22")


def crop_b() -> np.ndarray:
    """Crop B's reflectance (C, H, W) in the 6-band model's order, as the quality guard reads it."""
    chip = label_iou.CHIPS[2]
    assert chip.name == "B" and chip.bands == SIX
    return label_iou.chip_data(chip)[0]


def test_crop_b_probabilities_through_the_production_path():
    """Real model on crop B through predict's own model loading (BatchNorm folded): classes and
    probabilities are well formed (the label-IoU guard in test_quality.py judges the classes)."""
    spec = choose_model("L1C", SIX)
    assert spec.name == "model_6b_l1c" and spec.bands == SIX
    x = crop_b()
    pred = predict(x, np.ones(x.shape[1:], bool), spec, device="cpu", with_probabilities=True)
    assert pred.classes.dtype == np.uint8 and set(np.unique(pred.classes)) <= {0, 1, 2}
    assert pred.probabilities is not None and pred.probabilities.shape == (3, 512, 512)
    assert np.abs(pred.probabilities.astype(int).sum(0) - PROBABILITY_SCALE).max() <= 2
    assert (pred.probabilities.argmax(0) == pred.classes).mean() > 0.999
    assert pred.patches_skipped == 0


class TinyConv(nn.Module):
    """A random 3x3 convolution standing in for the U-Net (plumbing only, not a cloud model)."""

    def __init__(self, bands: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(bands, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ConstantLogits(nn.Module):
    """Same logits at every pixel whatever the input: any seam or edge effect would show."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.tensor([0.0, 1.0, -1.0], device=x.device).reshape(1, 3, 1, 1)
        return logits.expand(x.shape[0], 3, x.shape[2], x.shape[3]) + 0 * x[:, :1]


@pytest.fixture(scope="module")
def spec6():
    return get_model_spec("model_6b_l1c")


def random_scene(h: int, w: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 0.5, (6, h, w)).astype(np.float32)


def test_all_invalid_patches_skipped_and_marked_nodata(spec6):
    x = random_scene(600, 700)
    valid = np.ones((600, 700), bool)
    valid[:, :450] = False  # a swath-edge-like nodata block
    valid[:40, 450:] = False
    pred = predict(x, valid, spec6, TinyConv(6), device="cpu", with_probabilities=True, patch_size=256)
    assert pred.patches_skipped > 0 and pred.patches_run > 0
    assert (pred.classes[~valid] == NODATA).all()
    assert (pred.classes[valid] != NODATA).all()
    assert (pred.probabilities[:, ~valid] == NODATA).all()
    full = predict(x, np.ones_like(valid), spec6, TinyConv(6), device="cpu", patch_size=256)
    assert full.patches_skipped == 0 and full.patches_run > pred.patches_run


def test_invalid_pixel_values_do_not_matter(spec6):
    x = random_scene(300, 300)
    valid = np.ones((300, 300), bool)
    valid[100:200, 100:200] = False
    y = x.copy()
    y[:, ~valid] = -0.1  # e.g. nodata DN 0 with the +1000 offset applied
    a = predict(x, valid, spec6, TinyConv(6), device="cpu", with_probabilities=True)
    b = predict(y, valid, spec6, TinyConv(6), device="cpu", with_probabilities=True)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)


def test_constant_model_gives_seamless_constant_output(spec6):
    x = random_scene(700, 530)
    calls = []
    pred = predict(
        x,
        np.ones((700, 530), bool),
        spec6,
        ConstantLogits(),
        device="cpu",
        batch_size=3,
        patch_size=256,
        with_probabilities=True,
        progress=lambda done, total: calls.append((done, total)),
    )
    expected = np.rint(torch.softmax(torch.tensor([0.0, 1.0, -1.0]), 0).numpy() * PROBABILITY_SCALE).astype(np.uint8)
    assert (pred.classes == 1).all()
    for c in range(3):
        assert (pred.probabilities[c] == expected[c]).all()
    assert pred.patches_run > 3
    assert calls[-1] == (pred.patches_run, pred.patches_run)
    assert len(calls) == -(-pred.patches_run // 3)


class EdgeBiased(nn.Module):
    """Says "cloud" within 16 px of its patch's edge and "clear" elsewhere: the edge artefact of real
    patch models, exaggerated. Blending must let the patch that sees a pixel from inside win."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        edge = (torch.minimum(torch.minimum(yy, h - 1 - yy), torch.minimum(xx, w - 1 - xx)) < 16).float()
        logits = torch.stack([torch.ones_like(edge), 3 * edge, -torch.ones_like(edge)])
        return logits.unsqueeze(0).expand(x.shape[0], -1, -1, -1) + 0 * x[:, :1]


def test_blending_lets_the_inside_view_win_over_patch_edges(spec6):
    """Plumbing (a fake edge-biased model, not the U-Net): inside the scene no patch edge shows
    through; only pixels that one patch alone sees near its edge (the scene border) may be 'cloud'."""
    x = random_scene(900, 1100)
    pred = predict(x, np.ones((900, 1100), bool), spec6, EdgeBiased(), device="cpu", patch_size=256)
    assert pred.patches_run > 9
    assert (pred.classes[16:-16, 16:-16] == 0).all()


def test_small_scene(spec6):
    x = random_scene(40, 50)
    valid = np.ones((40, 50), bool)
    valid[0, 0] = False
    pred = predict(x, valid, spec6, TinyConv(6), device="cpu")
    assert isinstance(pred, Prediction)
    assert pred.classes.shape == (40, 50) and pred.patches_run == 1
    assert pred.classes[0, 0] == NODATA and (pred.classes[valid] < 3).all()


def test_deterministic(spec6):
    x = random_scene(300, 520)
    valid = np.ones((300, 520), bool)
    a = predict(x, valid, spec6, TinyConv(6), device="cpu", with_probabilities=True)
    b = predict(x, valid, spec6, TinyConv(6), device="cpu", with_probabilities=True, batch_size=1)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)


def test_input_checks(spec6):
    x = random_scene(64, 64)
    valid = np.ones((64, 64), bool)
    with pytest.raises(ValueError, match="bands"):
        predict(x[:4], valid, spec6, TinyConv(6), device="cpu")
    with pytest.raises(ValueError, match="valid mask"):
        predict(x, valid[:10], spec6, TinyConv(6), device="cpu")
    with pytest.raises(ValueError, match="multiple of 32"):
        predict(x, valid, spec6, TinyConv(6), device="cpu", patch_size=100)
    with pytest.raises(ValueError, match="overlap"):
        predict(x, valid, spec6, TinyConv(6), device="cpu", overlap=400)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_mps_is_chosen_only_by_name_and_only_where_torch_has_it(monkeypatch):
    """The choice logic of Apple's MPS (no Mac here: torch's answer is stood in for). Named and present: the
    MPS device, run by torch in float32 (or the precision asked for) without the CPU's table; named and absent:
    a clear error; `auto` never picks it."""
    from stac_clouds2mask.infer import device as device_module
    from stac_clouds2mask.infer import runtimes

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")
    assert resolve_device("auto") == torch.device("cpu")

    def no_cpu_table(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the CPU's precision table was asked for an MPS device")

    monkeypatch.setattr(runtimes, "cpu_precision", no_cpu_table)
    mps = torch.device("mps")
    assert runtimes.choose_runtime("auto", mps) == "torch"  # OpenVINO runs on the CPU only
    assert runtimes.torch_mode(mps, "auto") == device_module.ExecMode("fp32", False)
    assert runtimes.torch_mode(mps, "fp16").precision == "fp16"

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="Apple's MPS is not available here .*use --device cpu or auto"):
        resolve_device("mps")


def test_patches_sit_on_the_reference_lattice_and_start_where_the_data_starts():
    """Planner only: origins on the lattice 32 k + 13 (ukis-csmask's grid phase, -51 mod 32), a run
    tiled from the lattice point before its first valid pixel, its last patch slid back inward (also when it
    is the run's only one and the scene ends within it)."""
    from stac_clouds2mask.infer.plan import PHASE, axis_starts

    assert PHASE == 13
    assert axis_starts(np.ones(1000, bool), 512, 64) == [-19, 429, 493]
    data_from_300 = np.r_[np.zeros(300, bool), np.ones(700, bool)]
    assert axis_starts(data_from_300, 512, 64) == [269, 493]
    two_runs = np.r_[np.ones(300, bool), np.zeros(1000, bool), np.ones(10, bool)]
    assert axis_starts(two_runs, 512, 64) == [-19, 813]  # the short run at the end: slid back inward too
    assert axis_starts(np.zeros(800, bool), 512, 64) == []


def test_plan_on_a_swath_edge_carries_data_and_beats_the_naive_grid():
    """Planner only: on a diagonal swath edge every patch holds a substantial share of valid pixels
    (patches are slid inward, not left hanging over nodata) and fewer patches run than a plain grid."""
    from stac_clouds2mask.infer import plan_patches

    h = w = 3000
    yy, xx = np.mgrid[:h, :w]
    valid = xx > 0.7 * yy + 400
    plan = plan_patches(valid)
    shares = [valid[max(y0, 0) : y0 + plan.patch_h, max(x0, 0) : x0 + plan.patch_w].mean() for y0, x0 in plan.origins()]
    assert min(shares) > 0.2
    assert plan.count < plan.naive
    assert plan.processed_pixels < 0.7 * plan.naive * plan.patch_h * plan.patch_w


def test_with_two_streams_the_plan_keeps_both_busy():
    """Planner only: a 2048 px square of data. One stream: the fewest processed pixels, in an odd number of
    patches, whose last round leaves one of two streams idle. Two streams: a plan that keeps the network busy
    less time on them (rounds x patch area), for a few more processed pixels at most."""
    from stac_clouds2mask.infer import fitted_plan

    valid = np.ones((2048, 2048), bool)
    one, two = fitted_plan(valid), fitted_plan(valid, streams=2)
    assert one.count % 2 == 1 and one.rounds(2) == one.count // 2 + 1
    assert two.rounds(2) * two.patch_h * two.patch_w < one.rounds(2) * one.patch_h * one.patch_w
    assert one.processed_pixels <= two.processed_pixels < 1.1 * one.processed_pixels
    chip = np.ones((512, 512), bool)  # one patch; two would finish sooner on idle streams, for twice the work
    assert fitted_plan(chip, streams=2).count == fitted_plan(chip).count == 1


def test_planner_covers_every_valid_pixel_and_skips_pure_nodata():
    """Planner only (no model): a real-looking swath edge (diagonal nodata wedge) plus a nodata band."""
    from stac_clouds2mask.infer import plan_patches

    h, w = 1500, 1300
    yy, xx = np.mgrid[:h, :w]
    valid = xx > 0.6 * yy + 200  # swath edge
    valid[600:1100] = False  # more rows of nodata than one patch is high
    plan = plan_patches(valid)
    covered = np.zeros_like(valid)
    for y0, x0 in plan.origins():
        sub = valid[max(y0, 0) : y0 + plan.patch_h, max(x0, 0) : x0 + plan.patch_w]
        assert sub.any(), (y0, x0)
        covered[max(y0, 0) : y0 + plan.patch_h, max(x0, 0) : x0 + plan.patch_w] = True
    assert covered[valid].all()
    assert plan.count < plan.naive
    again = plan_patches(valid)
    assert again.rows == plan.rows and again.naive == plan.naive


def test_stripes_match_when_whole_patch_rows_are_nodata(spec6):
    """Plumbing with a tiny random conv (not the U-Net): rows of pure nodata between data do not
    break the row-by-row blending, and DN input with scale/offset equals reflectance input."""
    torch.manual_seed(0)
    model = nn.Conv2d(6, 3, 3, padding=1)
    rng = np.random.default_rng(0)
    dn = rng.integers(1000, 4000, size=(6, 900, 700)).astype(np.uint16)
    valid = np.ones((900, 700), bool)
    valid[300:800] = False
    dn[:, ~valid] = 0  # nodata as Sentinel-2 stores it
    refl = dn.astype(np.float32) * np.float32(1e-4) - np.float32(0.1)
    a = predict(refl, valid, spec6, model, device="cpu")
    b = predict(dn, valid, spec6, model, device="cpu", scale=[1e-4] * 6, offset=[-0.1] * 6)
    assert (a.classes[~valid] == NODATA).all() and (a.classes[valid] != NODATA).all()
    assert (a.classes == b.classes).mean() > 0.9999


def test_dn_input_keeps_partially_valid_pixels_as_ukis_csmask_does(spec6):
    """Plumbing with a tiny random conv: a band that is nodata (DN 0) enters as reflectance 0,
    while the other bands of the same pixel enter as they are (swath edges differ by band)."""
    torch.manual_seed(0)
    model = nn.Conv2d(6, 3, 3, padding=1)
    rng = np.random.default_rng(1)
    dn = rng.integers(1000, 4000, size=(6, 64, 64)).astype(np.uint16)
    dn[5, :, :20] = 0  # one band's edge further in than the others
    valid = (dn != 0).all(axis=0)
    a = predict(dn, valid, spec6, model, device="cpu", scale=[1e-4] * 6, offset=[0.0] * 6)
    refl = dn.astype(np.float32) * np.float32(1e-4)
    b = predict(refl, np.ones_like(valid), spec6, model, device="cpu")
    assert (a.classes[~valid] == NODATA).all()
    assert (a.classes[valid] == b.classes[valid]).all()
    dn[0, :, :20] = 9999  # different values in the other bands must now matter next to the edge
    c = predict(dn, valid, spec6, model, device="cpu", scale=[1e-4] * 6, offset=[0.0] * 6)
    assert (c.classes[:, 20:22] != a.classes[:, 20:22]).any()


def test_patches_past_the_edge_mirror_the_whole_scene():
    """Indices past a scene edge mirror the scene as numpy.pad(mode='symmetric') does."""
    from stac_clouds2mask.infer.engine import _mirrored

    arr = torch.from_numpy(np.random.default_rng(0).random((2, 37, 29)))
    padded = np.pad(arr.numpy(), ((0, 0), (300, 300), (300, 300)), mode="symmetric")
    cases = [(-19, -19, 64, 64), (10, 5, 20, 20), (20, -3, 64, 64), (-100, -60, 256, 160), (-5, -3, 40, 34)]
    for y0, x0, ph, pw in cases:
        cut = _mirrored(_mirrored(arr, 1, y0, ph), 2, x0, pw)
        np.testing.assert_array_equal(cut.numpy(), padded[:, y0 + 300 : y0 + 300 + ph, x0 + 300 : x0 + 300 + pw])


def test_mask_array_marks_zero_and_nan_as_nodata_and_refuses_digital_numbers():
    """The array API (real model) on crop B: DN 0 / NaN pixels are nodata, never clear; DNs are refused."""
    from stac_clouds2mask import mask_array

    x = crop_b()
    x[:, :40, :] = 0  # a swath-edge wedge as Sentinel-2 stores it
    x[0, 100, 100] = np.nan
    pred = mask_array(x, SIX, level="L1C", device="cpu")
    assert (pred.classes[:40] == NODATA).all() and pred.classes[100, 100] == NODATA
    assert (pred.classes[40:100] != NODATA).all()
    with pytest.raises(ValueError, match="look like digital numbers"):
        mask_array(x * 10000, SIX, level="L1C", device="cpu")


@pytest.mark.parametrize(("length", "overlap"), [(256, 52), (640, 64), (40, 64)])
def test_blend_window_is_a_raised_cosine_ramp(length, overlap):
    """Weights rise as 0.5 - 0.5 cos(pi (i + 0.5) / ramp) over the overlap at each end, flat 1 between:
    a patch's edge pixels, which see the least context, count least where patches overlap."""
    w = blend_window(length, overlap).double()
    ramp = min(overlap, length // 2)
    edge = torch.arange(ramp, dtype=torch.float64) + 0.5
    expected = 0.5 - 0.5 * torch.cos(torch.pi * edge / ramp)
    assert w.shape == (length,) and torch.equal(w, w.flip(0))
    torch.testing.assert_close(w[:ramp], expected, atol=1e-6, rtol=0)
    assert torch.all(w[ramp : length - ramp] == 1) and w.min() > 0 and w[0] < 0.01
