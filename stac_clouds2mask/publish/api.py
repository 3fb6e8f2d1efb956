"""A STAC API with the Transactions extension as a publish target: collections and items are created
(POST) or replaced (PUT), one by one or in bulk.

Errors are the project's: ConfigurationError when the target cannot take masks at all (no
Transactions, credentials refused, a redirect to another origin) and PublishError, naming the item,
when a request for it fails (unreachable, HTTP errors after the retries).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import pystac
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import ConfigurationError, PublishError
from ..limits import BoundedSession
from .collections import new_collection, update_collection
from ..trust import origin, url_segment
from .documents import item_json

TRANSACTION_CONFORMANCE = "transaction"
MAX_REDIRECTS = 5


@dataclass
class StacApi:
    """A STAC API with the Transactions extension: POST, or PUT when the resource exists.

    headers: extra HTTP headers for every request; token: sent as `Authorization: Bearer <token>`
    (default: $STAC_CLOUDS2MASK_API_TOKEN). Requests are retried `retries` times with exponential
    backoff (`backoff` s, doubling; Retry-After is honoured) on 429 and 5xx and on connection errors.
    Before the first write the landing page must answer and, when it lists conformance classes, list
    the Transactions extension: otherwise ConfigurationError says so.
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

    def _request(self, method: str, url: str, body: Any = None, item_id: str = "") -> requests.Response:
        """One request within `deadline` seconds in all (not per read), its body at most `max_body_bytes`
        (limits.BoundedSession), made for the item `item_id` (named in a PublishError).

        Redirects are followed only within the API's own origin: headers, token and body never go elsewhere."""
        data = None if body is None else json.dumps(body)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                r = self.session.request(method, url, data=data, timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                raise PublishError(
                    item_id, f"STAC API {self.url} unreachable ({method} {url}): {exc}", href=url
                ) from exc
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
            raise ConfigurationError(f"STAC API {self.url}: more than {MAX_REDIRECTS} redirects for {method} {url}")
        if r.status_code in (401, 403):
            raise ConfigurationError(
                f"STAC API {self.url} refused {method} {url} (HTTP {r.status_code}): check --api-token / --api-header"
            )
        return r

    def check_transactions(self, item_id: str) -> None:
        """Fail early, and clearly, when the URL is not a STAC API with the Transactions extension
        (checked once, on behalf of the first item published)."""
        if self._ready:
            return
        r = self._request("GET", self.url, item_id=item_id)
        if r.status_code == 429 or r.status_code >= 500:
            raise PublishError(
                item_id, f"STAC API {self.url} unavailable: HTTP {r.status_code} after {self.retries} retries"
            )
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
            cr = self._request("GET", f"{self.url}/conformance", item_id=item_id)
            conforms = cr.json().get("conformsTo") if cr.status_code == 200 else None
        if conforms is not None and not any(TRANSACTION_CONFORMANCE in c.lower() for c in conforms):
            raise ConfigurationError(
                f"{self.url} does not support the STAC API Transactions extension (not among its conformance "
                "classes), so masks cannot be published to it"
            )
        self._ready = True

    def _upsert(self, post_url: str, put_url: str, body: dict[str, Any], what: str, item_id: str) -> None:
        """POST, then PUT when the resource exists (409)."""
        r = self._request("POST", post_url, body, item_id)
        if r.status_code == 409:
            r = self._request("PUT", put_url, body, item_id)
        if r.status_code in (404, 405) and r.request.method == "POST":
            raise ConfigurationError(
                f"{self.url} does not accept {what} (HTTP {r.status_code}): no Transactions extension?"
            )
        if r.status_code >= 400:
            raise PublishError(
                item_id, f"publishing {what} to {self.url} failed: HTTP {r.status_code} {r.text[:300]}", href=put_url
            )

    # --- reading --------------------------------------------------------------------------

    def collection_url(self, collection_id: str, *rest: str) -> str:
        """`<api>/collections/<id>/<rest...>`, the id one quoted path segment (trust.url_segment: no '/',
        no '.' or '..', also percent-encoded), so no id makes a request go to another path of the API."""
        return "/".join((f"{self.url}/collections", url_segment(collection_id, "collection id"), *rest))

    def item_href(self, collection_id: str, item_id: str) -> str:
        return self.collection_url(collection_id, "items", url_segment(item_id, "item id"))

    def existing(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        """The item as the API serves it, or None when it has none."""
        self.check_transactions(item_id)
        r = self._request("GET", self.item_href(collection_id, item_id), item_id=item_id)
        return r.json() if r.status_code == 200 else None

    def get_collection(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        """The collection as the API serves it (asked for on behalf of `item_id`), or None."""
        r = self._request("GET", self.collection_url(collection_id), item_id=item_id)
        return r.json() if r.status_code == 200 else None

    # --- writing --------------------------------------------------------------------------

    def ensure_collection(
        self, collection_id: str, source_collection: str | None, item: pystac.Item | dict[str, Any]
    ) -> None:
        """Create the collection (POST) or update it (PUT) so its metadata, extent and summaries cover the
        item; one request per item only when something changed."""
        d = item_json(item)
        self.check_transactions(d["id"])
        coll = self._collections.get(collection_id)
        if coll is None:
            found = self.get_collection(collection_id, d["id"])
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
            f"{self.url}/collections",
            self.collection_url(collection_id),
            coll,
            f"collection {collection_id}",
            d["id"],
        )
        self._collections[collection_id] = coll

    def _api_dict(self, item: pystac.Item | dict[str, Any]) -> dict[str, Any]:
        d = item_json(item)
        d["links"] = [l for l in d.get("links", []) if l.get("rel") not in ("root", "parent", "collection", "self")]
        return d

    def write_item(self, item: pystac.Item | dict[str, Any], source_collection: str | None = None) -> None:
        d = self._api_dict(item)
        collection_id = d.get("collection") or "cloudmask"
        self.ensure_collection(collection_id, source_collection, d)
        self._upsert(
            self.collection_url(collection_id, "items"),
            self.item_href(collection_id, d["id"]),
            d,
            f"item {d['id']}",
            d["id"],
        )

    def rewrite_item(self, d: dict[str, Any]) -> None:
        """Replace an item the API already has (e.g. marked deprecated)."""
        d = self._api_dict(d)
        href = self.item_href(d["collection"], d["id"])
        r = self._request("PUT", href, d, d["id"])
        if r.status_code >= 400:
            raise PublishError(
                d["id"], f"updating the item at {self.url} failed: HTTP {r.status_code} {r.text[:300]}", href=href
            )

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
                bulk_url = self.collection_url(collection_id, "bulk_items")
                r = self._request(
                    "POST", bulk_url, {"items": {d["id"]: d for d in ds}, "method": "upsert"}, ds[0]["id"]
                )
                requests_made += 1
                if r.status_code < 400:
                    self._bulk = True
                    continue
                if r.status_code not in (404, 405, 422):
                    raise PublishError(
                        ds[0]["id"],
                        f"bulk publishing it and {len(ds) - 1} other items of {collection_id!r} to {self.url} failed: "
                        f"HTTP {r.status_code} {r.text[:300]}",
                        href=bulk_url,
                    )
                self._bulk = False
            for d in ds:
                self._upsert(
                    self.collection_url(collection_id, "items"),
                    self.item_href(collection_id, d["id"]),
                    d,
                    f"item {d['id']}",
                    d["id"],
                )
                requests_made += 1
        return requests_made
