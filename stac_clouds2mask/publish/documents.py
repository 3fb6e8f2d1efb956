"""Item JSON as the targets store it: a plain copy of an item, and its asset hrefs made absolute."""

from __future__ import annotations

import copy
from typing import Any

import pystac

from ..storage import join, resolve_href


def item_json(item: pystac.Item | dict[str, Any]) -> dict[str, Any]:
    """A JSON copy of the item that the caller may change (hrefs as they are, no self link added)."""
    if isinstance(item, pystac.Item):
        return item.to_dict(include_self_link=False, transform_hrefs=False)
    return copy.deepcopy(item)


def with_absolute_assets(d: dict[str, Any], item_dir: str) -> dict[str, Any]:
    """A copy of a static-catalog item whose relative asset hrefs and `derived_from` links point into the
    catalog at `item_dir` (for a STAC API or a reader that does not know where the item JSON lies); its
    structural and version links stay relative, for the target to set."""
    return absolute_hrefs(copy.deepcopy(d), join(item_dir, f"{d['id']}.json"), rels=("derived_from",))


def absolute_hrefs(d: dict[str, Any], base: str, rels: tuple[str, ...] | None = None) -> dict[str, Any]:
    """`d` with every asset href, and the hrefs of its links of `rels` (None: all links), resolved against
    `base`, the item JSON's own URL (in place), so the item can be passed on without the document it came
    from."""
    for asset in d.get("assets", {}).values():
        asset["href"] = resolve_href(base, asset["href"])
    for link in d.get("links", []):
        if rels is None or link.get("rel") in rels:
            link["href"] = resolve_href(base, link["href"])
    return d
