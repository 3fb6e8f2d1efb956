"""What a run does: its validated settings, the model chosen per item and the settings recorded with each mask."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pystac
import shapely.geometry
from fsspec.core import split_protocol
from fsspec.registry import get_filesystem_class

from . import __version__
from .aoi import CONTEXT_MARGIN, aoi_id
from .errors import InvalidInputError, ModelError, OptionError
from .choices import (
    check_api_retries,
    check_batch_size,
    check_buffer,
    check_device,
    check_overlap,
    check_patch_size,
    check_precision,
    check_resolution,
    check_runtime,
)
from .infer.plan import DEFAULT_OVERLAP
from .limits import Limits
from .model import ModelSpec, choose_model, get_model_spec
from .read import available_bands, band_id, product_level
from .storage import StorageOptions
from .search import geometry_from_geojson
from .trust import unsafe_segment


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what gets written, and where."""

    output: str
    publish_api: str | None = None
    api_headers: dict[str, str] = field(default_factory=dict, repr=False)  # credentials: never in a repr
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
    patch_size: int | None = None  # None: the size fitted per scene (infer.plan.fitted_plan)
    overlap: int = DEFAULT_OVERLAP
    cloud_buffer: float = 0  # metres (buffers.py)
    shadow_buffer: float = 0
    model_href: str | None = None  # one published copy of the weights (publish/shared_weights.py)
    fail_fast: bool = False
    write_report: bool = True
    limits: Limits = field(default_factory=Limits.from_env)
    clip: dict[str, Any] | None = None  # the AOI (GeoJSON geometry, WGS84) each item is read and masked over

    @cached_property
    def aoi_id(self) -> str | None:
        """The identity of the AOI of a clipped run (aoi.aoi_id), None for whole scenes."""
        return aoi_id(self.clip) if self.clip is not None else None

    def __post_init__(self) -> None:
        if not self.output or not self.output.strip():
            raise OptionError("output", "must not be empty")
        protocols = (split_protocol(self.output)[0] or "file").split("::")  # chained URLs: simplecache::s3://...
        try:
            for protocol in protocols:
                get_filesystem_class(protocol)
        except (ValueError, ImportError) as exc:
            raise OptionError("output", f"{self.output!r}: {exc}") from exc
        if self.model_href is not None and not self.model_href.strip():
            raise OptionError("model_href", "must not be empty")
        if self.collection_id is not None and (why := unsafe_segment(self.collection_id)):
            raise OptionError("collection_id", f"{self.collection_id!r} {why}; it must be a single path segment")
        check_resolution(self.resolution)
        check_batch_size(self.batch_size)
        check_api_retries(self.api_retries)
        check_precision(self.precision)
        check_runtime(self.runtime)
        try:
            check_device(self.device)  # its name; whether the device is there is asked when a Runner starts
        except ValueError as exc:
            raise OptionError("device", str(exc)) from exc
        check_patch_size(self.patch_size)
        check_overlap(self.overlap, self.patch_size)
        check_buffer("cloud_buffer", self.cloud_buffer)
        check_buffer("shadow_buffer", self.shadow_buffer)
        if self.clip is not None:
            object.__setattr__(self, "clip", clip_geometry(self.clip))
        if self.model != "auto":
            try:
                get_model_spec(self.model)
            except ValueError as exc:
                raise OptionError("model", f": {exc}") from exc


def clip_geometry(value: Any) -> dict[str, Any]:
    """The AOI of a clipped run as a GeoJSON geometry: an area (Polygon or MultiPolygon), from a geometry,
    feature or feature collection; InvalidInputError otherwise."""
    if not isinstance(value, dict):
        raise OptionError("clip", f"must be a GeoJSON geometry (the area of interest), got {type(value).__name__}")
    try:
        geom = geometry_from_geojson(value)
    except InvalidInputError as exc:
        raise OptionError("clip", f"is not a usable area of interest: {exc}") from None
    if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.area <= 0:
        raise OptionError(
            "clip", f"needs an area (Polygon or MultiPolygon) to mask over, got a {geom.geom_type}: a bbox or polygon"
        )
    return shapely.geometry.mapping(geom)


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
                f"no asset for band(s) {', '.join(b + band_id(b) for b in missing)} needed by {spec.name}",
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
    fitted per scene); what ran is recorded beside them (MaskResult.execution). A clipped run adds the
    AOI's identity and the context margin: masks of another AOI are other items."""
    settings: dict[str, Any] = {
        "model": spec.name,
        "model_version": spec.version,
        "resolution": config.resolution,
        "patch_size": "auto" if config.patch_size is None else config.patch_size,
        "overlap": config.overlap,
        "cloud_buffer": config.cloud_buffer,
        "shadow_buffer": config.shadow_buffer,
        "precision": config.precision,
        "runtime": config.runtime,
        "probabilities": config.probabilities,
        "software": __version__,
    }
    if config.clip is not None:
        settings.update({"aoi": config.aoi_id, "aoi_margin": CONTEXT_MARGIN})
    return settings


def expected_settings(item: pystac.Item, config: RunConfig) -> dict[str, Any]:
    """The settings a run with ``config`` records for ``item``; ItemError when no model fits it."""
    return settings_for(select_model(item, config.model), config)
