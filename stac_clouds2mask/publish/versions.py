"""The mask-version rule, in one place: which versions of a source item's mask exist, which one is
current, which one a rerun matches, what a new one is called and how the older ones are marked.

The rule (version extension v1.2.0): the first mask of a source item is `<source-id>_cloudmask`
(version "1"); a run with other settings publishes `<source-id>_cloudmask_v<N>` (version "N", N = the
number of versions so far + 1) with a `predecessor-version` link, and every older version is then
marked `deprecated: true` with a `latest-version` link (the direct predecessor also a
`successor-version` link). Versions are numbered without gaps, so they are found by asking for
version 1, 2, ... until one is missing, never by listing a whole collection; the walk is bounded.

Two masks of one source are the same when their provenance (source item, its `updated` stamp, the
settings) is equal: a rerun with the same provenance publishes nothing. The mask of an area of interest
(a clipped run) has a series of its own, named by the AOI's id (`<source-id>_cloudmask-aoi-<id>`), so
masks of different AOIs and the whole-scene mask of the same source never replace one another. The publisher, the batch
status and the stack all decide through the functions here.

The settings (`clouds2mask:settings`, config.settings_for) are what the run asked for: model and model
version, resolution, patch size and overlap, precision, runtime, probabilities, software version, with
"auto" compared as "auto". What ran (`clouds2mask:execution`: runtime and its version, precision, memory
layout, threads, device, batch size, the patch plan) is recorded beside them and is not compared: it
depends on the machine, not on the request. The same request runs in bf16 on a CPU with native
bfloat16, in fp32 on one without and in fp16 on CUDA, with a patch plan fitted to each scene, and
those masks agree with the reference runtime within the quality guard (label IoU, tests/test_quality.py).
So a rerun on another machine, or a fleet of mixed machines, finishes a job instead of publishing a new
version per machine, and the item keeps saying what made its mask. Whoever needs one precision or
runtime asks for it (`--precision fp32`, `--runtime torch`): another request, so another version.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pystac

from ..errors import LimitExceededError, UntrustedReferenceError

VERSION_RELS = ("predecessor-version", "successor-version", "latest-version")
SOURCE_ITEM = "clouds2mask:source_item"  # the property naming the source item of a mask


@dataclass(frozen=True)
class Version:
    """One published version of a mask: its item JSON as stored and where it was found."""

    item: dict[str, Any]
    where: str

    @property
    def id(self) -> str:
        return str(self.item["id"])

    @property
    def number(self) -> int:
        return version_number(self.item)

    @property
    def deprecated(self) -> bool:
        return bool(self.item["properties"].get("deprecated", False))


Fetch = Callable[[list[str]], dict[str, tuple[dict[str, Any], str]]]
"""Look up mask item ids; returns, per id found, the JSON stored under that id and where it was found."""


def mask_item_id(source_id: str, version: int = 1, aoi: str | None = None) -> str:
    """`<source-id>_cloudmask` for the first version, `<source-id>_cloudmask_v<N>` for later ones; the mask of
    an AOI (its id `aoi`, aoi.aoi_id) is `<source-id>_cloudmask-aoi-<aoi>` (and `..._v<N>`): its own series."""
    base = f"{source_id}_cloudmask" + (f"-aoi-{aoi}" if aoi else "")
    return base if version <= 1 else f"{base}_v{version}"


def provenance(source: pystac.Item, settings: dict[str, Any]) -> dict[str, Any]:
    """What makes two masks of a source the same: the source item (id, and its `updated` stamp when it
    has one) and the requested settings (see the module docstring: what ran is not part of it)."""
    return {
        SOURCE_ITEM: source.id,
        "clouds2mask:source_updated": source.properties.get("updated"),
        "clouds2mask:settings": dict(settings),
    }


def same_provenance(published: dict[str, Any], source: pystac.Item, settings: dict[str, Any]) -> bool:
    """Whether a published mask was made from this source item with these settings."""
    props = published.get("properties", {})
    return all(props.get(k) == v for k, v in provenance(source, settings).items())


def version_number(item: dict[str, Any]) -> int:
    """The item's version (the version extension stores it as a string; absent means 1)."""
    return int(item.get("properties", {}).get("version", 1))


def walk(
    source_ids: Sequence[str],
    fetch: Fetch,
    max_versions: int,
    collection_id: str | None = None,
    aoi: str | None = None,
) -> dict[str, list[Version]]:
    """The published versions of each source's mask (of the AOI `aoi`, when given), oldest first: version
    1, 2, ... until one is missing, asked for all sources at once per version (one `fetch` per version).

    A document found under a version's id must hold that id (and `collection_id`, when given):
    UntrustedReferenceError otherwise (a planted or foreign item). More than `max_versions` versions
    of one source: LimitExceededError."""
    found: dict[str, list[Version]] = {s: [] for s in source_ids}
    open_ids = list(dict.fromkeys(source_ids))
    for number in range(1, max_versions + 2):
        if not open_ids:
            break
        if number > max_versions:
            raise LimitExceededError(
                f"more than {max_versions} published versions of the mask of {open_ids[0]!r}: "
                "refused (STAC_CLOUDS2MASK_MAX_VERSIONS)"
            )
        wanted = {mask_item_id(s, number, aoi): s for s in open_ids}
        hits = fetch(list(wanted))
        for iid, (d, where) in hits.items():
            if iid not in wanted:
                continue
            if (
                not isinstance(d, dict)
                or d.get("id") != iid
                or (collection_id is not None and d.get("collection") != collection_id)
                or not isinstance(d.get("properties"), dict)
            ):
                of = f" of collection {collection_id!r}" if collection_id is not None else ""
                raise UntrustedReferenceError(
                    f"the published mask {iid!r}{of} ({where}) "
                    "does not hold that id and collection: refused (a foreign or planted item)"
                )
            found[wanted[iid]].append(Version(d, where))
        open_ids = [s for s in open_ids if mask_item_id(s, number, aoi) in hits]
    return found


def matching(versions: Sequence[Version], source: pystac.Item, settings: dict[str, Any]) -> Version | None:
    """The newest version made from this source item with these settings (what a rerun skips to)."""
    same = [v for v in versions if same_provenance(v.item, source, settings)]
    return same[-1] if same else None


def next_version(source_id: str, versions: Sequence[Version], aoi: str | None = None) -> tuple[str, int]:
    """Id and number of the version that follows the published ones."""
    number = len(versions) + 1
    return mask_item_id(source_id, number, aoi), number


def latest(items: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The current mask among versions of one source: not deprecated before deprecated, then the highest
    version (an interrupted run may have left an older version not yet deprecated)."""
    return max(items, key=lambda d: (not d["properties"].get("deprecated", False), version_number(d)), default=None)


def latest_per_source(items: Iterable[dict[str, Any]], source_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The current mask of each of `source_ids` among `items` (masks of any sources, any versions)."""
    wanted = set(source_ids)
    by_source: dict[str, list[dict[str, Any]]] = {}
    for d in items:
        sid = d.get("properties", {}).get(SOURCE_ITEM)
        if sid in wanted:
            by_source.setdefault(sid, []).append(d)
    return {sid: d for sid, ds in by_source.items() if (d := latest(ds)) is not None}


def unfinished(versions: Sequence[Version]) -> bool:
    """Whether an older version is still not deprecated (a run stopped before it marked them)."""
    return any(not v.deprecated for v in versions[:-1])


def set_links(d: dict[str, Any], links: dict[str, str | None]) -> None:
    """Replace the given version links of an item dict (rel -> href; None removes that rel)."""
    d["links"] = [link for link in d.get("links", []) if link.get("rel") not in links]
    for rel, href in links.items():
        if href:
            d["links"].append({"rel": rel, "href": href, "type": "application/geo+json", "title": _TITLES[rel]})


_TITLES = {
    "predecessor-version": "The mask of the same source item made before, with other settings",
    "successor-version": "The mask of the same source item made next, with other settings",
    "latest-version": "The current mask of the same source item",
}


def deprecated_copies(previous: Sequence[dict[str, Any]], latest_href: str) -> list[dict[str, Any]]:
    """The older versions as they are to be rewritten once a new version is published: deprecated,
    linked to the latest (and the direct predecessor to its successor)."""
    out = []
    for i, old in enumerate(previous):
        links: dict[str, str | None] = {"latest-version": latest_href}
        if i == len(previous) - 1:
            links["successor-version"] = latest_href
        d = copy.deepcopy(old)
        d["properties"]["deprecated"] = True
        set_links(d, links)
        out.append(d)
    return out


def carried_over(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """An overwritten version keeps its place in the chain: the old one's version links and deprecation."""
    old = old or {}
    new["links"] += [link for link in old.get("links", []) if link.get("rel") in VERSION_RELS]
    new["properties"]["deprecated"] = bool(old.get("properties", {}).get("deprecated", False))


def retarget(d: dict[str, Any], href_of: Callable[[str], str]) -> None:
    """Point the relative version links of a static-catalog item (`../<id>/<id>.json`) at `href_of(id)`
    (e.g. the item's URL in a STAC API)."""
    for link in d.get("links", []):
        if link.get("rel") in VERSION_RELS and link["href"].startswith("../"):
            link["href"] = href_of(link["href"].split("/")[1])
