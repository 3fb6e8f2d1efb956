"""Storage options: how s3 access is configured (requester-pays, endpoint, anonymous) for fsspec; the one href
resolver; shared documents updated without losing a writer's change (and without fcntl, as on Windows)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import s3fs
from conftest import item_dict
from fault_proxy import FaultProxy
from pystac.utils import make_absolute_href
from typer.testing import CliRunner

from stac_clouds2mask import storage
from stac_clouds2mask.cli import app
from stac_clouds2mask.report import RUNS_DIR
from stac_clouds2mask.storage import (
    StorageOptions,
    check_writable,
    join,
    resolve_href,
    update_json,
    write_json_atomic,
)


def test_requester_pays_and_endpoint_reach_s3fs(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    opts = StorageOptions(anon=False, requester_pays=True, endpoint_url="https://eodata.example.org")
    assert opts.fsspec_kwargs("s3://sentinel-s2-l1c/tiles/B02.jp2") == {
        "anon": False,
        "requester_pays": True,
        "client_kwargs": {"endpoint_url": "https://eodata.example.org"},
        "config_kwargs": {"retries": {"max_attempts": 6, "mode": "standard"}},
    }
    assert opts.fsspec_kwargs("/local/file.tif") == {}


@pytest.mark.parametrize(
    "env, expected", [({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}, False), ({}, True)]
)
def test_anonymous_only_without_credentials(monkeypatch, tmp_path, env, expected):
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert StorageOptions().fsspec_kwargs("s3://bucket/key")["anon"] is expected


def test_join_keeps_url_schemes():
    assert join("s3://bucket/prefix/", "a", "/b.json") == "s3://bucket/prefix/a/b.json"


def test_concurrent_atomic_writes_of_one_document_do_not_collide(tmp_path):
    """Array children write the same catalog documents, and every container's CLI runs as PID 1: temporary
    names must differ per write, not only per process (threads here share one PID)."""
    url = str(tmp_path / "collection.json")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def write(k: int) -> None:
        barrier.wait()
        try:
            for _ in range(20):
                write_json_atomic(url, {"writer": k})
        except BaseException as exc:  # noqa: BLE001 (collected for the assertion)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert json.loads((tmp_path / "collection.json").read_text())["writer"] in range(8)
    assert [p.name for p in tmp_path.iterdir()] == ["collection.json"]  # no temporary left behind


def test_update_json_loses_no_increment_of_parallel_local_writers(tmp_path):
    """Eight threads (each its own lock holder, as processes are) add 1 to one document 20 times each."""
    url = str(tmp_path / "counter.json")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def add(current: dict | None) -> dict:
        return {"n": (current or {"n": 0})["n"] + 1}

    def write() -> None:
        barrier.wait()
        try:
            for _ in range(20):
                update_json(url, add)
        except BaseException as exc:  # noqa: BLE001 (collected for the assertion)
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert json.loads((tmp_path / "counter.json").read_text()) == {"n": 160}
    assert [p.name for p in tmp_path.iterdir()] == ["counter.json"]  # no lock file, no temporary


@pytest.mark.parametrize("exists", [True, False], ids=["if-match", "if-none-match"])
def test_update_json_on_s3_redoes_a_change_another_writer_beat(moto_s3, s3_bucket, exists):
    """Another writer changes (or creates) the document between this writer's read and its write: the
    conditional write fails (412), the change is made again on the fresh document, and both survive."""
    url = f"s3://{s3_bucket}/c/collection.json"
    fs = moto_s3.filesystem()
    if exists:
        fs.pipe_file(f"{s3_bucket}/c/collection.json", json.dumps({"links": ["first"]}).encode())
    seen: list[dict | None] = []

    def add_mine(current: dict | None) -> dict:
        seen.append(current)
        if len(seen) == 1:  # the other writer comes first
            other = {"links": [*(current or {"links": []})["links"], "other"]}
            fs.pipe_file(f"{s3_bucket}/c/collection.json", json.dumps(other).encode())
        return {"links": [*(current or {"links": []})["links"], "mine"]}

    result = update_json(url, add_mine)
    want = {"links": [*(["first"] if exists else []), "other", "mine"]}
    assert result == want
    assert json.loads(fs.cat_file(f"{s3_bucket}/c/collection.json")) == want
    assert len(seen) == 2


# ------------------------------------------------------------------------------------------
# the pre-run check writes for real; unreachable sources fail fast; retries counted per item
# ------------------------------------------------------------------------------------------

E = "s2b-t32upc-20200406-l1c-n0209-10x10"
F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("output", ["/proc/clouds2mask-out", "/sys/clouds2mask-out"])
def test_an_output_that_takes_no_write_is_refused_before_any_item(sample_catalog, output):
    """/proc and /sys pass every permission check (and os.access) but take no new folder: the probe tells."""
    with pytest.raises(PermissionError, match="is not writable"):
        check_writable(output)
    result = invoke("run", str(sample_catalog), "--ids", E, "-o", output)
    assert result.exit_code == 2, result.output
    assert f"--output {output}: /{output.split('/')[1]} is not writable" in " ".join(result.output.split())
    assert "published" not in result.output  # refused before the first item


def test_the_write_probe_leaves_nothing_behind(tmp_path, moto_s3, s3_bucket):
    check_writable(str(tmp_path))
    check_writable(str(tmp_path / "not" / "yet"))  # probed in the nearest folder that exists, not made
    assert list(tmp_path.iterdir()) == []
    check_writable(f"s3://{s3_bucket}/masks")
    assert moto_s3.filesystem().find(s3_bucket) == []


def _s3_item(
    s3fs_fs, bucket: str, sample_data_dir: Path, tmp_path: Path, source_bucket: str | None = None, item_id: str = E
) -> Path:
    """A sample item with its bands on S3 (uploaded to `bucket`, named in `source_bucket`), as a local item file."""
    d = item_dict(sample_data_dir, item_id)
    for asset in d["assets"].values():
        name = Path(asset["href"]).name
        s3fs_fs.put_file(asset["href"], f"{bucket}/e/{name}")
        asset["href"] = f"s3://{source_bucket or bucket}/e/{name}"
    path = tmp_path / "item.json"
    path.write_text(json.dumps(d))
    return path


def _report(out: Path) -> dict:
    [path] = (out / RUNS_DIR).glob("run-*.json")
    return json.loads(path.read_text())


def test_an_unreachable_source_fails_fast_and_names_the_cause(moto_s3, s3_bucket, s3fs_fs, sample_data_dir, tmp_path):
    item = _s3_item(s3fs_fs, s3_bucket, sample_data_dir, tmp_path)
    t0 = time.monotonic()
    out = tmp_path / "unresolvable"
    result = invoke("run", str(item), "-o", str(out), "--endpoint-url", "http://s3.nonexistent.invalid:9")
    seconds = time.monotonic() - t0
    assert result.exit_code == 1, result.output
    [entry] = _report(out)["items"]
    assert entry["stage"] == "read" and entry["retries"] == 0, entry
    assert "the S3 endpoint host 's3.nonexistent.invalid' does not resolve" in entry["error"], entry
    assert "not retried" in entry["error"] and "vsiriopener" not in entry["error"]
    assert seconds < 60, f"{seconds:.0f} s: the name lookup failure was retried"

    missing = _s3_item(s3fs_fs, s3_bucket, sample_data_dir, tmp_path, source_bucket="no-such-bucket")
    out = tmp_path / "no-bucket"
    assert invoke("run", str(missing), "-o", str(out)).exit_code == 1
    [entry] = _report(out)["items"]
    assert "s3://no-such-bucket/e/B02.tif: no such object or bucket" in entry["error"], entry


def test_retries_are_shown_as_they_happen_and_counted_per_item(
    moto_s3, s3_bucket, s3fs_fs, sample_data_dir, tmp_path, monkeypatch
):
    item = _s3_item(s3fs_fs, s3_bucket, sample_data_dir, tmp_path, item_id=F)
    # small blocks: the read stage's band threads then send requests of their own, as full-size scenes do
    monkeypatch.setattr(s3fs.S3FileSystem, "default_block_size", 2**14)
    proxy = FaultProxy(moto_s3.endpoint_url, rate=0.3, seed=21, anonymise=(s3_bucket,))
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        out = tmp_path / "masks"
        result = invoke("run", str(item), "-o", str(out))
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    report = _report(out)
    [entry] = report["items"]
    # every S3 request of this run is the item's (the item file and the output are local)
    assert entry["retries"] > 0 and entry["retries"] == report["totals"]["s3_retries"], (entry, report["totals"])
    shown = [line for line in result.output.splitlines() if line.split("] ", 1)[-1].startswith("retry ")]
    assert len(shown) == entry["retries"] and all(F in line for line in shown), result.output


@pytest.mark.parametrize(
    "base, href, expected",
    [
        ("s3://bucket/a/b.json", "../../c.json", "s3://bucket/c.json"),  # the bucket is the URL's authority
        ("s3://bucket/a/b.json", "c/d.tif", "s3://bucket/a/c/d.tif"),
        ("s3://bucket/a.json", "../../c.json", "s3://bucket/c.json"),  # never above the bucket
        ("https://h.example/x/a/b.json", "../c.json", "https://h.example/x/c.json"),
        ("https://h.example/x/a/b.json", "../../../../c.json", "https://h.example/c.json"),
        ("https://h.example/a/b.json?sig=1", "./c.tif?sig=2", "https://h.example/a/c.tif?sig=2"),
        ("https://h.example:8443/a/b.json", "c.json", "https://h.example:8443/a/c.json"),
        ("/data/cat/a/b.json", "../c/./d.json", "/data/cat/c/d.json"),
        ("/data/cat/", "c.json", "/data/cat/c.json"),
        ("file:///data/cat/b.json", "c.json", "file:///data/cat/c.json"),
        # not plain relative paths: as written, for trust.check_reference to judge
        ("s3://bucket/a/b.json", "https://other.example/c.json", "https://other.example/c.json"),
        ("s3://bucket/a/b.json", "/etc/passwd", "/etc/passwd"),
        ("https://h.example/a/b.json", "GTIFF_DIR:1:x.tif", "GTIFF_DIR:1:x.tif"),
        ("https://h.example/a/b.json", "simplecache::s3://b/c.tif", "simplecache::s3://b/c.tif"),
    ],
)
def test_one_href_resolver_for_s3_https_and_local_paths(base, href, expected):
    assert resolve_href(base, href) == expected
    if expected != href:  # resolved: as pystac resolves links
        assert expected == make_absolute_href(href, base)


def test_the_package_has_one_href_resolver():
    from stac_clouds2mask import trust

    assert not hasattr(trust, "resolve")
    assert storage.resolve_href.__module__ == "stac_clouds2mask.storage"


def test_storage_imports_and_updates_local_documents_without_fcntl(tmp_path):
    """Windows has no fcntl: the package still imports, and a local update (unlocked there) still works."""
    code = (
        "import sys\n"
        "sys.modules['fcntl'] = None  # as on Windows: import fcntl raises ImportError\n"
        "from stac_clouds2mask.storage import update_json\n"
        "import stac_clouds2mask, stac_clouds2mask.runner\n"
        f"url = {str(tmp_path / 'c' / 'collection.json')!r}\n"
        "for _ in range(3):\n"
        "    update_json(url, lambda d: {'n': (d or {}).get('n', 0) + 1})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    assert json.loads((tmp_path / "c" / "collection.json").read_text()) == {"n": 3}
