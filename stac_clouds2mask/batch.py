"""Scale-out: stac-task payloads, plans of N shard payloads, shard runs and their status.

A *payload* follows the stac-task convention (stac-utils/stac-task): a GeoJSON FeatureCollection whose
``features`` are the source items and whose ``process`` (a list; its first element is used; a bare
dict is accepted as stac-task still does) holds ``upload_options.path_template``, optional
``collection_options.<collection>.upload_options`` and ``tasks.clouds2mask`` parameters (merged over
``workflow_options``). Running it masks every item with :class:`pipeline.Runner` and returns the same
payload with ``features`` replaced by the published mask items.

A *plan* is a folder (any fsspec URL) holding ``manifest.json`` and ``shards/shard-NNNNN.json``: one
payload per shard, balanced by item count, deterministic for the same items and settings. An AWS Batch
array job runs ``run-shard PLAN --index $AWS_BATCH_JOB_ARRAY_INDEX``; ``status PLAN`` tells per shard
what is done, failed or missing from what is published, so rerunning the array (or some indices)
finishes exactly the missing work: the Runner skips items already published with the same settings.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
import os
import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import pystac

from .errors import InvalidInputError, ItemError, LimitExceededError, UntrustedReferenceError
from .pipeline import ItemOutcome, Progress, RunConfig, Runner, RunReport, select_model, settings_for
from .publish import Publisher, StaticCatalog, versions
from .search import SearchFilters, search
from .stac_item import mask_collection_id
from .storage import StorageOptions, absolute, get_fs, join, read_json, write_json_atomic
from .trust import check_output_root, check_payload_target, check_reference

log = logging.getLogger(__name__)

TASK_NAME = "clouds2mask"
PLAN_TYPE = "stac-clouds2mask-plan"
PLAN_VERSION = 1
MANIFEST = "manifest.json"
ARRAY_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"
JOB_ID_ENV = "AWS_BATCH_JOB_ID"  # "<parent id>:<index>" in an array child
MAX_SHARDS = 10_000  # the largest AWS Batch array
RUNS_DIR = ".clouds2mask-runs"  # shard run records, under the output root (outside the catalog's links)
TEMPLATE_TAIL = "/${collection}/${id}"

# tasks.clouds2mask parameters: name -> (accepted JSON types, may be null)
TASK_PARAMETERS: dict[str, tuple[tuple[type, ...], bool]] = {
    "resolution": ((int, float), False),
    "model": ((str,), False),
    "device": ((str,), False),
    "overwrite": ((bool,), False),
    "batch_size": ((int,), True),
    "requester_pays": ((bool,), False),
    "anon": ((bool,), True),
    "endpoint_url": ((str,), True),
    "publish_api": ((str,), True),
}

ItemState = Literal["done", "failed", "missing"]


def resolve_href(base: str, href: str) -> str:
    """``href`` made absolute against the document at ``base`` (paths or URLs with any scheme)."""
    if "://" in href or href.startswith("/"):
        return href
    scheme, sep, path = base.partition("://") if "://" in base else ("", "", base)
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), href))
    return f"{scheme}{sep}{joined}"


def absolute_item_dict(item: pystac.Item) -> dict[str, Any]:
    """The item as a self-contained dict: self link, asset and link hrefs all absolute."""
    d = item.to_dict(include_self_link=True, transform_hrefs=False)
    base = item.get_self_href()
    if base:
        for asset in d.get("assets", {}).values():
            asset["href"] = resolve_href(base, asset["href"])
        for link in d.get("links", []):
            link["href"] = resolve_href(base, link["href"])
    return d


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
            "a fixed "
            "root such as 's3://bucket/masks/${collection}/${id}' (masks are published as a static catalog: "
            "<root>/catalog.json, <root>/<collection>/<id>/<id>.json and .tif)"
        )
    try:
        check_output_root(root, source)
    except UntrustedReferenceError as exc:
        raise InvalidInputError(f"{where}.path_template: {exc}") from None
    return absolute(root)


def path_template(root: str) -> str:
    return join(root, "${collection}", "${id}")


# ------------------------------------------------------------------------------------------
# payloads
# ------------------------------------------------------------------------------------------


@dataclass
class TaskPayload:
    """A validated stac-task payload for the clouds2mask task."""

    data: dict[str, Any]
    items: list[pystac.Item]
    parameters: dict[str, Any]
    default_root: str | None
    collection_roots: dict[str, str] = field(default_factory=dict)

    def root_for(self, item: pystac.Item) -> str:
        root = self.collection_roots.get(mask_collection_id(item.collection_id), self.default_root)
        assert root is not None  # checked by parse_payload
        return root

    def config(self, root: str, device: str | None = None) -> RunConfig:
        p = self.parameters
        options = StorageOptions(
            anon=p.get("anon"), requester_pays=bool(p.get("requester_pays", False)), endpoint_url=p.get("endpoint_url")
        )
        return RunConfig(
            output=root,
            publish_api=p.get("publish_api"),
            resolution=p.get("resolution", 20),
            device=device or p.get("device", "auto"),
            model=p.get("model", "auto"),
            overwrite=bool(p.get("overwrite", False)),
            batch_size=p.get("batch_size"),
            options=options,
        )


def _process_definition(data: dict[str, Any]) -> dict[str, Any]:
    process = data.get("process")
    if isinstance(process, dict):  # stac-task still accepts a bare dict (deprecated)
        return process
    if not isinstance(process, list) or not process:
        raise InvalidInputError(
            "payload needs 'process': a list whose first element is the process definition "
            "(upload_options.path_template, tasks.clouds2mask)"
        )
    if not isinstance(process[0], dict):
        raise InvalidInputError("payload 'process' must be a list of objects; its first element is not an object")
    return process[0]


def _task_parameters(process: dict[str, Any]) -> dict[str, Any]:
    workflow = process.get("workflow_options", {})
    if not isinstance(workflow, dict):
        raise InvalidInputError("process.workflow_options must be an object")
    tasks = process.get("tasks", {})
    if isinstance(tasks, list):  # deprecated stac-task form: [{"name": ..., "parameters": {...}}]
        as_dict: dict[str, Any] = {}
        for cfg in tasks:
            if not isinstance(cfg, dict) or not isinstance(cfg.get("name"), str):
                raise InvalidInputError("process.tasks as a list must hold objects with a 'name'")
            as_dict[cfg["name"]] = cfg.get("parameters", {})
        tasks = as_dict
    if not isinstance(tasks, dict):
        raise InvalidInputError("process.tasks must be an object mapping task names to their parameters")
    own = tasks.get(TASK_NAME, {})
    if not isinstance(own, dict):
        raise InvalidInputError(f"process.tasks.{TASK_NAME} must be an object of parameters")
    unknown = sorted(set(own) - set(TASK_PARAMETERS))
    if unknown:
        raise InvalidInputError(
            f"process.tasks.{TASK_NAME} has unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(TASK_PARAMETERS)}"
        )
    # workflow options apply to every task of a workflow: take only those this task knows
    params = {k: v for k, v in workflow.items() if k in TASK_PARAMETERS}
    params.update(own)
    for name, value in params.items():
        types, nullable = TASK_PARAMETERS[name]
        if value is None and nullable:
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            want = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
            raise InvalidInputError(f"process.tasks.{TASK_NAME}.{name} must be {want}, got {json.dumps(value)}")
    return params


def parse_payload(data: Any, url: str | None = None) -> TaskPayload:
    """Check a payload and turn it into items, parameters and output roots; InvalidInputError names what is wrong."""
    where = f"payload {url}" if url else "payload"
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise InvalidInputError(
            f"{where} must be a GeoJSON FeatureCollection (type 'FeatureCollection') in the stac-task convention"
        )
    features = data.get("features")
    if not isinstance(features, list):
        raise InvalidInputError(f"{where}: 'features' must be a list of STAC items")
    try:
        process = _process_definition(data)
        upload = process.get("upload_options", {})
        if not isinstance(upload, dict):
            raise InvalidInputError("process.upload_options must be an object")
        if process.get("collection_matchers") or upload.get("collections"):
            raise InvalidInputError(
                "collection_matchers / upload_options.collections are not supported: mask items go to "
                "'<source collection>-cloudmask'; key collection_options by that id instead"
            )
        default_root = (
            output_root(upload["path_template"], "process.upload_options", url) if "path_template" in upload else None
        )
        coll_options = process.get("collection_options", {})
        if not isinstance(coll_options, dict):
            raise InvalidInputError("process.collection_options must be an object")
        collection_roots = {}
        for name, opts in coll_options.items():
            if not isinstance(opts, dict) or not isinstance(opts.get("upload_options", {}), dict):
                raise InvalidInputError(
                    f"process.collection_options.{name} must be an object with an upload_options object"
                )
            if "path_template" in opts.get("upload_options", {}):
                collection_roots[name] = output_root(
                    opts["upload_options"]["path_template"], f"process.collection_options.{name}.upload_options", url
                )
        parameters = _task_parameters(process)
        for name in ("publish_api", "endpoint_url"):
            if parameters.get(name) is not None:
                check_payload_target(name, parameters[name])
    except UntrustedReferenceError as exc:
        raise InvalidInputError(f"{where}: process.tasks.{TASK_NAME}: {exc}") from None
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None

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
        if mask_collection_id(item.collection_id) not in collection_roots and default_root is None:
            raise InvalidInputError(
                f"{where}: no upload_options.path_template for {label} (output collection "
                f"{mask_collection_id(item.collection_id)!r}); set process.upload_options.path_template"
            )
        items.append(item)
    payload = TaskPayload(
        data=data, items=items, parameters=parameters, default_root=default_root, collection_roots=collection_roots
    )
    for root in sorted({default_root, *collection_roots.values()} - {None}):
        try:
            payload.config(root, device="cpu")  # RunConfig checks resolution and model
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: process.tasks.{TASK_NAME}: {exc}") from None
    return payload


def read_payload(url: str, options: StorageOptions | None = None) -> TaskPayload:
    try:
        data = read_json(url, options)
    except FileNotFoundError as exc:
        raise InvalidInputError(f"payload not found: {url}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"payload {url} is not JSON: {exc}") from exc
    return parse_payload(data, url)


def published_item(publisher: Publisher, source: pystac.Item, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The latest mask item published in the static catalog for ``source`` with these settings (the one a
    rerun skips to), with absolute hrefs and a self link; None when there is none. Reads only."""
    version = versions.matching(publisher.published_versions(source, static_only=True), source, settings)
    if version is None:
        return None
    found = version.item
    base = publisher.catalog.item_url(found["collection"], found["id"])
    for asset in found.get("assets", {}).values():
        asset["href"] = resolve_href(base, asset["href"])
    links = [
        dict(link, href=resolve_href(base, link["href"]))
        for link in found.get("links", [])
        if link.get("rel") != "self"
    ]
    found["links"] = [*links, {"rel": "self", "href": base, "type": "application/geo+json"}]
    return found


def expected_settings(item: pystac.Item, config: RunConfig) -> dict[str, Any]:
    """The settings a run with ``config`` records for ``item``; ItemError when no model fits it."""
    return settings_for(select_model(item, config.model), config)


def execute(
    payload: TaskPayload, device: str | None = None, progress: Progress | None = None
) -> tuple[dict[str, Any], RunReport]:
    """Mask the payload's items (one Runner per output root, models shared) and build the output payload:
    the input payload with ``features`` replaced by the mask items (published now or before)."""
    groups: dict[str, list[pystac.Item]] = {}
    for item in payload.items:
        groups.setdefault(payload.root_for(item), []).append(item)
    models: dict[str, Any] = {}
    outcomes: dict[int, ItemOutcome] = {}
    runners: dict[str, Runner] = {}
    for root, items in groups.items():
        runner = runners[root] = Runner(payload.config(root, device), progress)
        runner.models = models  # one loaded model per name across output roots
        for item, outcome in zip(items, runner.run(items).outcomes):
            outcomes[id(item)] = outcome
    report = RunReport([outcomes[id(item)] for item in payload.items])
    features, failures = [], []
    for item, outcome in zip(payload.items, report.outcomes):
        d = None
        if outcome.status != "failed":
            runner = runners[payload.root_for(item)]
            d = published_item(runner.publisher, item, expected_settings(item, runner.config))
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
                    "stage": outcome.stage,
                    "error": outcome.error,
                }
            )
        else:
            features.append(d)
    out = {k: (features if k == "features" else v) for k, v in payload.data.items()}  # same keys, same order
    if failures:
        out["clouds2mask:failures"] = failures
    else:
        out.pop("clouds2mask:failures", None)
    return out, report


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


# ------------------------------------------------------------------------------------------
# plans and shards
# ------------------------------------------------------------------------------------------


def item_key(item: pystac.Item) -> str:
    return f"{item.collection_id or ''}/{item.id}"


def shard_items(items: Sequence[pystac.Item], shards: int) -> list[list[pystac.Item]]:
    """Deterministic, balanced shards: items sorted by collection and id, dealt round-robin, so shard
    sizes differ by at most one and similar scenes spread over the shards; duplicates dropped."""
    unique = {item_key(i): i for i in items}
    ordered = [unique[k] for k in sorted(unique)]
    n = min(shards, len(ordered))
    return [ordered[k::n] for k in range(n)]


def shard_href(index: int) -> str:
    return f"./shards/shard-{index:05d}.json"


def manifest_url(plan_url: str) -> str:
    """The manifest of a plan given as its folder or as the manifest itself."""
    url = absolute(plan_url).rstrip("/")
    return url if url.endswith(".json") else join(url, MANIFEST)


def write_plan(
    plan_url: str,
    items: Sequence[pystac.Item],
    output: str,
    shards: int,
    parameters: dict[str, Any] | None = None,
    sources: Sequence[str] = (),
    filters: SearchFilters | None = None,
    overwrite: bool = False,
    options: StorageOptions | None = None,
) -> dict[str, Any]:
    """Write the shard payloads, then the manifest (last, so a manifest always has its shards)."""
    if not 1 <= shards <= MAX_SHARDS:
        raise InvalidInputError(
            f"--shards must be between 1 and {MAX_SHARDS} (the largest AWS Batch array), got {shards}"
        )
    if not items:
        raise InvalidInputError("the search found no items: nothing to plan")
    parameters = dict(parameters or {})
    _task_parameters({"tasks": {TASK_NAME: parameters}})  # same checks as a payload's
    root = absolute(output).rstrip("/")
    groups = shard_items(items, shards)
    body = {"output": root, "parameters": parameters, "shards": [[item_key(i) for i in g] for g in groups]}
    plan_id = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    murl = manifest_url(plan_url)
    manifest: dict[str, Any] = {
        "type": PLAN_TYPE,
        "version": PLAN_VERSION,
        "id": plan_id,
        "task": TASK_NAME,
        "output": root,
        "path_template": path_template(root),
        "parameters": parameters,
        "sources": [absolute(s) for s in sources],
        "filters": {k: v for k, v in (filters.__dict__ if filters else {}).items() if v is not None},
        "item_count": sum(len(g) for g in groups),
        "shard_count": len(groups),
        "shards": [
            {"index": k, "href": shard_href(k), "item_count": len(g), "items": [item_key(i) for i in g]}
            for k, g in enumerate(groups)
        ],
    }
    try:
        existing = read_json(murl, options)
    except FileNotFoundError:
        existing = None
    if existing is not None and existing.get("id") != plan_id and not overwrite:
        raise InvalidInputError(
            f"a different plan ({existing.get('id')}) already exists at {murl}: pass --overwrite "
            "to replace it, or plan into another folder"
        )
    for k, group in enumerate(groups):
        payload = make_payload(
            group,
            root,
            parameters,
            payload_id=f"{plan_id}-{k:05d}",
            description=f"stac-clouds2mask plan {plan_id}, shard {k} of {len(groups)}",
        )
        write_json_atomic(resolve_href(murl, shard_href(k)), payload, options)
    write_json_atomic(murl, manifest, options)
    manifest["url"] = murl
    return manifest


def plan(
    sources: Sequence[str],
    plan_url: str,
    output: str,
    shards: int,
    filters: SearchFilters | None = None,
    parameters: dict[str, Any] | None = None,
    source_options: StorageOptions | None = None,
    plan_options: StorageOptions | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Search the sources (read with ``source_options``) and write a plan of ``shards`` payloads (with
    ``plan_options``); returns the manifest (plus its ``url``)."""
    items = [item for source in sources for item in search(source, filters, source_options)]
    return write_plan(plan_url, items, output, shards, parameters, sources, filters, overwrite, plan_options)


def read_manifest(plan_url: str, options: StorageOptions | None = None) -> tuple[dict[str, Any], str]:
    murl = manifest_url(plan_url)
    try:
        manifest = read_json(murl, options)
    except FileNotFoundError as exc:
        raise InvalidInputError(
            f"no plan at {plan_url}: {murl} not found (write one with `stac-clouds2mask plan`)"
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"plan manifest {murl} is not JSON: {exc}") from exc
    if (
        manifest.get("type") != PLAN_TYPE
        or manifest.get("version") != PLAN_VERSION
        or not isinstance(manifest.get("shards"), list)
    ):
        raise InvalidInputError(
            f"{murl} is not a stac-clouds2mask plan manifest (type {PLAN_TYPE!r}, version {PLAN_VERSION})"
        )
    return manifest, murl


def array_index(index: int | None, shard_count: int) -> int:
    """The shard to run: --index, else $AWS_BATCH_JOB_ARRAY_INDEX, else the ``:<index>`` suffix of an array
    child's $AWS_BATCH_JOB_ID (moto sets only that one), else 0 for a one-shard plan."""
    if index is None:
        env, name = os.environ.get(ARRAY_INDEX_ENV), ARRAY_INDEX_ENV
        job_id = os.environ.get(JOB_ID_ENV, "")
        if env is None and ":" in job_id:
            env, name = job_id.rpartition(":")[2], JOB_ID_ENV
        if env is not None:
            try:
                index = int(env)
            except ValueError as exc:
                raise InvalidInputError(f"{name}={os.environ[name]!r}: shard index {env!r} is not an integer") from exc
        elif shard_count == 1:
            index = 0
        else:
            raise InvalidInputError(
                f"no shard index: pass --index or set {ARRAY_INDEX_ENV} (the plan has {shard_count} shards)"
            )
    if not 0 <= index < shard_count:
        raise InvalidInputError(f"shard index {index} is outside the plan's 0..{shard_count - 1}")
    return index


def run_record_url(output: str, plan_id: str, index: int) -> str:
    return join(output, RUNS_DIR, plan_id, f"shard-{index:05d}.json")


@dataclass
class ShardRun:
    index: int
    payload_url: str
    report: RunReport
    output_payload: dict[str, Any]
    record_url: str


def run_shard(
    plan_url: str,
    index: int | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    options: StorageOptions | None = None,
) -> ShardRun:
    """Run one shard of a plan and record its outcome next to the outputs (for `status`)."""
    manifest, murl = read_manifest(plan_url, options)
    k = array_index(index, len(manifest["shards"]))
    shard = manifest["shards"][k]
    purl = resolve_href(murl, shard["href"])
    payload = read_payload(purl, options)
    out, report = execute(payload, device, progress)
    record = {
        "plan": manifest["id"],
        "index": k,
        "payload": purl,
        "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "outcomes": [
            {"key": item_key(i), "status": o.status, "stage": o.stage, "error": o.error}
            for i, o in zip(payload.items, report.outcomes)
        ],
    }
    rurl = run_record_url(manifest["output"], manifest["id"], k)
    try:
        write_json_atomic(rurl, record, payload.config(manifest["output"], "cpu").options)
    except OSError as exc:  # the masks are what counts; without the record, status says missing, not failed
        log.warning("could not write the run record %s: %s", rurl, exc)
    return ShardRun(k, purl, report, out, rurl)


# ------------------------------------------------------------------------------------------
# status
# ------------------------------------------------------------------------------------------


@dataclass
class ItemStatus:
    key: str
    state: ItemState
    detail: str | None = None


@dataclass
class ShardStatus:
    index: int
    items: list[ItemStatus]

    def count(self, state: ItemState) -> int:
        return sum(1 for i in self.items if i.state == state)

    @property
    def state(self) -> ItemState:
        """done when every item is; missing when any item still has to run; else failed."""
        if all(i.state == "done" for i in self.items):
            return "done"
        return "missing" if any(i.state == "missing" for i in self.items) else "failed"


@dataclass
class PlanStatus:
    plan_id: str
    manifest_url: str
    shards: list[ShardStatus]

    def indices(self, state: ItemState) -> list[int]:
        return [s.index for s in self.shards if s.state == state]

    @property
    def complete(self) -> bool:
        return all(s.state == "done" for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan_id,
            "manifest": self.manifest_url,
            "complete": self.complete,
            "done": self.indices("done"),
            "failed": self.indices("failed"),
            "missing": self.indices("missing"),
            "shards": [
                {
                    "index": s.index,
                    "state": s.state,
                    "items": len(s.items),
                    "done": s.count("done"),
                    "failed": s.count("failed"),
                    "missing": s.count("missing"),
                    "problems": [
                        {"item": i.key, "state": i.state, "detail": i.detail} for i in s.items if i.state != "done"
                    ],
                }
                for s in self.shards
            ],
        }


def _item_status(
    payload: TaskPayload, item: pystac.Item, publishers: dict[str, Publisher], failures: dict[str, str]
) -> ItemStatus:
    key = item_key(item)
    root = payload.root_for(item)
    config = payload.config(root, device="cpu")
    try:
        settings = expected_settings(item, config)
    except ItemError as exc:  # no model fits: this item can never succeed
        return ItemStatus(key, "failed", str(exc))
    publisher = publishers.setdefault(
        root,
        Publisher(
            StaticCatalog(root, config.options),
            collection_id=config.collection_id,
            max_versions=config.limits.max_versions,
        ),
    )
    try:
        if published_item(publisher, item, settings) is not None:
            return ItemStatus(key, "done")
    except (UntrustedReferenceError, LimitExceededError) as exc:  # a refused id or version chain: never published
        return ItemStatus(key, "failed", str(exc))
    if key in failures:
        return ItemStatus(key, "failed", failures[key])
    return ItemStatus(key, "missing")


def _shard_status(manifest: dict[str, Any], murl: str, index: int, options: StorageOptions | None) -> ShardStatus:
    payload = read_payload(resolve_href(murl, manifest["shards"][index]["href"]), options)
    record_options = payload.config(manifest["output"], "cpu").options
    try:
        record = read_json(run_record_url(manifest["output"], manifest["id"], index), record_options)
    except FileNotFoundError:
        record = {}
    failures = {o["key"]: o.get("error") or "failed" for o in record.get("outcomes", []) if o.get("status") == "failed"}
    publishers: dict[str, Publisher] = {}
    return ShardStatus(index, [_item_status(payload, item, publishers, failures) for item in payload.items])


def status(plan_url: str, options: StorageOptions | None = None, workers: int = 8) -> PlanStatus:
    """Per shard: done, failed or missing, judged from the published items and the shard run records."""
    manifest, murl = read_manifest(plan_url, options)
    fs, _ = get_fs(manifest["output"], options)
    fs.invalidate_cache()  # s3fs caches listings; other jobs wrote since
    indices = range(len(manifest["shards"]))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(indices)))) as pool:
        shards = list(pool.map(lambda k: _shard_status(manifest, murl, k, options), indices))
    return PlanStatus(manifest["id"], murl, shards)
