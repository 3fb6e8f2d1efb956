"""Limits that keep one hostile catalog, file or server from exhausting a worker's memory or time.

Each limit has a default sized for Sentinel-2 (a full 10 m tile is 10980 x 10980 px) and an
environment variable with which the operator changes it for a worker (see docs/aws-batch.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from .errors import InvalidInputError

ENV_PREFIX = "STAC_CLOUDS2MASK_"


@dataclass(frozen=True)
class Limits:
    """max_pixels: largest raster (per file, from its header) and processing grid; item_seconds: wall
    clock per item (read + infer + publish); max_depth / max_documents: static catalog traversal (and
    pages / items of an API search); api_seconds / max_body_bytes: whole HTTP request to a STAC API,
    and its response body (also the largest static catalog document); max_versions: mask versions
    walked per source item."""

    max_pixels: int = 130_000_000
    item_seconds: float = 3600.0
    max_depth: int = 16
    max_documents: int = 100_000
    api_seconds: float = 120.0
    max_body_bytes: int = 32 * 2**20
    max_versions: int = 100

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults overridden by STAC_CLOUDS2MASK_<FIELD> (upper case), e.g. STAC_CLOUDS2MASK_MAX_PIXELS."""
        values = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            text = os.environ.get(name)
            if text is None or not text.strip():
                continue
            kind = float if f.type in ("float", float) else int
            try:
                value = kind(text)
            except ValueError as exc:
                raise InvalidInputError(f"{name}={text!r} is not a number") from exc
            if value <= 0:
                raise InvalidInputError(f"{name} must be positive, got {text}")
            values[f.name] = value
        return cls(**values)
