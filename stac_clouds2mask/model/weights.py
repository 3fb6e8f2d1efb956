"""Model weights: read once from the ONNX initializers, then cached as a float16 torch state dict.

The shipped graphs store every weight as float16, so the cache is lossless; loading it with
``weights_only=True`` is fast and executes no pickled code. torch and numpy are imported when weights are
loaded, not with this module (the cache folder is also asked for by stages that never run the network).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .registry import ModelSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CACHE_ENV = "STAC_CLOUDS2MASK_CACHE"
_PREFIX = "model."
_CACHE_FORMAT = 1


def cache_dir() -> Path:
    """``$STAC_CLOUDS2MASK_CACHE``, else ``~/.cache/stac-clouds2mask``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "stac-clouds2mask"


def cache_path(spec: ModelSpec) -> Path:
    """Cache file keyed by model, version and ONNX file size, so a different install never reuses it."""
    size = spec.onnx_path.stat().st_size
    return cache_dir() / f"{spec.name}-{spec.version}-{size}-v{_CACHE_FORMAT}.pt"


def state_dict_from_onnx(onnx_path: Path) -> dict[str, torch.Tensor]:
    """Every initializer of the graph as a tensor (dtype as stored), ``model.`` prefix stripped."""
    import torch

    from .onnx_file import initializers

    return {name.removeprefix(_PREFIX): torch.from_numpy(array) for name, array in initializers(onnx_path).items()}


def _write_atomic(state: dict[str, torch.Tensor], path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state_dict(spec: ModelSpec) -> dict[str, torch.Tensor]:
    """The model's float16 state dict, from the cache when present, else from the ONNX file
    (and then cached; an unwritable cache only costs the ONNX read next time)."""
    import torch

    path = cache_path(spec)
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: rebuild it
            log.warning("ignoring unreadable weight cache %s: %s", path, exc)
    state = {
        k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state_dict_from_onnx(spec.onnx_path).items()
    }
    try:
        _write_atomic(state, path)
    except OSError as exc:
        log.warning("could not write weight cache %s: %s", path, exc)
    return state
