"""Fault campaign: a batch read from and written to S3 (moto) through a proxy that injects a seeded
20 % of faults (500, 503 SlowDown, dropped connections, truncated bodies, delays). Nothing may be
lost or duplicated, and every published checksum must match the bytes."""

from __future__ import annotations

import hashlib
import json
import random
import threading

import pytest
from conftest import upload_tree
from fault_proxy import FaultProxy
from typer.testing import CliRunner

from stac_clouds2mask.cli import app

ITEMS = (
    "s2b-t32upc-20220615-l1c-n0400-offset-9x8",
    "s2b-t32upc-20200406-l1c-n0209-10x10",
    "ccd-s2-l2a-20200908-epsg32636-512-labelled",
    "ccd-s2-l2a-20200403-epsg32737-512-labelled",
)


@pytest.fixture
def proxy(moto_s3, s3_bucket):
    p = FaultProxy(moto_s3.endpoint_url, rate=0.2, seed=20261126, anonymise=(s3_bucket,))
    yield p
    p.close()


def test_batch_through_20_percent_faults_loses_nothing(
    moto_s3, s3_bucket, s3fs_fs, sample_data_dir, proxy, monkeypatch
):
    upload_tree(s3fs_fs, sample_data_dir, f"{s3_bucket}/data")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    result = CliRunner().invoke(
        app,
        [
            "run",
            f"s3://{s3_bucket}/data/catalog.json",
            "--output",
            f"s3://{s3_bucket}/masks",
            "--ids",
            ",".join(ITEMS),
            "--no-anon",
        ],
        catch_exceptions=False,
    )
    injected = sum(proxy.faults.values())
    direct = moto_s3.filesystem()  # check against moto itself, not through the proxy
    runs = [p for p in direct.find(f"{s3_bucket}/masks/.clouds2mask-runs") if p.endswith(".json")]
    ran = f"exit {result.exit_code}, {proxy.requests} requests through the proxy"
    assert len(runs) == 1, f"{len(runs)} run reports; {ran}:\n{result.output}"
    report = json.loads(direct.cat(runs[0]))
    print(
        f"\nfault campaign: {proxy.requests} requests, {injected} faults injected {dict(proxy.faults)}, "
        f"{proxy.retried} requests retried (seen by the proxy), {report['totals']['s3_retries']} counted by the "
        f"client; exit {result.exit_code}"
    )
    assert injected > 10
    assert report["totals"]["s3_retries"] > 0
    found = {}
    for path in direct.find(f"{s3_bucket}/masks"):
        assert ".tmp-" not in path, path
        if path.endswith("_cloudmask.json"):
            d = json.loads(direct.cat(path))
            found.setdefault(d["properties"]["clouds2mask:source_item"], []).append(d)
    lost = sorted(set(ITEMS) - set(found))
    print(f"items lost: {len(lost)} {lost}")
    assert result.exit_code == 0, result.output
    assert sorted(found) == sorted(ITEMS) and all(len(v) == 1 for v in found.values())
    for source_id, [d] in found.items():
        collection = d["collection"]
        for key in ("cloudmask", "thumbnail"):
            asset = d["assets"][key]
            assert asset["href"].startswith(f"s3://{s3_bucket}/masks/{collection}/{d['id']}/")  # published: absolute
            data = direct.cat(asset["href"])
            assert asset["file:size"] == len(data)
            assert asset["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest()
    for collection in {d["collection"] for [d] in found.values()}:
        links = json.loads(direct.cat(f"{s3_bucket}/masks/{collection}/collection.json"))["links"]
        hrefs = [l["href"] for l in links if l["rel"] == "item"]
        assert len(hrefs) == len(set(hrefs))


def test_a_seed_reproduces_the_faults_whatever_the_order_of_requests():
    """Each request's fate comes from (seed, identity, occurrence): threads sending the same requests in
    another order meet the same faults; temporary names and run-report tokens do not count; another
    seed gives another campaign; a name given to anonymise (a random bucket) counts as the same."""
    requests = [
        (method, f"/bucket/masks/c/i{n}/i{n}.{ext}.tmp-{1000 + n}-{n:012x}" if method == "PUT" else f"/b/k{n}")
        for n in range(60)
        for method, ext in (("PUT", "tif"), ("GET", "json"))
    ]
    requests += [("GET", f"/bucket-{k % 2}/data/B04.tif") for k in range(40)]
    requests *= 3  # retries: later occurrences of one identity have draws of their own

    def campaign(seed: int, order: list, threads: int, rename: bool = False) -> dict:
        proxy = FaultProxy("http://127.0.0.1:9", rate=0.3, seed=seed, anonymise=("bucket-1",))
        try:
            chunks = [order[i::threads] for i in range(threads)]

            def send(chunk: list) -> None:
                for method, path in chunk:
                    proxy.decide(method, path.replace(".tmp-", ".tmp-9") if rename else path)

            workers = [threading.Thread(target=send, args=(c,)) for c in chunks]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            faults = {k: v for k, v in proxy.decisions.items() if v}
            return {"faults": dict(proxy.faults), "decisions": faults, "identities": {k for k, _ in proxy.decisions}}
        finally:
            proxy.close()

    one = campaign(7, requests, threads=1)
    shuffled = requests[:]
    random.Random(1).shuffle(shuffled)
    assert 40 < sum(one["faults"].values()) < 200
    assert campaign(7, shuffled, threads=8) == one
    assert campaign(7, requests, threads=4, rename=True) == one  # other temporary tokens, same identities
    assert campaign(8, requests, threads=1)["decisions"] != one["decisions"]
    assert "GET /*/data/B04.tif" in one["identities"] and not any("bucket-1" in k for k in one["identities"])
