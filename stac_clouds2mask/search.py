"""Stage 1: find source items, from a STAC API (pystac-client) or a static STAC file at any fsspec URL.

The same filters apply to both kinds of source, so a static catalog behaves like a small API.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pystac
import shapely.geometry
import shapely.validation
from shapely.geometry.base import BaseGeometry

from .errors import EmptySearchError, InvalidInputError, UntrustedReferenceError
from .limits import BoundedSession, Limits
from .products import is_product, product_item
from .storage import DocumentTooLarge, StorageOptions, get_fs, read_json, resolve_href
from .trust import check_reference

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
DEFAULT_API_COLLECTION = "sentinel-2-l1c"


@dataclass(frozen=True)
class SearchFilters:
    """Filters of a search, applied by the API where it can and locally otherwise."""

    bbox: tuple[float, float, float, float] | None = None
    intersects: dict[str, Any] | None = None
    datetime: str | None = None
    max_cloud: float | None = None
    ids: tuple[str, ...] | None = None
    limit: int | None = None
    collections: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.bbox is not None:
            parse_bbox(self.bbox)
        if self.datetime is not None:
            parse_datetime_interval(self.datetime)
        if self.intersects is not None:
            geometry_from_geojson(self.intersects)
        if self.max_cloud is not None and not 0 <= self.max_cloud <= 100:
            raise InvalidInputError(f"--max-cloud must be between 0 and 100, got {self.max_cloud}")
        if self.limit is not None and self.limit < 1:
            raise InvalidInputError(f"--limit must be at least 1, got {self.limit}")


def parse_bbox(values: Iterable[float]) -> tuple[float, float, float, float]:
    """Check a W S E N bbox in degrees; W > E means it crosses the antimeridian."""
    vals = tuple(float(v) for v in values)
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise InvalidInputError(f"bbox needs four finite numbers W S E N, got {list(values)}")
    w, s, e, n = vals
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise InvalidInputError(f"bbox {list(vals)} is outside longitude -180..180 / latitude -90..90")
    if s > n:
        raise InvalidInputError(f"bbox {list(vals)} has south {s} above north {n}; the order is W S E N")
    return vals  # type: ignore[return-value]


def _parse_instant(text: str, end: bool) -> dt.datetime:
    """A date or RFC 3339 date-time; a bare date covers its whole day (UTC)."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            t = dt.time.max if end else dt.time.min
            return dt.datetime.combine(day, t, tzinfo=dt.timezone.utc)
        value = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise InvalidInputError(f"datetime {text!r} is not RFC 3339 (e.g. 2024-06-01 or 2024-06-01T10:00:00Z)") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def parse_datetime_interval(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Parse 'instant', 'start/end', 'start/..' or '../end' into aware bounds (None = open)."""
    parts = text.split("/")
    if len(parts) == 1:
        return _parse_instant(parts[0], end=False), _parse_instant(parts[0], end=True)
    if len(parts) != 2:
        raise InvalidInputError(f"datetime {text!r} must be an instant or 'start/end'")
    start = None if parts[0] in ("", "..") else _parse_instant(parts[0], end=False)
    stop = None if parts[1] in ("", "..") else _parse_instant(parts[1], end=True)
    if start is None and stop is None:
        raise InvalidInputError(f"datetime {text!r} is open at both ends")
    if start and stop and start > stop:
        raise InvalidInputError(f"datetime {text!r} starts after it ends")
    return start, stop


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
        raise InvalidInputError(
            f"--intersects is not a GeoJSON geometry, feature or feature collection: {exc}"
        ) from exc
    if geom is None or geom.is_empty:
        raise InvalidInputError("--intersects holds an empty geometry")
    if not geom.is_valid:
        raise InvalidInputError(f"--intersects geometry is invalid: {shapely.validation.explain_validity(geom)}")
    return geom


def load_geojson(url: str, options: StorageOptions | None = None) -> dict[str, Any]:
    """Read an AOI file (local path or any fsspec URL)."""
    return _read_json_object(url, options, "--intersects file", "a GeoJSON object")


def _read_json_object(url: str, options: StorageOptions | None, what: str, expected: str) -> dict[str, Any]:
    """A JSON object from any fsspec URL; InvalidInputError naming `what` and the URL otherwise."""
    try:
        data = read_json(url, options, Limits.from_env().max_body_bytes)
    except DocumentTooLarge as exc:
        raise InvalidInputError(f"{what} {exc} (STAC_CLOUDS2MASK_MAX_BODY_BYTES): refused") from None
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{what} not found: {url}") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidInputError(f"{what} {url} is not JSON: {exc}") from exc
    except OSError as exc:
        raise InvalidInputError(f"cannot read the {what} {url}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{what} {url} holds a JSON {type(data).__name__}, not {expected}")
    return data


def is_api(source: str) -> bool:
    """A STAC API is an http(s) root that is not a .json file; everything else is a static STAC file."""
    lower = source.lower().split("?")[0]
    return lower.startswith(("http://", "https://")) and not lower.endswith((".json", ".geojson"))


def search(
    source: str, filters: SearchFilters | None = None, options: StorageOptions | None = None
) -> list[pystac.Item]:
    """Items of a STAC API, a static STAC file or a Sentinel-2 product folder that pass the filters, in
    source order."""
    filters = filters or SearchFilters()
    if is_api(source):
        return _search_api(source, filters)
    try:
        found = iter([product_item(source)]) if is_product(source) else _read_static(source, options)
        return list(_limit(_filter_static(found, filters), filters.limit))
    except InvalidInputError:
        raise
    except (OSError, pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInputError(f"cannot read the STAC source {source}: {type(exc).__name__}: {exc}") from exc


def search_all(
    sources: Sequence[str], filters: SearchFilters | None = None, options: StorageOptions | None = None
) -> list[pystac.Item]:
    """Items of every source, in order; EmptySearchError naming the sources and filters when there is none,
    so that a mistyped id or collection is never a silent success."""
    filters = filters or SearchFilters()
    items = [item for source in sources for item in search(source, filters, options)]
    if not items:
        raise EmptySearchError(f"no item found in {', '.join(sources)} for {describe(filters, sources)}")
    return items


def describe(filters: SearchFilters, sources: Sequence[str] = ()) -> str:
    """The filters as the command-line options that set them (the default API collection included)."""
    parts = [f"--ids {','.join(filters.ids)}"] if filters.ids else []
    if filters.collections:
        parts.append(f"--collection {','.join(filters.collections)}")
    elif any(is_api(s) for s in sources):
        parts.append(f"--collection {DEFAULT_API_COLLECTION} (the default for a STAC API)")
    if filters.bbox is not None:
        parts.append("--bbox " + " ".join(f"{v:g}" for v in filters.bbox))
    if filters.intersects is not None:
        parts.append("--intersects (the given area)")
    if filters.datetime:
        parts.append(f"--datetime {filters.datetime}")
    if filters.max_cloud is not None:
        parts.append(f"--max-cloud {filters.max_cloud:g}")
    return " ".join(parts) or "no filter"


def _search_api(url: str, filters: SearchFilters) -> list[pystac.Item]:
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    limits = Limits.from_env()
    stac_io = StacApiIO(timeout=60)
    stac_io.session = BoundedSession.like(stac_io.session, limits.api_seconds, limits.max_body_bytes)
    try:
        client = Client.open(url, stac_io=stac_io)
    except (APIError, OSError, pystac.STACError) as exc:
        raise InvalidInputError(f"cannot open the STAC API at {url}: {exc}") from exc
    kwargs: dict[str, Any] = {
        "collections": list(filters.collections or [DEFAULT_API_COLLECTION]),
        "bbox": filters.bbox,
        "intersects": filters.intersects and shapely.geometry.mapping(geometry_from_geojson(filters.intersects)),
        "datetime": filters.datetime,
        "ids": list(filters.ids) if filters.ids else None,
        "max_items": filters.limit,
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
                    "(STAC_CLOUDS2MASK_MAX_DOCUMENTS): refused; narrow the search or use --limit"
                )
            items.extend(page.items)
    except APIError as exc:
        raise InvalidInputError(f"search failed at {url}: {exc}") from exc
    items = items[: filters.limit] if filters.limit is not None else items
    for item in items:
        _claimed_self(item, url)
    return items


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


def _read_static(url: str, options: StorageOptions | None) -> Iterator[pystac.Item]:
    data = _read_json_object(url, options, "STAC source", "a STAC Catalog, Collection, Item or ItemCollection")
    kind = data.get("type")
    base = _absolute_url(url, options)
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise InvalidInputError(f"{url} is a FeatureCollection without a 'features' list")
        for n, feature in enumerate(features):
            try:
                item = pystac.Item.from_dict(feature, migrate=True)
            except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InvalidInputError(
                    f"feature {n} of {url} is not a STAC item: {type(exc).__name__}: {exc}"
                ) from exc
            _claimed_self(item, base)
            yield item
    elif kind == "Feature":
        try:
            item = pystac.Item.from_dict(data, migrate=True)
        except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"{url} is not a STAC item: {type(exc).__name__}: {exc}") from exc
        item.set_self_href(base)
        yield item
    elif kind in ("Catalog", "Collection"):
        yield from _walk(data, base, options, Limits.from_env(), {base}, 0)
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
            doc = _read_json_object(target, options, f"{rel} link of {url}:", "a STAC object")
            if rel == "child":
                yield from _walk(doc, target, options, limits, visited, depth + 1)
                continue
            try:
                item = pystac.Item.from_dict(doc, migrate=True)
            except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError, AttributeError) as exc:
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
