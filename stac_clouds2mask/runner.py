"""The runner: search -> read -> infer -> publish, one source item at a time, failures isolated per item.

torch loads when a Runner is made (it resolves the device), not when this module is imported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pystac

from . import __version__, page, timeseries
from .access import header_secrets, modifier_name
from .aoi import footprint_part
from .buffers import buffer_classes
from .classes import NODATA
from .config import RunConfig, select_model, settings_for
from .errors import (
    Clouds2MaskError,
    ConfigurationError,
    InvalidInputError,
    ItemError,
    LimitExceededError,
    NothingToMask,
    OptionError,
    PublishError,
)
from .model import ModelSpec
from .products import from_product
from .publish import Publisher, PublishPlan, StacApi, StaticCatalog, overlay_preview, published_thumbnail, statistics
from .publish.items import EXECUTION
from .read import read_scene
from .report import REPORT_TYPE, RUNS_DIR, ItemOutcome, Progress, RunReport, redact
from .scene import MaskResult, Scene
from .search import SearchFilters, geometry_from_geojson, search_all
from .storage import (
    RetryCounter,
    check_writable,
    counting_retries,
    join,
    remove_temporaries,
    write_bytes_atomic,
    write_json_atomic,
)
from .storage import retries as storage_retries
from .trust import unsafe_segment

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .infer import Network

REPORT_TEMPORARY_SECONDS = 600  # a run report's temporary older than this is a killed run's (writes take ms)


def expected_settings(item: pystac.Item, config: RunConfig) -> dict[str, Any]:
    """The settings a run with ``config`` records for ``item``; ItemError when no model fits it."""
    return settings_for(select_model(item, config.model), config)


class Runner:
    """Runs items through the stages with one loaded model per model name."""

    def __init__(self, config: RunConfig, progress: Progress | None = None):
        self.config = config
        self.progress = progress or Progress()
        from .infer import choose_runtime, resolve_device

        try:
            self.device = resolve_device(config.device)
            choose_runtime(config.runtime, self.device)  # a runtime that cannot run here stops the run at once
        except ValueError as exc:  # the device named is not there (no CUDA, no MPS), nor the runtime asked for
            raise ConfigurationError(str(exc)) from exc
        self.models: dict[str, Network] = {}
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
            max_body_bytes=config.limits.max_body_bytes,
            claim_stale_after=config.limits.item_seconds + 300,
            model_href=config.model_href,
        )
        self._stop_at: int | None = None  # under fail_fast: the index of the first failed item
        self._lock = threading.Lock()
        self._retries_at_start = storage_retries()
        self._checked = False  # preflight() passed

    def _secrets(self) -> list[str]:
        """Header values of the publish API and the sources: what redact() takes out of every message (with the
        environment's credentials, which it adds itself)."""
        return [
            *header_secrets(self.config.api_headers),
            *header_secrets(self.config.options.headers),
        ]

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
            acquired=acquired(work.item),
        )
        if self.config.fail_fast:
            with self._lock:
                self._stop_at = work.index if self._stop_at is None else min(self._stop_at, work.index)

    def _stopped(self, work: _Work) -> bool:
        """Under fail_fast, whether an earlier item (in input order) failed: then this one is not run."""
        stop = self._stop_at
        return stop is not None and work.index > stop

    def model(self, spec: ModelSpec) -> Network:
        """The network of ``spec`` in the configured runtime and precision, made once per run."""
        from .infer import open_network

        if spec.name not in self.models:
            c = self.config
            self.models[spec.name] = open_network(spec, self.device, c.runtime, c.precision, compile=c.compile)
        return self.models[spec.name]

    def _stage(self, work: _Work, stage: str, step: Callable[[], None]) -> None:
        """Run one stage of one item; any error of that item ends its work as a failed outcome."""
        if work.outcome is not None or self._stopped(work):
            return
        self.progress.stage(work.item.id, stage)
        t0 = time.perf_counter()
        try:
            with counting_retries(work.retries):
                step()
        except NothingToMask as exc:
            work.outcome = ItemOutcome(
                work.item.id,
                "skipped",
                error=exc.reason,
                stage=stage,
                seconds=work.seconds,
                collection=work.item.collection_id,
                acquired=acquired(work.item),
            )
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
            if stage not in ("model", "validate", "plan"):
                work.seconds[stage] = time.perf_counter() - t0
            if work.outcome is not None:
                work.outcome.retries = work.retries.count

    def prepare(self, item: pystac.Item, index: int = 0) -> _Work:
        """Id checks, model choice, the publish plan (skip / new / new version / overwrite), then the read."""
        work = _Work(item, index, deadline=time.monotonic() + self.config.limits.item_seconds)
        work.retries.notify = lambda n, why: self.progress.retry(item.id, n, redact(why, self._secrets()) or "")

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
            log.info("item %s: model %s at %g m", item.id, work.spec.name, self.config.resolution)

        def plan() -> None:
            if self.config.clip is not None and footprint_part(self.config.clip, item.geometry) is None:
                raise NothingToMask(item.id, "its footprint does not meet the AOI")
            work.plan = self.publisher.plan(item, work.settings, overwrite=self.config.overwrite)
            if work.plan.skip:
                found = self.publisher.published_item(item, work.settings) or next(
                    (d for d in work.plan.versions if d.get("id") == work.plan.item_id), None
                )
                work.outcome = ItemOutcome(
                    item.id,
                    "skipped",
                    item=pystac.Item.from_dict(found) if found else None,
                    error=work.plan.reason,
                    collection=item.collection_id,
                    mask_item_id=work.plan.item_id,
                    statistics=statistics(found["properties"]) if found else None,
                    acquired=acquired(item),
                    preview=published_thumbnail(found, self.config.options) if found else None,
                )

        def read() -> None:
            work.scene = scene = read_scene(
                item,
                work.spec.bands,
                self.config.resolution,
                self.config.options,
                self.config.limits,
                work.deadline,
                aoi=self.config.clip,
            )
            if scene.aoi is not None and not scene.published().valid.any():
                raise NothingToMask(item.id, "the AOI holds no valid pixel of the item (nodata in the source there)")

        self._stage(work, "validate", validate)
        self._stage(work, "model", choose)
        self._stage(work, "plan", plan)
        self._stage(work, "read", read)
        return work

    def infer(self, work: _Work) -> None:
        def patches(done: int, total: int) -> None:
            _check_deadline(work, "inference")
            self.progress.patches(done, total)

        def step() -> None:
            from .infer import predict

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
                patch_size=self.config.patch_size,
                overlap=self.config.overlap,
            )
            # buffered over the read grid, so a clipped mask's buffers also reach in from clouds in the context
            buffered = buffer_classes(
                pred.classes, scene.resolution, self.config.cloud_buffer, self.config.shadow_buffer
            )
            classes = scene.crop(buffered, NODATA)
            work.preview = overlay_preview(scene, classes)
            work.scene = scene.published()
            work.result = MaskResult(
                scene=work.scene,
                classes=classes,
                model_name=work.spec.name,
                settings=work.settings,
                probabilities=None if pred.probabilities is None else scene.crop(pred.probabilities, NODATA),
                execution=pred.record(),
            )

        self._stage(work, "infer", step)

    def publish(self, work: _Work) -> ItemOutcome:
        def step() -> None:
            _check_deadline(work, "publishing")
            if from_product(work.item):
                self.publisher.catalog.put_source(work.item)
            published = self.publisher.publish(work.result, work.spec, work.plan)
            if published.get_self_href() is None:  # where it now lives, for readers of the outcome (--print-items)
                published.set_self_href(self.publisher.catalog.item_url(work.plan.collection_id, work.plan.item_id))
            log.info("item %s: published %s", work.item.id, published.get_self_href())
            work.outcome = ItemOutcome(
                work.item.id,
                "published",
                item=published,
                seconds=work.seconds,
                collection=work.item.collection_id,
                mask_item_id=published.id,
                statistics=statistics(published.properties),
                acquired=acquired(work.item),
                preview=work.preview,
            )

        self._stage(work, "publish", step)
        return work.outcome or _not_run(work.item)

    def preflight(self) -> None:
        """Check once, before any item, that the output and the STAC API can take what the run makes:
        InvalidInputError with the reason in seconds, rather than the same failure for every item."""
        if self._checked:
            return
        try:
            check_writable(self.config.output, self.config.options)
        except OSError as exc:
            raise InvalidInputError(f"--output {redact(self.config.output)}: {exc}") from exc
        if self.config.publish_api:
            probe = StacApi(
                self.config.publish_api,
                headers=self.config.api_headers,
                timeout=10,
                retries=1,
                deadline=30,
                max_body_bytes=self.config.limits.max_body_bytes,
            )
            try:
                probe.check_transactions(item_id="")
            except (PublishError, ConfigurationError) as exc:
                reason = exc.reason if isinstance(exc, PublishError) else str(exc)
                raise InvalidInputError(f"--publish-api: {redact(reason, self._secrets())}") from exc
        self._checked = True

    def run(self, items: Iterable[pystac.Item]) -> RunReport:
        """All items, with item N+1 read while item N is inferred and item N-1 written.

        One item per stage at a time (a reader thread, this thread, a writer thread), so memory
        stays at three scenes however long the batch is. Under `fail_fast` the first failure stops
        the run: items after it are reported as "not_run". Unless `write_report` is off, the run
        ends by writing a JSON run report under `<output>/.clouds2mask-runs/` (also when it aborts).
        """
        self.preflight()
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
            "patch_size": c.patch_size,
            "overlap": c.overlap,
            "cloud_buffer": c.cloud_buffer,
            "shadow_buffer": c.shadow_buffer,
            "model_href": redact(c.model_href),
            "runtime": c.runtime,
            "fail_fast": c.fail_fast,
            "aoi": None if c.clip is None else {"id": c.aoi_id, "bbox": list(geometry_from_geojson(c.clip).bounds)},
            "storage": {
                "anon": c.options.anon,
                "requester_pays": c.options.requester_pays,
                "endpoint_url": redact(c.options.endpoint_url),
                "header_names": sorted(c.options.headers),
                "header_hosts": list(c.options.header_hosts),
                "modifier": modifier_name(c.options.modifier),
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
                    "mask_item_id": o.mask_item_id,
                    "datetime": o.acquired,
                    "statistics": o.statistics,
                    "execution": o.item.properties.get(EXECUTION) if o.item is not None else None,
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
        name = f"run-{started.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
        url = join(self.publisher.catalog.url, RUNS_DIR, f"{name}.json")  # next to the catalog, wherever it resolved to
        data = self.report_dict(report, items, started, seconds, aborted)
        previews = {o.source_id: o.preview for o in report.outcomes if o.preview}
        try:
            remove_temporaries(
                join(self.publisher.catalog.url, RUNS_DIR),
                options=self.config.options,
                older_than=REPORT_TEMPORARY_SECONDS,
            )
            write_json_atomic(url, data, self.config.options)
            report.path = url
            report.rows = timeseries.rows(data)
            csv_url = join(self.publisher.catalog.url, RUNS_DIR, f"{name}.csv")
            write_bytes_atomic(csv_url, timeseries.to_csv(report.rows).encode(), self.config.options)
            report.series_path = csv_url
            page_url = join(self.publisher.catalog.url, RUNS_DIR, f"{name}.html")
            write_bytes_atomic(page_url, page.render(data, previews).encode(), self.config.options)
            report.page_path = page_url
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
    return ItemOutcome(item.id, "not_run", error=why, collection=item.collection_id, acquired=acquired(item))


def acquired(item: pystac.Item) -> str | None:
    """When the source was acquired (its datetime, else the start of its range), as RFC 3339 UTC."""
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when.isoformat(timespec="seconds") + "Z"


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
    preview: bytes | None = None  # the mask over true colour (JPEG), for the run page
    outcome: ItemOutcome | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    retries: RetryCounter = field(default_factory=RetryCounter)  # S3 retries of its requests, all stages


def run(
    sources: str | Sequence[str],
    config: RunConfig,
    filters: SearchFilters | None = None,
    progress: Progress | None = None,
    *,
    clip: bool = False,
) -> RunReport:
    """Check the output and STAC API, search the source(s), then mask and publish every item found: the Python
    form of `stac-clouds2mask run`. With `clip`, each item is read and masked only over the filters' area of
    interest (their bbox and/or intersects; RunConfig.clip set to it). InvalidInputError for what cannot be
    used, EmptySearchError when nothing matches: in both cases nothing is written."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    config = dataclasses.replace(config, options=config.options.for_sources(sources))
    if clip:
        area = filters.aoi() if filters is not None else None
        if area is None:
            raise OptionError("clip", "needs an area of interest: a bbox or intersects filter")
        config = dataclasses.replace(config, clip=area)
    runner = Runner(config, progress)
    runner.preflight()
    return runner.run(search_all(sources, filters, config.options, config.limits))
