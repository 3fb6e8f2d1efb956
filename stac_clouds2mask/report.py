"""What a run did, item by item: the outcomes, the totals, and redaction of what must not be printed."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

from .access import header_secrets, headers_from_env
from .errors import InvalidInputError

if TYPE_CHECKING:
    import pystac

    from .timeseries import Row

    from .storage import StorageOptions

Status = Literal["published", "skipped", "failed", "not_run"]
RUNS_DIR = ".clouds2mask-runs"
REPORT_TYPE = "clouds2mask-run-report"
# query parameters that carry a credential: presigned S3 / GCS URLs, Azure SAS (sig), CloudFront signed URLs,
# API keys and tokens
CREDENTIAL_PARAMETERS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "awsaccesskeyid",
        "signature",
        "sig",
        "policy",
        "key-pair-id",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "secret",
    }
)
_URL = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@'\"]*@)?(?P<rest>[^\s'\"?#]*)(?P<query>[?#][^\s'\"]*)?"
)


def redact(text: str | None, secrets_: Iterable[str] = ()) -> str | None:
    """`text` without URL user info, URL queries (signed URLs), the given secret values and the credentials
    of the environment (environment_secrets)."""
    if text is None:
        return None
    out = _URL.sub(
        lambda m: m["scheme"] + ("***@" if m["userinfo"] else "") + m["rest"] + ("?***" if m["query"] else ""), text
    )
    for secret in (*secrets_, *environment_secrets()):
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return out


def public_url(url: str | None) -> str | None:
    """`url` as it may be published (an item's links): the same rule as redact(), with the user info, query
    and fragment left out rather than starred, so that what is left is still a working URL."""
    if url is None:
        return None
    return _URL.sub(lambda m: m["scheme"] + m["rest"], url)


def has_credentials(url: str) -> bool:
    """Whether a URL holds a credential: user info, or a query parameter of CREDENTIAL_PARAMETERS (redact()
    stars more than that: every query; this tells where a URL must not be kept, e.g. in a plan)."""
    m = _URL.search(url)
    if m is None:
        return False
    parameters = {name.lower() for name, _ in parse_qsl((m["query"] or "")[1:], keep_blank_values=True)}
    return bool(m["userinfo"]) or bool(parameters & CREDENTIAL_PARAMETERS)


def credentials_in(value: Any, path: str = "") -> str | None:
    """Where in a JSON value (a dotted path) the first string holding a URL with credentials is, or None."""
    if isinstance(value, str):
        return path if any(has_credentials(m.group(0)) for m in _URL.finditer(value)) else None
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        if (found := credentials_in(child, f"{path}.{key}" if path else str(key))) is not None:
            return found
    return None


def environment_secrets() -> list[str]:
    """Credential values from the environment, to keep them out of messages and reports."""
    names = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "STAC_CLOUDS2MASK_API_TOKEN")
    try:
        source = header_secrets(headers_from_env())
    except InvalidInputError:  # malformed: refused where it is used, with the reason
        source = []
    return [v for v in (os.environ.get(n) for n in names) if v] + source


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
    mask_item_id: str | None = None  # the mask item published now, or found published (skipped)
    statistics: dict[str, float] | None = None  # valid, clear, cloud, shadow % of the mask (of the AOI when clipped)
    acquired: str | None = None  # the source's acquisition time (datetime, else start_datetime)
    # for the run page: the mask over true colour (JPEG), or for a skipped item its published thumbnail (PNG)
    preview: bytes | None = field(default=None, repr=False)

    @property
    def nothing_to_mask(self) -> bool:
        """Skipped without a mask: the item holds nothing of the AOI (no footprint there, no valid pixel)."""
        return self.status == "skipped" and self.mask_item_id is None


@dataclass
class RunReport:
    outcomes: list[ItemOutcome] = field(default_factory=list)
    path: str | None = None  # where the JSON run report was written
    report_error: str | None = None  # why it could not be written
    series_path: str | None = None  # the time series (CSV) beside it
    page_path: str | None = None  # the run page (HTML) beside it
    rows: list[Row] = field(default_factory=list)  # the time series, by acquisition time

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
