"""The four pretrained ukis-csmask models: where they are, which bands they take, how to choose one.

Band order and normalisation constants are read from the JSON sidecars installed with ukis-csmask,
so they can never drift from the weights they belong to.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MODEL_NAMES = ("model_6b_l1c", "model_4b_l1c", "model_6b_l2a", "model_4b_l2a")
SIX_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
# the models' bands by common name (the names the models, items and mask_array use) and Sentinel-2 band id
BAND_IDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}
FOUR_BANDS = SIX_BANDS[:4]
LEVELS = ("L1C", "L2A")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    level: str
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    version: str
    onnx_path: Path
    classes: tuple[str, ...] = ("clear", "cloud", "cloud shadow")


def ukis_csmask_dir() -> Path:
    """Directory of the installed ukis-csmask package, found without importing it (its import
    pulls in onnxruntime, which inference does not need)."""
    spec = importlib.util.find_spec("ukis_csmask")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "ukis-csmask is not installed; it ships the pretrained model weights: pip install ukis-csmask==1.0.0"
        )
    return Path(spec.submodule_search_locations[0])


def _read_spec(name: str) -> ModelSpec:
    onnx_path = ukis_csmask_dir() / f"{name}.onnx"
    sidecar = onnx_path.with_suffix(".json")
    if not onnx_path.is_file() or not sidecar.is_file():
        raise RuntimeError(f"ukis-csmask installation lacks {onnx_path.name} or {sidecar.name} in {onnx_path.parent}")
    meta = json.loads(sidecar.read_text())
    stats = meta["data"]["dataset_statistics"]
    mean, std = stats["img"]
    return ModelSpec(
        name=name,
        level=name.rsplit("_", 1)[1].upper(),
        bands=tuple(stats["band_names"]),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        version=meta["model"]["version"],
        onnx_path=onnx_path,
    )


@lru_cache(maxsize=None)
def _specs() -> dict[str, ModelSpec]:
    return {name: _read_spec(name) for name in MODEL_NAMES}


def list_models() -> list[ModelSpec]:
    """All four models, in MODEL_NAMES order."""
    return list(_specs().values())


def get_model_spec(name: str) -> ModelSpec:
    """The spec for a model name; ValueError listing the valid names otherwise."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return _specs()[name]


def _normalise_level(level: str) -> str:
    lvl = level.strip().upper()
    if lvl not in LEVELS:
        raise ValueError(f"product level must be one of {', '.join(LEVELS)}, got {level!r}")
    return lvl


def choose_model(level: str, available_bands: Iterable[str]) -> ModelSpec:
    """The 6-band model when all six bands are available (it uses SWIR, which separates cloud from
    bright ground), else the 4-band one; the L1C or L2A variant by product level."""
    lvl = _normalise_level(level).lower()
    available = {b.lower() for b in available_bands}
    if available.issuperset(SIX_BANDS):
        return get_model_spec(f"model_6b_{lvl}")
    if any(b not in available for b in FOUR_BANDS):
        raise ValueError(missing_bands("the cloud models", FOUR_BANDS, available_bands))
    return get_model_spec(f"model_4b_{lvl}")


def missing_bands(who: str, needed: Iterable[str], given: Iterable[str]) -> str:
    """Why `given` band names do not serve `who`: what is accepted (common names, with the Sentinel-2 band
    ids beside them), what is missing, and which given names are band ids to rename ('B02' is 'blue')."""
    given = list(given)
    missing = [b for b in needed if b not in {g.lower() for g in given}]
    ids = {i.lower(): name for name, i in BAND_IDS.items()}
    renames = [f"{g!r} is {ids[g.lower()]!r}" for g in given if g.lower() in ids]
    return (
        f"{who} need the bands {', '.join(f'{b} ({BAND_IDS[b]})' for b in needed)} by common name "
        f"(the 6-band models also {', '.join(f'{b} ({BAND_IDS[b]})' for b in SIX_BANDS[4:])}); missing: "
        f"{', '.join(missing)}" + (f"; rename the band ids: {', '.join(renames)}" if renames else "")
    )
