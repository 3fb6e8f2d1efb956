"""Stage 3: the network over a scene in patches fitted to its data: OpenVINO on a CPU, torch on CUDA."""

from .device import ExecMode, compile_model, resolve_device
from .engine import NODATA, PROBABILITY_SCALE, Prediction, blend_window, predict
from .plan import DEFAULT_OVERLAP, DEFAULT_PATCH_SIZE, PATCH_SIZES, PatchPlan, fitted_plan, plan_patches
from .runtimes import Execution, Network, choose_runtime, open_network

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_PATCH_SIZE",
    "NODATA",
    "PATCH_SIZES",
    "PROBABILITY_SCALE",
    "ExecMode",
    "Execution",
    "Network",
    "PatchPlan",
    "Prediction",
    "blend_window",
    "choose_runtime",
    "compile_model",
    "fitted_plan",
    "open_network",
    "plan_patches",
    "predict",
    "resolve_device",
]
