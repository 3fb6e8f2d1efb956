"""Stage 4: publish masks as COGs plus STAC items, into a static catalog (any fsspec URL) and/or a STAC API.

Order of writes, so that a reader never sees an item whose assets are missing or partial and an
interrupted run leaves no item pointing at nothing:

1. the COG and the thumbnail are written locally, hashed, uploaded under a temporary name and moved
   into place (their size is checked after the move);
2. the item JSON is written (temporary name, then moved);
3. the collection (metadata, extent, summaries, item link) and the root catalog's child link;
4. the STAC API copy (collection, then item), when there is one;
5. older versions are marked deprecated and linked to the new one.

A rerun repairs what an interruption left undone: an item that is already published with the same
provenance is skipped, and on that path its collection link and its STAC API copy are added when
missing. Stale temporary objects of the item (from a killed run) are removed when it is published.

Idempotency is decided here (`Publisher.plan`): same source item + same settings -> skip; other
settings -> a new version (`<source-id>_cloudmask_v<N>`, version extension links, older versions
deprecated), never a silent mix; `overwrite` -> replace in place. See stac_item's module docstring.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import posixpath
import random
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pystac
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .cog import multihash_sha256, write_cog
from .errors import ConfigurationError, InvalidInputError, LimitExceededError, PublishError, UntrustedReferenceError
from .limits import BoundedSession
from .model.registry import ModelSpec
from .scene import MaskResult
from .stac_item import (
    STAC_VERSION,
    build_mask_item,
    mask_collection_id,
    mask_item_id,
    new_collection,
    same_provenance,
    update_collection,
)
from .storage import (
    StorageOptions,
    absolute,
    create_exclusive,
    get_fs,
    join,
    put_file_atomic,
    read_json,
    write_json_atomic,
)
from .thumbnail import write_thumbnail
from .trust import origin, resolve, under_root, unsafe_segment

Action = Literal["new", "new_version", "overwrite", "skip"]
VERSION_RELS = ("predecessor-version", "successor-version", "latest-version")
TRANSACTION_CONFORMANCE = "transaction"
MAX_REDIRECTS = 5
LINKS_LOCK = ".clouds2mask-links.lock"  # held while collection and root links are updated


def _item_dict(item: pystac.Item | dict[str, Any]) -> dict[str, Any]:
    if isinstance(item, pystac.Item):
        return item.to_dict(include_self_link=False, transform_hrefs=False)
    return json.loads(json.dumps(item))


def _set_version_links(d: dict[str, Any], links: dict[str, str | None]) -> None:
    """Replace the version links of an item dict (rel -> href; None removes that rel)."""
    d["links"] = [l for l in d.get("links", []) if l.get("rel") not in links]
    for rel, href in links.items():
        if href:
            d["links"].append({"rel": rel, "href": href, "type": "application/geo+json"})


@dataclass
class PublishPlan:
    """What publishing one source item will do, decided from what is already published.

    versions: the published versions of the source's mask (oldest first, as dicts).
    """

    action: Action
    collection_id: str
    item_id: str
    version: int
    reason: str = ""
    versions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def skip(self) -> bool:
        return self.action == "skip"

    @property
    def predecessor(self) -> dict[str, Any] | None:
        """The version the new one follows (for new_version)."""
        return self.versions[-1] if self.action == "new_version" and self.versions else None


@dataclass
class StaticCatalog:
    """A static STAC catalog at any fsspec URL: catalog.json -> <collection>/collection.json -> items."""

    url: str
    options: StorageOptions = field(default_factory=StorageOptions)
    title: str = "Cloud and cloud-shadow masks"

    def __post_init__(self) -> None:
        self.url = absolute(self.url).rstrip("/")

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
        """Temporary objects of this item left by an interrupted run (`<item id>...tmp-<pid>-<token>`):
        listed and deleted by literal name, never by a glob (ids may hold characters globs read)."""
        fs, path = get_fs(self._url(collection_id, item_id), self.options)
        try:
            names = fs.ls(path, detail=False)
        except (FileNotFoundError, OSError):
            return
        for p in names:
            name = posixpath.basename(p.rstrip("/"))
            if name.startswith(item_id) and ".tmp-" in name[len(item_id) :]:
                try:
                    fs.rm_file(p)
                except (FileNotFoundError, OSError):
                    pass

    def write_item(self, item: pystac.Item | dict[str, Any], source_collection: str | None = None) -> dict[str, Any]:
        """Write the item (relative links and asset hrefs), then link it from its collection and the root.
        Returns the JSON as written."""
        d = _item_dict(item)
        collection_id = d.get("collection") or "cloudmask"
        item_dir = join(self.url, collection_id, d["id"]) + "/"
        for asset in d["assets"].values():
            if asset["href"].startswith(item_dir):
                asset["href"] = "./" + asset["href"][len(item_dir) :]
        d["links"] = [l for l in d["links"] if l["rel"] not in ("root", "parent", "collection", "self")] + [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
        ]
        write_json_atomic(self.item_url(collection_id, d["id"]), d, self.options)
        self.link_item(d)
        return d

    def iter_items(self):
        """Every published item as raw JSON (as written: no pystac migration), asset hrefs made absolute."""
        try:
            root = read_json(join(self.url, "catalog.json"), self.options)
        except FileNotFoundError:
            return
        for child in (l for l in root.get("links", []) if l.get("rel") == "child"):
            coll_url = under_root(resolve(join(self.url, "catalog.json"), child["href"]), self.url)
            coll = read_json(coll_url, self.options)
            for link in (l for l in coll.get("links", []) if l.get("rel") == "item"):
                item_url = under_root(resolve(coll_url, link["href"]), self.url)
                d = read_json(item_url, self.options)
                item_dir = item_url.rsplit("/", 1)[0]
                for asset in d.get("assets", {}).values():
                    if asset["href"].startswith("./"):
                        asset["href"] = join(item_dir, asset["href"][2:])
                yield d

    @contextmanager
    def claim(
        self, collection_id: str, item_id: str, settings: dict[str, Any], stale_after: float, source_id: str
    ) -> Iterator[None]:
        """Hold `<item>/<item>.lock` while the item is published, so two runs never write one mask id.

        Created exclusively; an existing lock is taken over only when it was made for the same settings
        (the same mask would be written) or is older than `stale_after` seconds (its run is gone: runs stop
        items at the per-item limit). Otherwise PublishError: another run is at it."""
        url = self._url(collection_id, item_id, name=f"{item_id}.lock")
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        mine = {
            "run": secrets.token_hex(8),
            "settings": digest,
            "created": time.time(),
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        body = json.dumps(mine).encode()
        if not create_exclusive(url, body, self.options):
            try:
                held = read_json(url, self.options)
            except (FileNotFoundError, ValueError):
                held = {}
            age = time.time() - float(held.get("created", 0)) if isinstance(held, dict) else stale_after + 1
            if held.get("settings") != digest and age <= stale_after:
                raise PublishError(
                    source_id,
                    f"another run is publishing {item_id!r} with other settings now "
                    f"(lock {url}, {age:.0f} s old): not overwritten; rerun later to publish it "
                    "as a new version",
                )
            write_json_atomic(url, mine, self.options)
        try:
            yield
        finally:
            fs, path = get_fs(url, self.options)
            try:
                if read_json(url, self.options).get("run") == mine["run"]:
                    fs.rm_file(path)
            except (FileNotFoundError, OSError, ValueError):
                pass

    def rewrite_item(self, d: dict[str, Any]) -> None:
        """Write an already published item's JSON again (e.g. marked deprecated), links as they are."""
        write_json_atomic(self.item_url(d["collection"], d["id"]), d, self.options)

    @contextmanager
    def _links_held(self, wait: float = 120.0, stale: float = 60.0) -> Iterator[None]:
        """Hold ``.clouds2mask-links.lock`` at the root while collection and root links are read, changed
        and written: parallel writers (array-job children) then never drop each other's links. Created
        exclusively (O_EXCL locally, If-None-Match on S3); a lock older than ``stale`` s is from a dead
        writer (a link update takes well under a second) and is removed."""
        url = join(self.url, LINKS_LOCK)
        deadline, delay = time.monotonic() + wait, 0.05
        while not create_exclusive(url, json.dumps({"since": time.time()}).encode(), self.options):
            try:
                since = float(read_json(url, self.options).get("since", 0))
            except (FileNotFoundError, InvalidInputError, ValueError, TypeError, AttributeError):
                since = time.time()
            if time.time() - since > stale:
                self._remove(url)
                continue
            if time.monotonic() > deadline:
                raise PublishError(f"the catalog's link lock {url} is held by another writer for over {wait:.0f} s")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)
        try:
            yield
        finally:
            self._remove(url)

    def _remove(self, url: str) -> None:
        fs, path = get_fs(url, self.options)
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass

    def link_item(self, d: dict[str, Any]) -> None:
        """Make sure the collection (metadata up to date) links the item and the root links the collection."""
        with self._links_held():
            self._link_item(d)

    def _link_item(self, d: dict[str, Any]) -> None:
        collection_id = d.get("collection") or "cloudmask"
        coll_url = self._url(collection_id, name="collection.json")
        self._url(collection_id, d["id"])  # the item's id: one segment
        href = f"./{d['id']}/{d['id']}.json"
        try:
            coll = read_json(coll_url, self.options)
        except FileNotFoundError:
            coll = new_collection(collection_id, d)
            coll["links"] = [
                {"rel": "root", "href": "../catalog.json", "type": "application/json"},
                {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
                *coll["links"],
            ]
        else:
            updated = update_collection(coll, d)
            linked = any(l["rel"] == "item" and l["href"] == href for l in coll["links"])
            if linked and updated == coll:
                self._link_collection(collection_id, coll.get("title"))
                return
            coll = updated
        if not any(l["rel"] == "item" and l["href"] == href for l in coll["links"]):
            coll["links"].append({"rel": "item", "href": href, "type": "application/geo+json"})
        write_json_atomic(coll_url, coll, self.options)
        self._link_collection(collection_id, coll.get("title"))

    def _link_collection(self, collection_id: str, title: str | None) -> None:
        root_url = join(self.url, "catalog.json")
        try:
            root = read_json(root_url, self.options)
        except FileNotFoundError:
            root = {
                "type": "Catalog",
                "stac_version": STAC_VERSION,
                "id": "cloudmasks",
                "title": self.title,
                "description": "Cloud and cloud-shadow masks of Sentinel-2 items, made by stac-clouds2mask.",
                "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}],
            }
        href = f"./{collection_id}/collection.json"
        if any(l["rel"] == "child" and l["href"] == href for l in root["links"]):
            return
        root["links"].append({"rel": "child", "href": href, "type": "application/json", "title": title})
        write_json_atomic(root_url, root, self.options)


@dataclass
class StacApi:
    """A STAC API with the Transactions extension: POST, or PUT when the resource exists.

    headers: extra HTTP headers for every request; token: sent as `Authorization: Bearer <token>`
    (default: $STAC_CLOUDS2MASK_API_TOKEN). Requests are retried `retries` times with exponential
    backoff (`backoff` s, doubling; Retry-After is honoured) on 429 and 5xx and on connection errors.
    Before the first write the landing page must answer and, when it lists conformance classes, list
    the Transactions extension: otherwise InvalidInputError says so.
    """

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    token: str | None = None
    retries: int = 5
    backoff: float = 0.5
    deadline: float = 120.0
    max_body_bytes: int = 32 * 2**20
    _collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ready: bool = False
    _bulk: bool | None = None

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        token = self.token if self.token is not None else os.environ.get("STAC_CLOUDS2MASK_API_TOKEN")
        self.session = BoundedSession(self.deadline, self.max_body_bytes)
        self.session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers.update(self.headers)
        retry = Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            backoff_factor=self.backoff,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    # --- plumbing -------------------------------------------------------------------------

    def _request(self, method: str, url: str, body: Any = None) -> requests.Response:
        """One request within `deadline` seconds in all (not per read), its body at most `max_body_bytes`
        (limits.BoundedSession).

        Redirects are followed only within the API's own origin: headers, token and body never go elsewhere."""
        data = None if body is None else json.dumps(body)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                r = self.session.request(method, url, data=data, timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                raise RuntimeError(f"STAC API {self.url} unreachable ({method} {url}): {exc}") from exc
            if not r.is_redirect:
                break
            target = requests.compat.urljoin(url, r.headers["Location"])
            if origin(target) != origin(self.url):
                raise ConfigurationError(
                    f"STAC API {self.url} redirected {method} {url} to another origin "
                    f"({'://'.join(origin(target))}): not followed, so credentials and bodies "
                    "stay with the configured API"
                )
            url = target
        else:
            raise RuntimeError(f"STAC API {self.url}: more than {MAX_REDIRECTS} redirects for {method} {url}")
        if r.status_code in (401, 403):
            raise ConfigurationError(
                f"STAC API {self.url} refused {method} {url} (HTTP {r.status_code}): check --api-token / --api-header"
            )
        return r

    def check_transactions(self) -> None:
        """Fail early, and clearly, when the URL is not a STAC API with the Transactions extension."""
        if self._ready:
            return
        r = self._request("GET", self.url)
        if r.status_code == 429 or r.status_code >= 500:
            raise RuntimeError(f"STAC API {self.url} unavailable: HTTP {r.status_code} after {self.retries} retries")
        if r.status_code != 200:
            raise ConfigurationError(
                f"{self.url} is not a STAC API landing page (HTTP {r.status_code}); publishing needs a STAC API "
                "with the Transactions extension"
            )
        try:
            conforms = r.json().get("conformsTo")
        except ValueError:
            conforms = None
        if conforms is None:
            cr = self._request("GET", f"{self.url}/conformance")
            conforms = cr.json().get("conformsTo") if cr.status_code == 200 else None
        if conforms is not None and not any(TRANSACTION_CONFORMANCE in c.lower() for c in conforms):
            raise ConfigurationError(
                f"{self.url} does not support the STAC API Transactions extension (not among its conformance "
                "classes), so masks cannot be published to it"
            )
        self._ready = True

    def _upsert(self, post_url: str, put_url: str, body: dict[str, Any], what: str) -> None:
        r = self._request("POST", post_url, body)
        if r.status_code == 409:
            r = self._request("PUT", put_url, body)
        if r.status_code in (404, 405) and r.request.method == "POST":
            raise ConfigurationError(
                f"{self.url} does not accept {what} (HTTP {r.status_code}): no Transactions extension?"
            )
        if r.status_code >= 400:
            raise RuntimeError(f"publishing {what} to {self.url} failed: HTTP {r.status_code} {r.text[:300]}")

    # --- reading --------------------------------------------------------------------------

    def item_href(self, collection_id: str, item_id: str) -> str:
        return f"{self.url}/collections/{collection_id}/items/{item_id}"

    def existing(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        self.check_transactions()
        r = self._request("GET", self.item_href(collection_id, item_id))
        return r.json() if r.status_code == 200 else None

    def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        r = self._request("GET", f"{self.url}/collections/{collection_id}")
        return r.json() if r.status_code == 200 else None

    # --- writing --------------------------------------------------------------------------

    def ensure_collection(
        self, collection_id: str, source_collection: str | None, item: pystac.Item | dict[str, Any]
    ) -> None:
        """Create the collection (POST) or update it (PUT) so its metadata, extent and summaries cover the
        item; one request per item only when something changed."""
        self.check_transactions()
        d = _item_dict(item)
        coll = self._collections.get(collection_id)
        if coll is None:
            found = self.get_collection(collection_id)
            if found is not None:
                found = {
                    **found,
                    "links": [l for l in found.get("links", []) if l.get("rel") in ("license", "related")],
                }
                coll = update_collection(found, d)
                if coll == found:
                    self._collections[collection_id] = coll
                    return
            else:
                coll = new_collection(collection_id, d)
        else:
            updated = update_collection(coll, d)
            if updated == coll:
                return
            coll = updated
        self._upsert(
            f"{self.url}/collections", f"{self.url}/collections/{collection_id}", coll, f"collection {collection_id}"
        )
        self._collections[collection_id] = coll

    def _api_dict(self, item: pystac.Item | dict[str, Any]) -> dict[str, Any]:
        d = _item_dict(item)
        d["links"] = [l for l in d.get("links", []) if l.get("rel") not in ("root", "parent", "collection", "self")]
        return d

    def write_item(self, item: pystac.Item | dict[str, Any], source_collection: str | None = None) -> None:
        d = self._api_dict(item)
        collection_id = d.get("collection") or "cloudmask"
        self.ensure_collection(collection_id, source_collection, d)
        self._upsert(
            f"{self.url}/collections/{collection_id}/items",
            self.item_href(collection_id, d["id"]),
            d,
            f"item {d['id']}",
        )

    def rewrite_item(self, d: dict[str, Any]) -> None:
        d = self._api_dict(d)
        r = self._request("PUT", self.item_href(d["collection"], d["id"]), d)
        if r.status_code >= 400:
            raise RuntimeError(f"updating item {d['id']} at {self.url} failed: HTTP {r.status_code} {r.text[:300]}")

    def write_items(self, items: list[pystac.Item | dict[str, Any]]) -> int:
        """Insert or update many items of one or more collections at once: the bulk transactions endpoint
        (`POST /collections/{id}/bulk_items`, method upsert) where the server has it, else one request
        per item. Returns the number of requests made for the items."""
        by_collection: dict[str, list[dict[str, Any]]] = {}
        for it in items:
            d = self._api_dict(it)
            by_collection.setdefault(d.get("collection") or "cloudmask", []).append(d)
        requests_made = 0
        for collection_id, ds in by_collection.items():
            for d in ds:
                self.ensure_collection(collection_id, None, d)
            if self._bulk is not False:
                r = self._request(
                    "POST",
                    f"{self.url}/collections/{collection_id}/bulk_items",
                    {"items": {d["id"]: d for d in ds}, "method": "upsert"},
                )
                requests_made += 1
                if r.status_code < 400:
                    self._bulk = True
                    continue
                if r.status_code not in (404, 405, 422):
                    raise RuntimeError(f"bulk publishing to {self.url} failed: HTTP {r.status_code} {r.text[:300]}")
                self._bulk = False
            for d in ds:
                self._upsert(
                    f"{self.url}/collections/{collection_id}/items",
                    self.item_href(collection_id, d["id"]),
                    d,
                    f"item {d['id']}",
                )
                requests_made += 1
        return requests_made


@dataclass
class Publisher:
    """Writes each mask to the static catalog (the home of the COGs) and optionally to a STAC API.

    collection_id: the target collection for every mask; default `<source-collection>-cloudmask`.
    thumbnails: also write a palette PNG thumbnail per item.
    """

    catalog: StaticCatalog
    api: StacApi | None = None
    collection_id: str | None = None
    thumbnails: bool = True
    max_versions: int = 100
    claim_stale_after: float = 3900.0  # the per-item limit and a margin: a lock this old has no live run

    def target_collection(self, source: pystac.Item) -> str:
        return self.collection_id or mask_collection_id(source.collection_id)

    def _versions(self, collection_id: str, source_id: str) -> list[tuple[dict[str, Any], str]]:
        """The published versions (item JSON, where: 'static' or 'api'), oldest first; static preferred."""
        out = []
        for version in range(1, self.max_versions + 1):
            iid = mask_item_id(source_id, version)
            found, where = self.catalog.existing(collection_id, iid), "static"
            if found is None and self.api is not None:
                found, where = self.api.existing(collection_id, iid), "api"
            if found is None:
                return out
            if (
                not isinstance(found, dict)
                or found.get("id") != iid
                or found.get("collection") != collection_id
                or not isinstance(found.get("properties"), dict)
            ):
                raise UntrustedReferenceError(
                    f"the published mask {iid!r} of collection {collection_id!r} ({where}) "
                    "does not hold that id and collection: refused (a foreign or planted "
                    "item)"
                )
            out.append((found, where))
        raise LimitExceededError(
            f"more than {self.max_versions} published versions of the mask of {source_id!r}: "
            "refused (STAC_CLOUDS2MASK_MAX_VERSIONS)"
        )

    def plan(self, source: pystac.Item, settings: dict[str, Any], overwrite: bool = False) -> PublishPlan:
        """Decide what publishing `source`'s mask will do. On the skip path, repair what an interrupted
        run may have left undone (the collection link, the STAC API copy)."""
        collection_id = self.target_collection(source)
        found = self._versions(collection_id, source.id)
        versions = [d for d, _ in found]
        if not found:
            return PublishPlan("new", collection_id, mask_item_id(source.id), 1)
        same = [(d, where) for d, where in found if same_provenance(d, source, settings)]
        if same and not overwrite:
            d, where = same[-1]
            note = self._repair(d, where)
            if d is versions[-1] and any(not v["properties"].get("deprecated") for v in versions[:-1]):
                self._deprecate(versions[:-1], d)  # a run stopped before it marked the older versions
            return PublishPlan(
                "skip",
                collection_id,
                d["id"],
                int(d["properties"].get("version", 1)),
                f"already published as {d['id']} with the same source item, model and settings{note}",
                versions,
            )
        if overwrite:
            d = (same or found)[-1][0]
            return PublishPlan(
                "overwrite",
                collection_id,
                d["id"],
                int(d["properties"].get("version", 1)),
                f"replacing {d['id']}",
                versions,
            )
        n = len(found) + 1
        return PublishPlan(
            "new_version",
            collection_id,
            mask_item_id(source.id, n),
            n,
            f"settings differ from {found[-1][0]['id']}: publishing version {n}",
            versions,
        )

    def _repair(self, d: dict[str, Any], where: str) -> str:
        notes = ""
        if where == "static":
            self.catalog.link_item(d)
            if self.api is not None and self.api.existing(d["collection"], d["id"]) is None:
                absolute_d = json.loads(json.dumps(d))
                base = join(self.catalog.url, d["collection"], d["id"])
                for asset in absolute_d["assets"].values():
                    if asset["href"].startswith("./"):
                        asset["href"] = join(base, asset["href"][2:])
                self._api_version_links(absolute_d)
                self.api.write_item(absolute_d)
                notes = "; added to the STAC API"
        return notes

    def _api_version_links(self, d: dict[str, Any]) -> None:
        assert self.api is not None
        for link in d.get("links", []):
            if link.get("rel") in VERSION_RELS and link["href"].startswith("../"):
                iid = link["href"].split("/")[1]
                link["href"] = self.api.item_href(d["collection"], iid)

    def already_published(self, source: pystac.Item, settings: dict[str, Any]) -> str | None:
        """'same' when the source's mask was published with these settings, 'different' when only with
        others, None when not at all. (Kept for callers that only ask; `plan` decides.)"""
        found = self._versions(self.target_collection(source), source.id)
        if not found:
            return None
        return "same" if any(same_provenance(d, source, settings) for d, _ in found) else "different"

    def publish(
        self, result: MaskResult, spec: ModelSpec, plan: PublishPlan | None = None, *, overwrite: bool = False
    ) -> pystac.Item:
        """Write the assets, then the item, then the links, and return the published item (absolute hrefs).
        Without a plan, one is made (a skip plan then means: publish nothing, return the published item)."""
        src = result.scene.item
        plan = plan or self.plan(src, result.settings, overwrite)
        if plan.skip:
            d = self.catalog.existing(plan.collection_id, plan.item_id) or (
                self.api.existing(plan.collection_id, plan.item_id) if self.api else None
            )
            return pystac.Item.from_dict(d) if d else pystac.Item.from_dict(plan.versions[-1])
        with self.catalog.claim(plan.collection_id, plan.item_id, result.settings, self.claim_stale_after, src.id):
            current = self.catalog.existing(plan.collection_id, plan.item_id) if plan.action != "overwrite" else None
            if current is not None:  # another run published this id after we planned: never overwrite it
                raise PublishError(
                    src.id,
                    f"{plan.item_id!r} was published by another run after this one planned it: "
                    "not overwritten; rerun to skip it or publish a new version",
                )
            return self._write(result, spec, plan)

    def _write(self, result: MaskResult, spec: ModelSpec, plan: PublishPlan) -> pystac.Item:
        """Assets, then the item, then the links (see the module docstring), under the plan's claim."""
        src = result.scene.item
        collection_id, item_id = plan.collection_id, plan.item_id
        self.catalog.remove_stale_temporaries(collection_id, item_id)
        with tempfile.TemporaryDirectory(prefix="clouds2mask-") as tmp:
            local = os.path.join(tmp, f"{item_id}.tif")
            write_cog(result.classes, result.scene.crs, result.scene.transform, local)
            size, checksum = os.path.getsize(local), multihash_sha256(local)
            thumb = probs = None
            try:
                href = self.catalog.put_asset(local, collection_id, item_id)
                if self.thumbnails:
                    png = os.path.join(tmp, f"{item_id}.png")
                    write_thumbnail(result.classes, png)
                    t_href = self.catalog.put_asset(png, collection_id, item_id, ".png")
                    thumb = (t_href, os.path.getsize(png), multihash_sha256(png))
                if result.probabilities is not None:
                    prob = os.path.join(tmp, f"{item_id}_probabilities.tif")
                    write_cog(
                        result.probabilities,
                        result.scene.crs,
                        result.scene.transform,
                        prob,
                        nodata=None,
                        resampling="average",
                        descriptions=("clear", "cloud", "cloud shadow"),
                    )
                    p_href = self.catalog.put_asset(prob, collection_id, item_id, "_probabilities.tif")
                    probs = (p_href, os.path.getsize(prob), multihash_sha256(prob))
            except OSError as exc:
                raise PublishError(
                    src.id, f"cannot write {self.catalog.asset_url(collection_id, item_id)}: {exc}", stage="publish"
                ) from exc
        item = build_mask_item(
            result,
            spec,
            href,
            size,
            checksum,
            collection_id,
            thumbnail=thumb,
            probabilities=probs,
            version=plan.version,
        )
        d = _item_dict(item)
        previous = [v for v in plan.versions if v["id"] != item_id]
        if plan.action == "overwrite":
            old = next((v for v in plan.versions if v["id"] == item_id), None)
            d["links"] += [l for l in (old or {}).get("links", []) if l.get("rel") in VERSION_RELS]
            d["properties"]["deprecated"] = bool((old or {}).get("properties", {}).get("deprecated", False))
            previous = []
        elif plan.predecessor is not None:
            _set_version_links(
                d, {"predecessor-version": self.catalog.version_href(collection_id, plan.predecessor["id"])}
            )
        self.catalog.write_item(d)
        if self.api is not None:
            api_d = json.loads(json.dumps(d))
            self._api_version_links(api_d)
            self.api.write_item(api_d, src.collection_id)
        if plan.action == "new_version":
            self._deprecate(previous, d)
        return item

    def sync_api(self, batch_size: int = 200) -> int:
        """Push every item of the static catalog to the STAC API in bulk (upsert; see StacApi.write_items),
        e.g. once after many workers wrote their masks to the static catalog only. Returns the item count."""
        if self.api is None:
            raise InvalidInputError("no STAC API to publish to")
        batch: list[dict[str, Any]] = []
        count = 0
        for d in self.catalog.iter_items():
            self._api_version_links(d)
            batch.append(d)
            if len(batch) >= batch_size:
                count += len(batch)
                self.api.write_items(batch)
                batch = []
        if batch:
            count += len(batch)
            self.api.write_items(batch)
        return count

    def _deprecate(self, previous: list[dict[str, Any]], latest: dict[str, Any]) -> None:
        """Mark older versions deprecated and point them at the latest (and the direct predecessor at its successor)."""
        cid = latest["collection"]
        for i, old in enumerate(previous):
            links: dict[str, str | None] = {"latest-version": self.catalog.version_href(cid, latest["id"])}
            if i == len(previous) - 1:
                links["successor-version"] = self.catalog.version_href(cid, latest["id"])
            old = json.loads(json.dumps(old))
            old["properties"]["deprecated"] = True
            _set_version_links(old, links)
            if self.catalog.existing(cid, old["id"]) is not None:
                self.catalog.rewrite_item(old)
            if self.api is not None and self.api.existing(cid, old["id"]) is not None:
                api_old = json.loads(json.dumps(old))
                base = join(self.catalog.url, cid, old["id"])
                for asset in api_old["assets"].values():
                    if asset["href"].startswith("./"):
                        asset["href"] = join(base, asset["href"][2:])
                self._api_version_links(api_old)
                self.api.rewrite_item(api_old)
