"""Stage 4: publish masks as COGs plus STAC items, into a static catalog (any fsspec URL) and/or a STAC API.

Order of writes: the COG goes to a temporary name and is moved into place, then the item is written,
then the collection and catalog links: a reader never sees an item whose asset is missing.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import pystac
import requests

from .cog import multihash_sha256, write_cog
from .errors import InvalidInputError, ItemError
from .model.registry import ModelSpec
from .scene import MaskResult
from .stac_item import STAC_VERSION, build_collection, build_mask_item, mask_collection_id, mask_item_id
from .storage import StorageOptions, absolute, get_fs, join, put_file_atomic, read_json, write_bytes_atomic


def _dumps(d: dict[str, Any]) -> bytes:
    return json.dumps(d, indent=2).encode("utf-8")


def _merge_extent(collection: dict[str, Any], item: pystac.Item) -> None:
    """Grow the collection's spatial and temporal extent to cover the item."""
    bbox = collection["extent"]["spatial"]["bbox"][0]
    if item.bbox:
        w, s, e, n = item.bbox[:4] if len(item.bbox) == 4 else (item.bbox[0], item.bbox[1], item.bbox[3], item.bbox[4])
        collection["extent"]["spatial"]["bbox"][0] = [min(bbox[0], w), min(bbox[1], s), max(bbox[2], e), max(bbox[3], n)]
    props = item.properties
    times = [t for t in (props.get("datetime"), props.get("start_datetime"), props.get("end_datetime")) if t]
    if times:
        lo, hi = collection["extent"]["temporal"]["interval"][0]
        collection["extent"]["temporal"]["interval"][0] = [min([lo, *times]) if lo else min(times), max([hi, *times]) if hi else max(times)]


def _new_collection(collection_id: str, source_collection: str | None, item: pystac.Item) -> dict[str, Any]:
    times = [t for t in (item.properties.get(k) for k in ("datetime", "start_datetime", "end_datetime")) if t]
    bbox = list(item.bbox[:4]) if item.bbox else [-180.0, -90.0, 180.0, 90.0]
    return build_collection(collection_id, source_collection, bbox, [min(times), max(times)] if times else [None, None])


@dataclass
class StaticCatalog:
    """A static STAC catalog at any fsspec URL: catalog.json -> <collection>/collection.json -> items."""

    url: str
    options: StorageOptions = field(default_factory=StorageOptions)
    title: str = "Cloud and cloud-shadow masks"

    def __post_init__(self) -> None:
        self.url = absolute(self.url).rstrip("/")

    def item_url(self, collection_id: str, item_id: str) -> str:
        return join(self.url, collection_id, item_id, f"{item_id}.json")

    def asset_url(self, collection_id: str, item_id: str, suffix: str = ".tif") -> str:
        return join(self.url, collection_id, item_id, f"{item_id}{suffix}")

    def existing(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        """The published item JSON, or None when there is none."""
        try:
            return read_json(self.item_url(collection_id, item_id), self.options)
        except FileNotFoundError:
            return None

    def put_asset(self, local_path: str, collection_id: str, item_id: str, suffix: str = ".tif") -> str:
        url = self.asset_url(collection_id, item_id, suffix)
        put_file_atomic(local_path, url, self.options)
        return url

    def write_item(self, item: pystac.Item, source_collection: str | None) -> None:
        """Write the item (relative links and asset hrefs), then link it from its collection and the root."""
        collection_id = item.collection_id or "cloudmask"
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        for asset in d["assets"].values():
            if asset["href"].startswith(join(self.url, collection_id, item.id) + "/"):
                asset["href"] = "./" + asset["href"].rsplit("/", 1)[1]
        d["links"] = [l for l in d["links"] if l["rel"] not in ("root", "parent", "collection", "self")] + [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
        ]
        write_bytes_atomic(self.item_url(collection_id, item.id), _dumps(d), self.options)
        self._link_item(item, collection_id, source_collection)

    def _link_item(self, item: pystac.Item, collection_id: str, source_collection: str | None) -> None:
        coll_url = join(self.url, collection_id, "collection.json")
        try:
            coll = read_json(coll_url, self.options)
        except FileNotFoundError:
            coll = _new_collection(collection_id, source_collection, item)
            coll["links"] = [
                {"rel": "root", "href": "../catalog.json", "type": "application/json"},
                {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
                *coll["links"],
            ]
        _merge_extent(coll, item)
        href = f"./{item.id}/{item.id}.json"
        if not any(l["rel"] == "item" and l["href"] == href for l in coll["links"]):
            coll["links"].append({"rel": "item", "href": href, "type": "application/geo+json"})
        write_bytes_atomic(coll_url, _dumps(coll), self.options)
        self._link_collection(collection_id, coll.get("title"))

    def _link_collection(self, collection_id: str, title: str | None) -> None:
        root_url = join(self.url, "catalog.json")
        try:
            root = read_json(root_url, self.options)
        except FileNotFoundError:
            root = {
                "type": "Catalog", "stac_version": STAC_VERSION, "id": "cloudmasks", "title": self.title,
                "description": "Cloud and cloud-shadow masks of Sentinel-2 items, made by stac-clouds2mask.",
                "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}],
            }
        href = f"./{collection_id}/collection.json"
        if any(l["rel"] == "child" and l["href"] == href for l in root["links"]):
            return
        root["links"].append({"rel": "child", "href": href, "type": "application/json", "title": title})
        write_bytes_atomic(root_url, _dumps(root), self.options)


@dataclass
class StacApi:
    """A STAC API with the Transactions extension: POST, or PUT when the resource exists."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    _collections_done: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Content-Type": "application/json", **self.headers})

    def _upsert(self, post_url: str, put_url: str, body: dict[str, Any], what: str) -> None:
        r = self.session.post(post_url, data=json.dumps(body), timeout=self.timeout)
        if r.status_code == 409:
            r = self.session.put(put_url, data=json.dumps(body), timeout=self.timeout)
        if r.status_code in (404, 405) and r.request.method == "POST":
            raise InvalidInputError(f"{self.url} does not accept {what} (HTTP {r.status_code}): no Transactions extension?")
        if r.status_code >= 400:
            raise RuntimeError(f"publishing {what} to {self.url} failed: HTTP {r.status_code} {r.text[:300]}")

    def existing(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        r = self.session.get(f"{self.url}/collections/{collection_id}/items/{item_id}", timeout=self.timeout)
        return r.json() if r.status_code == 200 else None

    def ensure_collection(self, collection_id: str, source_collection: str | None, item: pystac.Item) -> None:
        if collection_id in self._collections_done:
            return
        r = self.session.get(f"{self.url}/collections/{collection_id}", timeout=self.timeout)
        if r.status_code == 200:
            coll = {k: v for k, v in r.json().items() if k != "links"}
            coll["links"] = [l for l in r.json().get("links", []) if l.get("rel") == "license"]
        else:
            coll = _new_collection(collection_id, source_collection, item)
        _merge_extent(coll, item)
        self._upsert(f"{self.url}/collections", f"{self.url}/collections/{collection_id}", coll, f"collection {collection_id}")
        self._collections_done.add(collection_id)

    def write_item(self, item: pystac.Item, source_collection: str | None) -> None:
        collection_id = item.collection_id or "cloudmask"
        self.ensure_collection(collection_id, source_collection, item)
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        self._upsert(f"{self.url}/collections/{collection_id}/items",
                     f"{self.url}/collections/{collection_id}/items/{item.id}", d, f"item {item.id}")


@dataclass
class Publisher:
    """Writes each mask to the static catalog (the home of the COGs) and optionally to a STAC API."""

    catalog: StaticCatalog
    api: StacApi | None = None

    def already_published(self, source: pystac.Item, settings: dict[str, Any]) -> str | None:
        """'same' when the source's mask was published with these settings, 'different' when with others,
        None when not at all."""
        collection_id = mask_collection_id(source.collection_id)
        item_id = mask_item_id(source.id)
        found = self.catalog.existing(collection_id, item_id)
        if found is None and self.api is not None:
            found = self.api.existing(collection_id, item_id)
        if found is None:
            return None
        return "same" if found.get("properties", {}).get("clouds2mask:settings") == settings else "different"

    def publish(self, result: MaskResult, spec: ModelSpec) -> pystac.Item:
        """Write the COG, then the item, and return the published item (absolute hrefs)."""
        src = result.scene.item
        collection_id = mask_collection_id(src.collection_id)
        item_id = mask_item_id(src.id)
        with tempfile.TemporaryDirectory(prefix="clouds2mask-") as tmp:
            local = os.path.join(tmp, f"{item_id}.tif")
            write_cog(result.classes, result.scene.crs, result.scene.transform, local)
            size, checksum = os.path.getsize(local), multihash_sha256(local)
            try:
                href = self.catalog.put_asset(local, collection_id, item_id)
            except OSError as exc:
                raise ItemError(src.id, f"cannot write {self.catalog.asset_url(collection_id, item_id)}: {exc}", stage="publish") from exc
        item = build_mask_item(result, spec, href, size, checksum, collection_id)
        self.catalog.write_item(item, src.collection_id)
        if self.api is not None:
            self.api.write_item(item, src.collection_id)
        return item
