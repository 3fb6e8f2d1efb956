"""Array-level cloud / cloud-shadow inference: overlapping patches, blended probabilities, class map.

The hot path stays on the inference device: one patch row of the input (a stripe of patch height,
as stored, e.g. uint16 DNs) is copied to the device once, converted and standardised there, cut into
patches by slicing, run in batches, and the softmax of each patch, weighted by a window that fades
out over the overlap, is summed into a device-resident stripe accumulator. Rows that no later patch
can reach are argmaxed on the device and only the uint8 classes (and, if asked, uint8 probabilities)
come back to the host. Host memory beyond the input and the outputs is one stripe; on CUDA the
stripe goes through pinned memory and the next stripe's copy overlaps the current row's compute.
A patch row is started before the row before it is blended (Network.submit), so a runtime that runs
patches at once keeps every stream busy across the end of a row.
The network is a runtimes.Network (OpenVINO on a CPU, torch on CUDA and as fallback): the patch plan,
cutting, blending, nodata handling and argmax around it are this same code whichever runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ..classes import NODATA, PROBABILITY_SCALE
from ..model import ModelSpec
from .device import ExecMode, resolve_device
from .plan import DEFAULT_OVERLAP, DEFAULT_PATCH_SIZE, LATTICE, PatchPlan, fitted_plan, plan_patches
from .runtimes import Execution, Network, open_network

log = logging.getLogger(__name__)
Batch = tuple[int, list[int], Callable[[], torch.Tensor]]  # a patch row's origin, its batch's columns, their logits


@dataclass
class Prediction:
    """The classes of a scene, and what made them: the patch plan and how the network ran."""

    classes: np.ndarray  # uint8 (H, W): 0 clear, 1 cloud, 2 cloud shadow, 255 nodata
    probabilities: np.ndarray | None  # uint8 (3, H, W), softmax * PROBABILITY_SCALE, NODATA where nodata
    plan: PatchPlan
    execution: Execution

    @property
    def patches_run(self) -> int:
        return self.plan.count

    @property
    def patches_skipped(self) -> int:
        return max(self.plan.naive - self.plan.count, 0)

    @property
    def processed_pixels(self) -> int:
        return self.plan.processed_pixels

    @property
    def mode(self) -> str:
        return self.execution.describe()

    def record(self) -> dict[str, Any]:
        """What ran, as published with the mask (``clouds2mask:execution``): the runtime and its
        settings, and the patch plan used (patch height and width, overlap, patches run)."""
        return {
            **self.execution.record(),
            "patch_size": [self.plan.patch_h, self.plan.patch_w],
            "overlap": self.plan.overlap,
            "patches": self.plan.count,
        }


def blend_window(length: int, overlap: int) -> torch.Tensor:
    """1-D weights: a raised-cosine ramp over ``overlap`` px at each end, flat between, never zero.

    Sample centres (i + 0.5) keep the outermost weight positive, so a pixel that only one patch
    covers (at the scene edge or next to nodata) still has that patch's answer.
    """
    ramp = max(min(overlap, length // 2), 1)
    i = torch.arange(length, dtype=torch.float64)
    edge = torch.minimum(i, length - 1 - i) + 0.5
    return torch.where(edge < ramp, 0.5 - 0.5 * torch.cos(torch.pi * edge / ramp), 1.0).float()


def _mirror(start: int, length: int, n: int) -> slice | torch.Tensor:
    """Indices ``start .. start+length`` of an axis of ``n``, mirrored at the ends (edge sample repeated)."""
    if start >= 0 and start + length <= n:
        return slice(start, start + length)
    idx = torch.arange(start, start + length) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def _mirrored(t: torch.Tensor, dim: int, start: int, length: int) -> torch.Tensor:
    """``t`` along ``dim`` from ``start`` for ``length``, mirrored past the ends as ``_mirror`` says;
    a view where no mirroring is needed, flipped slices (no gather) where it reaches one mirror deep."""
    n = t.shape[dim]
    lo, hi, past = max(start, 0), min(start + length, n), start + length - n
    if start >= 0 and past <= 0:
        return t.narrow(dim, start, length)
    if lo >= hi or -start > n or past > n:
        return t.index_select(dim, _mirror(start, length, n).to(t.device))  # type: ignore[union-attr]
    parts = [t.narrow(dim, 0, -start).flip(dim)] if start < 0 else []
    parts.append(t.narrow(dim, lo, hi - lo))
    if past > 0:
        parts.append(t.narrow(dim, n - past, past).flip(dim))
    return torch.cat(parts, dim)


class _Stripes:
    """Input stripes (all bands, one patch row) on the device; on CUDA through pinned memory, one ahead."""

    def __init__(self, data: np.ndarray, ph: int, device: torch.device) -> None:
        self.data, self.ph, self.device = data, ph, device
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.pending: dict[int, tuple[torch.Tensor, torch.cuda.Event | None]] = {}

    def _host(self, y0: int) -> torch.Tensor:
        rows = _mirror(y0, self.ph, self.data.shape[1])
        host = torch.from_numpy(self.data[:, rows] if isinstance(rows, slice) else self.data[:, rows.numpy()])
        return host.pin_memory() if self.cuda else host

    def prefetch(self, y0: int) -> None:
        host = self._host(y0)
        if self.stream is None:
            self.pending[y0] = (host, None)
            return
        with torch.cuda.stream(self.stream):
            dev = host.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        self.pending[y0] = (dev, event)

    def get(self, y0: int) -> torch.Tensor:
        if y0 not in self.pending:
            self.prefetch(y0)
        tensor, event = self.pending.pop(y0)
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)
            tensor.record_stream(torch.cuda.current_stream(self.device))
        return tensor


def _check(
    data: np.ndarray,
    valid: np.ndarray,
    spec: ModelSpec,
    patch_size: int,
    overlap: int,
    scale: Sequence[float] | None,
    offset: Sequence[float] | None,
) -> None:
    if data.ndim != 3 or data.shape[0] != len(spec.bands):
        raise ValueError(
            f"reflectance must be (C, H, W) with C={len(spec.bands)} bands {spec.bands}, got shape {data.shape}"
        )
    if valid.shape != data.shape[1:]:
        raise ValueError(f"valid mask shape {valid.shape} does not match reflectance {data.shape[1:]}")
    if patch_size <= 0 or patch_size % LATTICE:
        raise ValueError(f"patch_size must be a positive multiple of {LATTICE}, got {patch_size}")
    if not 0 <= overlap <= patch_size // 2:
        raise ValueError(f"overlap must be between 0 and patch_size // 2 = {patch_size // 2}, got {overlap}")
    if (scale is None) != (offset is None) or (scale is not None and len(scale) != len(spec.bands)):
        raise ValueError("scale and offset go together, one value per band")


def predict(
    reflectance: np.ndarray,
    valid: np.ndarray,
    spec: ModelSpec,
    model: torch.nn.Module | Network | None = None,
    *,
    device: str = "auto",
    runtime: str = "auto",
    batch_size: int | None = None,
    patch_size: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    precision: str = "auto",
    with_probabilities: bool = False,
    progress: Callable[[int, int], None] | None = None,
    scale: Sequence[float] | None = None,
    offset: Sequence[float] | None = None,
    nodata: Sequence[float | None] | None = None,
    mode: ExecMode | None = None,
) -> Prediction:
    """Classify every valid pixel of a (C, H, W) array into clear / cloud / cloud shadow (255: nodata).

    ``reflectance`` holds the bands of ``spec.bands`` in that order (TOA for L1C models, BOA for L2A,
    scale 0-1). With ``scale`` and ``offset`` (one per band) it may instead hold raw DNs (e.g. uint16),
    converted on the device: a 10 m scene then needs 2 bytes per band and pixel on the host. What the
    network sees at nodata follows ukis-csmask, whose models were trained so: with DNs, each band value
    that is nodata (DN 0, or that band's ``nodata``) enters as reflectance 0 and the other bands of the
    pixel as they are (real swath edges differ by band); with reflectance, pixels not ``valid`` enter as
    0 in every band. ``patch_size`` (a multiple of 32; default: the patch height and width near 640 px that
    keep the network busy the shortest time for this scene, see plan.fitted_plan) and ``overlap`` (at most
    half the patch).
    ``runtime`` (auto, openvino, torch; see runtimes.py) and ``precision`` (auto, fp32, bf16, fp16)
    choose how the network runs; ``model`` (a Network from runtimes.open_network, or a torch module) and
    ``mode`` (for a torch module) override that choice. The Prediction records what ran. On a CPU this
    sets torch's thread count for the process (Network.torch_threads: 1 beside OpenVINO).
    """
    _check(reflectance, valid, spec, patch_size or DEFAULT_PATCH_SIZE, overlap, scale, offset)
    valid = valid.astype(bool, copy=False)
    dev = resolve_device(device)
    if isinstance(model, Network):
        net = model
        if precision not in ("auto", net.execution.precision):
            raise ValueError(f"precision {precision!r} asked of a network that runs in {net.execution.precision}")
    else:
        net = open_network(spec, dev, runtime, precision, module=model, mode=mode)
    if net.torch_threads is not None and torch.get_num_threads() != net.torch_threads:
        torch.set_num_threads(net.torch_threads)
    streams = net.execution.streams
    plan = plan_patches(valid, patch_size, overlap) if patch_size else fitted_plan(valid, overlap, streams=streams)
    bs = batch_size or net.batch_size(plan.patch_h, plan.patch_w)
    with torch.inference_mode():
        classes, probabilities = _run(
            reflectance, valid, spec, net, dev, plan, bs, with_probabilities, progress, scale, offset, nodata
        )
    return Prediction(classes, probabilities, plan, replace(net.execution, batch_size=bs))


def _run(
    data: np.ndarray,
    valid: np.ndarray,
    spec: ModelSpec,
    net: Network,
    dev: torch.device,
    plan: PatchPlan,
    bs: int,
    with_probabilities: bool,
    progress: Callable[[int, int], None] | None,
    scale: Sequence[float] | None,
    offset: Sequence[float] | None,
    nodata: Sequence[float | None] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    h, w = valid.shape
    ph, pw = plan.patch_h, plan.patch_w
    f32 = dict(dtype=torch.float32, device=dev)
    mean, std = torch.tensor(spec.mean, **f32), torch.tensor(spec.std, **f32)
    gain = torch.tensor(scale, **f32) if scale is not None else torch.ones_like(mean)
    bias = torch.tensor(offset, **f32) if offset is not None else torch.zeros_like(mean)
    a = (gain / std).reshape(-1, 1, 1)  # one affine map from input units to standardised units
    b = ((bias - mean) / std).reshape(-1, 1, 1)
    fill = (-mean / std).reshape(-1, 1, 1)  # nodata enters as reflectance 0
    others = [(i, float(v)) for i, v in enumerate(nodata or ()) if v is not None and v != 0]
    weight = torch.outer(blend_window(ph, plan.overlap), blend_window(pw, plan.overlap)).to(dev)

    classes = np.full((h, w), NODATA, np.uint8)
    probabilities = np.zeros((3, h, w), np.uint8) if with_probabilities else None
    acc = torch.zeros((3, ph, w), **f32)
    wsum = torch.zeros((ph, w), **f32)
    top = 0  # scene row held in acc[:, 0]

    def finalise(upto: int) -> None:
        """Rows [top, upto) get no more contributions: argmax them on the device, bring back uint8."""
        nonlocal top, acc, wsum
        n = min(upto, h) - top
        if n <= 0:
            return
        n_acc = min(n, ph)
        s0, s1, s2 = acc[:, :n_acc]  # argmax by comparisons: ties go to the lower class, as argmax's do
        cls = torch.where(s2 > torch.maximum(s0, s1), 2, (s1 > s0).to(torch.uint8)).to(torch.uint8).cpu().numpy()
        none = ~valid[top : top + n_acc] | (wsum[:n_acc] <= 0).cpu().numpy()
        cls[none] = NODATA
        classes[top : top + n_acc] = cls
        if probabilities is not None:
            scale = PROBABILITY_SCALE / wsum[:n_acc].clamp_min(1e-12)
            p = torch.round(acc[:, :n_acc] * scale).clamp(0, PROBABILITY_SCALE).to(torch.uint8).cpu().numpy()
            p[:, none] = NODATA
            probabilities[:, top : top + n_acc] = p
        acc = torch.cat([acc[:, n_acc:], torch.zeros((3, n_acc, w), **f32)], 1)
        wsum = torch.cat([wsum[n_acc:], torch.zeros((n_acc, w), **f32)], 0)
        top += n  # rows past the stripe (n > ph) had no patch: they stay nodata

    def blend(row: list[Batch]) -> None:
        """Add the weighted softmax of a patch row's batches, once their logits are there, to the stripe."""
        nonlocal done
        for y0, group, logits in row:
            probs = torch.softmax(logits(), dim=1) * weight
            ya, yb = max(y0, 0), min(y0 + ph, h)
            for p, x0 in zip(probs, group):
                xa, xb = max(x0, 0), min(x0 + pw, w)
                acc[:, ya - top : yb - top, xa:xb] += p[:, ya - y0 : yb - y0, xa - x0 : xb - x0]
                wsum[ya - top : yb - top, xa:xb] += weight[ya - y0 : yb - y0, xa - x0 : xb - x0]
            done += len(group)
            if progress is not None:
                progress(done, total)

    stripes = _Stripes(data, ph, dev)
    row_starts = list(plan.rows)
    done, total = 0, plan.count
    running: list[Batch] = []  # the row before, still in the network
    for r, y0 in enumerate(row_starts):
        raw = stripes.get(y0)
        if r + 1 < len(row_starts):
            stripes.prefetch(row_starts[r + 1])
        x = raw.to(**f32) if raw.dtype != torch.float32 else raw
        if scale is not None:
            ok = raw != 0
            for i, value in others:
                ok[i] &= raw[i] != value
        else:
            rows = _mirror(y0, ph, h)
            vmask = valid[rows if isinstance(rows, slice) else rows.numpy()]
            ok = torch.from_numpy(np.ascontiguousarray(vmask)).to(dev).unsqueeze(0)
        x = torch.where(ok, x * a + b, fill)
        xs = plan.rows[y0]
        left = xs[0]  # the row's columns [left, right), mirrored where they pass the scene's edges
        x = _mirrored(x, 2, left, xs[-1] + pw - left)
        started: list[Batch] = []
        for i in range(0, len(xs), bs):
            group = xs[i : i + bs]
            patches = torch.stack([x[:, :, x0 - left : x0 - left + pw] for x0 in group])
            started.append((y0, group, net.submit(patches, bs)))
        blend(running)  # this row is in the network meanwhile
        finalise(y0)
        running = started
    blend(running)
    finalise(h)
    return classes, probabilities
