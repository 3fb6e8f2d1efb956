"""Stage 3: the network over a scene in patches fitted to its data: OpenVINO on a CPU, torch on CUDA.

Names are imported on first use: the patch planner and its defaults need no torch, so the configuration
and the command line use them without loading the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

_NAMES = {
    "device": ("ExecMode", "compile_model", "resolve_device"),
    "engine": ("NODATA", "PROBABILITY_SCALE", "Prediction", "blend_window", "predict"),
    "plan": ("DEFAULT_OVERLAP", "DEFAULT_PATCH_SIZE", "PATCH_SIZES", "PatchPlan", "fitted_plan", "plan_patches"),
    "runtimes": ("Execution", "Network", "choose_runtime", "open_network"),
}
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
__getattr__, __dir__ = lazy_names(__name__, _NAMES)

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from .device import ExecMode, compile_model, resolve_device
    from .engine import NODATA, PROBABILITY_SCALE, Prediction, blend_window, predict
    from .plan import DEFAULT_OVERLAP, DEFAULT_PATCH_SIZE, PATCH_SIZES, PatchPlan, fitted_plan, plan_patches
    from .runtimes import Execution, Network, choose_runtime, open_network
