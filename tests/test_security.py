"""Credentials never leak: a run against moto S3 with canary AWS keys and a canary API token, then
every file it wrote (masks, items, catalog, run report), every item the STAC API stored, the CLI
output and the package's log records are searched for the canaries."""

from __future__ import annotations

import io
import json
import logging

from conftest import item_dict
from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.report import RUNS_DIR, redact
from stac_clouds2mask.trust import unsafe_segment

D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
E = "s2b-t32upc-20200406-l1c-n0209-10x10"
CANARIES = {
    "AWS_ACCESS_KEY_ID": "AKIALEAKCANARYKEYID7",
    "AWS_SECRET_ACCESS_KEY": "leak-canary-secret",
    "AWS_SESSION_TOKEN": "leak-canary-session-token",
}
TOKEN = "canary-token"


def leaks(text: str) -> list[str]:
    return [c for c in (*CANARIES.values(), TOKEN) if c in text]


def test_no_credential_reaches_any_output(moto_s3, s3_bucket, clean_stac_api, sample_data_dir, tmp_path, monkeypatch):
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    # a good item read from S3, a good one read locally, one whose band is missing on S3 (its error goes to the report)
    fs = moto_s3.filesystem()
    for band in ("B02", "B03", "B04", "B08", "B11", "B12"):
        fs.put_file(str(sample_data_dir / E / f"{band}.tif"), f"{s3_bucket}/data/{E}/{band}.tif")
    on_s3 = item_dict(sample_data_dir, E)
    for key, band in {
        "blue": "B02",
        "green": "B03",
        "red": "B04",
        "nir": "B08",
        "swir16": "B11",
        "swir22": "B12",
    }.items():
        on_s3["assets"][key]["href"] = f"s3://{s3_bucket}/data/{E}/{band}.tif"
    missing = json.loads(json.dumps(on_s3))
    missing["id"] = "e-missing-on-s3"
    missing["assets"]["red"]["href"] = f"s3://{s3_bucket}/data/nowhere/B04.tif"
    fc = tmp_path / "items.json"
    fc.write_text(
        json.dumps({"type": "FeatureCollection", "features": [on_s3, missing, item_dict(sample_data_dir, D)]})
    )

    out = f"s3://{s3_bucket}/masks"
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    logger = logging.getLogger("stac_clouds2mask")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        result = CliRunner().invoke(
            app,
            [
                "run",
                str(fc),
                "--output",
                out,
                "--device",
                "cpu",
                "--publish-api",
                clean_stac_api.url,
                "--api-header",
                f"Authorization: Bearer {TOKEN}",
            ],
            catch_exceptions=False,
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert result.exit_code == 1, result.output  # the missing band fails alone
    assert "2 published, 0 skipped, 1 failed" in " ".join(result.output.split())
    assert leaks(result.output) == [] and leaks(records.getvalue()) == []

    keys = fs.find(f"{s3_bucket}/masks")
    assert any(f"/{RUNS_DIR}/run-" in k for k in keys)
    assert sum(k.endswith("_cloudmask.json") for k in keys) == 2
    for key in keys:
        assert leaks(fs.cat(key).decode("latin-1")) == [], key
    assert leaks("\n".join(str(p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())) == []

    [report_key] = [k for k in keys if f"/{RUNS_DIR}/" in k and k.endswith(".json")]
    report = json.loads(fs.cat(report_key))
    assert report["settings"]["api_header_names"] == ["Authorization"]
    assert [i["status"] for i in report["items"]] == ["published", "failed", "published"]
    assert report["items"][1]["asset"] == "red"

    for source_id, collection in ((E, "sentinel-2-l1c-samples-cloudmask"), (D, "sentinel-2-l1c-samples-cloudmask")):
        stored = clean_stac_api.get_item(collection, f"{source_id}_cloudmask")
        assert leaks(json.dumps(stored)) == []
    r = clean_stac_api.session.get(f"{clean_stac_api.url}/collections/sentinel-2-l1c-samples-cloudmask", timeout=60)
    assert leaks(r.text) == []


def test_redact_removes_user_info_queries_and_secrets():
    text = "cannot open https://user:pw@host/a.tif?X-Amz-Signature=abc&X-Amz-Credential=AKIA1 with leak-canary-secret"
    assert redact(text, ["leak-canary-secret"]) == "cannot open https://***@host/a.tif?*** with ***"
    assert redact("s3://bucket/key.tif") == "s3://bucket/key.tif"


def test_unsafe_segments():
    for bad in (
        "",
        ".",
        "..",
        "../../x",
        "/abs",
        "a\\b",
        "a\x00b",
        "x\n",
        " lead",
        "a?b",
        "a#b",
        "a*b",
        "x" * 201,
        12,
        "collection.json::x",
        "[s]2b-victim",
        "a{b}",
        "ü" * 101,
    ):
        assert unsafe_segment(bad), bad
    for good in ("S2B_27VWK_20240206_0_L1C", "ccd-s2-l2a-20200908", "a.b", "a:b", "ünïcode", "x" * 200, "ü" * 100):
        assert unsafe_segment(good) is None, good
