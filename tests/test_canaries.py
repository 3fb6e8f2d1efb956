"""Canaries that really reach the error paths, then are found nowhere: a run to moto S3 whose items name
assets with credentials in a URL's user info and in a presigned query, publishing to a STAC API that
answers 500 with the caller's token in the body. Every item fails, each error passes through the
redaction it needs, and the canaries are looked for in the CLI output, every log record, the run
report and every object under the output on S3 (test_security.py checks a run that goes well)."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import item_dict
from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.report import RUNS_DIR

D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
E = "s2b-t32upc-20200406-l1c-n0209-10x10"
USER_PASSWORD = "userinfo-canary-pw"
SIGNATURE = "presign-canary-signature"
CREDENTIAL = "ASIAPRESIGNCANARY"
TOKEN = "api-token-canary"
ENV = {"AWS_SECRET_ACCESS_KEY": "env-canary-secret", "AWS_SESSION_TOKEN": "env-canary-session"}
CANARIES = (USER_PASSWORD, SIGNATURE, CREDENTIAL, TOKEN, *ENV.values())


class Handler(BaseHTTPRequestHandler):
    """Band files: 403 for any of them. The STAC API under /api: a landing page with Transactions, 404 for
    what does not exist yet, and a 500 on every write whose body echoes the token it was sent."""

    seen: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        if self.path.rstrip("/") == "/api":
            conforms = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/ogcapi-features"]
            conforms.append("https://api.stacspec.org/v1.0.0/ogcapi-features/extensions/transaction")
            self._send(200, {"type": "Catalog", "id": "api", "conformsTo": conforms, "links": []})
        elif self.path.startswith("/api/"):
            self._send(404, {"code": "NotFound"})
        else:
            self._send(403, {"code": "AccessDenied"})

    def _write(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        self._send(500, {"code": "InternalError", "description": f"token {token} is not valid for {auth!r}"})

    do_POST = do_PUT = _write


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Handler.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


def test_canaries_in_failing_hrefs_and_an_echoing_api_reach_errors_and_no_output(
    moto_s3, s3_bucket, server, sample_data_dir, tmp_path, monkeypatch
):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    user_info = item_dict(sample_data_dir, E)
    user_info["id"] = "canary-user-info"
    user_info["assets"]["red"]["href"] = f"http://reader:{USER_PASSWORD}@{server}/E/B04.tif"
    presigned = item_dict(sample_data_dir, D)
    presigned["id"] = "canary-presigned"
    presigned["assets"]["red"]["href"] = (
        f"http://{server}/D/B04.tif?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={CREDENTIAL}%2F20260101"
        f"&X-Amz-Signature={SIGNATURE}"
    )
    to_api = item_dict(sample_data_dir, E)  # read and masked, then refused by the API
    items = tmp_path / "items.json"
    items.write_text(json.dumps({"type": "FeatureCollection", "features": [user_info, presigned, to_api]}))

    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setLevel(logging.DEBUG)
    root, ours = logging.getLogger(), logging.getLogger("stac_clouds2mask")
    levels = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # every library's warnings and errors
    ours.setLevel(logging.DEBUG)  # and everything of ours
    try:
        result = CliRunner().invoke(
            app,
            [
                "run",
                str(items),
                "--output",
                f"s3://{s3_bucket}/masks",
                "--device",
                "cpu",
                "--publish-api",
                f"http://{server}/api",
                "--api-token",
                TOKEN,
                "--api-retries",
                "1",
            ],
            catch_exceptions=False,
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])

    # the canaries did reach the failures: the server saw the token's write, the reads failed on the hrefs
    assert any(s.startswith("POST /api/collections") for s in Handler.seen), Handler.seen
    assert any(s.startswith("GET /D/B04.tif?X-Amz-Algorithm") for s in Handler.seen), Handler.seen
    assert result.exit_code == 1, result.output
    assert "0 published, 0 skipped, 3 failed" in " ".join(result.output.split()), result.output

    fs = moto_s3.filesystem()
    keys = fs.find(f"{s3_bucket}/masks")
    [report_key] = [k for k in keys if f"/{RUNS_DIR}/run-" in k and k.endswith(".json")]
    report = json.loads(fs.cat(report_key))
    by_id = {i["source_id"]: i for i in report["items"]}
    assert by_id["canary-user-info"]["asset"] == "red" and by_id["canary-user-info"]["stage"] == "read"
    assert "reader:***@" in by_id["canary-user-info"]["href"] or "***@" in (by_id["canary-user-info"]["error"] or "")
    assert by_id["canary-presigned"]["asset"] == "red" and "?***" in by_id["canary-presigned"]["href"]
    assert by_id[E]["stage"] == "publish" and "HTTP 500" in by_id[E]["error"], by_id[E]

    assert leaks(result.output) == [], result.output
    assert leaks(records.getvalue()) == [], records.getvalue()
    for key in keys:
        assert leaks(fs.cat(key).decode("latin-1")) == [], key
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != items]  # nothing but the input is local
    assert leaks("\n".join(p.read_bytes().decode("latin-1") for p in written)) == []
