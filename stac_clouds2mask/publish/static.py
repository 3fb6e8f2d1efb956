"""The static catalog: catalog.json -> <collection>/collection.json -> <item>/<item>.json and its assets,
at any fsspec URL (a local folder, s3://, ...).

Parallel writers (array-job children, several runs) share the collection and root documents: each
writer adds its item link and grows the extent with a read-change-write that loses no other writer's
change (storage.update_json: a folder lock locally, conditional writes with If-Match / If-None-Match on
S3, retried when another writer came first). Why conditional writes rather than one finaliser that
rebuilds links from a listing: the catalog stays whole after every item (a reader, a rerun, a killed
array never needs a separate step), each update reads and writes one document instead of listing and
reading every item, and S3 (since 2024) and MinIO apply If-Match / If-None-Match atomically. A store
that ignores them would lose links again: use one writer at a time there. Items themselves are written
by one run at a time: the item's claim (`<item>.lock`, created with If-None-Match, see claim()).

Hrefs: a catalog at a URL (s3://, https://...) is published with absolute asset hrefs and a `self` link in
every document, as STAC shops publish: item JSON read straight from the store opens in readers that do not
know where it came from (stackstac and GDAL's STACIT on item dicts, a STAC API copy). A local folder stays
self-contained (hrefs relative to each document, no self link) so that it can be moved or copied; its items
with absolute hrefs come from iter_items(). Links between documents (root, parent, collection, item, child,
versions) are relative in both.

The root declares an empty `conformsTo` (it conforms to no STAC API class, truthfully): pystac-client then
opens it without its NoConformsTo warning, and says where it falls back to walking the catalog.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import posixpath
import random
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pystac

from ..errors import PublishError, UntrustedReferenceError
from ..model.registry import ModelSpec
from .collections import new_collection, update_collection
from .items import STAC_VERSION
from ..storage import (
    StorageOptions,
    absolute,
    create_exclusive,
    get_fs,
    is_remote,
    join,
    put_file_atomic,
    read_json,
    remove_temporaries,
    resolve_href,
    update_json,
    write_json_atomic,
)
from ..trust import under_root, unsafe_segment
from .cog import multihash_sha256
from .documents import item_json, with_absolute_assets
from .items import WrittenFile


@dataclass
class StaticCatalog:
    """A static STAC catalog at any fsspec URL: catalog.json -> <collection>/collection.json -> items."""

    url: str
    options: StorageOptions = field(default_factory=StorageOptions)
    title: str = "Cloud and cloud-shadow masks"
    _models: dict[str, WrittenFile] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.url = absolute(self.url).rstrip("/")

    @property
    def published(self) -> bool:
        """Whether the catalog is at a URL, so written with absolute hrefs and self links (module docstring)."""
        return is_remote(self.url)

    def _self_link(self, url: str, media_type: str = "application/json") -> list[dict[str, Any]]:
        """The self link of the document at `url` when the catalog is published, else none."""
        return [{"rel": "self", "href": url, "type": media_type}] if self.published else []

    def _url(self, *segments: str, name: str | None = None) -> str:
        """A URL under the root from id segments: each must be one path segment (trust.unsafe_segment)
        and the result must stay under the root; `name` is a file name the code chose."""
        for segment in segments:
            if why := unsafe_segment(segment):
                raise UntrustedReferenceError(
                    f"id {segment!r} {why}: refused, it would not be a single path segment under the output"
                )
        return under_root(join(self.url, *segments, *([name] if name else [])), self.url)

    def item_url(self, collection_id: str, item_id: str) -> str:
        return self._url(collection_id, item_id, name=f"{item_id}.json")

    def asset_url(self, collection_id: str, item_id: str, suffix: str = ".tif") -> str:
        return self._url(collection_id, item_id, name=f"{item_id}{suffix}")

    def version_href(self, collection_id: str, item_id: str) -> str:
        """How a sibling item links to this one (relative, so the catalog can be moved)."""
        return f"../{item_id}/{item_id}.json"

    def put_source(self, item: pystac.Item) -> str:
        """A source item that lives nowhere else (one built from a product folder), written under
        ``sources/`` so the mask's derived_from link resolves; its self link is set to it."""
        if why := unsafe_segment(item.id):
            raise UntrustedReferenceError(f"id {item.id!r} {why}: refused, it would not be a single path segment")
        url = self._url("sources", name=f"{item.id}.json")
        item.set_self_href(url)
        write_json_atomic(url, item.to_dict(include_self_link=True, transform_hrefs=False), self.options)
        return url

    def put_model(self, spec: ModelSpec) -> WrittenFile:
        """The weights that make the masks, written once per catalog under ``models/`` (so the items' mlm
        model asset points at the very file that was run, with its checksum); kept when already there.

        Parallel writers may upload it at once: whoever moves it into place first wins, a writer whose
        temporary was cleared meanwhile finds the file in place; temporaries (also a killed writer's) are
        removed once the file is in place. Checked once per catalog object: later items reuse the answer."""
        if spec.name in self._models:
            return self._models[spec.name]
        url = self._url("models", name=f"{spec.name}.onnx")
        local = str(spec.onnx_path)
        size = os.path.getsize(local)
        if not self._holds(url, size):
            try:
                put_file_atomic(local, url, self.options)
            except OSError:
                if not self._holds(url, size):
                    raise
        remove_temporaries(self._url("models"), f"{spec.name}.onnx", self.options)
        self._models[spec.name] = WrittenFile(url, size, multihash_sha256(local))
        return self._models[spec.name]

    def _holds(self, url: str, size: int) -> bool:
        fs, path = get_fs(url, self.options)
        try:
            return fs.size(path) == size
        except FileNotFoundError:
            return False

    def existing(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        """The published item JSON, or None when there is none."""
        try:
            return read_json(self.item_url(collection_id, item_id), self.options)
        except FileNotFoundError:
            return None

    def put_asset(self, local_path: str, collection_id: str, item_id: str, suffix: str = ".tif") -> str:
        """Upload under a temporary name, move into place, check the size that arrived; return the URL."""
        url = self.asset_url(collection_id, item_id, suffix)
        put_file_atomic(local_path, url, self.options)
        fs, path = get_fs(url, self.options)
        size = fs.size(path)
        if size != os.path.getsize(local_path):
            raise OSError(f"{url} has {size} bytes after upload, expected {os.path.getsize(local_path)}")
        return url

    def remove_stale_temporaries(self, collection_id: str, item_id: str) -> None:
        """Temporary objects of this item left by an interrupted run (`<item id>...tmp-<pid>-<token>`)."""
        remove_temporaries(self._url(collection_id, item_id), item_id, self.options)

    def write_item(self, item: pystac.Item | dict[str, Any], source_collection: str | None = None) -> dict[str, Any]:
        """Write the item (relative links; asset hrefs relative in a local folder, absolute at a URL, see the
        module docstring), then link it from its collection and the root. Returns the JSON as written."""
        d = item_json(item)
        collection_id = d.get("collection") or "cloudmask"
        item_url = self.item_url(collection_id, d["id"])
        if not self.published:
            item_dir = join(self.url, collection_id, d["id"])
            for ref in [*d["assets"].values(), *d["links"]]:
                ref["href"] = self._relative(ref["href"], item_dir)
        d["links"] = [l for l in d["links"] if l["rel"] not in ("root", "parent", "collection", "self")] + [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json", "title": "The catalog"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json", "title": "The collection"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json", "title": "The collection"},
            *self._self_link(item_url, "application/geo+json"),
        ]
        write_json_atomic(item_url, d, self.options)
        self.link_item(d)
        return d

    def iter_items(self) -> Iterator[dict[str, Any]]:
        """Every published item as raw JSON (as written: no pystac migration), asset hrefs made absolute."""
        try:
            root = read_json(join(self.url, "catalog.json"), self.options)
        except FileNotFoundError:
            return
        for child in (l for l in root.get("links", []) if l.get("rel") == "child"):
            coll_url = under_root(resolve_href(join(self.url, "catalog.json"), child["href"]), self.url)
            coll = read_json(coll_url, self.options)
            for link in (l for l in coll.get("links", []) if l.get("rel") == "item"):
                item_url = under_root(resolve_href(coll_url, link["href"]), self.url)
                yield with_absolute_assets(read_json(item_url, self.options), item_url.rsplit("/", 1)[0])

    @contextmanager
    def claim(
        self,
        collection_id: str,
        item_id: str,
        settings: dict[str, Any],
        stale_after: float,
        source_id: str,
        busy_for: float = 10.0,
    ) -> Iterator[None]:
        """Hold `<item>/<item>.lock` while the item is published, so two runs never write one mask id.

        Created exclusively. A lock made for other settings and younger than `stale_after` seconds (its
        run may be alive: runs stop items at the per-item limit) is PublishError: another run is at it.
        A lock made for the same settings is waited for while it is younger than `busy_for` seconds (a
        live run publishing this very mask: the caller then finds it published) and taken over after
        that (its run was killed: a rerun must not wait for the per-item limit)."""
        url = self._url(collection_id, item_id, name=f"{item_id}.lock")
        digest = _settings_digest(settings)
        mine = {
            "run": secrets.token_hex(8),
            "settings": digest,
            "created": time.time(),
            "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        delay = 0.05
        while not create_exclusive(url, json.dumps(mine).encode(), self.options):
            try:
                held = read_json(url, self.options)
            except FileNotFoundError:
                continue  # released since: try again
            except ValueError:
                held = {}
            age = time.time() - float(held.get("created", 0)) if isinstance(held, dict) else stale_after + 1
            same = isinstance(held, dict) and held.get("settings") == digest
            if not same and age <= stale_after:
                raise PublishError(
                    source_id,
                    f"another run is publishing {item_id!r} with other settings now "
                    f"(lock {url}, {age:.0f} s old): not overwritten; rerun later to publish it "
                    "as a new version",
                )
            if same and age < busy_for:
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
                continue
            write_json_atomic(url, mine, self.options)
            break
        try:
            yield
        finally:
            fs, path = get_fs(url, self.options)
            try:
                if read_json(url, self.options).get("run") == mine["run"]:
                    fs.rm_file(path)
            except (FileNotFoundError, OSError, ValueError):
                pass

    def drop_claim(self, collection_id: str, item_id: str, settings: dict[str, Any]) -> None:
        """Remove a claim made for these settings on an item that is published with them: the run that
        made it was killed after writing the item (a live one would find the item and publish nothing)."""
        url = self._url(collection_id, item_id, name=f"{item_id}.lock")
        try:
            held = read_json(url, self.options)
            if isinstance(held, dict) and held.get("settings") == _settings_digest(settings):
                fs, path = get_fs(url, self.options)
                fs.rm_file(path)
        except (FileNotFoundError, OSError, ValueError):
            pass

    def _relative(self, href: str, item_dir: str) -> str:
        """An href under the catalog root, relative to the item's folder (so the catalog can be moved and
        holds no machine-local path); any other href as it is."""
        if not href.startswith(self.url + "/"):
            return href
        rel = posixpath.relpath(href[len(self.url) :], item_dir[len(self.url) :])
        return rel if rel.startswith("../") else f"./{rel}"

    def rewrite_item(self, d: dict[str, Any]) -> None:
        """Write an already published item's JSON again (e.g. marked deprecated), links as they are."""
        write_json_atomic(self.item_url(d["collection"], d["id"]), d, self.options)

    def link_item(self, d: dict[str, Any]) -> None:
        """Make sure the collection (metadata, extent) covers and links the item and the root links the
        collection; safe with parallel writers (see the module docstring)."""
        collection_id = d.get("collection") or "cloudmask"
        coll_url = self._url(collection_id, name="collection.json")
        self._url(collection_id, d["id"])  # the item's id: one segment
        coll = update_json(
            coll_url,
            lambda current: _with_self(_with_item(current, collection_id, d), self._self_link(coll_url)),
            self.options,
        )
        update_json(
            join(self.url, "catalog.json"),
            lambda current: self._with_child(current, collection_id, coll.get("title")),
            self.options,
        )

    def _with_child(self, root: dict[str, Any] | None, collection_id: str, title: str | None) -> dict[str, Any]:
        """The root catalog (a new one when there is none) with a child link to the collection."""
        if root is None:
            root = {
                "type": "Catalog",
                "stac_version": STAC_VERSION,
                "id": "cloudmasks",
                "title": self.title,
                "description": "Cloud and cloud-shadow masks of Sentinel-2 items, made by stac-clouds2mask.",
                "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json", "title": self.title}],
            }
        root.setdefault("conformsTo", [])
        href = f"./{collection_id}/collection.json"
        if not any(link["rel"] == "child" and link["href"] == href for link in root["links"]):
            root["links"].append({"rel": "child", "href": href, "type": "application/json", "title": title})
        return _with_self(root, self._self_link(join(self.url, "catalog.json")))


def _with_self(doc: dict[str, Any], self_link: list[dict[str, Any]]) -> dict[str, Any]:
    """`doc` with the given self link (none: as it is), added once."""
    if self_link and not any(link.get("rel") == "self" for link in doc["links"]):
        doc["links"].append(*self_link)
    return doc


def _settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def _with_item(coll: dict[str, Any] | None, collection_id: str, d: dict[str, Any]) -> dict[str, Any]:
    """The collection (a new one when there is none) grown to cover the item and linking it once."""
    if coll is None:
        coll = new_collection(collection_id, d)
        coll["links"] = [
            {"rel": "root", "href": "../catalog.json", "type": "application/json", "title": "The catalog"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json", "title": "The catalog"},
            *coll["links"],
        ]
    else:
        coll = update_collection(coll, d)
    href = f"./{d['id']}/{d['id']}.json"
    if not any(link["rel"] == "item" and link["href"] == href for link in coll["links"]):
        coll["links"].append({"rel": "item", "href": href, "type": "application/geo+json", "title": d["id"]})
    return coll
