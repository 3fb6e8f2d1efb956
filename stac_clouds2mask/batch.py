"""Scale-out: plans of N shard payloads, shard runs and their status.

A *plan* is a folder (any fsspec URL) holding ``manifest.json`` and ``shards/shard-NNNNN.json``: one
stac-task payload (stac_clouds2mask.task) per shard, balanced by item count, deterministic for the same
items and settings. An AWS Batch array job runs ``run-shard PLAN --index $AWS_BATCH_JOB_ARRAY_INDEX``;
``status PLAN`` tells per shard what is done, failed or missing from what is published, so rerunning the
array (or some indices) finishes exactly the missing work: the Runner skips items already published with
the same settings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import pystac

from .config import expected_settings
from .errors import InvalidInputError, ItemError, LimitExceededError, UntrustedReferenceError
from .publish import Publisher, StaticCatalog
from .report import Progress, RunReport, credentials_in, public_url
from .search import SearchFilters, search_all
from .storage import StorageOptions, absolute, get_fs, join, read_json, resolve_href, write_json_atomic
from .trust import check_output_root, check_reference, unsafe_segment
from .task import (
    TASK_NAME,
    TaskPayload,
    check_parameters,
    load_payload,
    make_payload,
    path_template,
    read_payload,
    run_payload,
)

log = logging.getLogger(__name__)

PLAN_TYPE = "stac-clouds2mask-plan"
PLAN_VERSION = 1
MANIFEST = "manifest.json"
ARRAY_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"
JOB_ID_ENV = "AWS_BATCH_JOB_ID"  # "<parent id>:<index>" in an array child
MAX_SHARDS = 10_000  # the largest AWS Batch array
RUNS_DIR = ".clouds2mask-runs"  # shard run records, under the output root (outside the catalog's links)

ItemState = Literal["done", "failed", "missing"]


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
    check_parameters({}, parameters)  # same checks as a payload's
    if parameters.get("model_href"):  # as the output root: the workers read the plan elsewhere
        parameters["model_href"] = absolute(parameters["model_href"])
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
        "sources": [public_url(absolute(s)) for s in sources],
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
    payloads = [
        make_payload(
            group,
            root,
            parameters,
            payload_id=f"{plan_id}-{k:05d}",
            description=f"stac-clouds2mask plan {plan_id}, shard {k} of {len(groups)}",
        )
        for k, group in enumerate(groups)
    ]
    for k, payload in enumerate(payloads):  # all checked before any is written
        if (where := credentials_in(payload)) is not None:
            raise InvalidInputError(
                f"shard {k}: {where} holds a URL with credentials (user info or a signed query): a plan is "
                "stored for other jobs to read, so none may be written into it; give the workers access of "
                "their own (an IAM role, STAC_CLOUDS2MASK_API_TOKEN) and plan from URLs without credentials"
            )
    for k, payload in enumerate(payloads):
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
    ``plan_options``); returns the manifest (plus its ``url``). With source headers, the shards' payloads name
    the hosts that receive them (``header_hosts``); the values stay the workers' (STAC_CLOUDS2MASK_SOURCE_HEADERS)."""
    source_options = (source_options or StorageOptions()).for_sources(sources)
    parameters = dict(parameters or {})
    if source_options.headers:
        parameters.setdefault("header_hosts", list(source_options.header_hosts))
    items = search_all(sources, filters, source_options)
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
        not isinstance(manifest, dict)
        or manifest.get("type") != PLAN_TYPE
        or manifest.get("version") != PLAN_VERSION
        or not isinstance(manifest.get("shards"), list)
    ):
        raise InvalidInputError(
            f"{murl} is not a stac-clouds2mask plan manifest (type {PLAN_TYPE!r}, version {PLAN_VERSION})"
        )
    _check_manifest(manifest, murl)
    return manifest, murl


def _check_manifest(manifest: dict[str, Any], murl: str) -> None:
    """What a plan names, judged as any document's references are (whoever could write the plan folder
    could write it): the id a single path segment (it names the run records' folder), the output an
    allowed output root for a document at ``murl``, each shard href a reference it may name."""
    if why := unsafe_segment(manifest.get("id")):
        raise InvalidInputError(f"plan manifest {murl}: id {manifest.get('id')!r} {why}: refused")
    output = manifest.get("output")
    try:
        check_output_root(output if isinstance(output, str) else "", murl)
    except UntrustedReferenceError as exc:
        raise InvalidInputError(f"plan manifest {murl}: output: {exc}") from None
    for k, shard in enumerate(manifest["shards"]):
        href = shard.get("href") if isinstance(shard, dict) else None
        if not isinstance(href, str):
            raise InvalidInputError(f"plan manifest {murl}: shards[{k}] has no string 'href'")
        try:
            check_reference(resolve_href(murl, href), murl, what=f"shards[{k}].href")
        except UntrustedReferenceError as exc:
            raise InvalidInputError(f"plan manifest {murl}: {exc}") from None


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
    out, report, payload = run_payload(load_payload(purl, options), purl, device, progress)
    record = {
        "plan": manifest["id"],
        "index": k,
        "payload": purl,
        "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "outcomes": [
            {
                "key": item_key(i),
                "status": o.status,
                "stage": o.stage,
                "error": o.error,
                "nothing_to_mask": o.nothing_to_mask,
            }
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
    payload: TaskPayload,
    item: pystac.Item,
    publishers: dict[str, Publisher],
    failures: dict[str, str],
    nothing: dict[str, str | None],
) -> ItemStatus:
    """done when its mask is published with the plan's settings (or the shard found nothing of it to mask in
    the AOI), failed when no model fits it or the shard's record says so, else missing."""
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
        if publisher.published_item(item, settings) is not None:
            return ItemStatus(key, "done")
    except (UntrustedReferenceError, LimitExceededError) as exc:  # a refused id or version chain: never published
        return ItemStatus(key, "failed", str(exc))
    if key in failures:
        return ItemStatus(key, "failed", failures[key])
    if key in nothing:
        return ItemStatus(key, "done", nothing[key])
    return ItemStatus(key, "missing")


def _shard_status(manifest: dict[str, Any], murl: str, index: int, options: StorageOptions | None) -> ShardStatus:
    payload = read_payload(resolve_href(murl, manifest["shards"][index]["href"]), options)
    record_options = payload.config(manifest["output"], "cpu").options
    try:
        record = read_json(run_record_url(manifest["output"], manifest["id"], index), record_options)
    except FileNotFoundError:
        record = {}
    outcomes = record.get("outcomes", [])
    failures = {o["key"]: o.get("error") or "failed" for o in outcomes if o.get("status") == "failed"}
    nothing = {o["key"]: o.get("error") for o in outcomes if o.get("status") == "skipped" and o.get("nothing_to_mask")}
    publishers: dict[str, Publisher] = {}
    return ShardStatus(index, [_item_status(payload, item, publishers, failures, nothing) for item in payload.items])


def status(plan_url: str, options: StorageOptions | None = None, workers: int = 8) -> PlanStatus:
    """Per shard: done, failed or missing, judged from the published items and the shard run records."""
    manifest, murl = read_manifest(plan_url, options)
    fs, _ = get_fs(manifest["output"], options)
    fs.invalidate_cache()  # s3fs caches listings; other jobs wrote since
    indices = range(len(manifest["shards"]))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(indices)))) as pool:
        shards = list(pool.map(lambda k: _shard_status(manifest, murl, k, options), indices))
    return PlanStatus(manifest["id"], murl, shards)
