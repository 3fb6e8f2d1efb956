"""The clouds2mask task on stactask's Task contract (PyPI ``stactask``, stac-utils/stac-task).

A *payload* is a GeoJSON FeatureCollection whose ``features`` are the source items and whose ``process``
(a list; its first element is used; a bare dict is accepted as stactask still does) holds
``upload_options.path_template``, optional ``collection_options.<collection>.upload_options`` and
``tasks.clouds2mask`` parameters (merged over ``workflow_options``). stactask's ``Payload`` parses that
shape; :class:`Clouds2MaskTask` checks what this task needs on top (output roots, trust, parameters,
items) in ``validate`` and masks the items in ``process``. The output payload is stactask's: the input
payload with ``features`` replaced by the published mask items. When some items failed, ``process`` lists
them under ``clouds2mask:failures`` and raises (:class:`ItemsFailed`), which is how a stac-task task fails
under stactask's ``handler`` and ``Task.cli``; ``run_payload`` (the ``run-payload`` command) keeps the
output payload with the failures and exits 1.

Parameters are the fields of :class:`config.RunConfig` (see :data:`PARAMETERS`), except ``output``
(from the path template), ``options`` (the ``anon``, ``requester_pays``, ``endpoint_url``, ``header_hosts``
and ``modifier`` parameters: a named modifier only, never an import path) and ``api_headers``: credentials
are the operator's (``STAC_CLOUDS2MASK_API_TOKEN``, ``STAC_CLOUDS2MASK_SOURCE_HEADERS``), never a payload's,
because payloads are stored in plans and echoed into output payloads. ``limits`` may only lower the
operator's limits (``STAC_CLOUDS2MASK_*``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pystac
from stactask import Task
from stactask.exceptions import InvalidInput
from stactask.payload import Payload

from . import __version__
from .choices import check_api_retries
from .config import RunConfig, expected_settings
from .access import headers_from_env, resolve_modifier
from .errors import Clouds2MaskError, InvalidInputError, OptionError, UntrustedReferenceError
from .limits import ENV_PREFIX, Limits, check_item_count, limit_problem, shown_value
from .publish.documents import absolute_hrefs
from .report import ItemOutcome, Progress, RunReport
from .runner import Runner
from .publish.items import mask_collection_id
from .storage import DocumentTooLarge, StorageOptions, absolute, join, read_json
from .trust import check_output_root, check_payload_target, check_reference

TASK_NAME = "clouds2mask"
FAILURES = "clouds2mask:failures"
NOTHING_TO_MASK = "clouds2mask:nothing_to_mask"  # items skipped because the AOI holds nothing of them
TEMPLATE_TAIL = "/${collection}/${id}"
API_TOKEN_ENV = "STAC_CLOUDS2MASK_API_TOKEN"

# tasks.clouds2mask parameters: name -> (accepted JSON types, may be null). All but the storage options
# and limits are RunConfig fields of the same name.
PARAMETERS: dict[str, tuple[tuple[type, ...], bool]] = {
    "resolution": ((int, float), False),
    "model": ((str,), False),
    "device": ((str,), False),
    "overwrite": ((bool,), False),
    "batch_size": ((int,), True),
    "publish_api": ((str,), True),
    "collection_id": ((str,), True),
    "api_retries": ((int,), False),
    "compile": ((bool,), False),
    "precision": ((str,), False),
    "runtime": ((str,), False),
    "probabilities": ((bool,), False),
    "patch_size": ((int,), True),
    "overlap": ((int,), False),
    "cloud_buffer": ((int, float), False),
    "shadow_buffer": ((int, float), False),
    "model_href": ((str,), True),
    "fail_fast": ((bool,), False),
    "write_report": ((bool,), False),
    "limits": ((dict,), False),
    "requester_pays": ((bool,), False),
    "anon": ((bool,), True),
    "endpoint_url": ((str,), True),
    "header_hosts": ((list,), False),
    "modifier": ((str,), True),
    "clip": ((dict,), True),
}
STORAGE_PARAMETERS = ("requester_pays", "anon", "endpoint_url", "header_hosts", "modifier")
TARGET_PARAMETERS = ("publish_api", "endpoint_url")  # credentials go there: the operator's endpoints only


def absolute_item_dict(item: pystac.Item) -> dict[str, Any]:
    """The item as a self-contained dict: self link, asset and link hrefs all absolute."""
    d = item.to_dict(include_self_link=True, transform_hrefs=False)
    base = item.get_self_href()
    return absolute_hrefs(d, base) if base else d


def output_root(template: Any, where: str, source: str | None = None) -> str:
    """The static catalog root of a path_template, which must be ``<root>/${collection}/${id}``, and
    which the payload at ``source`` may name (trust.check_output_root: the operator's output roots)."""
    if not isinstance(template, str) or not template.strip():
        raise InvalidInputError(f"{where}.path_template must be a non-empty string")
    text = template.strip().rstrip("/")
    root = text[: -len(TEMPLATE_TAIL)] if text.endswith(TEMPLATE_TAIL) else ""
    if not root or "${" in root:
        raise InvalidInputError(
            f"{where}.path_template {template!r} is not supported: it must be '<root>/${{collection}}/${{id}}' with "
            "a fixed root such as 's3://bucket/masks/${collection}/${id}' (masks are published as a static "
            "catalog: <root>/catalog.json, <root>/<collection>/<id>/<id>.json and .tif)"
        )
    try:
        check_output_root(root, source)
    except UntrustedReferenceError as exc:
        raise InvalidInputError(f"{where}.path_template: {exc}") from None
    return absolute(root)


def path_template(root: str) -> str:
    """The stac-task path template of the static catalog at ``root``."""
    return join(root, "${collection}", "${id}")


def _check_limits(value: dict[str, Any]) -> dict[str, Any]:
    """Payload limits: Limits fields, each a finite positive number of the field's type (limits.limit_problem),
    at most the operator's."""
    where = f"process.tasks.{TASK_NAME}.limits"
    operator = Limits.from_env()
    known = [f.name for f in dataclasses.fields(Limits)]
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise InvalidInputError(f"{where} has unknown limit(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for name, v in value.items():
        if why := limit_problem(name, v):
            raise InvalidInputError(f"{where}.{name} {why}")
        if v > getattr(operator, name):
            raise InvalidInputError(
                f"{where}.{name} {v} is above the operator's {getattr(operator, name)} "
                f"({ENV_PREFIX}{name.upper()}): a payload may only lower limits"
            )
    return value


def check_parameters(workflow: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """The task's parameters: ``own`` (tasks.clouds2mask; unknown names refused) over the
    ``workflow`` options this task knows (workflow options apply to every task of a workflow)."""
    unknown = sorted(set(own) - set(PARAMETERS))
    if unknown:
        raise InvalidInputError(
            f"process.tasks.{TASK_NAME} has unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMETERS)}"
        )
    params = {k: v for k, v in workflow.items() if k in PARAMETERS}
    params.update(own)
    for name, value in params.items():
        types, nullable = PARAMETERS[name]
        if value is None and nullable:
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            want = " or ".join("object" if t is dict else t.__name__ for t in types) + (" or null" if nullable else "")
            raise InvalidInputError(f"process.tasks.{TASK_NAME}.{name} must be {want}, got {shown_value(value)}")
        if isinstance(value, float) and not math.isfinite(value):  # JSON parsers take NaN and 1e999 (inf)
            raise InvalidInputError(
                f"process.tasks.{TASK_NAME}.{name} must be a finite number, got {shown_value(value)}"
            )
    try:
        check_api_retries(params.get("api_retries", 0))
    except ValueError as exc:
        raise InvalidInputError(f"process.tasks.{TASK_NAME}.api_retries: {exc}") from None
    if "limits" in params:
        _check_limits(params["limits"])
    if not all(isinstance(h, str) and h for h in params.get("header_hosts", [])):
        got = json.dumps(params["header_hosts"])
        raise InvalidInputError(f"process.tasks.{TASK_NAME}.header_hosts must be a list of host names, got {got}")
    try:  # a payload names a modifier, never an import path: that would run code of the payload's choosing
        resolve_modifier(params.get("modifier"), named_only=True)
    except OptionError as exc:
        raise InvalidInputError(f"process.tasks.{TASK_NAME}.{exc}") from None
    return params


def _check_targets(params: dict[str, Any]) -> None:
    """publish_api and endpoint_url: the worker's operator-configured ones only (checked where the payload
    runs, not where a plan is written: the workers' environment decides)."""
    for name in TARGET_PARAMETERS:
        if params.get(name) is not None:
            try:
                check_payload_target(name, params[name])
            except UntrustedReferenceError as exc:
                raise InvalidInputError(f"process.tasks.{TASK_NAME}: {exc}") from None


def _check_model_href(params: dict[str, Any], url: str | None) -> None:
    """model_href is read (and hashed) by the worker and published in every item: the payload's origin
    bounds it as it bounds the hrefs of the payload's items (a remote payload may not name a local file)."""
    if params.get("model_href") is not None:
        try:
            check_reference(params["model_href"], absolute(url) if url else None, what="model_href")
        except UntrustedReferenceError as exc:
            raise InvalidInputError(f"process.tasks.{TASK_NAME}: {exc}") from None


@dataclass
class TaskPayload:
    """A checked payload: its items, this task's parameters and the output roots."""

    data: dict[str, Any]
    items: list[pystac.Item]
    parameters: dict[str, Any]
    default_root: str | None
    collection_roots: dict[str, str] = field(default_factory=dict)

    def output_collection(self, item: pystac.Item) -> str:
        """The collection of the item's mask: the collection_id parameter, else '<source>-cloudmask'."""
        return self.parameters.get("collection_id") or mask_collection_id(item.collection_id)

    def root_for(self, item: pystac.Item) -> str:
        """The static catalog the item's mask goes to (collection_options, else upload_options)."""
        root = self.collection_roots.get(self.output_collection(item), self.default_root)
        if root is None:
            raise InvalidInputError(
                f"no upload_options.path_template for item {item.id!r} (output collection "
                f"{self.output_collection(item)!r}); set process.upload_options.path_template"
            )
        return root

    def config(self, root: str, device: str | None = None) -> RunConfig:
        """The RunConfig of the items published at ``root``; ``device`` overrides the parameter."""
        p = self.parameters
        direct = {k: v for k, v in p.items() if k not in (*STORAGE_PARAMETERS, "limits", "device")}
        token = os.environ.get(API_TOKEN_ENV)
        return RunConfig(
            output=root,
            api_headers={"Authorization": f"Bearer {token}"} if token and p.get("publish_api") else {},
            device=device or p.get("device", "auto"),
            options=StorageOptions(**{k: p[k] for k in STORAGE_PARAMETERS if k in p}, headers=headers_from_env()),
            limits=dataclasses.replace(Limits.from_env(), **p.get("limits", {})),
            **direct,
        )


def _check_shape(data: Any, where: str) -> None:
    """What stactask's Payload would fail on without naming the payload, or would follow unchecked."""
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise InvalidInputError(
            f"{where} must be a GeoJSON FeatureCollection (type 'FeatureCollection') in the stac-task convention"
        )
    indirect = [k for k in ("href", "url") if k in data]
    if indirect:  # stactask's handler would open it with fsspec, outside the origin checks and size limits
        raise InvalidInputError(f"{where}: payload indirection ({indirect[0]!r}) is not supported: pass its URL")
    process = data.get("process")
    definition = process[0] if isinstance(process, list) and process else process
    tasks = definition.get("tasks") if isinstance(definition, dict) else None
    if isinstance(tasks, list) and not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tasks):
        raise InvalidInputError(f"{where}: process.tasks as a list must hold objects with a string 'name'")


def _stac_payload(data: Any, where: str) -> Payload:
    """stactask's Payload of ``data``, validated by stactask; its TypeErrors become InvalidInputError."""
    _check_shape(data, where)
    payload = data if isinstance(data, Payload) else Payload(data)
    try:
        payload.validate()
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where}: {exc}") from None
    if not payload.process_definition:
        raise InvalidInputError(
            f"{where} needs 'process': a list whose first element is the process definition "
            "(upload_options.path_template, tasks.clouds2mask)"
        )
    return payload


def _roots(payload: Payload, url: str | None) -> tuple[str | None, dict[str, str]]:
    """The default output root and those of collection_options, each checked."""
    upload = payload.upload_options
    if payload.collection_matchers or upload.get("collections"):
        raise InvalidInputError(
            "collection_matchers / upload_options.collections are not supported: mask items go to "
            "'<source collection>-cloudmask' (or the collection_id parameter); key collection_options by that id"
        )
    default = output_root(upload["path_template"], "process.upload_options", url) if "path_template" in upload else None
    roots = {}
    for name, opts in payload.collection_options.items():
        if not isinstance(opts, dict) or not isinstance(opts.get("upload_options", {}), dict):
            raise InvalidInputError(
                f"process.collection_options.{name} must be an object with an upload_options object"
            )
        if "path_template" in opts.get("upload_options", {}):
            where = f"process.collection_options.{name}.upload_options"
            roots[name] = output_root(opts["upload_options"]["path_template"], where, url)
    return default, roots


def _items(features: list[Any], where: str, url: str | None) -> list[pystac.Item]:
    """The payload's features as pystac items: each a STAC item once, its self href bounded by the origin."""
    items: list[pystac.Item] = []
    seen: set[tuple[str | None, str]] = set()
    for i, feature in enumerate(features):
        label = f"features[{i}]" + (
            f" ({feature.get('id')!r})" if isinstance(feature, dict) and feature.get("id") else ""
        )
        if not isinstance(feature, dict) or feature.get("type") != "Feature" or not isinstance(feature.get("id"), str):
            raise InvalidInputError(f"{where}: {label} is not a STAC item (needs type 'Feature' and a string id)")
        try:
            item = pystac.Item.from_dict(copy.deepcopy(feature), migrate=True)
        except Exception as exc:  # pystac raises many kinds for malformed items
            raise InvalidInputError(f"{where}: {label} is not a valid STAC item: {type(exc).__name__}: {exc}") from exc
        key = (item.collection_id, item.id)
        if key in seen:
            raise InvalidInputError(f"{where}: {label} appears twice")
        seen.add(key)
        if item.get_self_href() is None and url:
            item.set_self_href(absolute(url))
        elif item.get_self_href() is not None and url:
            try:  # the self href is the origin of the item's asset hrefs: the payload's origin bounds it
                check_reference(item.get_self_href(), absolute(url), what=f"self link of {label}")
            except UntrustedReferenceError as exc:
                raise InvalidInputError(f"{where}: {exc}") from None
        items.append(item)
    return items


def parse_payload(data: Any, url: str | None = None) -> TaskPayload:
    """Check a payload (stactask's Payload validation, then this task's) and turn it into items,
    parameters and output roots; InvalidInputError names the payload and what is wrong."""
    where = f"payload {url}" if url else "payload"
    payload = _stac_payload(data, where)
    try:
        default_root, collection_roots = _roots(payload, url)
        parameters = check_parameters(payload.workflow_options, payload.task_options_dict.get(TASK_NAME, {}))
        _check_targets(parameters)
        _check_model_href(parameters, url)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None
    check_item_count(len(payload.items_as_dicts), where)
    job = TaskPayload(payload, _items(payload.items_as_dicts, where, url), parameters, default_root, collection_roots)
    for i, item in enumerate(job.items):
        try:
            job.root_for(item)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: features[{i}]: {exc}") from None
    for root in sorted({default_root, *collection_roots.values()} - {None}):
        try:
            job.config(root, device="cpu")  # RunConfig checks resolution, model, precision, collection id ...
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: process.tasks.{TASK_NAME}: {exc}") from None
    return job


def load_payload(url: str, options: StorageOptions | None = None) -> dict[str, Any]:
    """The JSON document at ``url``, at most STAC_CLOUDS2MASK_MAX_BODY_BYTES; InvalidInputError when absent,
    larger or not JSON."""
    try:
        return read_json(url, options, Limits.from_env().max_body_bytes, strict=True)
    except DocumentTooLarge as exc:
        raise InvalidInputError(f"payload {exc} (STAC_CLOUDS2MASK_MAX_BODY_BYTES): refused") from None
    except FileNotFoundError as exc:
        raise InvalidInputError(f"payload not found: {url}") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN / Infinity
        raise InvalidInputError(f"payload {url} is not JSON: {exc}") from exc


def read_payload(url: str, options: StorageOptions | None = None) -> TaskPayload:
    """The checked payload at ``url`` (its origin bounds the hrefs it may name)."""
    return parse_payload(load_payload(url, options), url)


def mask_items(
    job: TaskPayload, device: str | None = None, progress: Progress | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], RunReport]:
    """Mask the payload's items (one Runner per output root, models shared): the published mask items
    (published now or before, in input order), the failures and the run report."""
    groups: dict[str, list[pystac.Item]] = {}
    for item in job.items:
        groups.setdefault(job.root_for(item), []).append(item)
    models: dict[str, Any] = {}
    outcomes: dict[int, ItemOutcome] = {}
    runners: dict[str, Runner] = {}
    for root, items in groups.items():
        runner = runners[root] = Runner(job.config(root, device), progress)
        runner.models = models  # one loaded model per name across output roots
        for item, outcome in zip(items, runner.run(items).outcomes):
            outcomes[id(item)] = outcome
    report = RunReport([outcomes[id(item)] for item in job.items])
    features, failures = [], []
    for item, outcome in zip(job.items, report.outcomes):
        d = None
        if outcome.nothing_to_mask:
            continue
        if outcome.status in ("published", "skipped"):
            runner = runners[job.root_for(item)]
            d = runner.publisher.published_item(item, expected_settings(item, runner.config))
            if d is None:
                outcome.status, outcome.stage = "failed", "publish"
                outcome.error = (
                    f"item {item.id!r}: its mask item is not in the static catalog at {runner.config.output}"
                )
        if d is None:
            failures.append(
                {
                    "source_item": item.id,
                    "collection": item.collection_id,
                    "status": outcome.status,
                    "stage": outcome.stage,
                    "error": outcome.error,
                }
            )
        else:
            features.append(d)
    return features, failures, report


class ItemsFailed(Clouds2MaskError):
    """Some items of a payload failed or did not run: how the task fails under stactask's ``handler`` and
    ``Task.cli`` (a runner such as Cirrus then marks the task failed, never a success with fewer features).
    ``failures`` are the entries of ``clouds2mask:failures``; ``features`` the mask items published."""

    def __init__(self, failures: list[dict[str, Any]], features: list[dict[str, Any]], total: int):
        self.failures, self.features = failures, features
        shown = "; ".join(f"{f['source_item']!r} ({f['status']}, {f['stage']}): {f['error']}" for f in failures[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        super().__init__(f"{len(failures)} of {total} item(s) failed or did not run: {shown}{more}")


class ItemsInvalid(ItemsFailed, InvalidInput):
    """Every failed item failed on what it is (an id that cannot be a path segment, no model for its
    level or bands), which no retry changes: stactask's InvalidInput, so runners do not retry."""


NOT_RETRYABLE_STAGES = ("validate", "model")


def items_failed(failures: list[dict[str, Any]], features: list[dict[str, Any]], total: int) -> ItemsFailed:
    """The exception of a task whose items failed: ItemsInvalid when no failure can go away on a retry."""
    failed = [f for f in failures if f["status"] == "failed"]
    invalid = bool(failed) and all(f["stage"] in NOT_RETRYABLE_STAGES for f in failed)
    return (ItemsInvalid if invalid else ItemsFailed)(failures, features, total)


class Clouds2MaskTask(Task):
    """stactask's Task for cloud masks. Of stactask's Task machinery only the payload handling is used:
    ``download_item_assets`` is not (rasters are read in windows straight from their hrefs, never copied
    whole), nor the upload helpers (``upload=False``: ``Publisher`` writes COGs and items atomically, with
    versions and the trust checks, to the path template's root), nor the work directory stactask creates
    (left empty and removed by ``cleanup_workdir``)."""

    name = TASK_NAME
    description = "Cloud and cloud-shadow masks of Sentinel-2 items (pretrained ukis-csmask UNets)"
    version = __version__

    def __init__(
        self,
        payload: dict[str, Any],
        origin: str | None = None,
        device: str | None = None,
        progress: Progress | None = None,
        **kwargs: Any,
    ) -> None:
        """``origin``: the payload's URL (it bounds the hrefs the payload may name); ``device`` overrides
        the payload's; other keyword arguments are stactask's (workdir, save_workdir, validate)."""
        self.origin, self.device, self.progress = origin, device, progress
        self.job: TaskPayload | None = None
        self.report: RunReport | None = None
        # stactask's Payload.validate runs first in Task.__init__: here, so that its TypeErrors name the payload
        _stac_payload(payload, f"payload {origin}" if origin else "payload")
        super().__init__(payload, **{**kwargs, "upload": False})

    def validate(self) -> bool:
        """This task's checks over stactask's own (run by Task.__init__): roots, trust, parameters, items."""
        self.job = parse_payload(self.payload, self.origin)
        return True

    def process(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Mask the items with these parameters (stactask passes workflow options merged with this task's)
        and return the published mask items. When any item failed or did not run, the task fails as
        stac-task expects of a task, by raising (ItemsFailed, or ItemsInvalid, a stactask InvalidInput,
        when retrying cannot help), with the failures also listed under ``clouds2mask:failures``."""
        job = self.job if self.job is not None else parse_payload(self.payload, self.origin)
        parameters = check_parameters(kwargs, {})
        _check_targets(parameters)  # also when process is called with parameters of its own
        _check_model_href(parameters, self.origin)
        job = dataclasses.replace(job, parameters=parameters)
        features, failures, self.report = mask_items(job, self.device, self.progress)
        for key in (FAILURES, NOTHING_TO_MASK):
            self.payload.pop(key, None)
        nothing = [
            {"source_item": o.source_id, "collection": o.collection, "reason": o.error}
            for o in self.report.outcomes
            if o.nothing_to_mask
        ]
        if nothing:
            self.payload[NOTHING_TO_MASK] = nothing
        if failures:
            self.payload[FAILURES] = failures
            raise items_failed(failures, features, len(job.items))
        return features


def run_payload(
    data: dict[str, Any], url: str | None = None, device: str | None = None, progress: Progress | None = None
) -> tuple[dict[str, Any], RunReport, TaskPayload]:
    """Run a payload as stactask's ``Task.handler`` does, keeping the report: the output payload (the
    input with ``features`` replaced by the mask items), the run report and the checked payload.

    Unlike the handler: no ``href``/``url`` indirection (refused: the payload is read here, under the
    origin checks and size limit) and no ``assign_collections`` (collection matchers are refused)."""
    task = Clouds2MaskTask(data, origin=url, device=device, progress=progress)
    try:
        try:
            published = task.process(**task.parameters)
        except ItemsFailed as exc:  # the report and clouds2mask:failures tell; the exit status is the report's
            published = exc.features
        features = [task.post_process_item(item) for item in published]
    finally:
        task.cleanup_workdir()
    task.payload["features"] = features
    assert task.report is not None and task.job is not None  # set by process and validate
    return dict(task.payload), task.report, task.job


def make_payload(
    items: Sequence[pystac.Item],
    root: str,
    parameters: dict[str, Any] | None = None,
    payload_id: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """A stac-task payload that masks ``items`` into the static catalog at ``root``."""
    process: dict[str, Any] = {
        "description": description or "Cloud and cloud-shadow masks by stac-clouds2mask",
        "upload_options": {"path_template": path_template(absolute(root))},
        "tasks": {TASK_NAME: dict(parameters or {})},
    }
    payload: dict[str, Any] = {"type": "FeatureCollection"}
    if payload_id:
        payload["id"] = payload_id
    payload["features"] = [absolute_item_dict(i) for i in items]
    payload["process"] = [process]
    return payload
