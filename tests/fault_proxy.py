"""A seeded, bounded fault-injecting HTTP proxy for tests, in front of moto S3 (or any HTTP server on 127.0.0.1).

Each request is forwarded unchanged, or, with probability `rate`, answered with one fault: HTTP 500,
HTTP 503 SlowDown (S3's throttling error), a dropped connection, a body cut short (GET only), or a delay
before forwarding. Bounded: the same request never meets more than `max_in_a_row` faults in a row, so a
client that retries a few times always gets through; `limit` caps the total. Counts what it did, for
the test to report, and the response bytes it passed on (with `rate=0` it is a byte counter).

Reproducible: the fate of a request is drawn from a generator seeded with (seed, the request's
identity, how many times that identity came before), never from one stream that threads share, so the
order in which a client's threads happen to send requests changes nothing. The identity is method, path
and query, with the random parts (temporary-object tokens, run-report names, multipart upload ids, and
the strings given as `anonymise`, such as a test's random bucket name) made constant, so a rerun of a
campaign with the same seed meets the same faults. (Range headers are left out: the length of a
document with a timestamp in it changes from run to run.)
"""

from __future__ import annotations

import hashlib
import http.client
import random
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KINDS = ("500", "503-slowdown", "drop", "truncate", "delay")
SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
RANDOM_PARTS = (
    (re.compile(r"\.tmp-\d+-[0-9a-f]+"), ".tmp-*"),  # storage._atomic's temporary names
    (re.compile(r"run-\d{8}T\d{6}Z-[0-9a-f]+"), "run-*"),  # run report names
    (re.compile(r"(uploadId=)[^&]+"), r"\1*"),  # multipart upload ids (moto's are random)
)


def identity(method: str, path: str, anonymise: tuple[str, ...] = ()) -> str:
    """What makes two requests "the same" across runs of a campaign."""
    for text in anonymise:
        path = path.replace(text, "*")
    for pattern, constant in RANDOM_PARTS:
        path = pattern.sub(constant, path)
    return f"{method} {path}"


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        rate: float = 0.2,
        seed: int = 0,
        max_in_a_row: int = 2,
        limit: int = 10_000,
        delay_s: float = 0.2,
        anonymise: tuple[str, ...] = (),
    ):
        target = urlsplit(upstream)
        self.host, self.port = target.hostname, target.port
        self.rate, self.max_in_a_row, self.limit, self.delay_s = rate, max_in_a_row, limit, delay_s
        self.seed, self.anonymise = seed, tuple(a for a in anonymise if a)
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()  # per identity: how many times it came
        self.decisions: dict[tuple[str, int], str | None] = {}  # (identity, occurrence) -> fault or None
        self.in_a_row: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.requests = 0
        self.retried = 0  # requests that came again after a fault (the client's retries)
        self.bytes_out: Counter[str] = Counter()  # response body bytes sent to the client, per method
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            break
                        chunks.append(chunk)
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                kind = proxy.decide(self.command, self.path)
                if kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if kind in ("500", "503-slowdown"):
                    payload = SLOWDOWN if kind == "503-slowdown" else b"<Error><Code>InternalError</Code></Error>"
                    self.send_response(int(kind[:3]))
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if kind == "delay":
                    time.sleep(proxy.delay_s)
                status, headers, content = proxy.forward(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                head = self.command == "HEAD"  # keeps the object's own Content-Length, sends no body
                for name, value in headers:
                    if name.lower() not in HOP_HEADERS and (head or name.lower() != "content-length"):
                        self.send_header(name, value)
                if not head:
                    self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if kind == "truncate":
                    self.wfile.write(content[: len(content) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(content)
                with proxy.lock:
                    proxy.bytes_out[self.command] += len(content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def rng(self, key: str, occurrence: int) -> random.Random:
        """The generator of one request: its seed, identity and occurrence, whatever came in between."""
        digest = hashlib.sha256(f"{self.seed}\0{key}\0{occurrence}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def decide(self, method: str, path: str) -> str | None:
        """The fault for this request, or None to forward it (a delay also forwards)."""
        key = identity(method, path, self.anonymise)
        with self.lock:
            self.requests += 1
            occurrence = self.seen[key]
            self.seen[key] += 1
            if self.in_a_row[key]:
                self.retried += 1
            rng = self.rng(key, occurrence)
            kinds = [k for k in KINDS if k != "truncate" or method == "GET"]
            draw, kind = rng.random(), rng.choice(kinds)
            if self.in_a_row[key] >= self.max_in_a_row or sum(self.faults.values()) >= self.limit or draw >= self.rate:
                self.in_a_row[key] = 0
                kind = None
            else:
                self.faults[kind] += 1
                self.in_a_row[key] = 0 if kind == "delay" else self.in_a_row[key] + 1
            self.decisions[(key, occurrence)] = kind
            return kind

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}
            sent["Content-Length"] = str(len(body))
            conn.request(method, path, body=body if body or method in ("PUT", "POST") else None, headers=sent)
            r = conn.getresponse()
            return r.status, r.getheaders(), r.read() if method != "HEAD" else b""
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
