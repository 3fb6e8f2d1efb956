"""What a run did, item by item: the outcomes, the totals, and redaction of what must not be printed."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .errors import InvalidInputError

if TYPE_CHECKING:
    import pystac

    from .storage import StorageOptions

Status = Literal["published", "skipped", "failed", "not_run"]
RUNS_DIR = ".clouds2mask-runs"
REPORT_TYPE = "clouds2mask-run-report"
_URL = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@'\"]*@)?(?P<rest>[^\s'\"?#]*)(?P<query>[?#][^\s'\"]*)?"
)


def redact(text: str | None, secrets_: Iterable[str] = ()) -> str | None:
    """`text` without URL user info, URL queries (signed URLs) and any of the given secret values."""
    if text is None:
        return None
    out = _URL.sub(
        lambda m: m["scheme"] + ("***@" if m["userinfo"] else "") + m["rest"] + ("?***" if m["query"] else ""), text
    )
    for secret in secrets_:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return out


def environment_secrets() -> list[str]:
    """Credential values from the environment, to keep them out of messages and reports."""
    names = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "STAC_CLOUDS2MASK_API_TOKEN")
    return [v for v in (os.environ.get(n) for n in names) if v]


@dataclass
class ItemOutcome:
    """What happened to one source item."""

    source_id: str
    status: Status
    item: pystac.Item | None = None
    error: str | None = None
    stage: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    error_class: str | None = None
    asset: str | None = None
    retries: int = 0  # S3 requests of this item retried after a transient failure (storage.RetryCounter)
    collection: str | None = None
    href: str | None = None  # the file of the failed asset, where one applies


@dataclass
class RunReport:
    outcomes: list[ItemOutcome] = field(default_factory=list)
    path: str | None = None  # where the JSON run report was written
    report_error: str | None = None  # why it could not be written

    def by_status(self, status: Status) -> list[ItemOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def exit_code(self) -> int:
        """0 when every item was published or skipped, 1 when any failed."""
        return 1 if self.by_status("failed") else 0


class Progress:
    """Hooks for progress displays; the default does nothing."""

    def start(self, total: int) -> None: ...
    def stage(self, item_id: str, stage: str) -> None: ...
    def patches(self, done: int, total: int) -> None: ...
    def retry(self, item_id: str, retries: int, reason: str) -> None: ...
    def item_done(self, outcome: ItemOutcome) -> None: ...


def unfinished_ids(report_url: str, options: StorageOptions | None = None) -> tuple[str, ...]:
    """Source ids of the items a run report lists as failed or not run: what a rerun has left to do."""
    from .storage import read_json

    try:
        report = read_json(report_url, options)
        return tuple(i["source_id"] for i in report["items"] if i["status"] in ("failed", "not_run"))
    except FileNotFoundError as exc:
        raise InvalidInputError(f"run report not found: {report_url}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{report_url} is not a stac-clouds2mask run report: {exc}") from exc
