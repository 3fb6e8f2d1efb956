"""Checks of the fields a published STAC document uses, beyond what its declared schemas say.

pystac validates a document only against the extension schemas it declares, so a document that uses
`proj:*` fields without declaring the projection extension "validates". `undeclared_prefixes` finds
such fields; the prefix of each extension is read from its offline schema (the prefix of most of the
fields it defines), never from a table of versions. `clouds2mask:*` fields have no STAC extension:
the package ships a JSON schema of its own for them, `own_schema_errors` applies it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema

import stac_schemas

OWN_PREFIX = "clouds2mask"
FIELD = re.compile(r"^([a-z][a-z0-9]*):[A-Za-z_]")
VERSION_FIELDS = {"version", "deprecated"}  # the version extension's fields have no prefix
RENDER_FIELD = "renders"  # nor has the render extension's
SKIPPED = {"links"}  # link objects: rel/href/type and the like, no extension fields of ours


def _keys(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


@lru_cache(maxsize=None)
def extension_prefix(url: str) -> str | None:
    """The field prefix of the extension at `url` (`.../projection/v2.0.0/schema.json` -> `proj`): the most
    common prefix among the property names its schema defines; None for one without prefixed fields."""
    schema = stac_schemas.extension_schemas().get(url)
    if schema is None:
        raise AssertionError(f"{url} is declared but not available offline: its prefix cannot be known")
    counts = Counter(m[1] for key in _keys(schema) if isinstance(key, str) and (m := FIELD.match(key)))
    return counts.most_common(1)[0][0] if counts else None


def extension_name(url: str) -> str:
    """`https://stac-extensions.github.io/<name>/<version>/schema.json` -> `<name>`."""
    return url.removeprefix(stac_schemas.EXTENSIONS_BASE_URL + "/").split("/")[0]


def used_prefixes(doc: dict[str, Any]) -> set[str]:
    """Prefixes of the extension fields anywhere in the document (links left out); `version` stands for
    the version extension's unprefixed `version` / `deprecated` at the item's or collection's top, `render`
    for the render extension's `renders` there."""
    found = {
        m[1] for key, value in doc.items() if key not in SKIPPED for k in (key, *_keys(value)) if (m := FIELD.match(k))
    }
    top = doc.get("properties", {}) if doc.get("type") == "Feature" else doc
    if VERSION_FIELDS & set(top):
        found.add("version")
    if RENDER_FIELD in top:
        found.add("render")
    return found


def undeclared_prefixes(doc: dict[str, Any]) -> set[str]:
    """Prefixes used by `doc` whose extension it does not declare (clouds2mask: see own_schema_errors)."""
    declared = set()
    for url in doc.get("stac_extensions", []):
        prefix = extension_prefix(url)
        declared.add(prefix if prefix is not None else extension_name(url))
    return used_prefixes(doc) - declared - {OWN_PREFIX}


@lru_cache(maxsize=1)
def own_schema() -> dict[str, Any]:
    """The package's schema of the clouds2mask:* fields, read from the installed package's data."""
    return json.loads((resources.files("stac_clouds2mask") / "schemas" / "clouds2mask.json").read_text())


def own_schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(own_schema())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def check_published(doc: dict[str, Any]) -> None:
    """AssertionError when a published document uses an undeclared extension or breaks the clouds2mask schema."""
    if doc.get("type") not in ("Feature", "Collection", "Catalog"):
        return
    missing = undeclared_prefixes(doc)
    assert not missing, f"{doc.get('id')}: fields of undeclared extensions: {sorted(missing)}"
    errors = own_schema_errors(doc)
    assert not errors, f"{doc.get('id')}: clouds2mask:* fields break the package's schema: {errors}"
