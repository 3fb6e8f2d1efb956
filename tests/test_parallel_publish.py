"""Parallel writers: 4 processes publish every sample item into one static catalog at once, as AWS Batch
array children do, on a local folder and on S3 (moto), 3 times each; nothing may be lost or doubled.

The test is about the catalog plumbing, not the masks: the children publish pre-made masks (each sample
item's grid at 60 m with a fixed class pattern) through the Publisher API, no model runs. Each child
publishes its own copy of every sample item (its shard, as an array child does: other ids, the same
collections) and, in between, every shared sample item in its own rotated order, so the children add
links to the same collections at the same moment and also meet on the same items (claims, skips).

moto's threaded server checks If-Match / If-None-Match and then stores the object in two steps, so two
concurrent conditional writes can both pass there, which S3 itself never allows. The S3 runs here use
a moto server that answers one request at a time: each conditional write is then atomic, as on S3.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from servers import MotoS3, patched_env

from stac_clouds2mask.model import get_model_spec
from stac_clouds2mask.publish import Publisher, StaticCatalog
from stac_clouds2mask.read import read_scene
from stac_clouds2mask.scene import MaskResult
from stac_clouds2mask.search import search
from stac_clouds2mask.storage import get_fs

WRITERS = 4
REPETITIONS = 3
SETTINGS = {"model": "model_4b_l2a", "resolution": 60, "patch_size": 256, "overlap": 52, "software": "test"}

_barrier: Any = None


def _init(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _publish_all(root: str, env: dict[str, str], results: list[MaskResult]) -> tuple[list[str], float]:
    """One writer: wait for the others, then plan and publish every result in the given order.
    Returns the errors met (as text) and the seconds it took."""
    os.environ.update(env)
    publisher = Publisher(StaticCatalog(root))
    spec = get_model_spec("model_4b_l2a")
    _barrier.wait(timeout=300)
    t0 = time.perf_counter()
    errors = []
    for result in results:
        try:
            plan = publisher.plan(result.scene.item, result.settings)
            if not plan.skip:
                publisher.publish(result, spec, plan)
        except Exception as exc:  # noqa: BLE001 (reported to the parent, which fails the test on any)
            errors.append(f"{result.scene.item.id}: {type(exc).__name__}: {exc}")
    return errors, time.perf_counter() - t0


@pytest.fixture(scope="module")
def premade(sample_catalog: Path) -> list[MaskResult]:
    """Every sample item with a pre-made mask on its 60 m grid: 0/1/2 stripes and a nodata corner."""
    out = []
    for item in search(str(sample_catalog)):
        scene = read_scene(item, ("blue", "green", "red", "nir"), 60).without_pixels()
        h, w = scene.shape
        classes = (np.arange(h * w, dtype=np.uint16).reshape(h, w) // max(w // 3, 1) % 3).astype(np.uint8)
        classes[: max(h // 8, 1), : max(w // 8, 1)] = 255
        out.append(MaskResult(scene=scene, classes=classes, model_name="model_4b_l2a", settings=dict(SETTINGS)))
    assert len(out) >= 5
    return out


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """WRITERS spawned processes (reused by every repetition) that start each round together."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    with ProcessPoolExecutor(WRITERS, mp_context=ctx, initializer=_init, initargs=(barrier,)) as executor:
        yield executor


@pytest.fixture(scope="module")
def serial_s3() -> Iterator[MotoS3]:
    """A moto S3 server that answers one request at a time (see the module docstring)."""
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    server = make_server(
        "127.0.0.1",
        0,
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
        request_handler=MotoRequestHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    class Stoppable:
        def stop(self) -> None:
            server.shutdown()
            thread.join()

    s3 = MotoS3(server=Stoppable(), host="127.0.0.1", port=server.server_address[1])
    try:
        yield s3
    finally:
        s3.stop()


def _shard(results: list[MaskResult], k: int) -> list[MaskResult]:
    """Writer k's own copies of the sample items (ids `<id>-w<k>`), the same grids and masks."""
    out = []
    for r in results:
        item = r.scene.item.clone()
        item.id = f"{item.id}-w{k}"
        out.append(dataclasses.replace(r, scene=dataclasses.replace(r.scene, item=item)))
    return out


def _work(results: list[MaskResult], k: int) -> list[MaskResult]:
    """Writer k's order: one of its shard, one shared (rotated by k), and so on."""
    shared = results[k % len(results) :] + results[: k % len(results)]
    return [r for pair in zip(_shard(results, k), shared) for r in pair]


def _race(pool: ProcessPoolExecutor, root: str, env: dict[str, str], results: list[MaskResult]) -> float:
    """All writers at once; returns the wall seconds of the round."""
    t0 = time.perf_counter()
    futures = [pool.submit(_publish_all, root, env, _work(results, k)) for k in range(WRITERS)]
    outcomes = [f.result(timeout=600) for f in futures]
    errors = [e for errs, _ in outcomes for e in errs]
    assert not errors, errors
    return time.perf_counter() - t0


def _files(root: str, env: dict[str, str]) -> dict[str, bytes]:
    """Every object under the catalog root and its bytes."""
    with patched_env(env):
        fs, path = get_fs(root)
        fs.invalidate_cache()
        return {p[len(path) :].lstrip("/"): fs.cat_file(p) for p in fs.find(path)}


def _check_catalog(files: dict[str, bytes], results: list[MaskResult]) -> None:
    """Every item present once and linked once, every collection linked once, extents cover every item,
    every JSON parses, nothing temporary left."""
    leftovers = [name for name in files if ".tmp-" in name or name.endswith(".lock")]
    assert not leftovers, leftovers
    docs = {name: json.loads(data) for name, data in files.items() if name.endswith(".json")}
    root = docs["catalog.json"]
    children = [link["href"] for link in root["links"] if link["rel"] == "child"]
    assert len(children) == len(set(children))
    expected: dict[str, list[MaskResult]] = {}
    for r in results:
        expected.setdefault(f"{r.scene.item.collection_id}-cloudmask", []).append(r)
    assert sorted(children) == sorted(f"./{cid}/collection.json" for cid in expected)
    items = {name: d for name, d in docs.items() if d.get("type") == "Feature"}
    assert sorted(d["id"] for d in items.values()) == sorted(f"{r.scene.item.id}_cloudmask" for r in results)
    for cid, rs in expected.items():
        coll = docs[f"{cid}/collection.json"]
        links = [link["href"] for link in coll["links"] if link["rel"] == "item"]
        want = [f"./{r.scene.item.id}_cloudmask/{r.scene.item.id}_cloudmask.json" for r in rs]
        assert sorted(links) == sorted(want), f"{cid}: item links {links}"
        (w, s, e, n), (start, end) = coll["extent"]["spatial"]["bbox"][0], coll["extent"]["temporal"]["interval"][0]
        for href in want:
            d = docs[f"{cid}/{href[2:]}"]
            bw, bs, be, bn = d["bbox"]
            assert w <= bw and s <= bs and e >= be and n >= bn, f"{cid} extent misses {d['id']}"
            assert start <= d["properties"]["datetime"] <= end, f"{cid} interval misses {d['id']}"
            tif = files[f"{cid}/{d['id']}/{d['id']}.tif"]
            assert d["assets"]["cloudmask"]["file:checksum"] == "1220" + hashlib.sha256(tif).hexdigest()


def _rerun_changes_nothing(root: str, env: dict[str, str], results: list[MaskResult], before: dict[str, bytes]):
    """A rerun after the race plans a skip for every item and changes no byte."""
    with patched_env(env):
        publisher = Publisher(StaticCatalog(root))
        assert [publisher.plan(r.scene.item, r.settings).action for r in results] == ["skip"] * len(results)
    assert _files(root, env) == before


def test_parallel_writers_on_a_local_folder_lose_nothing(premade, pool, tmp_path, capsys):
    everything = premade + [r for k in range(WRITERS) for r in _shard(premade, k)]
    seconds = []
    for rep in range(REPETITIONS):
        root = str(tmp_path / f"rep{rep}")
        seconds.append(_race(pool, root, {}, premade))
        files = _files(root, {})
        _check_catalog(files, everything)
        _rerun_changes_nothing(root, {}, everything, files)
    with capsys.disabled():
        print(
            f"\n[parallel local] {WRITERS} writers, {len(everything)} items: " + ", ".join(f"{s:.2f}s" for s in seconds)
        )


def test_parallel_writers_on_s3_lose_nothing(premade, pool, serial_s3, capsys):
    env = {k: v for k, v in serial_s3.env.items() if v is not None}
    bucket = serial_s3.create_bucket("parallel")
    everything = premade + [r for k in range(WRITERS) for r in _shard(premade, k)]
    seconds = []
    for rep in range(REPETITIONS):
        root = f"s3://{bucket}/rep{rep}"
        seconds.append(_race(pool, root, env, premade))
        files = _files(root, env)
        _check_catalog(files, everything)
        _rerun_changes_nothing(root, env, everything, files)
    with capsys.disabled():
        print(f"\n[parallel s3] {WRITERS} writers, {len(everything)} items: " + ", ".join(f"{s:.2f}s" for s in seconds))
