"""Stage 1: find source items, from a STAC API (pystac-client) or a static STAC file at any fsspec URL.

The same filters apply to both kinds of source, so a static catalog behaves like a small API.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pystac
import shapely.geometry
import shapely.validation
from shapely.geometry.base import BaseGeometry

from .access import header_secrets
from .errors import EmptySearchError, InvalidInputError, OptionError, UntrustedReferenceError
from .limits import Limits, check_item_count
from .products import is_product, product_item
from .report import redact
from .storage import STDIN, DocumentTooLarge, StorageOptions, get_fs, read_json, resolve_href
from .trust import check_reference

log = logging.getLogger(__name__)

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
# what pystac raises on JSON that is not the STAC it expects (and pystac-client's pages, NotImplementedError too)
_NOT_STAC = (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError, AttributeError)
_MALFORMED = (*_NOT_STAC, NotImplementedError)
DEFAULT_API_COLLECTION = "sentinel-2-l1c"
MAX_PAGE_SIZE = 10_000  # pystac-client refuses a larger limit


@dataclass(frozen=True)
class SearchFilters:
    """Filters of a search, applied by the API where it can and locally otherwise.

    `max_items`: at most this many items per source; `limit`: the page size asked of a STAC API, as in
    pystac-client and stac-client. `limit` without `max_items` keeps its earlier meaning, the maximum
    (with a FutureWarning), so that scripts written before `max_items` existed still take as many items.
    """

    bbox: tuple[float, float, float, float] | None = None
    intersects: dict[str, Any] | None = None
    datetime: str | None = None
    max_cloud: float | None = None
    ids: tuple[str, ...] | None = None
    limit: int | None = None
    collections: tuple[str, ...] | None = field(default=None)
    max_items: int | None = None

    def __post_init__(self) -> None:
        if self.bbox is not None:
            parse_bbox(self.bbox)
        if self.datetime is not None:
            parse_datetime_interval(self.datetime)
        if self.intersects is not None:
            geometry_from_geojson(self.intersects)
        if self.max_cloud is not None and not 0 <= self.max_cloud <= 100:
            raise OptionError("max_cloud", f"must be between 0 and 100, got {self.max_cloud}")
        for name in ("limit", "max_items"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(name, f"must be at least 1, got {value}")
        if self.limit is not None and self.max_items is None:
            warnings.warn(
                f"SearchFilters(limit={self.limit}) without max_items is read as max_items={self.limit}, the "
                "maximum number of items, as before; limit will be only the page size (as in pystac-client): "
                "set max_items",
                FutureWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "max_items", self.limit)
            object.__setattr__(self, "limit", None)  # as before: the API's own page size
        if self.limit is not None and self.limit > MAX_PAGE_SIZE:
            raise OptionError(
                "limit", f"is the page size, at most {MAX_PAGE_SIZE} (pystac-client's bound), got {self.limit}"
            )

    def aoi(self) -> dict[str, Any] | None:
        """The area of interest as one GeoJSON geometry (WGS84): the bbox and/or intersects geometry, their
        intersection when both are given (what the search matches); None without either."""
        area = _area(self)
        return None if area is None else shapely.geometry.mapping(area)


def parse_bbox(values: Iterable[float]) -> tuple[float, float, float, float]:
    """Check a W S E N bbox in degrees; W > E means it crosses the antimeridian."""
    vals = tuple(float(v) for v in values)
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise OptionError("bbox", f"needs four finite numbers W S E N, got {list(values)}")
    w, s, e, n = vals
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise OptionError("bbox", f"{list(vals)} is outside longitude -180..180 / latitude -90..90")
    if s > n:
        raise OptionError("bbox", f"{list(vals)} has south {s} above north {n}; the order is W S E N")
    return vals  # type: ignore[return-value]


def normalise_datetime(text: str) -> str:
    """The interval as pystac-client sends it to a STAC API, from any form it accepts: '2024' is the whole
    year, '2024-06' the month, '2024-06-01' the day, a date-time without zone is UTC, '..' or '' an open end.

    pystac-client's own parser, so that a static catalog filters exactly as an API search does."""
    from pystac_client import ItemSearch

    if text.count("/") > 1:
        raise OptionError("datetime", f"{text!r} must be an instant or 'start/end'")
    try:
        return ItemSearch("", datetime=text).get_parameters()["datetime"]
    except Exception as exc:  # pystac-client raises a bare Exception for a malformed component
        raise OptionError(
            "datetime",
            f"{text!r} is not RFC 3339 or a shortened form of it (2024, 2024-06, 2024-06-01, "
            f"2024-06-01T10:00:00Z; intervals start/end, ../end, start/..): {exc}",
        ) from exc


def _instant(text: str) -> dt.datetime | None:
    if text == "..":
        return None
    value = dt.datetime.fromisoformat(text.upper())
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def parse_datetime_interval(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Aware bounds (None = open) of any datetime or interval pystac-client accepts (normalise_datetime)."""
    normal = normalise_datetime(text)
    start, _, stop = normal.partition("/")
    bounds = _instant(start), _instant(stop or start)
    if bounds == (None, None):
        raise OptionError("datetime", f"{text!r} is open at both ends")
    if bounds[0] and bounds[1] and bounds[0] > bounds[1]:
        raise OptionError("datetime", f"{text!r} starts after it ends")
    return bounds


def geometry_from_geojson(data: dict[str, Any]) -> BaseGeometry:
    """A shapely geometry from a GeoJSON Geometry, Feature or FeatureCollection (union)."""
    try:
        kind = data.get("type")
        if kind == "FeatureCollection":
            geoms = [shapely.geometry.shape(f["geometry"]) for f in data["features"]]
            geom = shapely.union_all(geoms) if geoms else None
        elif kind == "Feature":
            geom = shapely.geometry.shape(data["geometry"])
        else:
            geom = shapely.geometry.shape(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise OptionError("intersects", f"is not a GeoJSON geometry, feature or feature collection: {exc}") from exc
    if geom is None or geom.is_empty:
        raise OptionError("intersects", "holds an empty geometry")
    if not geom.is_valid:
        raise OptionError("intersects", f"geometry is invalid: {shapely.validation.explain_validity(geom)}")
    return geom


def load_geojson(source: str, options: StorageOptions | None = None) -> dict[str, Any]:
    """An AOI: a GeoJSON file (local path or any fsspec URL), '-' for standard input, or the GeoJSON text
    itself (anything starting with '{' or '[')."""
    if source.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(source)
        except ValueError as exc:
            raise OptionError("intersects", f"is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise OptionError("intersects", f"holds a JSON {type(data).__name__}, not a GeoJSON object")
        return data
    what = "(standard input)" if source == STDIN else "file"
    return _read_json_object(source, options, what, "a GeoJSON object", field="intersects")


def _read_json_object(
    url: str,
    options: StorageOptions | None,
    what: str,
    expected: str,
    field: str | None = None,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """A JSON object from any fsspec URL or standard input ('-'), of at most `limits.max_body_bytes` (default:
    the environment's limits); InvalidInputError naming `what` and the URL otherwise (an OptionError of
    `field` when the document is the value of a setting)."""

    def error(text: str) -> InvalidInputError:
        return OptionError(field, text) if field else InvalidInputError(text)

    try:
        data = read_json(url, options, (limits or Limits.from_env()).max_body_bytes)
    except DocumentTooLarge as exc:
        raise error(f"{what} {exc} (STAC_CLOUDS2MASK_MAX_BODY_BYTES): refused") from None
    except FileNotFoundError as exc:
        raise error(f"{what} not found: {url}") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise error(f"{what} {url} is not JSON: {exc}") from exc
    except OSError as exc:
        raise error(f"cannot read the {what} {url}: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{what} {url} holds a JSON {type(data).__name__}, not {expected}")
    return data


def is_api(source: str) -> bool:
    """A STAC API is an http(s) root that is not a .json file; everything else is a static STAC file."""
    lower = source.lower().split("?")[0]
    return lower.startswith(("http://", "https://")) and not lower.endswith((".json", ".geojson"))


def search(
    source: str,
    filters: SearchFilters | None = None,
    options: StorageOptions | None = None,
    limits: Limits | None = None,
) -> list[pystac.Item]:
    """Items of a STAC API, a static STAC file or a Sentinel-2 product folder that pass the filters, in
    source order, read within `limits` (default: the environment's)."""
    filters, limits = filters or SearchFilters(), limits or Limits.from_env()
    if is_api(source):
        return _search_api(source, filters, options or StorageOptions(), limits)
    try:
        found = iter([product_item(source, limits)]) if is_product(source) else _read_static(source, options, limits)
        return list(_limit(_filter_static(found, filters), filters.max_items))
    except InvalidInputError:
        raise
    except (OSError, *_NOT_STAC) as exc:
        raise InvalidInputError(f"cannot read the STAC source {source}: {type(exc).__name__}: {exc}") from exc


def search_all(
    sources: Sequence[str],
    filters: SearchFilters | None = None,
    options: StorageOptions | None = None,
    limits: Limits | None = None,
) -> list[pystac.Item]:
    """Items of every source, in order; EmptySearchError naming the sources and filters when there is none,
    or when any of the ids asked for is not among them (each missing id named), so that a mistyped id or
    collection is never a silent success, not even a partial one."""
    filters = filters or SearchFilters()
    found = [search(source, filters, options, limits) for source in sources]
    items = [item for items in found for item in items]
    if not items:
        raise EmptySearchError(sources, conditions(filters, sources))
    cut = filters.max_items is not None and any(len(of_source) >= filters.max_items for of_source in found)
    found_ids = {item.id for item in items}
    missing = [i for i in dict.fromkeys(filters.ids or ()) if i not in found_ids]
    if missing and not cut:  # ids that --max-items left out are not missing
        raise EmptySearchError(sources, conditions(filters, sources), missing)
    log.info("%d item(s) found in %s", len(items), ", ".join(redact(s) or "" for s in sources))
    return items


def conditions(filters: SearchFilters, sources: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(field, value as text) of each filter that is set (the default API collection included)."""
    parts = [("ids", ",".join(filters.ids))] if filters.ids else []
    if filters.collections:
        parts.append(("collections", ",".join(filters.collections)))
    elif any(is_api(s) for s in sources):
        parts.append(("collections", f"{DEFAULT_API_COLLECTION} (the default for a STAC API)"))
    if filters.bbox is not None:
        parts.append(("bbox", " ".join(f"{v:g}" for v in filters.bbox)))
    if filters.intersects is not None:
        parts.append(("intersects", "(the given area)"))
    if filters.datetime:
        parts.append(("datetime", filters.datetime))
    if filters.max_cloud is not None:
        parts.append(("max_cloud", f"{filters.max_cloud:g}"))
    return parts


def _search_api(url: str, filters: SearchFilters, options: StorageOptions, limits: Limits) -> list[pystac.Item]:
    from pystac_client import Client
    from pystac_client.errors import ClientTypeError
    from pystac_client.exceptions import APIError

    from .search_io import TrustedStacApiIO

    stac_io = TrustedStacApiIO(url, limits)  # every link and redirect it follows is checked there
    url = stac_io.home  # without user info (that is the session's auth now), so no item link holds it
    hidden = header_secrets(options.headers)

    def with_headers(request: Any) -> None:
        """Headers per request, on the header hosts only (not on the session: next links may go elsewhere)."""
        request.headers = {**(request.headers or {}), **options.headers_for(request.url)}

    try:  # (Client.open sets the timeout and request modifier of its stac_io)
        client = Client.open(url, stac_io=stac_io, timeout=60, request_modifier=with_headers)
    except (APIError, ClientTypeError, OSError, *_MALFORMED) as exc:
        raise InvalidInputError(f"cannot open the STAC API at {url}: {_api_error(exc, hidden)}") from exc
    kwargs: dict[str, Any] = {
        "collections": list(filters.collections or [DEFAULT_API_COLLECTION]),
        "bbox": filters.bbox,
        "intersects": filters.intersects and shapely.geometry.mapping(geometry_from_geojson(filters.intersects)),
        "datetime": filters.datetime,
        "ids": list(filters.ids) if filters.ids else None,
        "max_items": filters.max_items,
        "limit": filters.limit,
    }
    if filters.max_cloud is not None:
        if client.conforms_to("FILTER"):
            kwargs["filter"] = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, filters.max_cloud]}
            kwargs["filter_lang"] = "cql2-json"
        else:
            kwargs["query"] = {"eo:cloud_cover": {"lte": filters.max_cloud}}
    items: list[pystac.Item] = []
    try:  # pages counted: an API whose every page links a next one must not run forever
        for n, page in enumerate(client.search(**{k: v for k, v in kwargs.items() if v is not None}).pages()):
            if n >= limits.max_documents or len(items) >= limits.max_documents:
                raise InvalidInputError(
                    f"search at {url}: more than {limits.max_documents} pages or items "
                    "(STAC_CLOUDS2MASK_MAX_DOCUMENTS): refused; narrow the search or set a maximum of items"
                )
            items.extend(page.items)
    except APIError as exc:
        raise InvalidInputError(f"search failed at {url}: {_api_error(exc, hidden)}") from exc
    except _MALFORMED as exc:  # a page that is JSON but not an ItemCollection with well-formed links
        raise InvalidInputError(
            f"search at {url}: a page is not a STAC ItemCollection: {type(exc).__name__}: {exc}"
        ) from exc
    items = items[: filters.max_items] if filters.max_items is not None else items
    for item in items:
        _claimed_self(item, url)
    return items


def _api_error(exc: Exception, hidden: Sequence[str]) -> str:
    """An API's answer as a message: its HTTP status, and its text without the credentials it may echo."""
    status = getattr(exc, "status_code", None)
    return (f"HTTP {status}: " if status else "") + (redact(str(exc), hidden) or "")


def _claimed_self(item: pystac.Item, url: str) -> None:
    """An item's own self href decides how its relative asset hrefs resolve, and is their origin for
    the trust rule: it must be a reference the document at `url` may name (else it becomes `url`)."""
    claimed = item.get_self_href()
    if claimed is None:
        item.set_self_href(url)
        return
    try:
        check_reference(claimed, url, what=f"self link of item {item.id!r}")
    except UntrustedReferenceError as exc:
        raise InvalidInputError(f"{url}: {exc}") from None


def _read_static(url: str, options: StorageOptions | None, limits: Limits) -> Iterator[pystac.Item]:
    what = "a STAC Catalog, Collection, Item or ItemCollection"
    data = _read_json_object(url, options, "STAC source", what, limits=limits)
    kind = data.get("type")
    base = _absolute_url(url, options)
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise InvalidInputError(f"{url} is a FeatureCollection without a 'features' list")
        check_item_count(len(features), url)
        for n, feature in enumerate(features):
            try:
                item = pystac.Item.from_dict(feature, migrate=True)
            except _NOT_STAC as exc:
                raise InvalidInputError(
                    f"feature {n} of {url} is not a STAC item: {type(exc).__name__}: {exc}"
                ) from exc
            _claimed_self(item, base)
            yield item
    elif kind == "Feature":
        try:
            item = pystac.Item.from_dict(data, migrate=True)
        except _NOT_STAC as exc:
            raise InvalidInputError(f"{url} is not a STAC item: {type(exc).__name__}: {exc}") from exc
        item.set_self_href(base)
        yield item
    elif kind in ("Catalog", "Collection"):
        yield from _walk(data, base, options, limits, {base}, 0)
    else:
        raise InvalidInputError(f"{url} is not a STAC Catalog, Collection, Item or ItemCollection (type {kind!r})")


def _walk(
    data: dict[str, Any], url: str, options: StorageOptions | None, limits: Limits, visited: set[str], depth: int
) -> Iterator[pystac.Item]:
    """The items of a catalog or collection, then those of its children (pystac's order), each document
    read once (a link cycle ends), links judged by the trust rule against the document naming them,
    depth and document count bounded: InvalidInputError names the catalog and the limit."""
    links = [link for link in data.get("links", []) if isinstance(link, dict) and isinstance(link.get("href"), str)]
    for rel in ("item", "child"):
        for link in (link for link in links if link.get("rel") == rel):
            target = resolve_href(url, link["href"])
            try:
                check_reference(target, url, what=f"{rel} link")
            except UntrustedReferenceError as exc:
                raise InvalidInputError(f"catalog {url}: {exc}") from None
            if target in visited:
                continue
            visited.add(target)
            if len(visited) > limits.max_documents:
                raise InvalidInputError(
                    f"catalog {url}: more than {limits.max_documents} catalogs, collections and "
                    "items to read (STAC_CLOUDS2MASK_MAX_DOCUMENTS): refused"
                )
            if rel == "child" and depth >= limits.max_depth:
                raise InvalidInputError(
                    f"catalog {url}: child catalogs nested deeper than {limits.max_depth} levels "
                    "(STAC_CLOUDS2MASK_MAX_DEPTH): refused"
                )
            doc = _read_json_object(target, options, f"{rel} link of {url}:", "a STAC object", limits=limits)
            if rel == "child":
                yield from _walk(doc, target, options, limits, visited, depth + 1)
                continue
            try:
                item = pystac.Item.from_dict(doc, migrate=True)
            except _NOT_STAC as exc:
                raise InvalidInputError(
                    f"{target} (an item of {url}) is not a STAC item: {type(exc).__name__}"
                ) from exc
            item.set_self_href(target)
            if item.collection_id is None and data.get("type") == "Collection":
                item.collection_id = data.get("id")
            yield item


def _absolute_url(url: str, options: StorageOptions | None) -> str:
    fs, path = get_fs(url, options)
    return fs.unstrip_protocol(path) if "://" in url and not url.startswith("file://") else path


def _filter_static(items: Iterable[pystac.Item], f: SearchFilters) -> Iterator[pystac.Item]:
    area = _area(f)
    start, stop = parse_datetime_interval(f.datetime) if f.datetime else (None, None)
    for item in items:
        if f.ids and item.id not in f.ids:
            continue
        if f.collections and item.collection_id not in f.collections:
            continue
        if f.max_cloud is not None:
            cloud = item.properties.get("eo:cloud_cover")
            if cloud is None or cloud > f.max_cloud:
                continue
        if area is not None and (item.geometry is None or not area.intersects(shapely.geometry.shape(item.geometry))):
            continue
        if (start or stop) and not _in_interval(item, start, stop):
            continue
        yield item


def _area(f: SearchFilters) -> BaseGeometry | None:
    geoms = []
    if f.bbox is not None:
        w, s, e, n = parse_bbox(f.bbox)
        if w <= e:
            geoms.append(shapely.geometry.box(w, s, e, n))
        else:
            geoms.append(
                shapely.geometry.MultiPolygon([shapely.geometry.box(w, s, 180, n), shapely.geometry.box(-180, s, e, n)])
            )
    if f.intersects is not None:
        geoms.append(geometry_from_geojson(f.intersects))
    if not geoms:
        return None
    area = geoms[0]
    for g in geoms[1:]:
        area = area.intersection(g)
    return area


def _in_interval(item: pystac.Item, start: dt.datetime | None, stop: dt.datetime | None) -> bool:
    props = item.common_metadata
    first = item.datetime or props.start_datetime
    last = item.datetime or props.end_datetime
    if first is None or last is None:
        return False
    return (stop is None or first <= stop) and (start is None or last >= start)


def _limit(items: Iterable[pystac.Item], limit: int | None) -> Iterator[pystac.Item]:
    for i, item in enumerate(items):
        if limit is not None and i >= limit:
            return
        yield item
