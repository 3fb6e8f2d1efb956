"""Mask quality against labels: this engine and ukis-csmask's own runtime on the same pixels.

Every labelled chip in ../shared/data is scored:
  F, G  real 512 x 512 L2A chips at native 10 m (blue, green, red, nir; 4-band L2A model), binary
        cloud labels (shadow is not labelled there);
  B     ukis-csmask's own labelled 6-band L1C test scene (6-band L1C model), cloud and shadow labels.
Both engines get the same reflectance (DN x 0.0001; these chips carry no DN offset). Printed per chip:
cloud IoU (and shadow IoU on B) of each, and the agreement of the two class maps on valid pixels.
The model is not shift-invariant, so agreement is reported, never chased: the labels are the measure.

  python benchmarks/label_iou.py                       # the defaults of the engine
  python benchmarks/label_iou.py --precision fp32      # or bf16, a patch size, an overlap
  python benchmarks/label_iou.py --runtime torch       # or openvino (auto: OpenVINO on a CPU)

The last line reads ``mean_cloud_iou_delta=<ours - reference>``. tests/test_quality.py applies the
guard of the issue tracker to the same figures (imports this module).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

NAMES = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}


@dataclass(frozen=True)
class Chip:
    name: str
    folder: str
    level: str
    bands: tuple[str, ...]
    cloud_label: int
    shadow_label: int | None


CHIPS = (
    Chip("F", "ccd-s2-l2a-20200908-epsg32636-512-labelled", "L2A", ("blue", "green", "red", "nir"), 1, None),
    Chip("G", "ccd-s2-l2a-20200403-epsg32737-512-labelled", "L2A", ("blue", "green", "red", "nir"), 1, None),
    Chip("B", "ukis-csmask-s2-l1c-512-labelled", "L1C", tuple(NAMES), 4, 0),
)


@dataclass(frozen=True)
class Score:
    chip: str
    cloud_ours: float
    cloud_ref: float
    shadow_ours: float | None
    shadow_ref: float | None
    agreement: float
    ran: str = ""  # how the engine ran (Prediction.mode: runtime, precision, layout, threads)


def shared_data() -> Path:
    env = os.environ.get("STAC_CLOUDS2MASK_SHARED")
    return (Path(env) if env else Path(__file__).resolve().parents[2] / "shared") / "data"


def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1)


def chip_data(chip: Chip) -> tuple[np.ndarray, np.ndarray]:
    """(C, H, W) float32 reflectance in the chip's band order, and its labels."""
    folder = shared_data() / chip.folder
    x = np.stack([_read(folder / f"{NAMES[b]}.tif") for b in chip.bands]).astype(np.float32) * np.float32(1e-4)
    return x, _read(folder / "labels.tif")


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    return float((mask & truth).sum() / max(int((mask | truth).sum()), 1))


def reference_classes(x: np.ndarray, chip: Chip) -> np.ndarray:
    """ukis-csmask's own result (onnxruntime, its own tiling)."""
    from ukis_csmask.mask import CSmask

    img = np.ascontiguousarray(np.moveaxis(x, 0, -1))
    return CSmask(img, band_order=list(chip.bands), product_level=chip.level.lower()).csm[..., 0]


@lru_cache(maxsize=None)
def _reference(chip: Chip) -> np.ndarray:
    """The reference classes of a chip, computed once per process (every runtime and precision is scored
    against the same ones)."""
    return reference_classes(chip_data(chip)[0], chip)


def score(chip: Chip, ours: np.ndarray, ref: np.ndarray, labels: np.ndarray) -> Score:
    valid = ours != 255
    shadow = chip.shadow_label is not None
    return Score(
        chip=chip.name,
        cloud_ours=iou((ours == 1) & valid, labels == chip.cloud_label),
        cloud_ref=iou((ref == 1) & valid, labels == chip.cloud_label),
        shadow_ours=iou((ours == 2) & valid, labels == chip.shadow_label) if shadow else None,
        shadow_ref=iou((ref == 2) & valid, labels == chip.shadow_label) if shadow else None,
        agreement=float((ours[valid] == ref[valid]).mean()),
    )


def score_all(**predict_options: object) -> list[Score]:
    """Scores of every labelled chip; ``predict_options`` go to the engine (patch_size, precision...)."""
    from stac_clouds2mask import mask_array

    scores = []
    for chip in CHIPS:
        x, labels = chip_data(chip)
        pred = mask_array(x, chip.bands, level=chip.level, device="cpu", **predict_options)
        scores.append(replace(score(chip, pred.classes, _reference(chip), labels), ran=pred.mode))
    return scores


def table(scores: list[Score]) -> str:
    fmt = "{:5s} {:>11s} {:>11s} {:>12s} {:>12s} {:>10s}"
    lines = [fmt.format("chip", "cloud ours", "cloud ref", "shadow ours", "shadow ref", "agreement")]
    for s in scores:
        lines.append(
            fmt.format(
                s.chip,
                f"{s.cloud_ours:.4f}",
                f"{s.cloud_ref:.4f}",
                "-" if s.shadow_ours is None else f"{s.shadow_ours:.4f}",
                "-" if s.shadow_ref is None else f"{s.shadow_ref:.4f}",
                f"{s.agreement:.4%}",
            )
        )
    mean_ours = np.mean([s.cloud_ours for s in scores])
    mean_ref = np.mean([s.cloud_ref for s in scores])
    lines.append(f"mean cloud IoU: ours {mean_ours:.4f}, reference {mean_ref:.4f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--runtime", default="auto", choices=("auto", "openvino", "torch"))
    parser.add_argument("--patch-size", type=int, default=None)
    parser.add_argument("--overlap", type=int, default=None)
    args = parser.parse_args()
    options: dict[str, object] = {"precision": args.precision, "runtime": args.runtime}
    if args.patch_size:
        options["patch_size"] = args.patch_size
    if args.overlap is not None:
        options["overlap"] = args.overlap
    scores = score_all(**options)
    print(f"engine: {scores[0].ran}")
    print(table(scores))
    delta = np.mean([s.cloud_ours for s in scores]) - np.mean([s.cloud_ref for s in scores])
    print(f"mean_cloud_iou_delta={delta:+.4f}")


if __name__ == "__main__":
    main()
