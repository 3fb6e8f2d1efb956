"""The batch: search -> read -> infer -> publish, one source item at a time, failures isolated per item."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import pystac
import torch

from . import __version__
from .errors import Clouds2MaskError, InvalidInputError, ItemError
from .infer import DEFAULT_OVERLAP, DEFAULT_PATCH_SIZE, predict, resolve_device
from .model import ModelSpec, choose_model, get_model_spec, load_model
from .publish import Publisher, PublishPlan, StacApi, StaticCatalog
from .read import available_bands, product_level, read_scene
from .scene import MaskResult, Scene
from .search import SearchFilters, search
from .storage import StorageOptions

RESOLUTIONS = (10, 20, 30, 60)
Status = Literal["published", "skipped", "failed"]


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

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise InvalidInputError(f"--resolution must be one of {', '.join(map(str, RESOLUTIONS))} m, got {self.resolution:g}")
        if self.model != "auto":
            try:
                get_model_spec(self.model)
            except ValueError as exc:
                raise InvalidInputError(str(exc)) from exc
        try:
            resolve_device(self.device)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from exc


@dataclass
class ItemOutcome:
    """What happened to one source item."""

    source_id: str
    status: Status
    item: pystac.Item | None = None
    error: str | None = None
    stage: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class RunReport:
    outcomes: list[ItemOutcome] = field(default_factory=list)

    def by_status(self, status: Status) -> list[ItemOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def exit_code(self) -> int:
        """0 when every item was published or skipped, 1 when any failed."""
        return 1 if self.by_status("failed") else 0


class Progress:
    """Hooks for progress displays; the default does nothing."""

    def start(self, total: int) -> None: ...
    def stage(self, item_id: str, stage: str) -> None: ...
    def patches(self, done: int, total: int) -> None: ...
    def item_done(self, outcome: ItemOutcome) -> None: ...


def select_model(item: pystac.Item, requested: str) -> ModelSpec:
    """The requested model, or the best one for the item's level and bands; ItemError if none fits."""
    level = product_level(item)
    if requested != "auto":
        spec = get_model_spec(requested)
        if spec.level != level:
            raise ItemError(item.id, f"model {spec.name} is for {spec.level} but the item is {level}", stage="model")
        missing = [b for b in spec.bands if b not in available_bands(item)]
        if missing:
            raise ItemError(item.id, f"no asset for band(s) {', '.join(missing)} needed by {spec.name}", asset=missing[0], stage="model")
        return spec
    try:
        return choose_model(level, available_bands(item))
    except ValueError as exc:
        raise ItemError(item.id, str(exc), stage="model") from exc


def settings_for(spec: ModelSpec, config: RunConfig) -> dict[str, Any]:
    """What decides the mask's content; recorded in the item so reruns can tell same from different."""
    return {"model": spec.name, "model_version": spec.version, "resolution": config.resolution,
            "patch_size": DEFAULT_PATCH_SIZE, "overlap": DEFAULT_OVERLAP, "software": __version__}


class Runner:
    """Runs items through the stages with one loaded model per model name."""

    def __init__(self, config: RunConfig, progress: Progress | None = None):
        self.config = config
        self.progress = progress or Progress()
        self.device = resolve_device(config.device)
        self.models: dict[str, torch.nn.Module] = {}
        api = StacApi(config.publish_api, headers=config.api_headers, retries=config.api_retries) if config.publish_api else None
        self.publisher = Publisher(StaticCatalog(config.output, config.options), api, collection_id=config.collection_id)

    def model(self, spec: ModelSpec) -> torch.nn.Module:
        if spec.name not in self.models:
            model = load_model(spec, self.device, fold_bn=self.device.type == "cpu")
            self.models[spec.name] = torch.compile(model) if self.config.compile else model
        return self.models[spec.name]

    def _stage(self, work: _Work, stage: str, step: Callable[[], None]) -> None:
        """Run one stage of one item; any error of that item ends its work as a failed outcome."""
        if work.outcome is not None:
            return
        self.progress.stage(work.item.id, stage)
        t0 = time.perf_counter()
        try:
            step()
        except ItemError as exc:
            work.outcome = ItemOutcome(work.item.id, "failed", error=str(exc), stage=exc.stage or stage, seconds=work.seconds)
        except InvalidInputError:
            raise
        except (Clouds2MaskError, OSError, RuntimeError, ValueError) as exc:
            work.outcome = ItemOutcome(work.item.id, "failed", error=f"item {work.item.id!r}: {type(exc).__name__}: {exc}",
                                       stage=stage, seconds=work.seconds)
        finally:
            if stage != "model":
                work.seconds[stage] = time.perf_counter() - t0

    def prepare(self, item: pystac.Item) -> _Work:
        """Model choice, the publish plan (skip / new / new version / overwrite), then the read."""
        work = _Work(item)

        def choose() -> None:
            work.spec = select_model(item, self.config.model)
            work.settings = settings_for(work.spec, self.config)
            work.plan = self.publisher.plan(item, work.settings, overwrite=self.config.overwrite)
            if work.plan.skip:
                work.outcome = ItemOutcome(item.id, "skipped", error=work.plan.reason)

        def read() -> None:
            work.scene = read_scene(item, work.spec.bands, self.config.resolution, self.config.options)

        self._stage(work, "model", choose)
        self._stage(work, "read", read)
        return work

    def infer(self, work: _Work) -> None:
        def step() -> None:
            scene = work.scene
            pred = predict(scene.dn, scene.valid, work.spec, self.model(work.spec), device=str(self.device),
                           batch_size=self.config.batch_size, progress=self.progress.patches,
                           scale=scene.scale, offset=scene.offset, nodata=scene.nodata)
            work.result = MaskResult(scene=scene, classes=pred.classes, model_name=work.spec.name, settings=work.settings)

        self._stage(work, "infer", step)

    def publish(self, work: _Work) -> ItemOutcome:
        def step() -> None:
            published = self.publisher.publish(work.result, work.spec, work.plan)
            work.outcome = ItemOutcome(work.item.id, "published", item=published, seconds=work.seconds)

        self._stage(work, "publish", step)
        return work.outcome

    def run_item(self, item: pystac.Item) -> ItemOutcome:
        """One item through every stage, in this thread."""
        work = self.prepare(item)
        self.infer(work)
        return self.publish(work)

    def run(self, items: Iterable[pystac.Item]) -> RunReport:
        """All items, with item N+1 read while item N is inferred and item N-1 written.

        One item per stage at a time (a reader thread, this thread, a writer thread), so memory
        stays at three scenes however long the batch is.
        """
        items = list(items)
        report = RunReport()
        self.progress.start(len(items))

        def done(outcome: ItemOutcome) -> None:
            report.outcomes.append(outcome)
            self.progress.item_done(outcome)

        with ThreadPoolExecutor(1, thread_name_prefix="read") as reader, \
                ThreadPoolExecutor(1, thread_name_prefix="write") as writer:
            reading = reader.submit(self.prepare, items[0]) if items else None
            writing: Future[ItemOutcome] | None = None
            for i in range(len(items)):
                assert reading is not None
                work = reading.result()
                reading = reader.submit(self.prepare, items[i + 1]) if i + 1 < len(items) else None
                self.infer(work)
                if writing is not None:
                    done(writing.result())
                writing = writer.submit(self.publish, work)
            if writing is not None:
                done(writing.result())
        return report


@dataclass
class _Work:
    """One item on its way through the stages; `outcome` is set once it is decided."""

    item: pystac.Item
    spec: ModelSpec | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    plan: PublishPlan | None = None
    scene: Scene | None = None
    result: MaskResult | None = None
    outcome: ItemOutcome | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def run(
    sources: str | Sequence[str],
    config: RunConfig,
    filters: SearchFilters | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Search the source(s), then mask and publish every item found: the Python form of `stac-clouds2mask run`."""
    items = [item for source in ([sources] if isinstance(sources, str) else sources)
             for item in search(source, filters, config.options)]
    return Runner(config, progress).run(items)
