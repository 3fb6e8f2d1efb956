"""Offline STAC validation for the tests.

``validate_stac(d)`` validates a STAC dict (as read from disk / as produced, NOT round-tripped
through ``pystac.Item.from_dict``, which may migrate extension versions) with pystac's validator:

* STAC core + GeoJSON schemas: the copies bundled in pystac (STAC 1.1.0 only);
* extension schemas: ``shared/stac-schemas/<ext>/<version>/schema.json`` and the few in
  ``tests/stac-schemas`` (the same layout), registered under their official URL
  ``https://stac-extensions.github.io/<ext>/<version>/schema.json``.

The validator never fetches anything: a schema that is not available offline raises
:class:`SchemaNotAvailableOffline` (for example STAC 1.0.0 items, whose core schemas pystac does
not bundle, or extensions that shared/stac-schemas does not hold).
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import pystac
import pystac.validation
from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator

EXTENSIONS_BASE_URL = "https://stac-extensions.github.io"


def shared_dir() -> Path:
    env = os.environ.get("STAC_CLOUDS2MASK_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared"


def schemas_dir() -> Path:
    return shared_dir() / "stac-schemas"


def schema_dirs() -> tuple[Path, ...]:
    """The extension schemas: the shared folder's, then the few that only tests/stac-schemas holds."""
    return (schemas_dir(), Path(__file__).resolve().parent / "stac-schemas")


class SchemaNotAvailableOffline(GetSchemaError):
    """A schema was needed that is not in the offline cache (no network access is attempted)."""

    def __init__(self, href: str) -> None:
        Exception.__init__(
            self,
            f"schema {href} is not available offline (only pystac's bundled STAC 1.1.0 core "
            f"schemas and the extension schemas in {' and '.join(map(str, schema_dirs()))} are); refusing to fetch it",
        )
        self.href = href


@lru_cache(maxsize=None)
def _extension_schemas(root: str) -> tuple[tuple[str, str], ...]:
    """(official URL, JSON text) for every schema under ``root`` (cached per directory)."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(
            f"STAC extension schemas not found at {base} (set STAC_CLOUDS2MASK_SHARED to the "
            "shared/ folder that holds stac-schemas/)"
        )
    out = []
    for path in sorted(base.glob("*/*/schema.json")):
        ext, version = path.parent.parent.name, path.parent.name
        out.append((f"{EXTENSIONS_BASE_URL}/{ext}/{version}/schema.json", path.read_text()))
    return tuple(out)


def extension_schemas() -> dict[str, dict[str, Any]]:
    """Official URL -> schema dict. Each schema's ``$id`` is set to its URL (processing
    v1.1.0's file declares the v1.0.0 id; its internal ``#/definitions`` refs would otherwise
    resolve against a URL that is not cached)."""
    schemas = {}
    for url, text in (pair for folder in schema_dirs() for pair in _extension_schemas(str(folder))):
        s = json.loads(text)
        s["$id"] = url + "#"
        schemas[url] = s
    return schemas


class OfflineSTACValidator(JsonSchemaSTACValidator):
    """pystac's jsonschema validator that never fetches: unknown schemas raise."""

    def __init__(self) -> None:
        super().__init__()
        self.schema_cache.update(extension_schemas())

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        key = schema_uri.rstrip("#")
        if key in self.schema_cache:
            return self.schema_cache[key]
        if schema_uri in self.schema_cache:
            return self.schema_cache[schema_uri]
        raise SchemaNotAvailableOffline(schema_uri)


_validator: OfflineSTACValidator | None = None


def offline_validator() -> OfflineSTACValidator:
    global _validator
    if _validator is None:
        _validator = OfflineSTACValidator()
    return _validator


def install_into_pystac() -> None:
    """Also fill pystac's registered validator's ``schema_cache`` with the extension schemas,
    so ``pystac`` objects' own ``.validate()`` finds them offline too (it would still try to
    fetch schemas that are not there)."""
    cache = pystac.validation.RegisteredValidator.get_validator().schema_cache
    for url, schema in extension_schemas().items():
        cache.setdefault(url, schema)


def validate_stac(d: dict[str, Any]) -> None:
    """Validate a STAC Item/Collection/Catalog dict offline; raise on invalid.

    Raises ``pystac.errors.STACValidationError`` when the object is invalid and
    :class:`SchemaNotAvailableOffline` when a needed schema is not available offline.
    """
    if not isinstance(d, dict):
        raise TypeError(f"expected a dict, got {type(d).__name__}")
    install_into_pystac()
    pystac.validation.validate_dict(copy.deepcopy(d), validator=offline_validator())


def write_schema_config(path: Path) -> Path:
    """A stac-validator `--schema-config` file mapping every schema URL the outputs need to a local copy
    (pystac's bundled STAC 1.1.0 core and GeoJSON schemas, and the extension schemas), so stac-validator
    validates offline."""
    bundled = Path(pystac.__file__).parent / "validation" / "jsonschemas"
    spec_of = {"catalog.json": "catalog-spec", "collection.json": "collection-spec"}
    urls = {
        f"https://schemas.stacspec.org/v1.1.0/{spec_of.get(f.name, 'item-spec')}/json-schema/{f.name}": str(f)
        for f in (bundled / "stac-spec" / "v1.1.0").glob("*.json")
    }
    urls.update({f"https://geojson.org/schema/{f.name}": str(f) for f in (bundled / "geojson").glob("*.json")})
    urls.update(
        {
            f"{EXTENSIONS_BASE_URL}/{f.parent.parent.name}/{f.parent.name}/schema.json": str(f)
            for folder in schema_dirs()
            for f in folder.glob("*/*/schema.json")
        }
    )
    path.write_text(json.dumps({"schemas": urls}, indent=1))
    return path
