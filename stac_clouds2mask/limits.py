"""Limits that keep one hostile catalog, file or server from exhausting a worker's memory or time.

Each limit has a default sized for Sentinel-2 (a full 10 m tile is 10980 x 10980 px) and an
environment variable with which the operator changes it for a worker (see docs/aws-batch.md).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, fields
from typing import Any

import requests

from .errors import InvalidInputError, LimitExceededError

ENV_PREFIX = "STAC_CLOUDS2MASK_"


@dataclass(frozen=True)
class Limits:
    """max_pixels: largest raster (per file, from its header) and processing grid; item_seconds: wall
    clock per item (read + infer + publish); max_depth / max_documents: static catalog traversal (and
    pages / items of an API search); api_seconds / max_body_bytes: whole HTTP request to a STAC API
    (search or publishing) and its response body (also the largest static catalog document and the
    largest product metadata file); max_versions: mask versions walked per source item;
    max_product_members / max_product_bytes: members of a zipped product, and bytes extracted from it.

    Every value is a finite positive number of its field's type (an int field takes no float and no
    bool): NaN would switch a limit off, since every comparison with it is false."""

    max_pixels: int = 130_000_000
    item_seconds: float = 3600.0
    max_depth: int = 16
    max_documents: int = 100_000
    api_seconds: float = 120.0
    max_body_bytes: int = 32 * 2**20
    max_versions: int = 100
    max_product_members: int = 10_000
    max_product_bytes: int = 2 * 2**30

    def __post_init__(self) -> None:
        """Every limit is refused unless it is above 0, however it was given (Python, environment, payload):
        0 would fail every item, and NaN would silently switch the limit off (no comparison is true)."""
        for f in fields(self):
            why = limit_problem(f.name, getattr(self, f.name))
            if why:
                raise InvalidInputError(f"limit {f.name} {why} ({ENV_PREFIX}{f.name.upper()})")

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults overridden by STAC_CLOUDS2MASK_<FIELD> (upper case), e.g. STAC_CLOUDS2MASK_MAX_PIXELS."""
        values = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            text = os.environ.get(name)
            if text is None or not text.strip():
                continue
            try:
                value = _KINDS[f.name](text)
            except ValueError as exc:
                kind = "a number" if _KINDS[f.name] is float else "an integer"
                raise InvalidInputError(f"{name}={text!r} is not {kind}") from exc
            problem = limit_problem(f.name, value)
            if problem:
                raise InvalidInputError(f"{name}={text!r} {problem}")
            values[f.name] = value
        return cls(**values)


def limit_problem(name: str, value: object) -> str | None:
    """Why `value` cannot be the limit `name` (a Limits field), or None when it can."""
    kind = _KINDS[name]
    want = "a positive number" if kind is float else "a positive integer"
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        return f"must be {want}, got {shown_value(value)}"
    if not math.isfinite(value):
        return f"must be finite ({want}), got {shown_value(value)}"
    if value <= 0:
        return f"must be {want}, got {shown_value(value)}"
    return None


def shown_value(value: object) -> str:
    """A value as a payload would spell it (NaN, true, 1.5), else its repr."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


_KINDS: dict[str, type] = {f.name: float if f.type in ("float", float) else int for f in fields(Limits)}


def check_item_count(count: int, where: str) -> None:
    """An ItemCollection (a static source, a payload) holds at most max_documents items, as many as a catalog
    walk may read: InvalidInputError before any of them becomes an item."""
    most = Limits.from_env().max_documents
    if count > most:
        raise InvalidInputError(
            f"{where} holds {count} features, more than {most} (STAC_CLOUDS2MASK_MAX_DOCUMENTS): refused"
        )


class BoundedSession(requests.Session):
    """A requests session whose every request ends within `deadline` seconds in all and whose response
    bodies are at most `max_body_bytes` (requests' own timeout is per read: a server trickling its
    status line, headers or body would hold it forever). Used for STAC API search and publishing."""

    def __init__(self, deadline: float, max_body_bytes: int):
        super().__init__()
        self.deadline = deadline
        self.max_body_bytes = max_body_bytes

    @classmethod
    def like(cls, session: requests.Session, deadline: float, max_body_bytes: int) -> BoundedSession:
        """A bounded copy of `session`: same headers, adapters (retries), auth and settings."""
        bounded = cls(deadline, max_body_bytes)
        for name in requests.Session.__attrs__:
            setattr(bounded, name, getattr(session, name))
        return bounded

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send in a daemon thread that the caller stops waiting for at the deadline; the body is read
        there in small pieces, under the size cap."""
        deadline = time.monotonic() + self.deadline
        kwargs["stream"] = True
        outcome: dict[str, Any] = {}

        def send() -> None:
            try:
                r = super(BoundedSession, self).send(request, **kwargs)
                self._read_body(r, deadline)
                outcome["response"] = r
            except BaseException as exc:  # handed to the caller
                outcome["error"] = exc

        worker = threading.Thread(target=send, name="bounded-http", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            raise LimitExceededError(
                f"{request.url} did not answer within {self.deadline:g} s (STAC_CLOUDS2MASK_API_SECONDS)"
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["response"]

    def _read_body(self, r: requests.Response, deadline: float) -> None:
        chunks, size = [], 0
        try:
            while chunk := r.raw.read1(2**16, decode_content=True):
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise LimitExceededError(
                        f"the answer to {r.url} is larger than {self.max_body_bytes} bytes "
                        "(STAC_CLOUDS2MASK_MAX_BODY_BYTES)"
                    )
                if time.monotonic() > deadline:  # the caller has given up: stop reading
                    return
                chunks.append(chunk)
        finally:
            r.close()
        r._content = b"".join(chunks)  # r.json() and r.text read it from here
