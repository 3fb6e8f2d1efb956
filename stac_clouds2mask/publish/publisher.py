"""The publisher: decides what publishing a source item's mask does (skip, new, new version, overwrite)
and writes it, the static catalog first (the home of the COGs), then the STAC API when there is one.

Order of writes, so that a reader never sees an item whose assets are missing or partial and an
interrupted run leaves no item pointing at nothing:

1. the COG and the thumbnail are written locally, hashed, uploaded under a temporary name and moved
   into place (their size is checked after the move);
2. the item JSON is written (temporary name, then moved);
3. the collection (metadata, extent, summaries, item link) and the root catalog's child link;
4. the STAC API copy (collection, then item), when there is one;
5. older versions are marked deprecated and linked to the new one (versions.py has the rule).

A rerun repairs what an interruption left undone: an item that is already published with the same
provenance is skipped, and on that path its collection link, its STAC API copy and the deprecation of
older versions are added when missing. Stale temporary objects of the item (from a killed run) are
removed when it is published.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Literal

import pystac

from ..errors import InvalidInputError, PublishError
from ..limits import Limits
from ..model.registry import ModelSpec
from ..scene import MaskResult
from ..storage import join
from . import versions
from .api import StacApi
from .cog import category_sidecar, multihash_sha256, write_mask_cog, write_probabilities_cog
from .documents import absolute_hrefs, item_json, with_absolute_assets
from .items import WrittenFile, build_mask_item, mask_collection_id
from .shared_weights import shared_weights
from .static import StaticCatalog
from .thumbnail import write_thumbnail
from .versions import Version, mask_item_id, same_provenance

Action = Literal["new", "new_version", "overwrite", "skip"]


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
class Publisher:
    """Writes each mask to the static catalog (the home of the COGs) and optionally to a STAC API.

    collection_id: the target collection for every mask; default `<source-collection>-cloudmask`.
    thumbnails: also write a palette PNG thumbnail per item.
    claim_busy_for: how long a run waits for another live run publishing the very same mask (same
    settings) before it takes the item over (see StaticCatalog.claim).
    model_href: a folder or URL holding one published copy of the weights (`<model name>.onnx`) for the
    model asset to point at, instead of a copy in this catalog (shared_weights.py verifies it).
    """

    catalog: StaticCatalog
    api: StacApi | None = None
    collection_id: str | None = None
    thumbnails: bool = True
    max_versions: int = 100
    max_body_bytes: int = field(default_factory=lambda: Limits.from_env().max_body_bytes)  # the largest item written
    claim_stale_after: float = 3900.0  # the per-item limit and a margin: a lock this old has no live run
    claim_busy_for: float = 10.0
    model_href: str | None = None
    _shared: dict[str, WrittenFile | str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def target_collection(self, source: pystac.Item) -> str:
        return self.collection_id or mask_collection_id(source.collection_id)

    def published_item(self, source: pystac.Item, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The latest mask item in the static catalog for `source` with these settings (the one a rerun
        skips to), with absolute hrefs and a self link; None when there is none. Reads only."""
        found = self.published_versions(source, static_only=True, aoi=settings.get("aoi"))
        version = versions.matching(found, source, settings)
        if version is None:
            return None
        found = version.item
        base = self.catalog.item_url(found["collection"], found["id"])
        found["links"] = [link for link in found.get("links", []) if link.get("rel") != "self"]
        absolute_hrefs(found, base)
        found["links"].append({"rel": "self", "href": base, "type": "application/geo+json"})
        return found

    def published_versions(
        self, source: pystac.Item, *, static_only: bool = False, aoi: str | None = None
    ) -> list[Version]:
        """The published versions of the source's mask (of the AOI `aoi`, when given), oldest first: from
        the static catalog, else from the STAC API (unless `static_only`)."""
        collection_id = self.target_collection(source)

        def fetch(ids: list[str]) -> dict[str, tuple[dict[str, Any], str]]:
            out = {}
            for iid in ids:
                if (d := self.catalog.existing(collection_id, iid)) is not None:
                    out[iid] = (d, "static")
                elif not static_only and self.api is not None and (d := self.api.existing(collection_id, iid)):
                    out[iid] = (d, "api")
            return out

        return versions.walk([source.id], fetch, self.max_versions, collection_id, aoi)[source.id]

    def plan(self, source: pystac.Item, settings: dict[str, Any], overwrite: bool = False) -> PublishPlan:
        """Decide what publishing `source`'s mask will do. On the skip path, repair what an interrupted
        run may have left undone (the collection link, the STAC API copy, the older versions' marks)."""
        collection_id = self.target_collection(source)
        aoi = settings.get("aoi")
        found = self.published_versions(source, aoi=aoi)
        dicts = [v.item for v in found]
        if not found:
            return PublishPlan("new", collection_id, mask_item_id(source.id, 1, aoi), 1)
        same = versions.matching(found, source, settings)
        if same is not None and not overwrite:
            note = self._repair(same)
            if same.where == "static":
                self.catalog.drop_claim(collection_id, same.id, settings)
            if same is found[-1] and versions.unfinished(found):
                self._deprecate(dicts[:-1], same.item)
            return PublishPlan(
                "skip",
                collection_id,
                same.id,
                same.number,
                f"already published as {same.id} with the same source item, model and settings{note}",
                dicts,
            )
        if overwrite:
            target = same or found[-1]
            return PublishPlan("overwrite", collection_id, target.id, target.number, f"replacing {target.id}", dicts)
        item_id, number = versions.next_version(source.id, found, aoi)
        return PublishPlan(
            "new_version",
            collection_id,
            item_id,
            number,
            f"settings differ from {found[-1].id}: publishing version {number}",
            dicts,
        )

    def _repair(self, version: Version) -> str:
        """Link a statically published item and add it to the STAC API where a run stopped before."""
        if version.where != "static":
            return ""
        d = version.item
        self.catalog.link_item(d)
        if self.api is None or self.api.existing(d["collection"], d["id"]) is not None:
            return ""
        self.api.write_item(self._for_api(d, self.api))
        return "; added to the STAC API"

    def _for_api(self, d: dict[str, Any], api: StacApi) -> dict[str, Any]:
        """A static-catalog item as the STAC API gets it: absolute asset hrefs, version links to API items."""
        out = with_absolute_assets(d, join(self.catalog.url, d["collection"], d["id"]))
        versions.retarget(out, lambda iid: api.item_href(d["collection"], iid))
        return out

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
        with self.catalog.claim(
            plan.collection_id, plan.item_id, result.settings, self.claim_stale_after, src.id, self.claim_busy_for
        ):
            current = self.catalog.existing(plan.collection_id, plan.item_id) if plan.action != "overwrite" else None
            if current is not None and same_provenance(current, src, result.settings):
                return pystac.Item.from_dict(current)  # another run published this very mask meanwhile
            if current is not None:  # another run published this id otherwise after we planned: never overwrite it
                raise PublishError(
                    src.id,
                    f"{plan.item_id!r} was published by another run after this one planned it: "
                    "not overwritten; rerun to skip it or publish a new version",
                )
            return self._write(result, spec, plan)

    def model_file(self, spec: ModelSpec, source_id: str) -> WrittenFile:
        """The weights the model asset points at: the catalog's own copy, or the verified copy under
        `model_href` (checked once per model; a copy that failed the check fails every item of that model)."""
        if self.model_href is None:
            return self.catalog.put_model(spec)
        if spec.name not in self._shared:
            try:
                self._shared[spec.name] = shared_weights(spec, self.model_href, self.catalog.options)
            except OSError as exc:
                self._shared[spec.name] = f"--model-href: {exc}"
        found = self._shared[spec.name]
        if isinstance(found, str):
            raise PublishError(source_id, found, asset="model")
        return found

    def _write(self, result: MaskResult, spec: ModelSpec, plan: PublishPlan) -> pystac.Item:
        """Assets, then the item, then the links (see the module docstring), under the plan's claim."""
        src = result.scene.item
        collection_id, item_id = plan.collection_id, plan.item_id
        self.catalog.remove_stale_temporaries(collection_id, item_id)
        with tempfile.TemporaryDirectory(prefix="clouds2mask-") as tmp:

            def put(name: str, suffix: str) -> WrittenFile:
                local = os.path.join(tmp, name)
                href = self.catalog.put_asset(local, collection_id, item_id, suffix)
                return WrittenFile(href, os.path.getsize(local), multihash_sha256(local))

            try:
                model = self.model_file(spec, src.id)
                write_mask_cog(result.classes, result.scene.crs, result.scene.transform, os.path.join(tmp, "m.tif"))
                with open(os.path.join(tmp, "m.tif.aux.xml"), "wb") as f:
                    f.write(category_sidecar(result.classes))
                mask, categories = put("m.tif", ".tif"), put("m.tif.aux.xml", ".tif.aux.xml")
                thumb = probs = None
                if self.thumbnails:
                    write_thumbnail(result.classes, os.path.join(tmp, "t.png"))
                    thumb = put("t.png", ".png")
                if result.probabilities is not None:
                    p = os.path.join(tmp, "p.tif")
                    write_probabilities_cog(result.probabilities, result.scene.crs, result.scene.transform, p)
                    probs = put("p.tif", "_probabilities.tif")
            except OSError as exc:
                raise PublishError(
                    src.id, f"cannot write {self.catalog.asset_url(collection_id, item_id)}: {exc}", stage="publish"
                ) from exc
        item = build_mask_item(
            result,
            spec,
            collection_id,
            mask=mask,
            categories=categories,
            model=model,
            thumbnail=thumb,
            probabilities=probs,
            version=plan.version,
        )
        d = item_json(item)
        previous = [v for v in plan.versions if v["id"] != item_id]
        if plan.action == "overwrite":
            versions.carried_over(next((v for v in plan.versions if v["id"] == item_id), None), d)
            previous = []
        elif plan.predecessor is not None:
            versions.set_links(
                d, {"predecessor-version": self.catalog.version_href(collection_id, plan.predecessor["id"])}
            )
        size, most = len(json.dumps(d).encode("utf-8")), self.max_body_bytes
        if size > most:  # the footprint is bounded (items.footprint); the other fields copied from the source are not
            raise PublishError(
                src.id,
                f"its mask item would be {size} bytes, more than the {most} that this tool reads back "
                "(STAC_CLOUDS2MASK_MAX_BODY_BYTES): not written",
            )
        self.catalog.write_item(d)
        if self.api is not None:
            self.api.write_item(self._for_api(d, self.api), src.collection_id)
        if plan.action == "new_version":
            self._deprecate(previous, d)
        return item

    def sync_api(self, batch_size: int = 200) -> int:
        """Push every item of the static catalog to the STAC API in bulk (upsert; see StacApi.write_items),
        e.g. once after many workers wrote their masks to the static catalog only. Returns the item count."""
        if self.api is None:
            raise InvalidInputError("no STAC API to publish to")
        api = self.api
        batch: list[dict[str, Any]] = []
        count = 0
        for d in self.catalog.iter_items():
            versions.retarget(d, lambda iid, cid=d["collection"]: api.item_href(cid, iid))
            batch.append(d)
            if len(batch) >= batch_size:
                count += len(batch)
                api.write_items(batch)
                batch = []
        if batch:
            count += len(batch)
            api.write_items(batch)
        return count

    def _deprecate(self, previous: list[dict[str, Any]], latest: dict[str, Any]) -> None:
        """Rewrite the older versions as versions.deprecated_copies says, where each of them is stored."""
        cid = latest["collection"]
        for old in versions.deprecated_copies(previous, self.catalog.version_href(cid, latest["id"])):
            if self.catalog.existing(cid, old["id"]) is not None:
                self.catalog.rewrite_item(old)
            if self.api is not None and self.api.existing(cid, old["id"]) is not None:
                self.api.rewrite_item(self._for_api(old, self.api))
