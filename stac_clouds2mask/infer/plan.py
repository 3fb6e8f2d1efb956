"""Where patches go: a grid fitted to the valid-data footprint ("optimised patches").

The model (a U-Net whose EfficientNet encoder has a total stride of 32 and a stride-2 stem with
asymmetric "same" padding) is not shift-invariant, so every patch origin sits on one lattice: points
``32 k + PHASE`` of the scene's pixel grid. Overlapping patches then see every pixel at the same
phase and agree in their overlap, so a narrow overlap hides the seams. PHASE is the phase of the
reference runtime's own grid (ukis-csmask puts scene pixel 0 at patch pixel 51: -51 mod 32 = 13).
The parity of the phase matters to these models (the stem's stride is 2): on the labelled crop B, odd
phases give cloud IoU 0.757-0.761 and even ones 0.741, so the reference's phase is kept.

Along each axis the occupied stretch (rows holding any valid pixel; within a patch row, columns
holding any valid pixel) is split into runs at gaps wider than the overlap. Each run is tiled from
the lattice point at or before its first valid pixel in steps of ``patch - overlap``, and the last
patch of a run is slid back inward to the lattice point that still reaches its last valid pixel. So
patches start where the data starts and carry data, all-nodata patches never exist, and less than
32 px of mirrored margin is run at a scene edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LATTICE = 32  # the encoder's total stride: patch sizes are multiples of it, origins on its lattice
PHASE = -51 % LATTICE  # the reference runtime's grid phase (see above)
DEFAULT_PATCH_SIZE = 640  # by measurement: per-pixel cost vs overlap waste (benchmarks/patch_economy.py)
PATCH_SIZES = tuple(range(DEFAULT_PATCH_SIZE - 4 * LATTICE, DEFAULT_PATCH_SIZE + 4 * LATTICE + 1, LATTICE))
DEFAULT_OVERLAP = 64  # the narrowest that hides seams (tests/test_infer.py::test_no_visible_seams)
MORE_WORK = 1.1  # a fitted plan runs at most this many times the fewest processed pixels (see fitted_plan)


@dataclass(frozen=True)
class PatchPlan:
    """Patch origins per patch row (``rows``: y0 -> x0s) of ``patch_h`` x ``patch_w`` patches.

    ``naive`` counts the patches of a plain grid over the whole scene (same lattice, patch and
    overlap, nothing skipped), for reporting what fitting the grid to the data saved.
    """

    height: int
    width: int
    patch_h: int
    patch_w: int
    overlap: int
    rows: dict[int, list[int]]
    naive: int

    @property
    def count(self) -> int:
        return sum(len(xs) for xs in self.rows.values())

    @property
    def processed_pixels(self) -> int:
        """Pixels run through the network (each patch in full)."""
        return self.count * self.patch_h * self.patch_w

    def rounds(self, streams: int) -> int:
        """Patch times the network is busy when it runs ``streams`` patches at once."""
        return -(-self.count // max(streams, 1))

    def origins(self) -> list[tuple[int, int]]:
        return [(y0, x0) for y0, xs in self.rows.items() for x0 in xs]

    def seam_band(self, half: int = 8) -> np.ndarray:
        """bool (H, W): pixels within ``half`` px of a patch edge inside the scene, where seams would show."""
        rows, cols = np.zeros(self.height, bool), np.zeros(self.width, bool)
        for y0, xs in self.rows.items():
            for edge in (y0, y0 + self.patch_h):
                if 0 < edge < self.height:
                    rows[max(edge - half, 0) : edge + half] = True
            for x0 in xs:
                for edge in (x0, x0 + self.patch_w):
                    if 0 < edge < self.width:
                        cols[max(edge - half, 0) : edge + half] = True
        return rows[:, None] | cols[None, :]


def _runs(occupied: np.ndarray, bridge: int) -> list[tuple[int, int]]:
    """Half-open runs [a, e) of True, with gaps of at most ``bridge`` False entries bridged."""
    idx = np.flatnonzero(occupied)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > bridge + 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return [(int(a), int(e)) for a, e in zip(starts, ends)]


def _floor(v: int) -> int:
    """The lattice point at or before ``v``."""
    return (v - PHASE) // LATTICE * LATTICE + PHASE


def _ceil(v: int) -> int:
    """The lattice point at or after ``v``."""
    return -((PHASE - v) // LATTICE) * LATTICE + PHASE


def patch_length(n: int, patch: int) -> int:
    """Patch length along an axis of ``n`` px: ``patch``, or for a short axis the smallest multiple
    of 32 that holds it from the lattice point before pixel 0 (the part past the edges is mirrored)."""
    return min(patch, math.ceil((n - _floor(0)) / LATTICE) * LATTICE)


def axis_starts(occupied: np.ndarray, patch: int, overlap: int) -> list[int]:
    """Sorted lattice starts of patches of ``patch`` px covering every occupied index of an axis.

    Neighbouring patches of a run overlap by at least ``overlap`` (a multiple of 32 keeps every start
    on the lattice); a patch may reach less than 32 px past either end of the axis.
    """
    step = patch - overlap
    starts: list[int] = []
    for a, e in _runs(occupied, overlap):
        first = _floor(a)
        extra = max(0, math.ceil((e - first - patch) / step))
        run = [first + k * step for k in range(extra)]
        if extra:  # the last patch slid back inward: it ends just past the run, still overlapping the one before
            run.append(min(first + extra * step, _ceil(e - patch)))
        else:  # one patch: slid back inward too where the axis ends within it
            run.append(min(first, _ceil(len(occupied) - patch)))
        starts.extend(s for s in run if not starts or s > starts[-1])
    return starts


def naive_count(n: int, patch: int, overlap: int) -> int:
    """Patches of a plain grid on the same lattice over a whole axis of ``n``, nothing skipped."""
    span = n - _floor(0)
    return 1 if span <= patch else 1 + math.ceil((span - patch) / (patch - overlap))


def _row_stripes(valid: np.ndarray, ph: int, overlap: int) -> dict[int, np.ndarray]:
    """The patch rows of ``ph`` px over a scene, each as one "any valid" flag per column of its stripe
    (so planning needs no scene-sized temporary, and the widths tried for one height share them)."""
    starts = axis_starts(valid.any(axis=1), ph, min(overlap, ph // 2))
    return {y0: valid[max(y0, 0) : y0 + ph].any(axis=0) for y0 in starts}


def _plan(shape: tuple[int, int], stripes: dict[int, np.ndarray], ph: int, pw: int, overlap: int) -> PatchPlan:
    rows: dict[int, list[int]] = {}
    for y0, occupied in stripes.items():
        xs = axis_starts(occupied, pw, min(overlap, pw // 2))
        if xs:
            rows[y0] = xs
    h, w = shape
    return PatchPlan(h, w, ph, pw, overlap, rows, naive_count(h, ph, overlap) * naive_count(w, pw, overlap))


def plan_patches(valid: np.ndarray, patch_size: int = DEFAULT_PATCH_SIZE, overlap: int = DEFAULT_OVERLAP) -> PatchPlan:
    """The patches of ``patch_size`` (square) over a scene: every valid pixel in at least one, none without
    a valid pixel."""
    ph, pw = patch_length(valid.shape[0], patch_size), patch_length(valid.shape[1], patch_size)
    return _plan(valid.shape, _row_stripes(valid, ph, overlap), ph, pw, overlap)


def fitted_plan(
    valid: np.ndarray, overlap: int = DEFAULT_OVERLAP, sizes: tuple[int, ...] = PATCH_SIZES, streams: int = 1
) -> PatchPlan:
    """The plan that keeps the network busy the shortest time, among patch heights and widths near the
    default (each 640 px +- 128: the network's cost per pixel is flat over them on the CPUs measured, and a
    shape that divides the scene well wastes less overlap and margin).

    With ``streams`` patches run at once (the engine keeps them busy across patch rows), a plan takes
    ``PatchPlan.rounds(streams)`` patch times: 9 patches on 2 streams take as long as 10. So the cost is
    rounds x patch area (processed pixels with one stream); ties go to fewer processed pixels, then to the
    shape nearest the default. Only plans within MORE_WORK of the fewest processed pixels compete: on a
    machine whose other cores are busy the streams do not run at once and a plan costs its pixels, so a
    512 px chip stays one patch rather than two that would finish a little sooner on an idle machine.
    """
    h, w = valid.shape
    widths = sorted({patch_length(w, size) for size in sizes})
    plans = []
    for ph in sorted({patch_length(h, size) for size in sizes}):
        stripes = _row_stripes(valid, ph, overlap)
        plans += [_plan(valid.shape, stripes, ph, pw, overlap) for pw in widths]
    least = min(p.processed_pixels for p in plans)
    return min(
        (p for p in plans if p.processed_pixels <= MORE_WORK * least),
        key=lambda p: (
            p.rounds(streams) * p.patch_h * p.patch_w,
            p.processed_pixels,
            abs(p.patch_h - DEFAULT_PATCH_SIZE) + abs(p.patch_w - DEFAULT_PATCH_SIZE),
        ),
    )
