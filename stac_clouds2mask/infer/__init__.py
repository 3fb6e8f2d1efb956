"""Stage 3: the network over a scene in patches fitted to its data, on CUDA when present, else on the CPU."""

from .device import ExecMode, compile_model, resolve_device
from .engine import NODATA, PROBABILITY_SCALE, Prediction, blend_window, predict
from .plan import DEFAULT_OVERLAP, DEFAULT_PATCH_SIZE, PATCH_SIZES, PatchPlan, fitted_plan, plan_patches

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_PATCH_SIZE",
    "NODATA",
    "PATCH_SIZES",
    "PROBABILITY_SCALE",
    "ExecMode",
    "PatchPlan",
    "Prediction",
    "blend_window",
    "compile_model",
    "fitted_plan",
    "plan_patches",
    "predict",
    "resolve_device",
]
