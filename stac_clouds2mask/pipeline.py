"""The batch: search -> read -> infer -> publish, one source item at a time, failures isolated per item."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pystac
import torch
from fsspec.core import split_protocol
from fsspec.registry import get_filesystem_class

from . import __version__
from .errors import Clouds2MaskError, ConfigurationError, InvalidInputError, ItemError, LimitExceededError, ModelError
from .infer import DEFAULT_OVERLAP, DEFAULT_PATCH_SIZE, PRECISIONS, compile_model, predict, resolve_device
from .limits import Limits
from .model import ModelSpec, choose_model, get_model_spec, load_model
from .products import from_product
from .publish import Publisher, PublishPlan, StacApi, StaticCatalog
from .read import available_bands, product_level, read_scene
from .scene import MaskResult, Scene
from .search import SearchFilters, search
from .storage import StorageOptions, join, write_json_atomic
from .storage import retries as storage_retries
from .trust import unsafe_segment

RESOLUTIONS = (10, 20, 30, 60)
Status = Literal["published", "skipped", "failed", "not_run"]
RUNS_DIR = ".clouds2mask-runs"
REPORT_TYPE = "clouds2mask-run-report"
_URL = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@'\"]*@)?(?P<rest>[^\s'\"?#]*)(?P<query>[?#][^\s'\"]*)?"
)


def redact(text: str | None, secrets_: Iterable[str] = ()) -> str | None:
    """`text` without URL user info, URL queries (signed URLs) and any of the given secret values."""
    if text is None:
        return None
    out = _URL.sub(
        lambda m: m["scheme"] + ("***@" if m["userinfo"] else "") + m["rest"] + ("?***" if m["query"] else ""), text
    )
    for secret in secrets_:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return out


def _environment_secrets() -> list[str]:
    """Credential values from the environment, to keep them out of messages and reports."""
    names = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "STAC_CLOUDS2MASK_API_TOKEN")
    return [v for v in (os.environ.get(n) for n in names) if v]


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
        if self.resolution not in RESOLUTIONS:
            raise InvalidInputError(
                f"--resolution must be one of {', '.join(map(str, RESOLUTIONS))} m, got {self.resolution:g}"
            )
        if self.model != "auto":
            try:
                get_model_spec(self.model)
            except ValueError as exc:
                raise InvalidInputError(str(exc)) from exc
        if self.batch_size is not None and self.batch_size < 1:
            raise InvalidInputError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise InvalidInputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        try:
            resolve_device(self.device)
        except (ValueError, RuntimeError) as exc:  # torch.device('banana') raises RuntimeError
            raise ConfigurationError(str(exc)) from exc


@dataclass
class ItemOutcome:
    """What happened to one source item."""

    source_id: str
    status: Status
    item: pystac.Item | None = None
    error: str | None = None
    stage: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    error_class: str | None = None
    asset: str | None = None
    retries: int = 0  # not tracked per item yet: always 0
    collection: str | None = None
    href: str | None = None  # the file of the failed asset, where one applies


@dataclass
class RunReport:
    outcomes: list[ItemOutcome] = field(default_factory=list)
    path: str | None = None  # where the JSON run report was written
    report_error: str | None = None  # why it could not be written

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
    """What decides the mask's content; recorded in the item so reruns can tell same from different."""
    return {
        "model": spec.name,
        "model_version": spec.version,
        "resolution": config.resolution,
        "patch_size": DEFAULT_PATCH_SIZE,
        "overlap": DEFAULT_OVERLAP,
        "precision": config.precision,
        "probabilities": config.probabilities,
        "software": __version__,
    }


def expected_settings(item: pystac.Item, config: RunConfig) -> dict[str, Any]:
    """The settings a run with ``config`` records for ``item``; ItemError when no model fits it."""
    return settings_for(select_model(item, config.model), config)


class Runner:
    """Runs items through the stages with one loaded model per model name."""

    def __init__(self, config: RunConfig, progress: Progress | None = None):
        self.config = config
        self.progress = progress or Progress()
        self.device = resolve_device(config.device)
        self.models: dict[str, torch.nn.Module] = {}
        api = (
            StacApi(
                config.publish_api,
                headers=config.api_headers,
                retries=config.api_retries,
                deadline=config.limits.api_seconds,
                max_body_bytes=config.limits.max_body_bytes,
            )
            if config.publish_api
            else None
        )
        self.publisher = Publisher(
            StaticCatalog(config.output, config.options),
            api,
            collection_id=config.collection_id,
            max_versions=config.limits.max_versions,
            claim_stale_after=config.limits.item_seconds + 300,
        )
        self._stop_at: int | None = None  # under fail_fast: the index of the first failed item
        self._lock = threading.Lock()
        self._retries_at_start = storage_retries()

    def _secrets(self) -> list[str]:
        return [*self.config.api_headers.values(), *_environment_secrets()]

    def _failed(
        self, work: _Work, stage: str, error: str, error_class: str, asset: str | None = None, href: str | None = None
    ) -> None:
        if href is None and asset is not None and asset in work.item.assets:
            href = work.item.assets[asset].get_absolute_href()
        work.outcome = ItemOutcome(
            work.item.id,
            "failed",
            error=redact(error, self._secrets()),
            stage=stage,
            seconds=work.seconds,
            error_class=error_class,
            asset=asset,
            collection=work.item.collection_id,
            href=redact(href, self._secrets()),
        )
        if self.config.fail_fast:
            with self._lock:
                self._stop_at = work.index if self._stop_at is None else min(self._stop_at, work.index)

    def _stopped(self, work: _Work) -> bool:
        """Under fail_fast, whether an earlier item (in input order) failed: then this one is not run."""
        stop = self._stop_at
        return stop is not None and work.index > stop

    def model(self, spec: ModelSpec) -> torch.nn.Module:
        if spec.name not in self.models:
            model = load_model(spec, self.device, fold_bn=self.device.type == "cpu")
            self.models[spec.name] = compile_model(model, self.device) if self.config.compile else model
        return self.models[spec.name]

    def _stage(self, work: _Work, stage: str, step: Callable[[], None]) -> None:
        """Run one stage of one item; any error of that item ends its work as a failed outcome."""
        if work.outcome is not None or self._stopped(work):
            return
        self.progress.stage(work.item.id, stage)
        t0 = time.perf_counter()
        try:
            step()
        except ItemError as exc:
            self._failed(work, exc.stage or stage, str(exc), type(exc).__name__, exc.asset, exc.href)
        except InvalidInputError:
            raise
        except (Clouds2MaskError, OSError, RuntimeError, ValueError) as exc:
            self._failed(work, stage, f"item {work.item.id!r}: {type(exc).__name__}: {exc}", type(exc).__name__)
        except Exception as exc:  # a bug met by one item (KeyError in odd metadata, ...) fails that item, not the batch
            self._failed(
                work,
                stage,
                f"item {work.item.id!r}: unexpected {type(exc).__name__} in {stage}: {exc}",
                type(exc).__name__,
            )
        finally:
            if stage not in ("model", "validate"):
                work.seconds[stage] = time.perf_counter() - t0

    def prepare(self, item: pystac.Item, index: int = 0) -> _Work:
        """Id checks, model choice, the publish plan (skip / new / new version / overwrite), then the read."""
        work = _Work(item, index, deadline=time.monotonic() + self.config.limits.item_seconds)

        def validate() -> None:
            """Ids become folder and file names under the output: refuse any that could leave it."""
            for what, value in (("item id", item.id), ("target collection id", self.publisher.target_collection(item))):
                why = unsafe_segment(value)
                if why:
                    raise ItemError(
                        item.id,
                        f"{what} {value!r} {why}: refused, it would not be a single path segment under the output",
                        stage="validate",
                    )

        def choose() -> None:
            work.spec = select_model(item, self.config.model)
            work.settings = settings_for(work.spec, self.config)
            work.plan = self.publisher.plan(item, work.settings, overwrite=self.config.overwrite)
            if work.plan.skip:
                work.outcome = ItemOutcome(item.id, "skipped", error=work.plan.reason, collection=item.collection_id)

        def read() -> None:
            work.scene = read_scene(
                item, work.spec.bands, self.config.resolution, self.config.options, self.config.limits, work.deadline
            )

        self._stage(work, "validate", validate)
        self._stage(work, "model", choose)
        self._stage(work, "read", read)
        return work

    def infer(self, work: _Work) -> None:
        def patches(done: int, total: int) -> None:
            _check_deadline(work, "inference")
            self.progress.patches(done, total)

        def step() -> None:
            scene = work.scene
            pred = predict(
                scene.dn,
                scene.valid,
                work.spec,
                self.model(work.spec),
                device=str(self.device),
                batch_size=self.config.batch_size,
                progress=patches,
                scale=scene.scale,
                offset=scene.offset,
                nodata=scene.nodata,
                with_probabilities=self.config.probabilities,
                precision=self.config.precision,
            )
            work.scene = scene.without_pixels()
            work.result = MaskResult(
                scene=work.scene,
                classes=pred.classes,
                model_name=work.spec.name,
                settings=work.settings,
                probabilities=pred.probabilities,
            )

        self._stage(work, "infer", step)

    def publish(self, work: _Work) -> ItemOutcome:
        def step() -> None:
            _check_deadline(work, "publishing")
            if from_product(work.item):
                self.publisher.catalog.put_source(work.item)
            published = self.publisher.publish(work.result, work.spec, work.plan)
            work.outcome = ItemOutcome(
                work.item.id, "published", item=published, seconds=work.seconds, collection=work.item.collection_id
            )

        self._stage(work, "publish", step)
        return work.outcome or _not_run(work.item)

    def run(self, items: Iterable[pystac.Item]) -> RunReport:
        """All items, with item N+1 read while item N is inferred and item N-1 written.

        One item per stage at a time (a reader thread, this thread, a writer thread), so memory
        stays at three scenes however long the batch is. Under `fail_fast` the first failure stops
        the run: items after it are reported as "not_run". Unless `write_report` is off, the run
        ends by writing a JSON run report under `<output>/.clouds2mask-runs/` (also when it aborts).
        """
        items = list(items)
        report = RunReport()
        started = dt.datetime.now(dt.timezone.utc)
        t0 = time.perf_counter()
        self._retries_at_start = storage_retries()
        self._stop_at = None
        self.progress.start(len(items))

        def done(outcome: ItemOutcome) -> None:
            report.outcomes.append(outcome)
            self.progress.item_done(outcome)

        # not `with`: on an interrupt the report is written at once, not after the item in flight
        reader = ThreadPoolExecutor(1, thread_name_prefix="read")
        writer = ThreadPoolExecutor(1, thread_name_prefix="write")
        writing: Future[ItemOutcome] | None = None
        try:
            reading = reader.submit(self.prepare, items[0], 0) if items else None
            for i in range(len(items)):
                assert reading is not None
                work = reading.result()
                more = i + 1 < len(items) and self._stop_at is None
                reading = reader.submit(self.prepare, items[i + 1], i + 1) if more else None
                self.infer(work)
                if writing is not None:
                    done(writing.result())
                writing = writer.submit(self.publish, work)
                if reading is None:
                    break
            if writing is not None:
                done(writing.result())
            for item in items[len(report.outcomes) :]:
                done(_not_run(item))
            reader.shutdown()
            writer.shutdown()
        except BaseException as exc:
            reader.shutdown(wait=False, cancel_futures=True)
            writer.shutdown(wait=False, cancel_futures=True)
            finished = (
                writing is not None and writing.done() and not writing.cancelled() and writing.exception() is None
            )
            if (
                finished
                and len(report.outcomes) < len(items)
                and writing.result().source_id == items[len(report.outcomes)].id
            ):
                done(writing.result())  # published while the run waited for the next item
            why = (
                f"not run: the run was interrupted ({exc})"
                if isinstance(exc, Interrupted)
                else f"not run: the run stopped ({type(exc).__name__})"
            )
            for item in items[len(report.outcomes) :]:  # every item is listed, so --rerun-failed finishes the job
                report.outcomes.append(_not_run(item, why))
            if self.config.write_report:
                self._write_report(
                    report,
                    items,
                    started,
                    time.perf_counter() - t0,
                    aborted=redact(f"{type(exc).__name__}: {exc}", self._secrets()),
                )
            if isinstance(exc, Interrupted):
                exc.report = report
            raise
        if self.config.write_report:
            self._write_report(report, items, started, time.perf_counter() - t0)
        return report

    def settings(self) -> dict[str, Any]:
        """The run's settings for the report: no header values, no credentials, URLs without user info or query."""
        c = self.config
        return {
            "output": redact(c.output),
            "publish_api": redact(c.publish_api),
            "api_header_names": sorted(c.api_headers),
            "resolution": c.resolution,
            "device": str(self.device),
            "model": c.model,
            "overwrite": c.overwrite,
            "batch_size": c.batch_size,
            "target_collection": c.collection_id,
            "api_retries": c.api_retries,
            "compile": c.compile,
            "precision": c.precision,
            "fail_fast": c.fail_fast,
            "storage": {
                "anon": c.options.anon,
                "requester_pays": c.options.requester_pays,
                "endpoint_url": redact(c.options.endpoint_url),
            },
            "limits": dataclasses.asdict(c.limits),
        }

    def report_dict(
        self,
        report: RunReport,
        items: Sequence[pystac.Item],
        started: dt.datetime,
        seconds: float,
        aborted: str | None = None,
    ) -> dict[str, Any]:
        """The JSON run report: one entry per source item, the settings, the totals."""
        by_id = {i.id: i.get_self_href() for i in items}
        totals = {s: len(report.by_status(s)) for s in ("published", "skipped", "failed", "not_run")}
        secrets_ = self._secrets()
        return {
            "type": REPORT_TYPE,
            "version": 1,
            "software": __version__,
            "started": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "seconds": round(seconds, 3),
            "exit_code": report.exit_code if aborted is None else None,
            "aborted": aborted,
            "settings": self.settings(),
            # retries cannot be told apart per item: s3fs sends requests from its own I/O thread
            "totals": {"items": len(items), **totals, "s3_retries": storage_retries() - self._retries_at_start},
            "items": [
                {
                    "source_id": o.source_id,
                    "source_collection": o.collection,
                    "source_href": redact(by_id.get(o.source_id), secrets_),
                    "status": o.status,
                    "stage": o.stage,
                    "error_class": o.error_class,
                    "error": o.error,
                    "asset": o.asset,
                    "href": o.href,
                    "seconds": {k: round(v, 3) for k, v in o.seconds.items()},
                    "retries": o.retries,
                    "mask_item_id": o.item.id if o.item is not None else None,
                }
                for o in report.outcomes
            ],
        }

    def _write_report(
        self,
        report: RunReport,
        items: Sequence[pystac.Item],
        started: dt.datetime,
        seconds: float,
        aborted: str | None = None,
    ) -> None:
        name = f"run-{started.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}.json"
        url = join(self.publisher.catalog.url, RUNS_DIR, name)  # next to the catalog, wherever that resolved to
        data = self.report_dict(report, items, started, seconds, aborted)
        try:
            write_json_atomic(url, data, self.config.options)
            report.path = url
        except Exception as exc:  # the report must never turn a finished run into a crash
            report.report_error = redact(
                f"cannot write the run report {url}: {type(exc).__name__}: {exc}", self._secrets()
            )


def _check_deadline(work: _Work, what: str) -> None:
    """Stop an item past its wall-clock limit (a decompression bomb, a slow source) between steps."""
    if time.monotonic() > work.deadline:
        raise LimitExceededError(
            f"the per-item time limit was reached before {what} ended (STAC_CLOUDS2MASK_ITEM_SECONDS)"
        )


def _not_run(item: pystac.Item, why: str = "not run: fail-fast stopped the run at an earlier failure") -> ItemOutcome:
    return ItemOutcome(item.id, "not_run", error=why, collection=item.collection_id)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the run stops, its report lists every item (done, failed, not_run).

    A BaseException, like KeyboardInterrupt, so that no per-item handler turns it into a failed item."""

    def __init__(self, signum: int):
        self.signum = signum
        self.report: RunReport | None = None
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into Interrupted in the main thread while a run lasts (also where the
    shell started the process with SIGINT ignored, as non-interactive shells do for background jobs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class _Work:
    """One item on its way through the stages; `outcome` is set once it is decided."""

    item: pystac.Item
    index: int = 0  # position in the run's input
    deadline: float = float("inf")  # time.monotonic() by which the item must be done
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
    items = [
        item
        for source in ([sources] if isinstance(sources, str) else sources)
        for item in search(source, filters, config.options)
    ]
    return Runner(config, progress).run(items)
