"""The pretrained ukis-csmask cloud/shadow models as native torch modules.

The registry (names, bands, normalisation) and the weight cache's folder need no torch; the network
(unet.py) is imported when a model is built, so listing models answers at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names
from .registry import ModelSpec, choose_model, get_model_spec, list_models
from .weights import cache_dir, load_state_dict

if TYPE_CHECKING:
    import torch

    from .unet import CSMaskUnet, fold_batchnorm

__all__ = [
    "CSMaskUnet",
    "ModelSpec",
    "build_model",
    "cache_dir",
    "choose_model",
    "fold_batchnorm",
    "get_model_spec",
    "list_models",
    "load_model",
    "load_state_dict",
]
__getattr__, __dir__ = lazy_names(__name__, {"unet": ("CSMaskUnet", "fold_batchnorm")})


def build_model(spec: ModelSpec) -> CSMaskUnet:
    """The architecture for a spec, with untrained weights."""
    from .unet import CSMaskUnet

    return CSMaskUnet(in_channels=len(spec.bands), classes=len(spec.classes))


def load_model(spec: ModelSpec, device: str | torch.device = "cpu", *, fold_bn: bool = False) -> torch.nn.Module:
    """The pretrained model in eval mode, float32, on ``device``.

    ``fold_bn`` folds BatchNorm into the convolutions (faster on CPU, same results to float32 rounding).
    """
    import torch

    from .unet import fold_batchnorm

    model = build_model(spec)
    model.load_state_dict(load_state_dict(spec), strict=True)
    model.eval()
    if fold_bn:
        fold_batchnorm(model)
    return model.to(device=device, dtype=torch.float32)
