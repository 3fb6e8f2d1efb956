"""The options several commands share, declared once: sources, filters, storage, model and output.

Only typer is imported here; the package is imported inside the helpers, when a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from stac_clouds2mask import SearchFilters, StorageOptions


def checked(check: str):  # noqa: ANN201 (a click callback)
    """A callback that refuses a bad value with stac_clouds2mask.choices' check `check` while the command
    line is parsed: exit 2 at once, before torch and rasterio load."""

    def callback(value):  # noqa: ANN001, ANN202
        from stac_clouds2mask import choices

        if value is not None:
            try:
                getattr(choices, check)(value)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from exc
        return value

    return callback


FLAG = ""  # metavar of a boolean flag: typer would show "<bool>", as if it took a value
BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off"}

# sources
Sources = Annotated[
    list[str],
    typer.Argument(
        metavar="SOURCE...",
        help="STAC API root URL(s), static catalog / collection / item / ItemCollection files, or Sentinel-2 "
        "product folders (.SAFE, also zipped), at any path or fsspec URL (s3://, https://).",
        show_default=False,
    ),
]

# filters
Bbox = Annotated[
    Optional[tuple[float, float, float, float]],
    typer.Option(help="Area of interest W S E N in degrees (WGS84).", metavar="W S E N"),
]
Intersects = Annotated[
    Optional[str],
    typer.Option(metavar="FILE", help="Area of interest as a GeoJSON file (geometry, feature or feature collection)."),
]
Datetime = Annotated[
    Optional[str],
    typer.Option(
        metavar="DATETIME", help="RFC 3339 instant or interval, e.g. 2024-06-01/2024-06-30 or 2024-06-01T00:00:00Z/.."
    ),
]
MaxCloud = Annotated[
    Optional[float],
    typer.Option(
        metavar="PERCENT", help="Keep items whose eo:cloud_cover is at most this (%); items without it are left out."
    ),
]
Ids = Annotated[
    Optional[list[str]],
    typer.Option("--ids", metavar="ID", help="Only these item ids (repeat the option or separate with commas)."),
]
Limit = Annotated[Optional[int], typer.Option(metavar="N", help="At most this many items per source.")]
Collection = Annotated[
    Optional[list[str]],
    typer.Option(
        "--collection", "-c", metavar="ID", help="Source collection(s); for a STAC API the default is sentinel-2-l1c."
    ),
]

# storage
RequesterPays = Annotated[
    bool,
    typer.Option(
        "--requester-pays",
        metavar=FLAG,
        help="Pay for reads from requester-pays buckets (e.g. s3://sentinel-s2-l1c).",
    ),
]
Anon = Annotated[
    Optional[bool],
    typer.Option(
        "--anon/--no-anon",
        metavar=FLAG,
        help="Force anonymous or signed S3 requests (default: signed when AWS credentials are found).",
    ),
]
EndpointUrl = Annotated[
    Optional[str],
    typer.Option(
        metavar="URL", help="Custom S3 endpoint, e.g. https://eodata.dataspace.copernicus.eu (also AWS_ENDPOINT_URL)."
    ),
]

# model
Resolution = Annotated[
    int,
    typer.Option(
        metavar="METRES",
        callback=checked("check_resolution"),
        help="Processing grid in metres: 10, 20, 30 or 60. Data coarser than this is processed at its own resolution.",
    ),
]
Model = Annotated[
    str,
    typer.Option(
        metavar="NAME",
        help="auto (6-band when SWIR is present, L1C or L2A by the item's level) or a name from "
        "`stac-clouds2mask models`.",
    ),
]
BatchSize = Annotated[
    Optional[int],
    typer.Option(
        metavar="N", callback=checked("check_batch_size"), help="Patches per batch (default: sized for the device)."
    ),
]
Runtime = Annotated[
    str,
    typer.Option(
        metavar="RUNTIME",
        callback=checked("check_runtime"),
        help="auto (OpenVINO on a CPU, torch on CUDA), openvino (CPU only) or torch (the native PyTorch module). "
        "What ran is recorded in each item (clouds2mask:execution).",
    ),
]
Device = Annotated[
    str,
    typer.Option(
        metavar="DEVICE", callback=checked("check_device"), help="auto (CUDA when present, else CPU), cpu or cuda."
    ),
]
DeviceOverride = Annotated[
    Optional[str],
    typer.Option(
        metavar="DEVICE", callback=checked("check_device"), help="Override the payload's device: auto, cpu or cuda."
    ),
]

# output
PublishApi = Annotated[
    Optional[str],
    typer.Option(
        metavar="URL",
        help="Also publish the items to this STAC API (Transactions extension): POST, or PUT when the item exists.",
    ),
]


def flag(name: str, help: str) -> typer.models.OptionInfo:
    """A boolean option that takes no value (`--overwrite`, never `--overwrite true`)."""
    return typer.Option(name, metavar=FLAG, help=help)


def id_list(ids: list[str] | None) -> tuple[str, ...] | None:
    """--ids values, repeated or comma-separated, as one tuple (None when none are given)."""
    return tuple(i.strip() for v in ids or [] for i in v.split(",") if i.strip()) or None


def check_sources(sources: list[str]) -> None:
    """A boolean word among the sources is a value given to a flag (`--overwrite true`): say so."""
    import os

    from stac_clouds2mask import InvalidInputError

    for source in sources:
        if source.lower() in BOOLEAN_WORDS and not os.path.exists(source):
            raise InvalidInputError(
                f"{source!r} is not a source: boolean options are flags and take no value "
                f"(--overwrite, not --overwrite {source})"
            )


def storage_options(
    anon: bool | None = None, requester_pays: bool = False, endpoint_url: str | None = None
) -> StorageOptions:
    """The storage options, as the package's type."""
    from stac_clouds2mask import StorageOptions

    return StorageOptions(anon=anon, requester_pays=requester_pays, endpoint_url=endpoint_url)


def search_filters(
    options: StorageOptions,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    intersects: str | None = None,
    datetime: str | None = None,
    max_cloud: float | None = None,
    ids: tuple[str, ...] | None = None,
    limit: int | None = None,
    collection: list[str] | None = None,
) -> SearchFilters:
    """The filters, as the package's type (the AOI file read with `options`)."""
    from stac_clouds2mask import SearchFilters, load_geojson

    return SearchFilters(
        bbox=bbox,
        intersects=load_geojson(intersects, options) if intersects else None,
        datetime=datetime,
        max_cloud=max_cloud,
        ids=ids,
        limit=limit,
        collections=tuple(collection) if collection else None,
    )
