"""One place that turns a URL into an fsspec filesystem, for reading sources and writing outputs.

Local paths, s3:// (anonymous, with credentials, requester-pays, custom endpoint) and http(s)://
all go through fsspec so that every stage reads and writes the same way.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import posixpath
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
import fsspec.implementations.local
from fsspec.core import url_to_fs
from pystac.utils import make_absolute_href

S3_SCHEMES = ("s3://", "s3a://")
S3_ATTEMPTS = 6
UPDATE_ATTEMPTS = 100  # conditional writes of one shared document lost in a row before giving up
_PREFIXED = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-_]*:")  # s3:, https:, file:, GTIFF_DIR:, C: ...


@dataclass(frozen=True)
class StorageOptions:
    """How to reach object storage.

    anon: None picks signed requests when AWS credentials are found (environment, config files,
    container or instance role) and anonymous ones otherwise.
    """

    anon: bool | None = None
    requester_pays: bool = False
    endpoint_url: str | None = None

    def fsspec_kwargs(self, url: str) -> dict[str, Any]:
        """Keyword arguments for fsspec's filesystem of this URL."""
        if not url.startswith(S3_SCHEMES):
            return {}
        anon = _have_no_credentials(*(os.environ.get(v) for v in _CREDENTIAL_VARS)) if self.anon is None else self.anon
        # botocore's "standard" retries: exponential backoff with jitter on 5xx, throttling (SlowDown)
        # and connection errors, never on 403/404; s3fs adds its own bounded retries for cut-off reads
        kwargs: dict[str, Any] = {
            "anon": anon,
            "config_kwargs": {"retries": {"max_attempts": S3_ATTEMPTS, "mode": "standard"}},
        }
        if self.requester_pays:
            kwargs["requester_pays"] = True
        endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            kwargs["client_kwargs"] = {"endpoint_url": endpoint}
        return kwargs


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


def get_fs(url: str, options: StorageOptions | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for a URL and the path inside it (S3 clients count their retries, see retries())."""
    fs, path = url_to_fs(url, **(options or StorageOptions()).fsspec_kwargs(url))
    if url.startswith(S3_SCHEMES) and not getattr(fs, "_clouds2mask_counted", False):
        fs.connect()
        fs.s3.meta.events.register("needs-retry.s3", _count_retryable)
        fs._clouds2mask_counted = True
    return fs, path


_RETRIES = Counter()
_RETRY_LOCK = threading.Lock()


def _count_retryable(
    attempts: int = 1, response: Any = None, caught_exception: Exception | None = None, **_: Any
) -> None:
    """Count attempts that failed in a way botocore retries (connection error, 5xx, 429/SlowDown).

    Only counts: the retry decision itself stays with botocore's retry handler."""
    status = (response[1] or {}).get("ResponseMetadata", {}).get("HTTPStatusCode") if response else None
    if caught_exception is not None or (status is not None and (status >= 500 or status == 429)):
        with _RETRY_LOCK:
            _RETRIES["s3"] += 1


def retries() -> int:
    """S3 attempts that failed transiently (and were retried, within botocore's bound) in this process."""
    with _RETRY_LOCK:
        return _RETRIES["s3"]


def read_json(url: str, options: StorageOptions | None = None, max_bytes: int | None = None) -> dict[str, Any]:
    """Read a JSON document from any fsspec URL; at most `max_bytes` (DocumentTooLarge beyond)."""
    fs, path = get_fs(url, options)
    with fs.open(path, "rb") as f:
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentTooLarge(f"{url} is larger than {max_bytes} bytes")
    return json.loads(data)


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
    """Write a JSON document (indented, UTF-8) to a URL atomically (see _atomic)."""
    write_bytes_atomic(url, json.dumps(data, indent=2).encode("utf-8"), options)


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
            fs.pipe_file(path, json.dumps(new, indent=2).encode("utf-8"), **condition)
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
    answer (one attempt, seconds, not the minutes of a run's retries). Writes nothing."""
    if not is_remote(url):
        path = absolute(url)
        if os.path.exists(path) and not os.path.isdir(path):
            raise NotADirectoryError(f"{url} is a file, not a folder")
        existing = path
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise NotADirectoryError(f"{existing} is a file: the folder {url} cannot be made under it")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(f"{existing} is not writable: {url} cannot be written")
        return
    if url.startswith(S3_SCHEMES):
        kwargs = (options or StorageOptions()).fsspec_kwargs(url)
        kwargs["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 5, "read_timeout": 10}
        fs, path = url_to_fs(url, skip_instance_cache=True, **kwargs)
        bucket, _, prefix = path.partition("/")
        try:
            fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except PermissionError:
            pass  # listing may be denied where writing is allowed: the run itself will tell
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{url}: no bucket {bucket!r} ({exc})") from exc
        except Exception as exc:  # botocore's connection errors are no OSError
            endpoint = kwargs.get("client_kwargs", {}).get("endpoint_url", "AWS S3 (no --endpoint-url)")
            raise ConnectionError(f"{url} cannot be reached at {endpoint}: {type(exc).__name__}: {exc}") from exc
