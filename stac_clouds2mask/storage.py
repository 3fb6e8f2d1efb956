"""One place that turns a URL into an fsspec filesystem, for reading sources and writing outputs.

Local paths, s3:// (anonymous, with credentials, requester-pays, custom endpoint) and http(s)://
all go through fsspec so that every stage reads and writes the same way.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import json
import os
import posixpath
import random
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import fsspec
import fsspec.implementations.local
from fsspec.core import url_to_fs
from pystac.utils import make_absolute_href

from .access import Modifier, check_headers, host, resolve_modifier
from .errors import OptionError

S3_SCHEMES = ("s3://", "s3a://")
STDIN = "-"  # read_json's name for standard input (command lines: `--intersects -`, `run-payload -`)
S3_ATTEMPTS = 6
PROBE_PREFIX = ".clouds2mask-probe-"  # check_writable's probes
UPDATE_ATTEMPTS = 100  # conditional writes of one shared document lost in a row before giving up
_PREFIXED = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-_]*:")  # s3:, https:, file:, GTIFF_DIR:, C: ...


@dataclass(frozen=True)
class StorageOptions:
    """How to reach object storage and private or signed sources.

    anon: None picks signed requests when AWS credentials are found (environment, config files,
    container or instance role) and anonymous ones otherwise.
    headers: HTTP headers for a private source STAC API and its http(s) files, sent only to `header_hosts`
    (host or host:port; run() and plan() default them to the hosts of the http(s) sources).
    modifier: changes a copy of each source item before its files are opened, as pystac-client's
    `modifier` (a callable, 'planetary-computer' or 'module:function'; see access.py).
    """

    anon: bool | None = None
    requester_pays: bool = False
    endpoint_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # credentials: never in a repr
    header_hosts: tuple[str, ...] = ()
    modifier: Modifier | str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.header_hosts, str) or not all(isinstance(h, str) and h for h in self.header_hosts):
            raise OptionError("header_hosts", f"must be a list of host names, got {self.header_hosts!r}")
        object.__setattr__(self, "headers", check_headers(self.headers, "headers"))
        object.__setattr__(self, "header_hosts", tuple(h.strip().lower() for h in self.header_hosts))
        object.__setattr__(self, "modifier", resolve_modifier(self.modifier))

    def headers_for(self, url: str) -> dict[str, str]:
        """The headers a request to `url` carries: all of them on the header hosts, none elsewhere."""
        return dict(self.headers) if self.headers and host(url) in self.header_hosts else {}

    def for_sources(self, sources: Sequence[str]) -> StorageOptions:
        """These options with the header hosts defaulted to the hosts of the http(s) sources."""
        if not self.headers or self.header_hosts:
            return self
        hosts = tuple(dict.fromkeys(h for source in sources if (h := host(source))))
        if not hosts:
            raise OptionError(
                "header_hosts",
                "must name the hosts that receive the headers when no source is an http(s) URL",
            )
        return replace(self, header_hosts=hosts)

    def s3_anon(self) -> bool:
        """Whether S3 requests go unsigned: as asked, else when the AWS credential chain finds nothing."""
        return _have_no_credentials(*(os.environ.get(v) for v in _CREDENTIAL_VARS)) if self.anon is None else self.anon

    def s3_endpoint(self) -> str | None:
        """The S3 endpoint: as asked, else the environment's (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL), else AWS."""
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")

    def fsspec_kwargs(self, url: str) -> dict[str, Any]:
        """Keyword arguments for fsspec's filesystem of this URL."""
        if headers := self.headers_for(url):
            return {"client_kwargs": {"headers": headers}}
        if not url.startswith(S3_SCHEMES):
            return {}
        # botocore's "standard" retries: exponential backoff with jitter on 5xx, throttling (SlowDown)
        # and connection errors, never on 403/404; s3fs adds its own bounded retries for cut-off reads
        kwargs: dict[str, Any] = {
            "anon": self.s3_anon(),
            "config_kwargs": {"retries": {"max_attempts": S3_ATTEMPTS, "mode": "standard"}},
        }
        if self.requester_pays:
            kwargs["requester_pays"] = True
        if endpoint := self.s3_endpoint():
            kwargs["client_kwargs"] = {"endpoint_url": endpoint}
        return kwargs

    def gdal_config(self) -> dict[str, str]:
        """The same S3 access as GDAL configuration options, for files GDAL opens itself (/vsis3/, as stackstac
        does): endpoint, unsigned or signed requests, requester pays. No headers: GDAL would send them to every
        host, not only to the header hosts."""
        config = {"AWS_NO_SIGN_REQUEST": "YES" if self.s3_anon() else "NO"}
        if self.requester_pays:
            config["AWS_REQUEST_PAYER"] = "requester"
        if endpoint := self.s3_endpoint():
            parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
            config["AWS_S3_ENDPOINT"] = parts.netloc
            config["AWS_HTTPS"] = "YES" if parts.scheme == "https" else "NO"
            config["AWS_VIRTUAL_HOSTING"] = "FALSE"  # bucket in the path, as custom endpoints take it
        return config


_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@functools.lru_cache(maxsize=8)
def _have_no_credentials(*env_key: str | None) -> bool:
    """Whether the AWS credential chain finds nothing; cached per credential environment (the
    chain may ask the instance metadata service, which is slow off AWS)."""
    import botocore.session

    return botocore.session.Session().get_credentials() is None


def is_remote(url: str) -> bool:
    """True for URLs with a scheme other than file:// (see trust.is_local for references from documents)."""
    return "://" in url and not url.startswith("file://")


def join(base: str, *parts: str) -> str:
    """Join URL or path segments with '/', as object stores and STAC hrefs expect."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def absolute(url: str) -> str:
    """Absolute form of a local path (URLs pass through), for hrefs that outlive the working directory."""
    if is_remote(url):
        return url
    return os.path.abspath(url.removeprefix("file://"))


def get_fs(
    url: str, options: StorageOptions | None = None, block_size: int | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for a URL and the path inside it (S3 clients count their retries and refuse the
    hopeless ones, see _on_retry). `block_size`: the bytes each read of a remote file fetches ahead
    (fsspec's default otherwise)."""
    kwargs = (options or StorageOptions()).fsspec_kwargs(url)
    if block_size is not None and url.startswith(S3_SCHEMES):
        kwargs.update(default_block_size=block_size, default_cache_type="readahead")
    elif block_size is not None and url.startswith(("http://", "https://")):
        kwargs.update(block_size=block_size)
    if url.startswith(("http://[", "https://[")):  # an IPv6 literal host: its '::' is no URL chain
        fs = fsspec.filesystem(url.split("://", 1)[0], **kwargs)
        return fs, fs._strip_protocol(url)
    fs, path = url_to_fs(url, **kwargs)
    if url.startswith(S3_SCHEMES) and not getattr(fs, "_clouds2mask_counted", False):
        fs.connect()
        fs.s3.meta.events.register_first("needs-retry.s3", _on_retry)
        fs._clouds2mask_counted = True
    return fs, path


class SourceUnreachable(ConnectionError):
    """A request that no retry can make succeed (a host name that does not resolve): raised at the first
    failed attempt, naming the cause, instead of after minutes of retries."""


@dataclass
class RetryCounter:
    """The S3 retries of one unit of work (an item): counted, and told to `notify` as they happen."""

    count: int = 0
    notify: Callable[[int, str], None] | None = None


_RETRIES = Counter()
_RETRY_LOCK = threading.Lock()
# the item whose requests these are: s3fs sends them from its own event-loop thread, in a copy of the
# context of the thread that asked (asyncio tasks copy contextvars), so the counter travels with them
_COUNTER: contextvars.ContextVar[RetryCounter | None] = contextvars.ContextVar("clouds2mask_retries", default=None)


@contextmanager
def counting_retries(counter: RetryCounter) -> Iterator[RetryCounter]:
    """Count the S3 retries of the requests made in this block (and in carrying_retries workers) to `counter`."""
    token = _COUNTER.set(counter)
    try:
        yield counter
    finally:
        _COUNTER.reset(token)


def carrying_retries(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` for a worker thread (threads start with an empty context): its retries count where the caller's do."""
    counter = _COUNTER.get()

    def run(*args: Any, **kwargs: Any) -> Any:
        token = _COUNTER.set(counter)
        try:
            return fn(*args, **kwargs)
        finally:
            _COUNTER.reset(token)

    return run


def _on_retry(
    attempts: int = 1,
    response: Any = None,
    caught_exception: Exception | None = None,
    request_dict: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """Before botocore decides whether to retry a failed S3 attempt (its "standard" mode retries 5xx,
    throttling and every connection error): end at once what retrying cannot fix (a host name that does not
    resolve: SourceUnreachable), and count the rest, per process and for the item that asked.

    Returns None always, so that the retry decision itself stays with botocore's retry handler."""
    if caught_exception is not None and (cause := _name_resolution_error(caught_exception)) is not None:
        host = urlsplit((request_dict or {}).get("url", "")).hostname
        raise SourceUnreachable(f"the S3 endpoint host {host!r} does not resolve ({cause}): not retried")
    status = (response[1] or {}).get("ResponseMetadata", {}).get("HTTPStatusCode") if response else None
    transient = caught_exception is not None or (status is not None and (status >= 500 or status == 429))
    if not transient or attempts > S3_ATTEMPTS:  # the last attempt: botocore gives up, nothing is retried
        return
    with _RETRY_LOCK:
        _RETRIES["s3"] += 1
    counter = _COUNTER.get()
    if counter is not None:
        counter.count += 1
        if counter.notify is not None:
            why = f"{type(caught_exception).__name__}: {caught_exception}" if caught_exception else f"HTTP {status}"
            counter.notify(counter.count, why)


def _name_resolution_error(exc: BaseException) -> socket.gaierror | None:
    """The failed name lookup behind a connection error (botocore and aiohttp each wrap it), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, socket.gaierror):
            return current
        seen.add(id(current))
        nested = getattr(current, "os_error", None)  # aiohttp's ClientConnectorError keeps it here
        if isinstance(nested, socket.gaierror):
            return nested
        current = current.__cause__ or current.__context__
    return None


def retries() -> int:
    """S3 attempts that failed transiently (and were retried, within botocore's bound) in this process."""
    with _RETRY_LOCK:
        return _RETRIES["s3"]


def check_readable(fs: fsspec.AbstractFileSystem, path: str, url: str) -> None:
    """Ask S3 for the object once before GDAL opens it, so that a failure names its real cause (no such
    bucket or key, access denied, a host that does not resolve) instead of GDAL's "Resource temporarily
    unavailable" after the retries of every driver it tries. Other URLs: nothing to ask."""
    if not url.startswith(S3_SCHEMES):
        return
    try:
        fs.info(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{url}: no such object or bucket ({exc})") from exc
    except PermissionError as exc:
        raise PermissionError(f"{url}: access denied ({exc})") from exc
    except SourceUnreachable:
        raise
    except Exception as exc:  # botocore's connection errors are no OSError
        raise ConnectionError(f"{url} cannot be reached: {type(exc).__name__}: {exc}") from exc


def read_json(
    url: str, options: StorageOptions | None = None, max_bytes: int | None = None, strict: bool = False
) -> dict[str, Any]:
    """Read a JSON document from any fsspec URL, or standard input for '-'; at most `max_bytes`
    (DocumentTooLarge beyond). `strict`: NaN, Infinity and -Infinity (which Python's parser takes, but
    RFC 8259 has no place for) are a ValueError, for documents whose numbers act as settings."""
    if url == STDIN:
        data = sys.stdin.buffer.read() if max_bytes is None else sys.stdin.buffer.read(max_bytes + 1)
    else:
        fs, path = get_fs(url, options)
        with fs.open(path, "rb") as f:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentTooLarge(f"{url} is larger than {max_bytes} bytes")
    return json.loads(data, parse_constant=_not_json) if strict else json.loads(data)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number (RFC 8259)")


class DocumentTooLarge(OSError):
    """A JSON document beyond the size a reader accepts (a catalog is no place for hundreds of MB)."""


def _atomic(url: str, options: StorageOptions | None, write: Callable[[fsspec.AbstractFileSystem, str], None]) -> None:
    """Write under a temporary name, then move into place, so readers never see a partial object."""
    fs, path = get_fs(url, options)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    # unique per write: concurrent writers of one document (array children, each its container's PID 1)
    tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(6)}"
    write(fs, tmp)
    fs.mv(tmp, path)


def write_bytes_atomic(url: str, data: bytes, options: StorageOptions | None = None) -> None:
    """Write bytes to a URL atomically (see _atomic)."""
    _atomic(url, options, lambda fs, tmp: fs.pipe_file(tmp, data))


def write_json_atomic(url: str, data: Any, options: StorageOptions | None = None) -> None:
    """Write a JSON document (indented, UTF-8) to a URL atomically (see _atomic); a NaN or infinity in
    `data` is a ValueError, never a document that JSON readers refuse."""
    write_bytes_atomic(url, json.dumps(data, indent=2, allow_nan=False).encode("utf-8"), options)


def create_exclusive(url: str, data: bytes, options: StorageOptions | None = None) -> bool:
    """Create the object only if it does not exist (O_EXCL locally, If-None-Match on S3); False if it did."""
    fs, path = get_fs(url, options)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    try:
        if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
            # fsspec's local mode="create" checks, then writes: two writers can both "create"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        else:
            fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    return True


def put_file_atomic(local_path: str, url: str, options: StorageOptions | None = None) -> None:
    """Upload (or copy) a local file to a URL atomically (see _atomic)."""
    _atomic(url, options, lambda fs, tmp: fs.put_file(local_path, tmp))


Change = Callable[[dict[str, Any] | None], dict[str, Any]]
"""A change of a shared JSON document: the current document (None when there is none) -> the new one."""


def update_json(
    url: str,
    change: Change,
    options: StorageOptions | None = None,
    attempts: int = UPDATE_ATTEMPTS,
) -> dict[str, Any]:
    """Read, change and write one JSON document that parallel writers share (a collection, the root
    catalog) so that no writer's change is lost; returns the document as it now stands.

    `change` gets a copy of the current document (None when there is none) and returns the new one; it
    may run more than once, so it must only add what its writer needs. Nothing is written when the
    document already holds the change.
    - local files: the document's folder is locked (flock; released when the process dies, so a killed
      writer leaves no lock behind) around the read and the atomic write; Windows has no flock (no fcntl
      module): there local updates are not locked, one writer at a time per catalog;
    - S3: the write is conditional on the object read (If-Match on its ETag, If-None-Match: * when it
      did not exist) and done again from a fresh read when another writer came first (412, 409);
    - other stores have no such primitive: one writer at a time there (the last one wins).
    """
    fs, path = get_fs(url, options)
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        with _folder_lock(folder) as locked:
            if locked:  # only a killed writer's temporaries are there
                remove_temporaries(folder, os.path.basename(path))
            return _read_change_write(fs, url, path, change, options)
    if not url.startswith(S3_SCHEMES):
        return _read_change_write(fs, url, path, change, options)
    delay = 0.02
    for _ in range(attempts):
        fs.invalidate_cache(path)
        try:
            etag = fs.info(path)["ETag"]
            current = json.loads(fs.cat_file(path))
        except FileNotFoundError:
            etag, current = None, None
        new = change(copy.deepcopy(current))
        if new == current:
            return new
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            fs.pipe_file(path, json.dumps(new, indent=2, allow_nan=False).encode("utf-8"), **condition)
        except (FileExistsError, FileNotFoundError):  # created or deleted by another writer since the read
            pass
        except OSError as exc:
            if not _lost_race(exc):
                raise
        else:
            fs.invalidate_cache(path)
            return new
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)
    raise OSError(f"{url}: other writers changed it first {attempts} times in a row; not updated")


@contextmanager
def _folder_lock(folder: str) -> Iterator[bool]:
    """An exclusive flock on `folder` while the block runs (True); False, unlocked, where there is no fcntl
    (Windows: no flock, and a folder cannot be opened as a file there)."""
    try:
        import fcntl  # POSIX only: imported here so that the package imports on Windows
    except ImportError:
        yield False
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # releases the lock


def _read_change_write(
    fs: fsspec.AbstractFileSystem, url: str, path: str, change: Change, options: StorageOptions | None
) -> dict[str, Any]:
    """Read, change and write back (atomically) with no check that nobody else wrote in between."""
    current = _read_or_none(fs, path)
    new = change(copy.deepcopy(current))
    if new != current:
        write_json_atomic(url, new, options)
    return new


def remove_temporaries(
    folder_url: str, prefix: str = "", options: StorageOptions | None = None, older_than: float | None = None
) -> None:
    """Delete the temporaries `<prefix>...tmp-<pid>-<token>` that _atomic leaves in a folder when its writer
    is killed: listed and deleted by literal name, never by a glob (ids may hold characters globs read).
    With `older_than`, only those last written more than that many seconds ago (for documents of unique
    names, e.g. run reports, whose temporary no later write replaces). Best effort."""
    fs, path = get_fs(folder_url, options)
    try:
        entries = fs.ls(path, detail=True)
    except (FileNotFoundError, OSError):
        return
    now = time.time()
    for entry in entries:
        name = posixpath.basename(entry["name"].rstrip("/"))
        if entry.get("type") != "file" or not name.startswith(prefix) or ".tmp-" not in name[len(prefix) :]:
            continue
        if older_than is not None:
            written = entry.get("mtime") or entry.get("LastModified")
            written = written.timestamp() if hasattr(written, "timestamp") else written
            if not written or now - float(written) <= older_than:
                continue
        try:
            fs.rm_file(entry["name"])
        except (FileNotFoundError, OSError):
            pass


def _read_or_none(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any] | None:
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None


def _lost_race(exc: OSError) -> bool:
    """Whether a conditional S3 write failed because another writer changed the object first
    (412 PreconditionFailed, or 409 ConditionalRequestConflict while another conditional write was under way)."""
    cause = exc.__cause__
    response = getattr(cause, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status in (409, 412) or response.get("Error", {}).get("Code") in (
        "PreconditionFailed",
        "ConditionalRequestConflict",
    )


def resolve_href(base: str, href: str) -> str:
    """``href`` made absolute against the document at ``base`` (a path or a URL of any scheme), the one rule
    for every link and asset href: pystac's ``make_absolute_href``, so hrefs resolve as pystac resolves them
    (``s3://bucket/a/b.json`` + ``../../c.json`` -> ``s3://bucket/c.json``: the bucket is the URL's authority).

    An href that is not a plain relative path is returned as the document wrote it, for
    trust.check_reference to judge: one with a scheme or a GDAL ``DRIVER:`` prefix, an fsspec chain
    (``::``) or a leading ``/`` (a local path, also when a remote document names it)."""
    if href.startswith("/") or "::" in href or _PREFIXED.match(href):
        return href
    return make_absolute_href(href, base)


def check_writable(url: str, options: StorageOptions | None = None) -> None:
    """Raise OSError naming the reason when `url` cannot take output, before any item is worked on: a
    regular file, a folder that cannot be created or written, an S3 endpoint or bucket that does not
    answer (one attempt, seconds, not the minutes of a run's retries). Writing is tried for real with a
    probe that is removed at once (permission bits and os.access say yes on /proc, /sys and read-only
    mounts): locally a folder with a file in it, made in the output folder or, while that does not exist
    yet, in the nearest folder above it; on S3 an empty object under the prefix. Leaves nothing behind."""
    if not is_remote(url):
        _probe_local(url)
        return
    if url.startswith(S3_SCHEMES):
        _probe_s3(url, options)


def _probe_local(url: str) -> None:
    path = absolute(url)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{url} is a file, not a folder")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"{existing} is a file: the folder {url} cannot be made under it")
    probe = None
    try:
        probe = tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=existing)
        with open(os.path.join(probe, "probe"), "xb") as f:
            f.write(b"probe")
    except OSError as exc:
        raise PermissionError(f"{existing} is not writable ({exc.strerror or exc}): {url} cannot be written") from exc
    finally:
        if probe is not None:
            shutil.rmtree(probe, ignore_errors=True)


def _probe_s3(url: str, options: StorageOptions | None) -> None:
    kwargs = (options or StorageOptions()).fsspec_kwargs(url)
    kwargs["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 5, "read_timeout": 10}
    fs, path = url_to_fs(url, skip_instance_cache=True, **kwargs)
    bucket, _, prefix = path.partition("/")
    try:
        fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except PermissionError:
        pass  # listing may be denied where writing is allowed: the probe below tells
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{url}: no bucket {bucket!r} ({exc})") from exc
    except Exception as exc:  # botocore's connection errors are no OSError
        endpoint = kwargs.get("client_kwargs", {}).get("endpoint_url", "AWS S3 (no --endpoint-url)")
        raise ConnectionError(f"{url} cannot be reached at {endpoint}: {type(exc).__name__}: {exc}") from exc
    key = posixpath.join(prefix.rstrip("/"), f"{PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(6)}").lstrip("/")
    try:
        fs.call_s3("put_object", Bucket=bucket, Key=key, Body=b"")
    except OSError as exc:
        raise PermissionError(f"{url} cannot be written: {exc}") from exc
    try:
        fs.call_s3("delete_object", Bucket=bucket, Key=key)
    except OSError as exc:  # publishing moves temporaries into place: copy, then delete
        raise PermissionError(f"{url}: objects cannot be deleted there ({exc}), and publishing needs to") from exc
