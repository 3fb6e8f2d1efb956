"""What a run does: its validated settings, the model chosen per item and the settings recorded with each mask."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pystac
from fsspec.core import split_protocol
from fsspec.registry import get_filesystem_class

from . import __version__
from .errors import ConfigurationError, InvalidInputError, ModelError
from .choices import check_batch_size, check_precision, check_resolution, check_runtime
from .infer import DEFAULT_OVERLAP, choose_runtime, resolve_device
from .limits import Limits
from .model import ModelSpec, choose_model, get_model_spec
from .read import available_bands, product_level
from .storage import StorageOptions
from .trust import unsafe_segment


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what gets written, and where."""

    output: str
    publish_api: str | None = None
    api_headers: dict[str, str] = field(default_factory=dict)
    resolution: float = 20
    device: str = "auto"
    model: str = "auto"
    overwrite: bool = False
    batch_size: int | None = None
    options: StorageOptions = field(default_factory=StorageOptions)
    collection_id: str | None = None
    api_retries: int = 5
    compile: bool = False
    precision: str = "auto"
    runtime: str = "auto"
    probabilities: bool = False
    fail_fast: bool = False
    write_report: bool = True
    limits: Limits = field(default_factory=Limits.from_env)

    def __post_init__(self) -> None:
        if not self.output or not self.output.strip():
            raise InvalidInputError("--output must not be empty")
        protocols = (split_protocol(self.output)[0] or "file").split("::")  # chained URLs: simplecache::s3://...
        try:
            for protocol in protocols:
                get_filesystem_class(protocol)
        except (ValueError, ImportError) as exc:
            raise InvalidInputError(f"--output {self.output!r}: {exc}") from exc
        if self.collection_id is not None and (why := unsafe_segment(self.collection_id)):
            raise InvalidInputError(
                f"--target-collection {self.collection_id!r} {why}; it must be a single path segment"
            )
        try:
            check_resolution(self.resolution)
            check_batch_size(self.batch_size)
            check_precision(self.precision)
            check_runtime(self.runtime)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from exc
        if self.model != "auto":
            try:
                get_model_spec(self.model)
            except ValueError as exc:
                raise InvalidInputError(str(exc)) from exc
        try:
            choose_runtime(self.runtime, resolve_device(self.device))
        except (ValueError, RuntimeError) as exc:  # torch.device('banana') raises RuntimeError
            raise ConfigurationError(str(exc)) from exc


def select_model(item: pystac.Item, requested: str) -> ModelSpec:
    """The requested model, or the best one for the item's level and bands; ItemError if none fits."""
    level = product_level(item)
    if requested != "auto":
        spec = get_model_spec(requested)
        if spec.level != level:
            raise ModelError(item.id, f"model {spec.name} is for {spec.level} but the item is {level}", stage="model")
        missing = [b for b in spec.bands if b not in available_bands(item)]
        if missing:
            raise ModelError(
                item.id,
                f"no asset for band(s) {', '.join(missing)} needed by {spec.name}",
                asset=missing[0],
                stage="model",
            )
        return spec
    try:
        return choose_model(level, available_bands(item))
    except ValueError as exc:
        raise ModelError(item.id, str(exc), stage="model") from exc


def settings_for(spec: ModelSpec, config: RunConfig) -> dict[str, Any]:
    """What the run asks for, recorded in the item so reruns can tell same from different (the rule:
    publish/versions.py). Requests, not outcomes: "auto" stays "auto" (patch_size "auto" is the plan
    fitted per scene); what ran is recorded beside them (MaskResult.execution)."""
    return {
        "model": spec.name,
        "model_version": spec.version,
        "resolution": config.resolution,
        "patch_size": "auto",
        "overlap": DEFAULT_OVERLAP,
        "precision": config.precision,
        "runtime": config.runtime,
        "probabilities": config.probabilities,
        "software": __version__,
    }


def expected_settings(item: pystac.Item, config: RunConfig) -> dict[str, Any]:
    """The settings a run with ``config`` records for ``item``; ItemError when no model fits it."""
    return settings_for(select_model(item, config.model), config)
