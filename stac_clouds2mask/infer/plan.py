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


def plan_patches(valid: np.ndarray, patch_size: int = DEFAULT_PATCH_SIZE, overlap: int = DEFAULT_OVERLAP) -> PatchPlan:
    """The patches over a scene: every valid pixel in at least one, none without a valid pixel.

    Each patch row is reduced to one "any valid" flag per column first, so planning needs no
    scene-sized temporary.
    """
    h, w = valid.shape
    ph, pw = patch_length(h, patch_size), patch_length(w, patch_size)
    rows: dict[int, list[int]] = {}
    for y0 in axis_starts(valid.any(axis=1), ph, min(overlap, ph // 2)):
        xs = axis_starts(valid[max(y0, 0) : y0 + ph].any(axis=0), pw, min(overlap, pw // 2))
        if xs:
            rows[y0] = xs
    return PatchPlan(h, w, ph, pw, overlap, rows, naive_count(h, ph, overlap) * naive_count(w, pw, overlap))


def fitted_plan(valid: np.ndarray, overlap: int = DEFAULT_OVERLAP, sizes: tuple[int, ...] = PATCH_SIZES) -> PatchPlan:
    """The plan that runs the fewest pixels through the network among patch sizes near the default
    (640 px +- 128: the network's cost per pixel is flat over them on the CPUs measured, and a size that
    divides the scene well wastes less overlap and margin; ties go to the size nearest the default)."""
    plans = [plan_patches(valid, size, overlap) for size in sizes]
    return min(plans, key=lambda p: (p.processed_pixels, abs(p.patch_h - DEFAULT_PATCH_SIZE)))
