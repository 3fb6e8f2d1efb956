"""A tiny HTTP server on 127.0.0.1 that plays a hostile catalog, file host or STAC API in tests.

Routes map a path (without query) to bytes, to (status, headers, bytes), or to a callable that gets the
handler and writes the answer itself (slow bodies, redirects). A path without a route answers `default`
(None: 404). A `gate`, when given, sees every request first (handler.path keeps the query) and may answer it
instead (a private server: 401 without its header). Every request is recorded (method, path, query, headers,
body) for the test to inspect.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

Answer = Union[bytes, tuple[int, dict[str, str], bytes], Callable[[BaseHTTPRequestHandler], None]]


class HostileServer:
    def __init__(
        self,
        routes: dict[str, Answer] | None = None,
        default: Answer | None = None,
        gate: Callable[[BaseHTTPRequestHandler], Answer | None] | None = None,
    ):
        self.routes: dict[str, Answer] = dict(routes or {})
        self.default = default
        self.gate = gate
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                with server.lock:
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": path,
                            "query": query,
                            "headers": dict(self.headers),
                            "body": body,
                        }
                    )
                answer = (server.gate(self) if server.gate else None) or server.routes.get(path, server.default)
                if answer is None:
                    answer = (404, {}, b"not found")
                if callable(answer):
                    answer(self)
                    return
                status, headers, data = answer if isinstance(answer, tuple) else (200, {}, answer)
                rng = self.headers.get("Range")
                if rng and status == 200 and rng.startswith("bytes="):
                    first, _, last = rng[6:].partition("-")
                    start, stop = int(first or 0), min(int(last) if last else len(data) - 1, len(data) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{stop}/{len(data)}")
                    data = data[start : stop + 1]
                else:
                    self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def api_landing(url: str) -> bytes:
    """The landing page of a STAC API at `url` with item search (POST /search), for servers that play one."""
    return json.dumps(
        {
            "type": "Catalog",
            "id": "api",
            "stac_version": "1.1.0",
            "description": "a STAC API played by a test server",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [
                {"rel": "self", "href": url},
                {"rel": "root", "href": url},
                {"rel": "search", "href": f"{url}/search", "type": "application/geo+json", "method": "POST"},
            ],
        }
    ).encode()
