"""The STAC collection of the published masks: legend, item_assets, summaries of what the items carry,
licences and providers, how to draw the masks (render extension: titiler-pgstac and titiler-stacapi read a
collection's `renders`), and the extent grown as items are added (by every target, static or API)."""

from __future__ import annotations

import copy
from typing import Any

import pystac

from .items import (
    ARCHITECTURE,
    COPERNICUS_TERMS,
    EXT,
    LICENSE_LINKS,
    MASK_ASSET,
    MASK_BANDS,
    MASK_RENDERS,
    MODEL_ASSET,
    PROJECT_URL,
    RUNTIME_NAMES,
    STAC_VERSION,
    THUMBNAIL_ASSET,
    UKIS_CSMASK,
    software,
)
from .legend import CLASSES


def _schema_enum(values: list[Any], kind: str) -> dict[str, Any]:
    return {"type": kind, "enum": sorted(set(values), key=str)}


def build_collection(
    collection_id: str,
    source_collection: str | None,
    bbox: list[float],
    interval: list[str | None],
    *,
    models: list[str] | None = None,
    resolutions: list[float] | None = None,
) -> dict[str, Any]:
    """The target collection: legend, item_assets, summaries, licences, providers and an mlm description.

    Summaries are JSON-schema objects and ranges (not lists): the mlm v1.5.2 schema requires every
    summary of a collection that declares it to be an object. Only fields that items carry are
    summarised; the class legend lives in item_assets.cloudmask.
    """
    source = source_collection or "Sentinel-2"
    resolutions = resolutions or []
    summaries: dict[str, Any] = {
        "processing:level": {"type": "string", "const": "L4"},
        "mlm:architecture": {"type": "string", "const": ARCHITECTURE},
        "mlm:framework": {"type": "string", "enum": sorted(RUNTIME_NAMES.values())},
        "mlm:tasks": {"type": "array", "items": {"type": "string", "const": "semantic-segmentation"}},
        "mlm:pretrained_source": {"type": "string", "pattern": "^ukis-csmask 1\\.0\\.0"},
    }
    if models:
        summaries["mlm:name"] = _schema_enum(models, "string")
    if resolutions:
        summaries["gsd"] = {"minimum": min(resolutions), "maximum": max(resolutions)}
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": sorted([EXT["classification"], EXT["processing"], EXT["mlm"], EXT["render"]]),
        "id": collection_id,
        "title": f"Cloud and cloud-shadow masks of {source}",
        "description": (
            f"Cloud and cloud-shadow masks (0 clear, 1 cloud, 2 cloud shadow, 255 nodata) of the items of {source}, "
            "one Cloud-Optimized GeoTIFF per source item on its processing grid, made by stac-clouds2mask with the "
            "pretrained ukis-csmask U-Net (EfficientNet-B4 encoder, DLR), run by OpenVINO on CPUs and natively in "
            "PyTorch on CUDA. Each item links to its source (`derived_from`), carries cloud, shadow, clear and valid "
            "percentages, and records what ran (clouds2mask:execution)."
        ),
        "keywords": ["cloud mask", "cloud shadow", "Sentinel-2", "semantic segmentation", "machine learning"],
        "license": "other",
        "providers": [
            {
                "name": "ESA / Copernicus",
                "roles": ["producer", "licensor"],
                "url": COPERNICUS_TERMS,
                "description": "Source data: Copernicus Sentinel data, free, full and open (attribution requested).",
            },
            {
                "name": "DLR (ukis-csmask)",
                "roles": ["licensor"],
                "url": UKIS_CSMASK,
                "description": "Pretrained model weights, Apache-2.0.",
            },
            {
                "name": "stac-clouds2mask",
                "roles": ["processor"],
                "url": PROJECT_URL,
                "processing:level": "L4",
                "processing:software": software(),
            },
        ],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
        "summaries": summaries,
        "renders": copy.deepcopy(MASK_RENDERS),
        "item_assets": {
            MASK_ASSET: {
                "type": pystac.MediaType.COG,
                "title": "Cloud and cloud-shadow classes",
                "roles": ["data", "cloud", "cloud-shadow"],
                "classification:classes": [dict(c) for c in CLASSES],
                "bands": [dict(b) for b in MASK_BANDS],
            },
            THUMBNAIL_ASSET: {
                "type": pystac.MediaType.PNG,
                "title": "Mask thumbnail (green clear, white cloud, purple shadow, transparent nodata)",
                "roles": ["thumbnail", "overview"],
            },
            MODEL_ASSET: {
                "type": "application/octet-stream; application=onnx",
                "title": "Pretrained ukis-csmask weights (ONNX)",
                "roles": ["mlm:model"],
                "mlm:artifact_type": "onnx",
            },
        },
        "links": [dict(link) for link in LICENSE_LINKS]
        + [
            {"rel": "related", "href": UKIS_CSMASK, "type": "text/html", "title": "ukis-csmask: the model's home"},
        ],
    }


def update_collection(coll: dict[str, Any], item: dict[str, Any] | pystac.Item) -> dict[str, Any]:
    """Refresh the collection's metadata (keeping its id, title, links and extent) and grow its extent
    and summaries so they cover `item`."""
    d = item.to_dict(include_self_link=False, transform_hrefs=False) if isinstance(item, pystac.Item) else item
    props = d.get("properties", {})
    old = coll.get("summaries", {})
    models = list(old.get("mlm:name", {}).get("enum", [])) if isinstance(old.get("mlm:name"), dict) else []
    gsd = old.get("gsd") if isinstance(old.get("gsd"), dict) else {}
    resolutions = [gsd[k] for k in ("minimum", "maximum") if isinstance(gsd.get(k), (int, float))]
    if props.get("mlm:name"):
        models.append(props["mlm:name"])
    if props.get("gsd"):
        resolutions.append(props["gsd"])
    fresh = build_collection(
        coll["id"],
        props.get("clouds2mask:source_collection"),
        coll["extent"]["spatial"]["bbox"][0],
        coll["extent"]["temporal"]["interval"][0],
        models=models,
        resolutions=resolutions,
    )
    for key in ("title", "description"):
        fresh[key] = coll.get(key, fresh[key])
    own = {(l["rel"], l["href"]) for l in fresh["links"]}
    fresh["links"] = fresh["links"] + [l for l in coll.get("links", []) if (l.get("rel"), l.get("href")) not in own]
    _merge_extent(fresh, d)
    return fresh


def _merge_extent(collection: dict[str, Any], item: dict[str, Any]) -> None:
    """Grow the collection's spatial and temporal extent to cover the item."""
    bbox = collection["extent"]["spatial"]["bbox"][0]
    ib = item.get("bbox")
    if ib:
        w, s, e, n = ib[:4] if len(ib) == 4 else (ib[0], ib[1], ib[3], ib[4])
        collection["extent"]["spatial"]["bbox"][0] = [
            min(bbox[0], w),
            min(bbox[1], s),
            max(bbox[2], e),
            max(bbox[3], n),
        ]
    props = item.get("properties", {})
    times = [t for t in (props.get("datetime"), props.get("start_datetime"), props.get("end_datetime")) if t]
    if times:
        lo, hi = collection["extent"]["temporal"]["interval"][0]
        collection["extent"]["temporal"]["interval"][0] = [
            min([lo, *times]) if lo else min(times),
            max([hi, *times]) if hi else max(times),
        ]


def new_collection(collection_id: str, item: pystac.Item | dict[str, Any]) -> dict[str, Any]:
    """A collection that covers just this item (extent grows as items are added)."""
    d = item.to_dict(include_self_link=False, transform_hrefs=False) if isinstance(item, pystac.Item) else item
    props = d.get("properties", {})
    times = [t for t in (props.get(k) for k in ("datetime", "start_datetime", "end_datetime")) if t]
    bbox = list(d["bbox"][:4]) if d.get("bbox") else [-180.0, -90.0, 180.0, 90.0]
    coll = build_collection(
        collection_id,
        props.get("clouds2mask:source_collection"),
        bbox,
        [min(times), max(times)] if times else [None, None],
    )
    return update_collection(coll, d)
