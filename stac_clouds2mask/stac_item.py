"""STAC metadata of the published masks: one item per source item, one collection per target.

What an item records (DESIGN.md section 6): same footprint and time as its source, a `derived_from`
link to it, projection v2 fields of the mask grid, the class legend on the mask asset, STAC 1.1
`bands` (nodata, data type), processing (software, lineage, datetime, level L4, expression), file
(size and sha2-256 multihash of the bytes written), mlm (the model), the cloud/shadow/clear/valid
percentages, a palette PNG thumbnail, and the provenance that reruns compare
(`clouds2mask:source_item`, `clouds2mask:source_updated`, `clouds2mask:settings`).

Versions (version extension v1.2.0): the first mask of a source item is `<source-id>_cloudmask`
(version "1"). A rerun with other settings (model, resolution, patching, software) publishes
`<source-id>_cloudmask_v<N>` (version "N") with a `predecessor-version` link; older versions are
then marked `deprecated: true` and get `latest-version` (and the direct predecessor a
`successor-version`) links. `--overwrite` replaces a version in place instead.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pystac
import torch

from . import __version__
from .cog import NODATA
from .model.registry import ModelSpec
from .scene import BAND_SUBSTITUTES, MaskResult

STAC_VERSION = "1.1.0"
EXT = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "mlm": "https://stac-extensions.github.io/mlm/v1.5.2/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "version": "https://stac-extensions.github.io/version/v1.2.0/schema.json",
}
MASK_ASSET = "cloudmask"
THUMBNAIL_ASSET = "thumbnail"
PROBABILITIES_ASSET = "probabilities"
MODEL_ASSET = "model"
CLASSES = [
    {
        "value": 0,
        "name": "clear",
        "description": "Clear: valid pixel without cloud or cloud shadow",
        "color_hint": "3C8C3C",
    },
    {"value": 1, "name": "cloud", "description": "Cloud", "color_hint": "FFFFFF"},
    {"value": 2, "name": "cloud-shadow", "description": "Cloud shadow", "color_hint": "5A3C8C"},
    {
        "value": NODATA,
        "name": "nodata",
        "description": "No data in the source item",
        "color_hint": "000000",
        "nodata": True,
    },
]
COPERNICUS_TERMS = "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"
UKIS_CSMASK = "https://github.com/dlr-eoc/ukis-csmask"
UKIS_LICENSE = f"{UKIS_CSMASK}/blob/main/LICENSE"
PROJECT_URL = "https://github.com/stac-clouds2mask/stac-clouds2mask"
ARCHITECTURE = "U-Net (EfficientNet-B4 encoder)"
MASK_BANDS = [
    {
        "name": "classes",
        "description": "0 clear, 1 cloud, 2 cloud shadow, 255 nodata",
        "nodata": NODATA,
        "data_type": "uint8",
    }
]
LICENSE_LINKS = [
    {
        "rel": "license",
        "href": COPERNICUS_TERMS,
        "type": "application/pdf",
        "title": "Copernicus Sentinel data terms (source data)",
    },
    {
        "rel": "license",
        "href": UKIS_LICENSE,
        "type": "text/html",
        "title": "ukis-csmask model weights (DLR): Apache-2.0",
    },
]


def mask_item_id(source_id: str, version: int = 1) -> str:
    """`<source-id>_cloudmask` for the first version, `<source-id>_cloudmask_v<N>` for later ones."""
    base = f"{source_id}_cloudmask"
    return base if version <= 1 else f"{base}_v{version}"


def mask_collection_id(source_collection: str | None) -> str:
    return f"{source_collection}-cloudmask" if source_collection else "cloudmask"


def percentages(classes: np.ndarray) -> dict[str, float]:
    """Cloud, shadow and clear as % of valid pixels; valid as % of all pixels of the grid."""
    counts = np.bincount(classes.ravel(), minlength=256)
    valid = int(counts[0] + counts[1] + counts[2])
    total = int(classes.size)

    def pct(n: int, of: int) -> float:
        return round(100.0 * n / of, 4) if of else 0.0

    return {
        "cloud": pct(int(counts[1]), valid),
        "shadow": pct(int(counts[2]), valid),
        "clear": pct(int(counts[0]), valid),
        "valid": pct(valid, total),
    }


def source_href(item: pystac.Item) -> str | None:
    """Where the source item lives: its self link, else its canonical link, else the API convention
    `<collection link>/items/<id>` when the item links to its collection by an absolute URL."""
    href = item.get_self_href()
    if href:
        return href
    canonical = item.get_single_link("canonical")
    if canonical:
        return canonical.get_absolute_href() or canonical.href
    collection = item.get_single_link("collection")
    if collection and "://" in (collection.href or "") and not collection.href.endswith(".json"):
        return f"{collection.href.rstrip('/')}/items/{item.id}"
    return None


def provenance(source: pystac.Item, settings: dict[str, Any]) -> dict[str, Any]:
    """What makes two masks of a source the same: the source item (id, and its `updated` stamp when it
    has one) and the settings (model, model version, resolution, patching, software)."""
    return {
        "clouds2mask:source_item": source.id,
        "clouds2mask:source_updated": source.properties.get("updated"),
        "clouds2mask:settings": dict(settings),
    }


def same_provenance(published: dict[str, Any], source: pystac.Item, settings: dict[str, Any]) -> bool:
    props = published.get("properties", {})
    want = provenance(source, settings)
    return all(props.get(k) == v for k, v in want.items())


def _proj_fields(result: MaskResult) -> dict[str, Any]:
    scene = result.scene
    height, width = scene.shape
    t = scene.transform
    epsg = scene.crs.to_epsg()
    fields: dict[str, Any] = (
        {"proj:code": f"EPSG:{epsg}"} if epsg else {"proj:code": None, "proj:wkt2": scene.crs.to_wkt()}
    )
    left, top = t.c, t.f
    right, bottom = left + t.a * width, top + t.e * height
    fields.update(
        {
            "proj:shape": [height, width],
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "proj:bbox": [left, bottom, right, top],
        }
    )
    return fields


def mlm_fields(spec: ModelSpec) -> dict[str, Any]:
    """mlm extension fields describing the model that made the mask."""
    return {
        "mlm:name": spec.name,
        "mlm:architecture": ARCHITECTURE,
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:framework": "pytorch",
        "mlm:framework_version": torch.__version__.split("+")[0],
        "mlm:pretrained": True,
        "mlm:pretrained_source": f"ukis-csmask 1.0.0 ({spec.version}), DLR",
        "mlm:input": [
            {
                "name": f"{spec.level} reflectance",
                "bands": list(spec.bands),
                "input": {
                    "shape": [-1, len(spec.bands), -1, -1],
                    "dim_order": ["batch", "bands", "height", "width"],
                    "data_type": "float32",
                },
                "value_scaling": [{"type": "z-score", "mean": m, "stddev": s} for m, s in zip(spec.mean, spec.std)],
            }
        ],
        "mlm:output": [
            {
                "name": "cloud and cloud-shadow classes",
                "tasks": ["semantic-segmentation"],
                "result": {
                    "shape": [-1, len(spec.classes), -1, -1],
                    "dim_order": ["batch", "channel", "height", "width"],
                    "data_type": "float32",
                },
                "classification:classes": [dict(c) for c in CLASSES[:3]],
                "post_processing_function": {"format": "python", "expression": "numpy.argmax(softmax(logits), axis=1)"},
            }
        ],
    }


def model_asset(spec: ModelSpec) -> dict[str, Any]:
    """The mlm model asset: the pretrained ONNX weights as shipped in the ukis-csmask wheel."""
    return {
        "href": "https://pypi.org/project/ukis-csmask/1.0.0/",
        "type": "text/html",
        "title": f"{spec.name} weights (ukis-csmask 1.0.0 wheel, ukis_csmask/{spec.name}.onnx)",
        "description": "Pretrained ONNX weights shipped in the ukis-csmask wheel, run as a native PyTorch module.",
        "roles": ["mlm:model"],
        "mlm:artifact_type": "onnx",
        "raster:bands": [{"name": band} for band in spec.bands],
    }


def lineage(result: MaskResult, spec: ModelSpec) -> str:
    s = result.settings
    overlap = s.get("overlap")
    overlap_text = (
        f" with {overlap} px overlap"
        if isinstance(overlap, int)
        else (f" with {overlap:.0%} overlap" if isinstance(overlap, float) else "")
    )
    return (
        f"Cloud and cloud-shadow classes of source item {result.scene.item.id} predicted by the pretrained "
        f"ukis-csmask U-Net {spec.name} ({spec.version}, EfficientNet-B4 encoder, run natively in PyTorch) on "
        f"{spec.level} reflectance of bands {', '.join(spec.bands)} resampled to {result.scene.resolution:g} m, "
        f"in {s.get('patch_size')} px patches{overlap_text}, blended probabilities, argmax; "
        f"all-nodata patches skipped; nodata (255) where any input band is nodata."
        + "".join(
            f" Band {band} read from {other}, standing in for it (absent from the source)."
            for band, other in result.scene.item.properties.get(BAND_SUBSTITUTES, {}).items()
        )
    )


def processing_expression(result: MaskResult, spec: ModelSpec) -> dict[str, Any]:
    """How to reproduce the mask (mlm best practice: the call that applied the model), as a call of the
    package's public Python API on the source item (patch size and overlap are the package defaults
    recorded in clouds2mask:settings)."""
    s = result.settings
    src = result.scene.item
    where = source_href(src) or src.id
    return {
        "format": "python",
        "expression": (
            f"stac_clouds2mask.run({where!r}, stac_clouds2mask.RunConfig(output=OUTPUT, model={spec.name!r}, "
            f"resolution={s.get('resolution', result.scene.resolution)!r}), "
            f"stac_clouds2mask.SearchFilters(ids=({src.id!r},)))"
        ),
    }


def software() -> dict[str, str]:
    return {"stac-clouds2mask": __version__, "ukis-csmask (weights)": "1.0.0", "torch": torch.__version__.split("+")[0]}


def build_mask_item(
    result: MaskResult,
    spec: ModelSpec,
    mask_href: str,
    mask_size: int,
    mask_checksum: str,
    collection_id: str,
    *,
    thumbnail: tuple[str, int, str] | None = None,
    probabilities: tuple[str, int, str] | None = None,
    version: int = 1,
) -> pystac.Item:
    """The published item: same footprint and time as the source, derived_from it, fully described.

    thumbnail: (href, size, multihash) of the palette PNG, when one was written.
    version: the version extension's version (see the module docstring).
    """
    src = result.scene.item
    stats = percentages(result.classes)
    props: dict[str, Any] = {}
    for key in (
        "datetime",
        "start_datetime",
        "end_datetime",
        "platform",
        "constellation",
        "instruments",
        "mgrs:utm_zone",
        "mgrs:latitude_band",
        "mgrs:grid_square",
        "s2:mgrs_tile",
    ):
        if key in src.properties:
            props[key] = src.properties[key]
    props.update(_proj_fields(result))
    props.update(
        {
            "gsd": result.scene.resolution,
            "eo:cloud_cover": stats["cloud"],
            "clouds2mask:cloud_percentage": stats["cloud"],
            "clouds2mask:shadow_percentage": stats["shadow"],
            "clouds2mask:clear_percentage": stats["clear"],
            "clouds2mask:valid_percentage": stats["valid"],
            **provenance(src, result.settings),
            "clouds2mask:source_collection": src.collection_id,
            "processing:software": software(),
            "processing:lineage": lineage(result, spec),
            "processing:level": "L4",
            "processing:expression": processing_expression(result, spec),
            "processing:datetime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "version": str(version),
            "deprecated": False,
        }
    )
    if props["clouds2mask:source_updated"] is None:
        del props["clouds2mask:source_updated"]
    props.update(mlm_fields(spec))
    item = pystac.Item(
        id=mask_item_id(src.id, version),
        geometry=src.geometry,
        bbox=src.bbox,
        datetime=src.datetime,
        properties=props,
        stac_extensions=sorted(EXT.values()),
        collection=collection_id,
    )
    height, width = result.scene.shape
    item.add_asset(
        MASK_ASSET,
        pystac.Asset(
            href=mask_href,
            media_type=pystac.MediaType.COG,
            title="Cloud and cloud-shadow classes",
            description="0 clear, 1 cloud, 2 cloud shadow, 255 nodata (never clear); uint8 COG, mode overviews.",
            roles=["data", "cloud", "cloud-shadow"],
            extra_fields={
                "bands": [dict(b) for b in MASK_BANDS],
                "classification:classes": [dict(c) for c in CLASSES],
                "file:size": mask_size,
                "file:checksum": mask_checksum,
                "gsd": result.scene.resolution,
                "proj:shape": [height, width],
                "proj:transform": props["proj:transform"],
            },
        ),
    )
    if thumbnail is not None:
        t_href, t_size, t_checksum = thumbnail
        item.add_asset(
            THUMBNAIL_ASSET,
            pystac.Asset(
                href=t_href,
                media_type=pystac.MediaType.PNG,
                title="Mask thumbnail (green clear, white cloud, purple shadow, transparent nodata)",
                roles=["thumbnail", "overview"],
                extra_fields={"file:size": t_size, "file:checksum": t_checksum},
            ),
        )
    if probabilities is not None:
        p_href, p_size, p_checksum = probabilities
        item.add_asset(
            PROBABILITIES_ASSET,
            pystac.Asset(
                href=p_href,
                media_type=pystac.MediaType.COG,
                title="Class probabilities (softmax x 255; bands clear, cloud, cloud shadow)",
                description="Blended per-class softmax of the model, scaled to 0-255, for users who threshold "
                "themselves; 0 where the mask is nodata.",
                roles=["data", "probability"],
                extra_fields={
                    "bands": [
                        {"name": name, "data_type": "uint8", "statistics": {"minimum": 0, "maximum": 255}}
                        for name in ("clear", "cloud", "cloud-shadow")
                    ],
                    "file:size": p_size,
                    "file:checksum": p_checksum,
                },
            ),
        )
    item.add_asset(MODEL_ASSET, pystac.Asset.from_dict(model_asset(spec)))
    href = source_href(src)
    if href:
        item.add_link(
            pystac.Link("derived_from", href, media_type=pystac.MediaType.GEOJSON, title=f"Source item {src.id}")
        )
    for link in LICENSE_LINKS:
        item.add_link(pystac.Link(link["rel"], link["href"], media_type=link["type"], title=link["title"]))
    return item


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
    summary of a collection that declares it to be an object; the class legend (a list) therefore
    lives in item_assets.cloudmask and in `clouds2mask:class` as a JSON schema with one entry per class.
    """
    source = source_collection or "Sentinel-2"
    resolutions = resolutions or []
    summaries: dict[str, Any] = {
        "processing:level": {"type": "string", "const": "L4"},
        "clouds2mask:class": {
            "type": "integer",
            "oneOf": [{"const": c["value"], "title": c["name"], "description": c["description"]} for c in CLASSES],
        },
        "mlm:architecture": {"type": "string", "const": ARCHITECTURE},
        "mlm:framework": {"type": "string", "const": "pytorch"},
        "mlm:tasks": {"type": "array", "items": {"type": "string", "const": "semantic-segmentation"}},
        "mlm:pretrained_source": {"type": "string", "pattern": "^ukis-csmask 1\\.0\\.0"},
    }
    if models:
        summaries["mlm:name"] = _schema_enum(models, "string")
    if resolutions:
        summaries["gsd"] = {"minimum": min(resolutions), "maximum": max(resolutions)}
        summaries["clouds2mask:resolution"] = _schema_enum(resolutions, "number")
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": sorted([EXT["classification"], EXT["processing"], EXT["mlm"], EXT["file"]]),
        "id": collection_id,
        "title": f"Cloud and cloud-shadow masks of {source}",
        "description": (
            f"Cloud and cloud-shadow masks (0 clear, 1 cloud, 2 cloud shadow, 255 nodata) of the items of {source}, "
            "one Cloud-Optimized GeoTIFF per source item on its processing grid, made by stac-clouds2mask with the "
            "pretrained ukis-csmask U-Net (EfficientNet-B4 encoder, DLR) run natively in PyTorch. Each item links to "
            "its "
            "source (`derived_from`) and carries cloud, shadow, clear and valid percentages."
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
                "type": "text/html",
                "title": "Pretrained ukis-csmask weights",
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
    resolutions = (
        list(old.get("clouds2mask:resolution", {}).get("enum", []))
        if isinstance(old.get("clouds2mask:resolution"), dict)
        else []
    )
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
