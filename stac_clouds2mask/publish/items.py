"""The STAC item of a published mask: one item per source item.

What an item records (DESIGN.md section 6): same footprint and time as its source, a `derived_from`
link to it, projection fields of the mask grid, the class legend on the mask asset, STAC 1.1 `bands`
(nodata, data type), processing (software, lineage, datetime, level L4, expression), file (size and
sha2-256 multihash of the bytes written), mlm (the model, and an asset holding the weights used), the
cloud/shadow/clear/valid percentages, a palette PNG thumbnail, the provenance that reruns compare
(versions.provenance) and, beside it, what ran (`clouds2mask:execution`: runtime and version, precision,
memory layout, threads, device, batch size, the patch plan). Versions and ids: versions.py.

Projection v1.2.0 with both `proj:epsg` and `proj:code`, not v2.0.0 (`proj:code` only): stackstac 0.5
and GDAL's STACIT driver before 3.10 read the CRS from `proj:epsg` alone, odc-stac and rio-tiler read
either, and v1.2.0 is the newest version whose schema allows both. Classification v2.0.0: the legend uses
its `nodata` and `title` class fields (and pystac rewrites v1 to v2 on read anyway). Render v2.0.0: how to draw
the mask in the legend's colours (`renders.cloudmask`, read by titiler's `/renders`, titiler-pgstac and STAC
browsers; a tile server otherwise draws the classes 0-2 near-black).
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib.metadata
import json
from typing import Any, NamedTuple

import numpy as np
import pystac
import shapely
import shapely.geometry

from .. import __version__
from ..classes import NODATA, PROBABILITY_SCALE
from ..infer.plan import DEFAULT_OVERLAP
from ..model.registry import ModelSpec
from ..report import public_url
from ..scene import BAND_SUBSTITUTES, MaskResult
from .legend import CLASS_NAMES, CLASSES, render_colormap
from .thumbnail import THUMBNAIL_ASSET
from .versions import mask_item_id, provenance

STAC_VERSION = "1.1.0"
EXT = {
    "proj": "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "mlm": "https://stac-extensions.github.io/mlm/v1.5.2/schema.json",
    # raster:bands on the model asset: mlm v1.5.2 wants the input bands described there (eo, raster or
    # item-level STAC 1.1 bands; the item's own data are not those bands)
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "version": "https://stac-extensions.github.io/version/v1.2.0/schema.json",
    "render": "https://stac-extensions.github.io/render/v2.0.0/schema.json",
}
EXECUTION = "clouds2mask:execution"  # what ran (infer.Prediction.record); reruns do not compare it
RUNTIME_NAMES = {"openvino": "OpenVINO", "torch": "PyTorch"}
MASK_ASSET = "cloudmask"
PROBABILITIES_ASSET = "probabilities"
MODEL_ASSET = "model"
CATEGORIES_ASSET = "cloudmask-categories"
COPERNICUS_TERMS = "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"
UKIS_CSMASK = "https://github.com/dlr-eoc/ukis-csmask"
UKIS_LICENSE = f"{UKIS_CSMASK}/blob/main/LICENSE"
PROJECT_URL = "https://github.com/stac-clouds2mask/stac-clouds2mask"
ARCHITECTURE = "U-Net (EfficientNet-B4 encoder)"
EXPRESSION_DEFAULTS: dict[str, Any] = {  # the RunConfig options that change a mask, and their defaults
    "patch_size": "auto",
    "overlap": DEFAULT_OVERLAP,
    "cloud_buffer": 0,
    "shadow_buffer": 0,
    "precision": "auto",
    "runtime": "auto",
}
MASK_BANDS = [
    {
        "name": "classes",
        "description": "0 clear, 1 cloud, 2 cloud shadow, 255 nodata",
        "nodata": NODATA,
        "data_type": "uint8",
    }
]
# a Sentinel-2 footprint has tens to hundreds of vertices; 10,000 is ~0.5 MB of JSON, far below the documents
# our own reader accepts (STAC_CLOUDS2MASK_MAX_BODY_BYTES)
MAX_FOOTPRINT_VERTICES = 10_000
MASK_RENDERS = {
    MASK_ASSET: {
        "title": "Cloud and cloud-shadow classes in the legend's colours",
        "assets": [MASK_ASSET],
        "colormap": render_colormap(),
        "nodata": NODATA,
        "resampling": "nearest",
    }
}
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


def mask_collection_id(source_collection: str | None) -> str:
    return f"{source_collection}-cloudmask" if source_collection else "cloudmask"


STATISTICS = {
    "valid": "clouds2mask:valid_percentage",
    "clear": "clouds2mask:clear_percentage",
    "cloud": "clouds2mask:cloud_percentage",
    "shadow": "clouds2mask:shadow_percentage",
}


def percentages(classes: np.ndarray, area: np.ndarray | None = None) -> dict[str, float]:
    """Cloud, shadow and clear as % of valid pixels; valid as % of all pixels of the grid, or of the pixels of
    ``area`` (bool, the AOI of a clipped mask, outside which the mask is nodata)."""
    counts = np.bincount(classes.ravel(), minlength=256)
    valid = int(counts[0] + counts[1] + counts[2])
    total = int(classes.size if area is None else np.count_nonzero(area))

    def pct(n: int, of: int) -> float:
        return round(100.0 * n / of, 4) if of else 0.0

    return {
        "cloud": pct(int(counts[1]), valid),
        "shadow": pct(int(counts[2]), valid),
        "clear": pct(int(counts[0]), valid),
        "valid": pct(valid, total),
    }


def statistics(properties: dict[str, Any]) -> dict[str, float] | None:
    """The valid / clear / cloud / shadow percentages a mask item records (None when it records none)."""
    found = {name: properties.get(key) for name, key in STATISTICS.items()}
    return found if all(isinstance(v, (int, float)) for v in found.values()) else None  # type: ignore[return-value]


def source_href(item: pystac.Item) -> str | None:
    """Where the source item lives: its self link, else its canonical link, else the API convention
    `<collection link>/items/<id>` when the item links to its collection by an absolute URL; without
    credentials (report.public_url: no user info, no signed query), as it is published."""
    href = item.get_self_href()
    if not href:
        canonical = item.get_single_link("canonical")
        collection = item.get_single_link("collection")
        if canonical:
            href = canonical.get_absolute_href() or canonical.href
        elif collection and "://" in (collection.href or "") and not collection.href.endswith(".json"):
            href = f"{collection.href.rstrip('/')}/items/{item.id}"
    return public_url(href)


def footprint(geometry: dict[str, Any] | None) -> dict[str, Any] | None:
    """The source's geometry as the mask item's: as it is up to MAX_FOOTPRINT_VERTICES vertices, else a
    simpler polygon that covers it (Douglas-Peucker at a growing tolerance, widened by that tolerance), so
    that no source geometry makes a mask item larger than what the tool itself reads back."""
    if geometry is None:
        return None
    shape = shapely.make_valid(shapely.geometry.shape(geometry))
    if shapely.get_num_coordinates(shape) <= MAX_FOOTPRINT_VERTICES:
        return geometry
    minx, miny, maxx, maxy = shape.bounds
    tolerance = max(maxx - minx, maxy - miny, 1e-9) / 1000
    while True:
        simple = shape.simplify(tolerance)
        if shapely.get_num_coordinates(simple) <= MAX_FOOTPRINT_VERTICES // 2:
            cover = simple.buffer(tolerance, join_style="mitre")
            if shapely.get_num_coordinates(cover) <= MAX_FOOTPRINT_VERTICES:
                return json.loads(shapely.to_geojson(cover))
        tolerance *= 4


def _proj_fields(result: MaskResult) -> dict[str, Any]:
    scene = result.scene
    height, width = scene.shape
    t = scene.transform
    epsg = scene.crs.to_epsg()
    fields: dict[str, Any] = (
        {"proj:epsg": epsg, "proj:code": f"EPSG:{epsg}"}
        if epsg
        else {"proj:epsg": None, "proj:code": None, "proj:wkt2": scene.crs.to_wkt()}
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


def mlm_fields(spec: ModelSpec, execution: dict[str, Any] | None = None) -> dict[str, Any]:
    """mlm extension fields describing the model that made the mask; the framework is the runtime that ran
    it (OpenVINO or PyTorch, from ``execution``; PyTorch where nothing says)."""
    runtime = str((execution or {}).get("runtime") or "torch")
    version = (execution or {}).get("runtime_version") or software().get(runtime, "")
    return {
        "mlm:name": spec.name,
        "mlm:architecture": ARCHITECTURE,
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:framework": RUNTIME_NAMES.get(runtime, runtime),
        "mlm:framework_version": str(version),
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


def model_asset(spec: ModelSpec, href: str, size: int, checksum: str) -> dict[str, Any]:
    """The mlm model asset: the ONNX file whose weights made the mask (copied from the ukis-csmask wheel
    into the catalog, see StaticCatalog.put_model, or one published copy verified against it, see
    shared_weights.py): OpenVINO runs this graph, torch a native module filled from its weights; size and
    checksum are those of the weights that ran."""
    return {
        "href": href,
        "type": "application/octet-stream; application=onnx",
        "title": f"{spec.name} weights (ONNX, from the ukis-csmask 1.0.0 wheel)",
        "description": "The pretrained weights that made this mask, as shipped in ukis-csmask 1.0.0 "
        f"(ukis_csmask/{spec.name}.onnx); stac-clouds2mask runs this graph with OpenVINO on a CPU and its "
        "weights as a native PyTorch module on CUDA (clouds2mask:execution says which ran). file:size and "
        "file:checksum are those of the file that ran.",
        "roles": ["mlm:model"],
        "mlm:artifact_type": "onnx",
        "file:size": size,
        "file:checksum": checksum,
        "raster:bands": [{"name": band} for band in spec.bands],
    }


def _ran(execution: dict[str, Any]) -> str:
    """'run by OpenVINO 2026.4.1 on the CPU (AMD EPYC) in bf16 with 2 threads' ('' when not recorded)."""
    if not execution:
        return ""
    runtime = RUNTIME_NAMES.get(str(execution.get("runtime")), execution.get("runtime"))
    how = [str(execution.get("precision"))]
    if execution.get("layout") in ("channels_last", "contiguous"):
        how.append(f"{execution['layout']} layout")
    if execution.get("threads"):
        how.append(f"{execution['threads']} threads")
    where = "the CPU" if execution.get("device") == "cpu" else str(execution.get("device")).upper()
    return (
        f", run by {runtime} {execution.get('runtime_version')} on {where} ({execution.get('device_name')}) "
        f"in {', '.join(how)}"
    )


def lineage(result: MaskResult, spec: ModelSpec) -> str:
    """How the mask was made, in words: the model, the input, the patch plan and runtime that ran."""
    s, e = result.settings, result.execution
    size = e.get("patch_size", s.get("patch_size"))
    size_text = f"{size[0]} x {size[1]}" if isinstance(size, list) else str(size)
    overlap = e.get("overlap", s.get("overlap"))
    overlap_text = (
        f" with {overlap} px overlap"
        if isinstance(overlap, int)
        else (f" with {overlap:.0%} overlap" if isinstance(overlap, float) else "")
    )
    return (
        f"Cloud and cloud-shadow classes of source item {result.scene.item.id} predicted by the pretrained "
        f"ukis-csmask U-Net {spec.name} ({spec.version}, EfficientNet-B4 encoder){_ran(e)}, on "
        f"{spec.level} reflectance of bands {', '.join(spec.bands)} resampled to {result.scene.resolution:g} m, "
        f"in {size_text} px patches{overlap_text}, blended probabilities, argmax; "
        f"all-nodata patches skipped; nodata (255) where any input band is nodata."
        + (
            f" Read and masked over the area of interest {result.scene.aoi.id} only: its window of the "
            f"whole-scene grid, with {s.get('aoi_margin')} px of context read around it and not published; "
            "nodata (255) outside the area."
            if result.scene.aoi is not None
            else ""
        )
        + buffers_text(s)
        + "".join(
            f" Band {band} read from {other}, standing in for it (absent from the source)."
            for band, other in result.scene.item.properties.get(BAND_SUBSTITUTES, {}).items()
        )
    )


def buffers_text(settings: dict[str, Any]) -> str:
    """The buffers' sentence of the lineage (buffers.py has the rule), empty without buffers."""
    grown = [
        f"within {settings[key]:g} m of the model's {name} became {name}"
        for key, name in (("cloud_buffer", "cloud"), ("shadow_buffer", "cloud shadow"))
        if settings.get(key)
    ]
    if not grown:
        return ""
    return (
        f" Buffers: clear pixels {' and then '.join(grown)}; the model's cloud, shadow and nodata pixels kept "
        "their class; probabilities unbuffered."
    )


def portable_href(href: str | None) -> str | None:
    """The href when another machine can resolve it (an http(s) or s3 URL), else None: a local path
    says nothing portable about where the source was."""
    return href if href and href.split("://", 1)[0] in ("http", "https", "s3", "gs", "az") else None


def processing_expression(result: MaskResult, spec: ModelSpec) -> dict[str, Any]:
    """How to reproduce the mask (mlm best practice: the call that applied the model), as a call of the
    package's public Python API on the source item, with the options that change the mask where they are
    not the defaults (all are recorded in clouds2mask:settings; the plan that ran is in clouds2mask:execution).
    SOURCE stands for a source that has no portable URL, AOI for the geometry in clouds2mask:aoi (a clipped
    mask)."""
    s = result.settings
    src = result.scene.item
    where = portable_href(source_href(src))
    first = repr(where) if where else "SOURCE"
    options = "".join(
        f", {key}={s[key]!r}" for key, default in EXPRESSION_DEFAULTS.items() if s.get(key, default) != default
    )
    clip = ", clip=AOI" if result.scene.aoi is not None else ""
    return {
        "format": "python",
        "expression": (
            f"stac_clouds2mask.run({first}, "
            f"stac_clouds2mask.RunConfig(output=OUTPUT, model={spec.name!r}, "
            f"resolution={s.get('resolution', result.scene.resolution)!r}{options}{clip}), "
            f"stac_clouds2mask.SearchFilters(ids=({src.id!r},)))"
        ),
    }


def software(execution: dict[str, Any] | None = None) -> dict[str, str]:
    """The software that made a mask: this package, the weights and the runtime that ran the network
    (without ``execution``, e.g. for a collection: the runtimes installed, either of which may run). Versions
    come from the packages' metadata: publishing imports neither torch nor OpenVINO."""
    if execution:
        runtime = {str(execution["runtime"]): str(execution["runtime_version"])}
    else:
        runtime = {}
        for name in ("torch", "openvino"):
            try:
                runtime[name] = importlib.metadata.version(name).split("+")[0]
            except importlib.metadata.PackageNotFoundError:
                pass
    return {"stac-clouds2mask": __version__, "ukis-csmask (weights)": "1.0.0", **runtime}


class WrittenFile(NamedTuple):
    """A file the publisher wrote: where it is, its size and its multihash (file extension)."""

    href: str
    size: int
    checksum: str

    def fields(self) -> dict[str, Any]:
        return {"file:size": self.size, "file:checksum": self.checksum}


def build_mask_item(
    result: MaskResult,
    spec: ModelSpec,
    collection_id: str,
    *,
    mask: WrittenFile,
    categories: WrittenFile,
    model: WrittenFile,
    thumbnail: WrittenFile | None = None,
    probabilities: WrittenFile | None = None,
    version: int = 1,
) -> pystac.Item:
    """The published item: same footprint and time as the source, derived_from it, fully described.

    mask, categories, model: the mask COG, its category-names sidecar and the model weights as written;
    thumbnail, probabilities: the palette PNG and the probabilities COG, when written.
    version: the version extension's version (versions.py).
    """
    src = result.scene.item
    aoi = result.scene.aoi
    stats = percentages(result.classes, aoi.inside if aoi is not None else None)
    props: dict[str, Any] = {}
    for key in (
        "datetime",
        "start_datetime",
        "end_datetime",
        "platform",
        "constellation",
        "instruments",
    ):
        if key in src.properties:
            props[key] = src.properties[key]
    props.update(_proj_fields(result))
    props.update(
        {
            "gsd": result.scene.resolution,
            "eo:cloud_cover": stats["cloud"],
            **{key: stats[name] for name, key in STATISTICS.items()},
            **provenance(src, result.settings),
            **({EXECUTION: dict(result.execution)} if result.execution else {}),
            "clouds2mask:source_collection": src.collection_id,
            "processing:software": software(result.execution),
            "processing:lineage": lineage(result, spec),
            "processing:level": "L4",
            "processing:expression": processing_expression(result, spec),
            "processing:datetime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "version": str(version),
            "deprecated": False,
            "renders": copy.deepcopy(MASK_RENDERS),
        }
    )
    if props["clouds2mask:source_updated"] is None:
        del props["clouds2mask:source_updated"]
    if aoi is not None:
        props["clouds2mask:aoi"] = {"id": aoi.id, "geometry": aoi.geometry}
    props.update(mlm_fields(spec, result.execution))
    geometry = footprint(aoi.geometry if aoi is not None else src.geometry)
    item = pystac.Item(
        id=mask_item_id(src.id, version, aoi.id if aoi is not None else None),
        geometry=geometry,
        bbox=src.bbox if geometry is src.geometry else list(shapely.geometry.shape(geometry).bounds),
        datetime=src.datetime,
        properties=props,
        stac_extensions=sorted(EXT.values()),
        collection=collection_id,
    )
    height, width = result.scene.shape
    item.add_asset(
        MASK_ASSET,
        pystac.Asset(
            href=mask.href,
            media_type=pystac.MediaType.COG,
            title="Cloud and cloud-shadow classes",
            description="0 clear, 1 cloud, 2 cloud shadow, 255 nodata (never clear); uint8 COG, mode overviews.",
            roles=["data", "cloud", "cloud-shadow"],
            extra_fields={
                "bands": [dict(b) for b in MASK_BANDS],
                "classification:classes": [dict(c) for c in CLASSES],
                **mask.fields(),
                "gsd": result.scene.resolution,
                "proj:shape": [height, width],
                "proj:transform": props["proj:transform"],
            },
        ),
    )
    item.add_asset(
        CATEGORIES_ASSET,
        pystac.Asset(
            href=categories.href,
            media_type="application/xml",
            title="Class names of the mask for GDAL and QGIS (GDAL PAM sidecar of the COG)",
            description="GDAL also keeps what it computes here: the COG carries its statistics so that "
            "`gdalinfo -stats` leaves this file as published, but a histogram (`gdalinfo -hist`) is added to it.",
            roles=["metadata"],
            extra_fields=categories.fields(),
        ),
    )
    if thumbnail is not None:
        item.add_asset(
            THUMBNAIL_ASSET,
            pystac.Asset(
                href=thumbnail.href,
                media_type=pystac.MediaType.PNG,
                title="Mask thumbnail (green clear, white cloud, purple shadow, transparent nodata)",
                roles=["thumbnail", "overview"],
                extra_fields=thumbnail.fields(),
            ),
        )
    if probabilities is not None:
        item.add_asset(
            PROBABILITIES_ASSET,
            pystac.Asset(
                href=probabilities.href,
                media_type=pystac.MediaType.COG,
                title="Class probabilities (softmax x 254; bands clear, cloud, cloud-shadow; 255 nodata)",
                description="Blended per-class softmax of the model, scaled to 0-254 (scale 1/254 gives 0-1), for "
                "users who threshold themselves; 255 where the mask is nodata.",
                roles=["data", "probability"],
                extra_fields={
                    "bands": [
                        {"name": name, "data_type": "uint8", "nodata": NODATA, "scale": 1 / PROBABILITY_SCALE}
                        for name in CLASS_NAMES
                    ],
                    **probabilities.fields(),
                },
            ),
        )
    item.add_asset(MODEL_ASSET, pystac.Asset.from_dict(model_asset(spec, *model)))
    href = source_href(src)
    if href:
        item.add_link(
            pystac.Link("derived_from", href, media_type=pystac.MediaType.GEOJSON, title=f"Source item {src.id}")
        )
    for link in LICENSE_LINKS:
        item.add_link(pystac.Link(link["rel"], link["href"], media_type=link["type"], title=link["title"]))
    return item
