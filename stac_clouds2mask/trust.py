"""The trust boundary: what a catalog, item or payload may make this tool open, read or write.

Catalogs and payloads are written by other people, and the tool runs with an IAM role next to the
instance metadata service. So a reference (link, asset href, self href, output root) is judged by the
origin of the document that names it plus an operator allowlist, never by the document alone:

- no reference may be an fsspec chain (``::``), a GDAL virtual path (``/vsi...``), a GDAL
  ``DRIVER:path`` form or any scheme outside the allowlist;
- a remote document (http(s), s3, ...) may name remote references only: never a local path or ``file:``;
- local paths, where allowed, must lie under one of the operator's local roots (when any are set);
- remote hosts must be on the operator's host list (when one is set) and are never link-local
  (169.254.0.0/16 and fe80::/10: the instance metadata service lives there; also fd00:ec2::254, its IPv6
  address). A host is judged as the resolver reads it: IPv4 in every spelling ``inet_aton`` takes
  (``2852039166``, ``0xa9fea9fe``, ``169.254.43518``, octal parts), percent-encoding decoded as urllib3
  does, IPv6 literals by their address (IPv4-mapped and NAT64 forms by the IPv4 address inside). Host
  names are not resolved here: a name that resolves to a refused address is the host list's to stop.

Rasters open with the GeoTIFF and JPEG 2000 drivers only (never VRT or formats that reference further
files), and with GDAL's sidecar probing off. The operator configures all of it through environment
variables of the worker (see docs/aws-batch.md), read when a run starts.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import rasterio
from rasterio.errors import RasterioIOError

from .errors import UntrustedReferenceError

ENV_SCHEMES = "STAC_CLOUDS2MASK_ALLOWED_SCHEMES"
ENV_HOSTS = "STAC_CLOUDS2MASK_ALLOWED_HOSTS"
ENV_LOCAL_ROOTS = "STAC_CLOUDS2MASK_LOCAL_ROOTS"
ENV_OUTPUT_ROOTS = "STAC_CLOUDS2MASK_OUTPUT_ROOTS"
ENV_PUBLISH_API = "STAC_CLOUDS2MASK_PUBLISH_API"
ENV_S3_ENDPOINTS = "STAC_CLOUDS2MASK_S3_ENDPOINTS"
DEFAULT_SCHEMES = ("s3", "https", "http")
RASTER_DRIVERS = ("GTiff", "JP2OpenJPEG")
# GDAL looks for .aux.xml, .ovr, .msk, world files ... beside every file it opens: not here
GDAL_SAFE_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "GDAL_GEOREF_SOURCES": "INTERNAL",
}
MAX_SEGMENT_BYTES = 200
_SEGMENT_FORBIDDEN = "/\\?#*[]{}"
_DRIVER_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:")  # GTIFF_DIR:1:x.tif, NETCDF:..., HDF5:...
_NUMERIC_HOST = re.compile(r"[0-9][0-9a-fx.]*")  # what inet_aton may read as an IPv4 address
_IPV6_HOST = re.compile(r"\[[^\]]*\]")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA_V6 = ipaddress.ip_address("fd00:ec2::254")


def _split_env(name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())


@dataclass(frozen=True)
class TrustPolicy:
    """The operator's allowlist. Empty `hosts` / `local_roots` / `output_roots` mean: no restriction
    beyond the origin rule."""

    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    hosts: tuple[str, ...] = ()
    local_roots: tuple[str, ...] = ()
    output_roots: tuple[str, ...] = ()
    publish_api: str | None = None
    s3_endpoints: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> TrustPolicy:
        """The policy the worker's environment sets (defaults where a variable is unset)."""
        return cls(
            schemes=tuple(s.lower() for s in _split_env(ENV_SCHEMES)) or DEFAULT_SCHEMES,
            hosts=tuple(h.lower() for h in _split_env(ENV_HOSTS)),
            local_roots=tuple(os.path.realpath(p) for p in _split_env(ENV_LOCAL_ROOTS)),
            output_roots=_split_env(ENV_OUTPUT_ROOTS),
            publish_api=os.environ.get(ENV_PUBLISH_API) or None,
            s3_endpoints=_split_env(ENV_S3_ENDPOINTS),
        )


def is_local(url: str) -> bool:
    """A local path or a file: URL (anything without a scheme of two or more letters)."""
    scheme = urlsplit(url).scheme.lower()
    return scheme in ("", "file") or len(scheme) == 1  # C:\... on Windows


def local_path(url: str) -> str:
    """The path of a local reference (file:// stripped), as GDAL and os open it."""
    return url[len("file://") :] if url.startswith("file://") else url


def origin(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) of a URL, lower case; ('file', '') for local paths."""
    if is_local(url):
        return "file", ""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower().rsplit("@", 1)[-1]


def host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address that `host` (a URL's host, brackets allowed) names as the resolver reads it, or None for
    a host name: percent-encoding decoded (urllib3 does), the IPv6 zone dropped, IPv4 in any form that
    inet_aton takes (the C library's reading of 2852039166, 0xa9fea9fe, 169.254.43518, 0251.0376...)."""
    text = unquote(host).strip("[]").lower().split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not _NUMERIC_HOST.fullmatch(text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def canonical_host(host: str) -> str:
    """A host as compared with the operator's host list: its address in the usual notation when it is
    one, else the name in lower case without a trailing dot."""
    address = host_address(host)
    return str(address) if address is not None else unquote(host).lower().rstrip(".")


def _host_refused(host: str) -> str | None:
    address = host_address(host)
    if address is None:
        return None
    if address == _METADATA_V6:
        return "the instance metadata service (fd00:ec2::254)"
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        address = inner or address
    return f"a link-local address {address} (instance metadata)" if address.is_link_local else None


def is_chain(href: str) -> bool:
    """Whether fsspec would read `href` as a URL chain: '::' anywhere but inside an IPv6 literal host."""
    literal = _IPV6_HOST.search(href.split("://", 1)[1].split("/", 1)[0]) if "://" in href else None
    return "::" in (href.replace(literal.group(0), "", 1) if literal else href)


def check_reference(href: str, source: str | None, policy: TrustPolicy | None = None, what: str = "reference") -> str:
    """`href` (absolute) if a document at `source` may make the tool open it, else UntrustedReferenceError.

    `source` None: the operator named it (command line, environment): only the syntax rules apply.
    """
    policy = policy or TrustPolicy.from_env()
    if not isinstance(href, str) or not href.strip():
        raise UntrustedReferenceError(f"{what} is empty")
    shown = _shown(href)
    if is_chain(href):
        raise UntrustedReferenceError(f"{what} {shown} is an fsspec URL chain ('::'): refused")
    try:
        parts = urlsplit(href)
        port = parts.port
    except ValueError as exc:  # a port that is no number, an unclosed '['
        raise UntrustedReferenceError(f"{what} {shown} is not a valid URL: {exc}") from None
    if local_path(href).lstrip().lower().startswith("/vsi"):
        raise UntrustedReferenceError(f"{what} {shown} is a GDAL virtual file system path (/vsi...): refused")
    if any(ord(c) < 32 for c in href):
        raise UntrustedReferenceError(f"{what} {shown} contains control characters: refused")
    if is_local(href):
        if _DRIVER_PREFIX.match(local_path(href)):
            raise UntrustedReferenceError(f"{what} {shown} names a GDAL driver prefix: refused")
        if source is not None and not is_local(source):
            raise UntrustedReferenceError(
                f"{what} {shown} is a local file named by the remote document "
                f"{_shown(source)}: refused (remote sources may only name remote files)"
            )
        path = os.path.realpath(local_path(href))
        if policy.local_roots and not any(_under(path, root) for root in policy.local_roots):
            raise UntrustedReferenceError(f"{what} {shown} is outside the allowed local roots ({ENV_LOCAL_ROOTS})")
        return href
    scheme, host = origin(href)
    if scheme not in policy.schemes:
        raise UntrustedReferenceError(
            f"{what} {shown} uses the scheme {scheme!r}, not one of {', '.join(policy.schemes)} ({ENV_SCHEMES})"
        )
    hostname = canonical_host(parts.hostname or "")
    if why := _host_refused(hostname):
        raise UntrustedReferenceError(f"{what} {shown} points at {why}: refused")
    allowed = {canonical_host(h) for h in policy.hosts}
    if policy.hosts and hostname not in allowed and f"{hostname}:{port}" not in allowed and host not in policy.hosts:
        raise UntrustedReferenceError(f"{what} {shown}: host {hostname!r} is not among the allowed hosts ({ENV_HOSTS})")
    return href


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _shown(href: str, limit: int = 160) -> str:
    """An href as quoted in messages: repr (control characters escaped), cut to `limit` characters."""
    return repr(href if len(href) <= limit else href[:limit] + "...")


def unsafe_segment(name: object) -> str | None:
    """Why `name` cannot be one path segment under the output root, or None when it can.

    Item ids and collection ids become folder and file names, and fsspec reads '::' as a URL chain
    and '*?[]' as globs: so no separators, no '::', no glob or query characters, no control
    characters, not '.', '..' or blank-edged, at most 200 bytes in UTF-8; once percent-decoded (as a
    STAC API, or a proxy in front of it, may decode a URL's path segment, even twice) still not '.' or
    '..' and without '/' or '\\'. Refused, never rewritten, so two source ids cannot map to one mask.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if name in (".", ".."):
        return f"is {name!r}"
    decoded = _decoded(name)
    if decoded != name and (decoded in (".", "..") or "/" in decoded or "\\" in decoded):
        return f"is {name!r}, percent-encoded {decoded!r}: not one path segment once decoded"
    if name != name.strip():
        return "starts or ends with a blank"
    bad = sorted({c for c in name if c in _SEGMENT_FORBIDDEN})
    if bad:
        return f"contains {' '.join(repr(c) for c in bad)}"
    if "::" in name:
        return "contains '::' (an fsspec URL chain)"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        return "contains control characters"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_SEGMENT_BYTES:
        return f"is {size} bytes long in UTF-8 (at most {MAX_SEGMENT_BYTES})"
    return None


def _decoded(name: str) -> str:
    """`name` percent-decoded until it no longer changes (servers and proxies may decode more than once)."""
    for _ in range(len(name)):
        decoded = unquote(name)
        if decoded == name:
            break
        name = decoded
    return name


def url_segment(name: str, what: str = "id") -> str:
    """`name` as one path segment of a URL (every reserved character, '/' and '%' included, percent-encoded),
    or UntrustedReferenceError when it is no single segment (unsafe_segment)."""
    if why := unsafe_segment(name):
        raise UntrustedReferenceError(f"{what} {_shown(str(name))} {why}: not used in a URL")
    return quote(name, safe="")


def under_root(url: str, root: str) -> str:
    """`url` if it stays under `root` once '..' and (locally) symbolic links are resolved, else
    UntrustedReferenceError: every write of a publish goes through here."""
    if is_local(url) != is_local(root):
        raise UntrustedReferenceError(f"{_shown(url)} is not under the output root {_shown(root)}")
    if is_local(url):
        path = os.path.realpath(local_path(url))
        base = os.path.realpath(local_path(root))
    else:
        (scheme, host), (rscheme, rhost) = origin(url), origin(root)
        path = posixpath.normpath(urlsplit(url).path or "/")
        base = posixpath.normpath(urlsplit(root).path or "/")
        if (scheme, host) != (rscheme, rhost):
            raise UntrustedReferenceError(f"{_shown(url)} is not under the output root {_shown(root)}")
    if "::" in url or not (path == base or path.startswith(base.rstrip("/") + "/")):
        raise UntrustedReferenceError(f"{_shown(url)} is not under the output root {_shown(root)}")
    return url


def check_output_root(root: str, source: str | None, policy: TrustPolicy | None = None) -> str:
    """An output root named by a payload at `source`: a trusted reference without '..', and under one
    of the operator's output roots when any are set."""
    policy = policy or TrustPolicy.from_env()
    check_reference(root, source, policy, "output root")
    if ".." in root.replace("\\", "/").split("/"):
        raise UntrustedReferenceError(f"output root {_shown(root)} contains '..': refused")
    if policy.output_roots:
        for allowed in policy.output_roots:
            try:
                under_root(root, allowed)
                return root
            except UntrustedReferenceError:
                continue
        raise UntrustedReferenceError(
            f"output root {_shown(root)} is not under an allowed output root ({ENV_OUTPUT_ROOTS})"
        )
    return root


def check_payload_target(name: str, url: str, policy: TrustPolicy | None = None) -> str:
    """A `publish_api` or `endpoint_url` named by a payload: only one the operator configured, because
    the API token, --api-header values and signed S3 requests go wherever these point."""
    policy = policy or TrustPolicy.from_env()
    if name == "publish_api":
        allowed, env = (policy.publish_api,), ENV_PUBLISH_API
    else:
        allowed, env = policy.s3_endpoints, ENV_S3_ENDPOINTS
    if url.rstrip("/") not in {a.rstrip("/") for a in allowed if a}:
        raise UntrustedReferenceError(
            f"{name} {_shown(url)} is not one the operator configured ({env}): refused, "
            "credentials go only to the operator's own endpoints"
        )
    return url


@contextmanager
def gdal_env() -> Iterator[None]:
    """GDAL configured for untrusted files: no sidecar probing, no auxiliary metadata files."""
    with rasterio.Env(**GDAL_SAFE_ENV):
        yield


def open_raster_safely(
    path: str, opener: object | None = None, factory: Callable[..., Any] = rasterio.open, **kwargs: Any
) -> rasterio.DatasetReader:
    """Open with the GeoTIFF driver, else the JPEG 2000 one: never VRT or a format that names other files.

    factory: what opens it (rasterio.open, or a DatasetReader class such as stackstac's); `kwargs` go to it."""
    first: RasterioIOError | None = None
    if opener:
        kwargs["opener"] = opener
    for driver in RASTER_DRIVERS:
        try:
            return factory(path, driver=driver, **kwargs)
        except RasterioIOError as exc:
            first = first or exc
    assert first is not None
    if "not recognized" not in str(first):  # missing, unreadable: GDAL's own reason
        raise first
    raise RasterioIOError(
        f"{_shown(path)} not recognized as being in a supported file format "
        f"(only {' and '.join(RASTER_DRIVERS)} are opened)"
    ) from first
