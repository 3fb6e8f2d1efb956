"""SIGKILL at every write of a publish, mid-body: what a reader finds is whole, and a rerun leaves a whole
catalog with no temporary object anywhere.

A child process runs `run()` on crops E and D into a local folder with every file it opens for writing
under the output watched: the k-th such file gets half of its first write, flushed to disk, and then
the process SIGKILLs itself (k = 1 .. every write the uninterrupted run makes: claim locks, COGs,
thumbnails, items, the collection created and then updated, the root catalog, the run report). After
each kill a reader checks the folder: every JSON document parses, every COG and thumbnail outside a
temporary name is byte for byte the one an uninterrupted run writes, every link resolves and every item's
assets have its file:size and file:checksum. Then a rerun finishes the job: both items published and
linked, and no `*.tmp-*` (collection.json.tmp-* and catalog.json.tmp-* included) and no claim lock left."""

from __future__ import annotations

import hashlib
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import item_dict

from stac_clouds2mask import RunConfig, run

E = "s2b-t32upc-20200406-l1c-n0209-10x10"
D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
HOUR = 3600

CHILD = r"""
import builtins, json, os, shutil, signal, sys

out, kill_at, source = os.path.abspath(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
events = []
shutil._USE_CP_SENDFILE = False  # copies go through file.write, where the kill happens
real_open, real_fdopen = builtins.open, os.fdopen


def die(f, data=b""):
    f.write(data[: len(data) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


class Killing:
    def __init__(self, f, armed):
        self._f, self._armed = f, armed

    def write(self, data):
        if self._armed:
            die(self._f, data)
        return self._f.write(data)

    def close(self):
        if self._armed:
            die(self._f)
        return self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def watch(f, path, mode):
    path = os.path.abspath(os.fsdecode(path))
    if not any(c in mode for c in "wax+") or not path.startswith(out + os.sep):
        return f
    events.append(os.path.relpath(path, out))
    return Killing(f, len(events) == kill_at)


def open_(file, mode="r", *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    return watch(f, file, mode) if isinstance(file, (str, bytes, os.PathLike)) else f


def fdopen(fd, mode="r", *args, **kwargs):
    return watch(real_fdopen(fd, mode, *args, **kwargs), os.readlink(f"/proc/self/fd/{fd}"), mode)


builtins.open, os.fdopen = open_, fdopen
from stac_clouds2mask import RunConfig, run

report = run(source, RunConfig(output=out, device="cpu", resolution=60))
print(json.dumps({"events": events, "status": [o.status for o in report.outcomes]}))
"""


def child(out: Path, source: Path, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(out), str(kill_at), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def multihash(path: Path) -> str:
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


def is_temporary(path: Path) -> bool:
    return ".tmp-" in path.name


def check_whole(out: Path, reference: Path) -> list[dict]:
    """What a reader finds: whole documents and files only; returns the items reachable from the root.
    Claim locks are the publisher's own (created exclusively, a torn one is taken over): not looked at."""
    for path in (p for p in out.rglob("*") if p.is_file() and not is_temporary(p) and p.suffix != ".lock"):
        rel = path.relative_to(out)
        if path.suffix == ".json":
            try:
                json.loads(path.read_bytes())
            except ValueError as exc:
                raise AssertionError(f"{rel} is not a whole JSON document: {exc}") from None
        elif path.suffix in (".tif", ".png", ".xml", ".onnx"):
            assert path.read_bytes() == (reference / rel).read_bytes(), f"{rel} is not the whole file"
        elif path.suffix == ".csv":  # the run's time series (its name is the run's own)
            rows = list(csv.reader(path.read_text().splitlines()))
            assert rows and rows[0][0] == "datetime" and {len(r) for r in rows} == {len(rows[0])}, rel
        elif path.suffix == ".html":  # the run page
            assert path.read_text().rstrip().endswith("</html>"), f"{rel} is not the whole page"
        else:
            raise AssertionError(f"unexpected file {rel}")
    items = []
    root = out / "catalog.json"
    if not root.exists():
        return items
    for link in (l for l in json.loads(root.read_text())["links"] if l["rel"] == "child"):
        collection = (root.parent / link["href"]).resolve()
        assert collection.is_file(), f"catalog.json links a missing {link['href']}"
        for item_link in (l for l in json.loads(collection.read_text())["links"] if l["rel"] == "item"):
            item_path = (collection.parent / item_link["href"]).resolve()
            assert item_path.is_file(), f"{collection.name} links a missing {item_link['href']}"
            items.append(json.loads(item_path.read_text()))
    for item_path in (p for p in out.rglob("*_cloudmask.json") if not is_temporary(p)):
        item = json.loads(item_path.read_text())
        for key, asset in item["assets"].items():
            if "://" in asset["href"] or "file:checksum" not in asset:
                continue
            path = (item_path.parent / asset["href"]).resolve()
            assert path.is_file(), f"{item['id']}: asset {key} is missing"
            assert path.stat().st_size == asset["file:size"], f"{item['id']}: asset {key} is partial"
            assert multihash(path) == asset["file:checksum"], f"{item['id']}: asset {key} has other bytes"
    return items


def an_hour_later(out: Path) -> None:
    """The killed run's files made an hour older (mtimes, and the time inside its claim locks), as if the
    rerun came an hour later: what a rerun may take for a dead run's depends on age."""
    for path in (p for p in out.rglob("*") if p.is_file()):
        if path.suffix == ".lock":
            try:
                held = json.loads(path.read_text())
                held["created"] -= HOUR
                path.write_text(json.dumps(held))
            except ValueError:
                pass  # a half-written lock: taken over at once
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns - HOUR * 10**9, stat.st_mtime_ns - HOUR * 10**9))


@pytest.fixture(scope="module")
def campaign(sample_data_dir, tmp_path_factory) -> tuple[list[str], list[dict]]:
    """The writes of an uninterrupted run, and per kill point what the reader found after the kill and
    after the rerun (read only: the tests below only look at it)."""
    tmp = tmp_path_factory.mktemp("crash")
    source = tmp / "items.json"
    features = [item_dict(sample_data_dir, E), item_dict(sample_data_dir, D)]
    source.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    ref = tmp / "reference"
    done = child(ref, source, kill_at=0)
    assert done.returncode == 0, done.stderr[-3000:]
    events = json.loads(done.stdout.splitlines()[-1])["events"]
    assert check_whole(ref, ref) and not list(ref.rglob("*.tmp-*"))

    points = []
    for k in range(1, len(events) + 1):
        out = tmp / f"kill-{k:02d}"
        point: dict = {"k": k, "write": events[k - 1]}
        killed = child(out, source, kill_at=k)
        point["exit"] = killed.returncode
        point["after_kill"] = problem(lambda: check_whole(out, ref))
        an_hour_later(out)
        report = run(str(source), RunConfig(output=str(out), device="cpu", resolution=60))
        point["rerun"] = sorted({o.status for o in report.outcomes})
        point["linked"] = problem(
            lambda: sorted(i["properties"]["clouds2mask:source_item"] for i in check_whole(out, ref))
        )
        point["temporaries"] = [str(p.relative_to(out)) for p in out.rglob("*") if is_temporary(p)]
        point["locks"] = [str(p.relative_to(out)) for p in out.rglob("*.lock")]
        points.append(point)
    return events, points


def problem(check) -> object:
    """The check's result, or the AssertionError's message."""
    try:
        return check()
    except AssertionError as exc:
        return f"AssertionError: {exc}"


def test_every_write_of_a_publish_is_a_kill_point(campaign):
    events, points = campaign
    kinds = {Path(e).name.split(".tmp-")[0].rsplit(".", 1)[-1] for e in events}
    assert {"lock", "tif", "png", "json"} <= kinds and len(events) >= 10, events
    assert any(e.startswith("catalog.json.tmp-") for e in events), events
    assert sum("collection.json.tmp-" in e for e in events) == 2, events  # created, then updated
    assert any(e.startswith(".clouds2mask-runs/") for e in events), events
    assert [p["exit"] for p in points] == [-9] * len(events)  # each child died at its write, none finished


def test_a_reader_finds_only_whole_files_and_a_rerun_leaves_no_temporaries(campaign):
    _, points = campaign
    for p in points:
        where = f"kill at write {p['k']} ({p['write']})"
        assert not isinstance(p["after_kill"], str), f"{where}: {p['after_kill']}"
        assert set(p["rerun"]) <= {"published", "skipped"}, f"{where}: rerun {p['rerun']}"
        assert p["linked"] == sorted([D, E]), f"{where}, after the rerun: {p['linked']}"
        assert p["temporaries"] == [], f"{where}, after the rerun: {p['temporaries']}"


def test_a_rerun_leaves_no_claim_lock(campaign):
    _, points = campaign
    left = {p["write"]: p["locks"] for p in points if p["locks"]}
    assert left == {}, left
