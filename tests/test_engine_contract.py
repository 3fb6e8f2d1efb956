"""The engine's contract, seen through ``predict``: the precision asked for is the one the network runs in
(or a clear error where the device cannot), and a band's declared nodata value other than 0 never reaches
the network as data. A spy module records what the network is given and the dtype it computes in.

The precision tests wrap a tiny randomly initialised convolution (plumbing only: they say nothing about
clouds); the nodata test wraps the real pretrained 6-band L1C U-Net on the real DNs of crop D. The last
tests show patch rows kept in flight: one patch row started before the one before is blended, and the
OpenVINO runtime giving each batch in flight its own logits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from conftest import unchanged_items
from torch import nn

from stac_clouds2mask.infer import ExecMode, fitted_plan, open_network, plan_patches, predict
from stac_clouds2mask.infer import cpu as cpu_module
from stac_clouds2mask.infer.runtimes import Network, TorchNetwork
from stac_clouds2mask.model import get_model_spec, load_model
from stac_clouds2mask.read import declared_nodata, find_asset, scale_offset
from stac_clouds2mask.search import SearchFilters, search

D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
SIX = ("blue", "green", "red", "nir", "swir16", "swir22")
NODATA = 255


class Spy(nn.Module):
    """Runs ``net`` and keeps each batch it was given (as float32 on the CPU) and the dtype of its output."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.inputs: list[torch.Tensor] = []
        self.dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().float().cpu().clone())
        out = self.net(x)
        self.dtypes.append(out.dtype)
        return out


def tiny_conv() -> nn.Module:
    """A random 3x3 convolution standing in for the U-Net (plumbing only)."""
    torch.manual_seed(0)
    return nn.Conv2d(6, 3, 3, padding=1)


@pytest.fixture
def spec6():
    return get_model_spec("model_6b_l1c")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """CPU mode measurements go to a folder of the test's own, not the user's cache."""
    monkeypatch.setenv("STAC_CLOUDS2MASK_CACHE", str(tmp_path / "cache"))


def scene(h: int = 70, w: int = 90) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(3).uniform(0.01, 0.5, (6, h, w)).astype(np.float32)
    return x, np.ones((h, w), bool)


# ------------------------------------------------------------------------------------------
# precision
# ------------------------------------------------------------------------------------------


def test_fp32_asked_runs_in_fp32(spec6, monkeypatch):
    """Even where the CPU would offer bfloat16, fp32 asked is fp32 run (the spy sees float32 outputs)."""
    monkeypatch.setattr(cpu_module, "cpu_has_native_bf16", lambda: True)
    spy = Spy(tiny_conv())
    pred = predict(*scene(), spec6, spy, device="cpu", precision="fp32")
    assert spy.dtypes and set(spy.dtypes) == {torch.float32}
    assert pred.mode.startswith("cpu, fp32")


def test_bf16_asked_runs_in_bf16_on_a_cpu_that_has_it(spec6, monkeypatch):
    """A CPU with native bfloat16 (its flag set here, the computation is torch's own either way): the network
    computes in bfloat16 for every batch, and the prediction says so."""
    monkeypatch.setattr(cpu_module, "cpu_has_native_bf16", lambda: True)
    spy = Spy(tiny_conv())
    pred = predict(*scene(), spec6, spy, device="cpu", precision="bf16")
    assert spy.dtypes and set(spy.dtypes) == {torch.bfloat16}
    assert pred.mode.startswith("cpu, bf16")
    assert (pred.classes < 3).all()


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_precision_the_cpu_lacks_is_a_clear_error_not_a_silent_fp32_run(spec6, monkeypatch, precision):
    """fp16 on any CPU, bf16 on a CPU without native bfloat16: ValueError naming the precision and the CPU,
    and the network never runs."""
    monkeypatch.setattr(cpu_module, "cpu_has_native_bf16", lambda: False)
    spy = Spy(tiny_conv())
    with pytest.raises(ValueError, match=f"precision '{precision}' is not available on this CPU"):
        predict(*scene(), spec6, spy, device="cpu", precision=precision)
    assert spy.inputs == []


# ------------------------------------------------------------------------------------------
# declared nodata other than 0
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crop_d(sample_catalog):
    yield from unchanged_items({i.id: i for i in search(str(sample_catalog), SearchFilters(ids=(D,)))})


def read_band(href: str) -> np.ndarray:
    with rasterio.open(href) as ds:
        return ds.read(1)


def test_a_declared_nodata_value_never_reaches_the_network_as_data(spec6, crop_d):
    """Crop D declares nodata 65535 (its +1000-offset DNs are scaled on the device). Its real DNs with
    65535 in one band of two pixels, given as DNs with the declared nodata: at those pixels that band
    enters the network as reflectance 0 (as DN 0 would), the other bands as they are, and nowhere does
    the network see a value that 65535 would make; the mask is nodata there."""
    item = crop_d[D]
    found = [find_asset(item, band) for band in SIX]
    dn = np.stack([read_band(asset.get_absolute_href()) for _, asset in found])
    nodata = [declared_nodata(asset) for _, asset in found]
    scale, offset = zip(*(scale_offset(item, key, asset) for key, asset in found))
    assert set(nodata) == {65535} and (dn != 65535).all() and (dn != 0).all()
    holes = {(2, 3, 2), (4, 6, 5)}  # (band, row, col): red and swir22
    for band, r, c in holes:
        dn[band, r, c] = 65535
    valid = (dn != 0).all(0) & (dn != 65535).all(0)

    spy = Spy(load_model(spec6, fold_bn=True))
    pred = predict(
        dn, valid, spec6, spy, device="cpu", scale=scale, offset=offset, nodata=nodata, mode=ExecMode("fp32", False)
    )
    [x] = spy.inputs
    [(y0, x0)] = plan_patches(valid).origins()  # the patch starts before pixel 0 (mirrored margin)
    mean, std = np.array(spec6.mean)[:, None, None], np.array(spec6.std)[:, None, None]
    reflectance = dn * np.array(scale)[:, None, None] + np.array(offset)[:, None, None]
    seen = x[0, :, -y0 : -y0 + dn.shape[1], -x0 : -x0 + dn.shape[2]].numpy()
    for band, r, c in holes:
        assert seen[band, r, c] == pytest.approx(-spec6.mean[band] / spec6.std[band], abs=1e-5)
        others = [b for b in range(6) if b != band]
        np.testing.assert_allclose(seen[others, r, c], ((reflectance - mean) / std)[others, r, c], atol=1e-4)
    as_data = (65535 * np.array(scale) + np.array(offset) - np.array(spec6.mean)) / np.array(spec6.std)
    assert (x.amax(dim=(0, 2, 3)).numpy() < as_data / 2).all()
    assert all(pred.classes[r, c] == NODATA for _, r, c in holes)
    assert (pred.classes[valid] < 3).all()


# ------------------------------------------------------------------------------------------
# patch rows in flight
# ------------------------------------------------------------------------------------------


class Ledger(Network):
    """Runs a torch module, and writes down when each batch is submitted and when its logits are taken."""

    def __init__(self, module: nn.Module) -> None:
        self.inner = TorchNetwork(module, torch.device("cpu"), ExecMode("fp32", False), 1)
        self.execution = self.inner.execution
        self.torch_threads = 1
        self.events: list[str] = []

    def submit(self, batch: torch.Tensor, batch_size: int | None = None):  # noqa: ANN201
        n = sum(e.startswith("submit") for e in self.events)
        self.events.append(f"submit {n}")
        logits = self.inner(batch, batch_size)

        def taken() -> torch.Tensor:
            self.events.append(f"logits {n}")
            return logits

        return taken


def test_a_patch_row_starts_before_the_row_before_is_blended(spec6):
    """Three patch rows of one patch each (a tiny random convolution: plumbing only): each row's batch is
    submitted before the logits of the row before are taken, so a runtime with several streams starts the
    next row while the last patch of a row runs; the classes are those of the same module run directly."""
    x, valid = scene(1300, 200)
    ledger = Ledger(tiny_conv())
    pred = predict(x, valid, spec6, ledger, patch_size=512)
    assert len(pred.plan.rows) == 3 and pred.plan.count == 3
    assert ledger.events == ["submit 0", "submit 1", "logits 0", "submit 2", "logits 1", "logits 2"]
    direct = predict(x, valid, spec6, tiny_conv(), patch_size=512, mode=ExecMode("fp32", False))
    assert np.array_equal(pred.classes, direct.classes)


def test_the_engine_plans_for_the_streams_its_network_runs(spec6):
    """A network that runs two patches at once (a tiny random convolution standing in: plumbing only) gets
    the plan fitted for two streams, which on this scene is not the one-stream plan."""
    x, valid = scene(2048, 2048)
    net = TorchNetwork(tiny_conv(), torch.device("cpu"), ExecMode("fp32", False), 1)
    net.execution = replace(net.execution, streams=2)
    pred = predict(x, valid, spec6, net)
    assert pred.plan == fitted_plan(valid, streams=2) != fitted_plan(valid)
    assert pred.record()["patch_size"] == [pred.plan.patch_h, pred.plan.patch_w]


def test_openvino_batches_in_flight_each_get_their_own_logits():
    """Two batches of three patches submitted at once (more patches than streams, so requests are reused
    while the first batch's logits are still untaken), taken in the opposite order: each patch's logits are
    the ones the same network gives for that patch alone."""
    spec = get_model_spec("model_4b_l2a")
    net = open_network(spec, torch.device("cpu"), "openvino", "fp32")
    batches = [
        torch.from_numpy(np.random.default_rng(s).normal(size=(3, 4, 64, 96)).astype(np.float32)) for s in (1, 2)
    ]
    alone = [torch.cat([net(b[i : i + 1]) for i in range(3)]) for b in batches]
    first, second = (net.submit(b, 2) for b in batches)
    assert torch.equal(second(), alone[1]) and torch.equal(first(), alone[0])
    assert not torch.equal(alone[0][0], alone[0][2])  # the patches differ, so a mix-up would show
    assert net.started == [] and net.holds == [None] * net.execution.streams
