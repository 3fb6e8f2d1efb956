"""STAC metadata of the published masks: one item per source item, one collection per source collection."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pystac
import torch

from . import __version__
from .cog import NODATA
from .model.registry import ModelSpec
from .scene import MaskResult

STAC_VERSION = "1.1.0"
EXT = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "mlm": "https://stac-extensions.github.io/mlm/v1.5.2/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
}
MASK_ASSET = "cloudmask"
MODEL_ASSET = "model"
CLASSES = [
    {"value": 0, "name": "clear", "description": "Clear: valid pixel without cloud or cloud shadow", "color_hint": "3C8C3C"},
    {"value": 1, "name": "cloud", "description": "Cloud", "color_hint": "FFFFFF"},
    {"value": 2, "name": "cloud-shadow", "description": "Cloud shadow", "color_hint": "5A3C8C"},
    {"value": NODATA, "name": "nodata", "description": "No data in the source item", "color_hint": "000000"},
]
COPERNICUS_TERMS = "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"
UKIS_CSMASK = "https://github.com/dlr-eoc/ukis-csmask"


def mask_item_id(source_id: str) -> str:
    return f"{source_id}_cloudmask"


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
    """Where the source item lives: its self link, else its canonical link."""
    href = item.get_self_href()
    if href:
        return href
    canonical = item.get_single_link("canonical")
    return canonical.href if canonical else None


def _proj_fields(result: MaskResult) -> dict[str, Any]:
    scene = result.scene
    height, width = scene.shape
    t = scene.transform
    epsg = scene.crs.to_epsg()
    fields: dict[str, Any] = {"proj:code": f"EPSG:{epsg}"} if epsg else {"proj:code": None, "proj:wkt2": scene.crs.to_wkt()}
    left, top = t.c, t.f
    right, bottom = left + t.a * width, top + t.e * height
    fields.update({
        "proj:shape": [height, width],
        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "proj:bbox": [left, bottom, right, top],
    })
    return fields


def mlm_fields(spec: ModelSpec) -> dict[str, Any]:
    """mlm extension fields describing the model that made the mask."""
    return {
        "mlm:name": spec.name,
        "mlm:architecture": "U-Net (EfficientNet-B4 encoder)",
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:framework": "pytorch",
        "mlm:framework_version": torch.__version__.split("+")[0],
        "mlm:pretrained": True,
        "mlm:pretrained_source": f"ukis-csmask 1.0.0 ({spec.version}), DLR",
        "mlm:input": [{
            "name": f"{spec.level} reflectance",
            "bands": list(spec.bands),
            "input": {"shape": [-1, len(spec.bands), -1, -1], "dim_order": ["batch", "bands", "height", "width"], "data_type": "float32"},
            "value_scaling": [{"type": "z-score", "mean": m, "stddev": s} for m, s in zip(spec.mean, spec.std)],
        }],
        "mlm:output": [{
            "name": "cloud and cloud-shadow classes",
            "tasks": ["semantic-segmentation"],
            "result": {"shape": [-1, len(spec.classes), -1, -1], "dim_order": ["batch", "channel", "height", "width"], "data_type": "float32"},
            "classification:classes": [dict(c) for c in CLASSES[:3]],
            "post_processing_function": {"format": "python", "expression": "numpy.argmax(softmax(logits), axis=1)"},
        }],
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
    return (
        f"Cloud and cloud-shadow classes of source item {result.scene.item.id} predicted by {spec.name} "
        f"({spec.version}, ukis-csmask pretrained U-Net, run natively in PyTorch) on {spec.level} reflectance of "
        f"bands {', '.join(spec.bands)} resampled to {result.scene.resolution:g} m, in overlapping "
        f"{s.get('patch_size')} px patches with smooth blending; nodata where any input band is nodata."
    )


def build_mask_item(
    result: MaskResult,
    spec: ModelSpec,
    mask_href: str,
    mask_size: int,
    mask_checksum: str,
    collection_id: str,
) -> pystac.Item:
    """The published item: same footprint and time as the source, derived_from it, fully described."""
    src = result.scene.item
    stats = percentages(result.classes)
    props: dict[str, Any] = {}
    for key in ("datetime", "start_datetime", "end_datetime", "platform", "constellation", "instruments"):
        if key in src.properties:
            props[key] = src.properties[key]
    props.update(_proj_fields(result))
    props.update({
        "eo:cloud_cover": stats["cloud"],
        "clouds2mask:cloud_percentage": stats["cloud"],
        "clouds2mask:shadow_percentage": stats["shadow"],
        "clouds2mask:clear_percentage": stats["clear"],
        "clouds2mask:valid_percentage": stats["valid"],
        "clouds2mask:source_item": src.id,
        "clouds2mask:settings": dict(result.settings),
        "processing:software": {"stac-clouds2mask": __version__},
        "processing:lineage": lineage(result, spec),
        "processing:level": "L4",
        "processing:datetime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    props.update(mlm_fields(spec))
    item = pystac.Item(
        id=mask_item_id(src.id),
        geometry=src.geometry,
        bbox=src.bbox,
        datetime=src.datetime,
        properties=props,
        stac_extensions=sorted(EXT.values()),
        collection=collection_id,
    )
    item.add_asset(MASK_ASSET, pystac.Asset(
        href=mask_href,
        media_type=pystac.MediaType.COG,
        title="Cloud and cloud-shadow classes",
        roles=["data", "cloud", "cloud-shadow"],
        extra_fields={
            "bands": [{"name": "classes", "nodata": NODATA, "data_type": "uint8"}],
            "classification:classes": [dict(c) for c in CLASSES],
            "file:size": mask_size,
            "file:checksum": mask_checksum,
            "gsd": result.scene.resolution,
        },
    ))
    item.add_asset(MODEL_ASSET, pystac.Asset.from_dict(model_asset(spec)))
    href = source_href(src)
    if href:
        item.add_link(pystac.Link("derived_from", href, media_type=pystac.MediaType.GEOJSON, title=f"Source item {src.id}"))
    item.add_link(pystac.Link("license", COPERNICUS_TERMS, title="Copernicus Sentinel data terms (source data)"))
    item.add_link(pystac.Link("license", f"{UKIS_CSMASK}/blob/main/LICENSE", title="ukis-csmask model weights: Apache-2.0"))
    return item


def build_collection(collection_id: str, source_collection: str | None, bbox: list[float], interval: list[str | None]) -> dict[str, Any]:
    """The target collection: legend, item_assets and summaries so users know what they get."""
    source = source_collection or "Sentinel-2"
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [EXT["classification"], EXT["processing"]],
        "id": collection_id,
        "title": f"Cloud and cloud-shadow masks of {source}",
        "description": (
            f"Cloud and cloud-shadow masks (0 clear, 1 cloud, 2 cloud shadow, 255 nodata) of the items of {source}, "
            "made by stac-clouds2mask with the pretrained ukis-csmask U-Net run natively in PyTorch."
        ),
        "license": "other",
        "providers": [
            {"name": "stac-clouds2mask", "roles": ["processor"], "processing:level": "L4"},
            {"name": "ESA / Copernicus", "roles": ["producer", "licensor"], "url": COPERNICUS_TERMS},
        ],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
        "summaries": {
            "processing:level": ["L4"],
            "classification:classes": [dict(c) for c in CLASSES],
        },
        "item_assets": {
            MASK_ASSET: {
                "type": pystac.MediaType.COG,
                "title": "Cloud and cloud-shadow classes",
                "roles": ["data", "cloud", "cloud-shadow"],
                "classification:classes": [dict(c) for c in CLASSES],
                "bands": [{"name": "classes", "nodata": NODATA, "data_type": "uint8"}],
            },
        },
        "links": [
            {"rel": "license", "href": COPERNICUS_TERMS, "title": "Copernicus Sentinel data terms (source data)"},
            {"rel": "license", "href": f"{UKIS_CSMASK}/blob/main/LICENSE", "title": "ukis-csmask model weights: Apache-2.0"},
        ],
    }
