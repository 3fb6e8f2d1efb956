"""The options several commands share, declared once: sources, filters, storage, model and output.

Only typer is imported here; the package is imported inside the helpers, when a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from stac_clouds2mask import SearchFilters, StorageOptions


def checked(check: str, *first: str):  # noqa: ANN201 (a click callback)
    """A callback that refuses a bad value with stac_clouds2mask.choices' check `check` (given the arguments
    `first`, then the value) while the command line is parsed: exit 2 at once, before torch and rasterio load.
    The message names the flag."""

    def callback(param: typer.CallbackParam, value):  # noqa: ANN001, ANN202
        from stac_clouds2mask import OptionError, choices

        if value is not None:
            try:
                getattr(choices, check)(*first, value)
            except OptionError as exc:
                raise typer.BadParameter(f"{param.opts[0]} {exc.reason}") from exc
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
    typer.Option(
        metavar="FILE|GEOJSON|-",
        help="Area of interest as GeoJSON (geometry, feature or feature collection): a file or URL, the JSON "
        "text itself, or - for standard input.",
    ),
]
Datetime = Annotated[
    Optional[str],
    typer.Option(
        metavar="DATETIME",
        help="Instant or interval in any form pystac-client accepts: 2024 (the year), 2024-06 (the month), "
        "2024-06-01 (the day), 2024-06-01T10:00:00Z, 2024-06-01/2024-06-30, ../2024-06-01 or 2024-06-01/.. (open).",
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
Clip = Annotated[
    bool,
    typer.Option(
        "--clip",
        metavar="",
        help="Read and mask each item only over the area of interest (--bbox and/or --intersects), in the item's "
        "own grid: the mask is the AOI's window of the whole-scene grid, nodata outside the AOI, with its own item "
        "id per AOI. Without --clip the AOI only selects items and whole scenes are masked.",
    ),
]
MaxItems = Annotated[
    Optional[int], typer.Option("--max-items", metavar="N", help="At most this many items per source.")
]
Limit = Annotated[
    Optional[int],
    typer.Option(
        metavar="N",
        help="Page size asked of a STAC API, as in stac-client. Deprecated meaning kept for now: without "
        "--max-items, --limit N is also the maximum number of items (with a warning).",
    ),
]
Collection = Annotated[
    Optional[list[str]],
    typer.Option(
        "--collections",
        "--collection",
        "-c",
        metavar="ID",
        help="Source collection id(s): repeat the option or separate with commas; for a STAC API the default is "
        "sentinel-2-l1c.",
    ),
]

# private and signed sources
Header = Annotated[
    Optional[list[str]],
    typer.Option(
        "--header",
        metavar="'NAME: VALUE'",
        help="HTTP header for the source STAC API and its http(s) files, e.g. 'Authorization: Bearer TOKEN' "
        "(also NAME=VALUE; repeat for more; also STAC_CLOUDS2MASK_SOURCE_HEADERS, one per line). Sent only to "
        "the hosts of the http(s) sources, or to --header-host.",
    ),
]
HeaderHost = Annotated[
    Optional[list[str]],
    typer.Option(
        "--header-host",
        metavar="HOST",
        help="Host (or host:port) that receives the --header values, instead of the sources' hosts; repeat for more.",
    ),
]
Modifier = Annotated[
    Optional[str],
    typer.Option(
        metavar="NAME",
        help="Change each source item before its files are read, as pystac-client's modifier: planetary-computer "
        "(signs Planetary Computer hrefs; pip install 'stac-clouds2mask\\[planetary-computer]') or "
        "MODULE:FUNCTION (a function that changes an item in place). Signed hrefs are never published.",
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
        metavar="DEVICE",
        callback=checked("check_device"),
        help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps (Apple GPUs; only when named).",
    ),
]
DeviceOverride = Annotated[
    Optional[str],
    typer.Option(
        metavar="DEVICE",
        callback=checked("check_device"),
        help="Override the payload's device: auto, cpu, cuda, cuda:N or mps.",
    ),
]
PatchSize = Annotated[
    Optional[int],
    typer.Option(
        metavar="PX",
        callback=checked("check_patch_size"),
        help="Patch size, a multiple of 32 from 64 to 2048 px (default: per scene, the patch height and width, each "
        "from 512 to 768 px, that keep the network busy the shortest time).",
    ),
]
Overlap = Annotated[
    Optional[int],
    typer.Option(
        metavar="PX",
        help="Overlap of neighbouring patches, blended: a multiple of 32, at most half the patch.",
    ),
]


def buffer_option(option: str, near: str, note: str) -> typer.models.OptionInfo:
    """--cloud-buffer / --shadow-buffer: a distance in metres, checked while the command line is parsed."""
    return typer.Option(
        option,
        metavar="METRES",
        callback=checked("check_buffer", option.lstrip("-").replace("-", "_")),
        help=f"Publish clear pixels within this distance of {near} as {near.split(' ', 1)[1]} ({note}).",
    )


CloudBuffer = Annotated[Optional[float], buffer_option("--cloud-buffer", "a cloud", "probabilities stay unbuffered")]
ShadowBuffer = Annotated[
    Optional[float], buffer_option("--shadow-buffer", "a cloud shadow", "where both buffers reach a pixel: cloud")
]
ModelHref = Annotated[
    Optional[str],
    typer.Option(
        metavar="URL",
        help="A folder or URL holding one published copy of the weights (<model name>.onnx, e.g. another "
        "catalog's models/): the items' model asset points there, after a byte-for-byte check, instead of a "
        "40 MB copy per model in the output.",
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
    anon: bool | None = None,
    requester_pays: bool = False,
    endpoint_url: str | None = None,
    header: list[str] | None = None,
    header_host: list[str] | None = None,
    modifier: str | None = None,
) -> StorageOptions:
    """The storage options, as the package's type: --header values over STAC_CLOUDS2MASK_SOURCE_HEADERS."""
    from stac_clouds2mask import StorageOptions, headers_from_env, parse_headers

    return StorageOptions(
        anon=anon,
        requester_pays=requester_pays,
        endpoint_url=endpoint_url,
        headers={**headers_from_env(), **parse_headers(header or [], "headers")},
        header_hosts=tuple(header_host or ()),
        modifier=modifier,
    )


def search_filters(
    options: StorageOptions,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    intersects: str | None = None,
    datetime: str | None = None,
    max_cloud: float | None = None,
    ids: tuple[str, ...] | None = None,
    limit: int | None = None,
    max_items: int | None = None,
    collection: list[str] | None = None,
) -> SearchFilters:
    """The filters, as the package's type (the AOI read with `options`). --limit without --max-items keeps
    its old meaning, the maximum (SearchFilters' rule, told here in flags)."""
    import warnings

    from stac_clouds2mask import SearchFilters, load_geojson

    from .display import warn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SearchFilters' own words name its fields, not flags
        filters = SearchFilters(
            bbox=bbox,
            intersects=load_geojson(intersects, options) if intersects else None,
            datetime=datetime,
            max_cloud=max_cloud,
            ids=ids,
            limit=limit,
            max_items=max_items,
            collections=id_list(collection),
        )
    if limit is not None and max_items is None:
        warn(
            f"--limit {limit} without --max-items is read as --max-items {limit}, the maximum number of items, as "
            "before; --limit will be only the page size (as in stac-client): use --max-items"
        )
    return filters
