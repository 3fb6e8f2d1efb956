"""Access to private and signed sources: HTTP headers for the source STAC API and its files, and item
modifiers (pystac-client's `modifier`), such as the Planetary Computer's signer.

Credentials stay where they belong:
- headers go only to the hosts they are meant for (StorageOptions.header_hosts: by default the hosts of
  the http(s) sources the operator named), never to a host that a catalog or an API's links name;
- a modifier changes a copy of an item just before its files are opened, so signed hrefs never reach a
  published item, a run report or a payload (and expire no earlier than they must in a long batch);
- redact() takes header values out of every message (header_secrets).
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import OptionError

Modifier = Callable[[Any], Any]
SOURCE_HEADERS_ENV = "STAC_CLOUDS2MASK_SOURCE_HEADERS"
PLANETARY_COMPUTER = "planetary-computer"
# modifiers known by name (module, function, the extra that installs the module): the only ones a payload may name
NAMED_MODIFIERS = {PLANETARY_COMPUTER: ("planetary_computer", "sign_inplace", "planetary-computer")}
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def check_headers(headers: Mapping[str, str], field: str) -> dict[str, str]:
    """`headers` as a dict of valid HTTP header names and single-line values (values never shown)."""
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise OptionError(field, f"name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise OptionError(field, f"{name!r} has a value that is not one line of text (not shown)")
    return dict(headers)


def parse_headers(values: Iterable[str], field: str) -> dict[str, str]:
    """'Name: value' (curl) or 'Name=value' (stac-client) strings as a dict of headers."""
    headers = {}
    for value in values:
        cut = min((i for i in (value.find(":"), value.find("=")) if i >= 0), default=-1)
        name = value[:cut].strip()
        if cut < 0 or not name:
            raise OptionError(
                field,
                "must look like 'Name: value' or 'Name=value' (got one without a name, ':' or '='; the value is "
                "not shown)",
            )
        headers[name] = value[cut + 1 :].strip()
    return check_headers(headers, field)


def headers_from_env() -> dict[str, str]:
    """The operator's source headers: STAC_CLOUDS2MASK_SOURCE_HEADERS, one 'Name: value' per line (a secret
    of the worker, so that no payload or plan has to hold it)."""
    text = os.environ.get(SOURCE_HEADERS_ENV, "")
    try:
        return parse_headers([line for line in text.splitlines() if line.strip()], "headers")
    except OptionError as exc:
        raise OptionError("headers", f"from {SOURCE_HEADERS_ENV} {exc.reason}") from None


def header_secrets(headers: Mapping[str, str]) -> list[str]:
    """Header values and their credentials alone ('Bearer TOKEN' -> 'TOKEN': a server may echo just the
    token): what redact() takes out of messages."""
    values = list(headers.values())
    return [*values, *(parts[1] for v in values if len(parts := v.split(None, 1)) == 2)]


def host(url: str) -> str:
    """host[:port] of an http(s) URL, lower case, without user info ('' for anything else)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return ""
    return parts.netloc.lower().rsplit("@", 1)[-1]


def resolve_modifier(modifier: Modifier | str | None, *, named_only: bool = False) -> Modifier | None:
    """A modifier callable from itself, a name of NAMED_MODIFIERS or (unless `named_only`, as for payloads:
    an import path runs code) 'module:function'."""
    if modifier is None or callable(modifier):
        return modifier
    if not isinstance(modifier, str):
        raise OptionError("modifier", f"must be a callable or a name, got {type(modifier).__name__}")
    known = ", ".join(NAMED_MODIFIERS)
    if modifier in NAMED_MODIFIERS:
        module, function, extra = NAMED_MODIFIERS[modifier]
    elif named_only:
        raise OptionError("modifier", f"{modifier!r} is not one of the named modifiers ({known})")
    else:
        module, _, function = modifier.partition(":")
        extra = None
        if not module or not function:
            raise OptionError("modifier", f"{modifier!r} is neither a named modifier ({known}) nor 'module:function'")
    try:
        found = getattr(importlib.import_module(module), function)
    except ImportError as exc:
        hint = f": pip install 'stac-clouds2mask[{extra}]'" if extra else ""
        raise OptionError("modifier", f"{modifier!r} needs the module {module!r}{hint} ({exc})") from exc
    except AttributeError as exc:
        raise OptionError("modifier", f"{modifier!r}: the module {module!r} has no {function!r}") from exc
    if not callable(found):
        raise OptionError("modifier", f"{modifier!r} is not callable")
    return found


def modifier_name(modifier: Modifier | None) -> str | None:
    """How a run report names a modifier (its import path; never its state)."""
    if modifier is None:
        return None
    return f"{getattr(modifier, '__module__', '?')}.{getattr(modifier, '__qualname__', type(modifier).__name__)}"


def modified(item: Any, modifier: Modifier | None) -> Any:
    """A copy of a pystac Item changed by `modifier`, which works in place as pystac-client's does (a
    returned object other than the item is ignored, with pystac-client's warning)."""
    if modifier is None:
        return item
    copy = item.clone()
    result = modifier(copy)
    if result is not None and result is not copy:
        warnings.warn(
            f"modifier {modifier_name(modifier)} returned a result that is ignored: it must change the item in place",
            stacklevel=2,
        )
    return copy
