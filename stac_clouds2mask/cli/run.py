"""`stac-clouds2mask run`: mask every item the sources yield and publish COG masks plus STAC items."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .display import console, guarded, hide, markup, progress, summary
from .options import (
    Anon,
    checked,
    BatchSize,
    Bbox,
    Clip,
    CloudBuffer,
    Collection,
    Datetime,
    Device,
    EndpointUrl,
    Header,
    HeaderHost,
    Ids,
    Intersects,
    Limit,
    MaxCloud,
    MaxItems,
    Model,
    Modifier,
    ModelHref,
    Overlap,
    PatchSize,
    PublishApi,
    RequesterPays,
    Resolution,
    Runtime,
    ShadowBuffer,
    check_sources,
    flag,
    id_list,
    search_filters,
    storage_options,
)

if TYPE_CHECKING:
    from stac_clouds2mask import RunReport


def item_collection(report: RunReport) -> dict[str, Any]:
    """The mask items of a run (published now, or before with the same settings) as one ItemCollection
    dict, every href absolute, so that it reads anywhere (pystac.ItemCollection.from_dict, stac-client)."""
    from stac_clouds2mask import absolute_item_dict

    items = [absolute_item_dict(o.item) for o in report.outcomes if o.item is not None]
    return {"type": "FeatureCollection", "features": items}


def run(
    sources: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="SOURCE...",
            help="STAC API root URL(s), static catalog / collection / item / ItemCollection files, or Sentinel-2 "
            "product folders (.SAFE, also zipped), at any path or fsspec URL (s3://, https://). "
            "Default: Earth Search v1.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            metavar="TARGET",
            help="Where masks and the static catalog go: a folder or an fsspec URL such as s3://bucket/prefix.",
        ),
    ] = ...,  # type: ignore[assignment]
    bbox: Bbox = None,
    intersects: Intersects = None,
    clip: Clip = False,
    datetime: Datetime = None,
    max_cloud: MaxCloud = None,
    ids: Ids = None,
    limit: Limit = None,
    max_items: MaxItems = None,
    collection: Collection = None,
    header: Header = None,
    header_host: HeaderHost = None,
    modifier: Modifier = None,
    publish_api: PublishApi = None,
    api_header: Annotated[
        Optional[list[str]],
        typer.Option(
            metavar="'NAME: VALUE'", help="Extra HTTP header for --publish-api, e.g. 'Authorization: Bearer TOKEN'."
        ),
    ] = None,
    api_token: Annotated[
        Optional[str],
        typer.Option(
            metavar="TOKEN",
            envvar="STAC_CLOUDS2MASK_API_TOKEN",
            show_envvar=True,
            help="Bearer token for --publish-api (sent as 'Authorization: Bearer TOKEN').",
        ),
    ] = None,
    target_collection: Annotated[
        Optional[str],
        typer.Option(metavar="ID", help="Collection of the published masks (default: <source collection>-cloudmask)."),
    ] = None,
    api_retries: Annotated[
        int, typer.Option(metavar="N", help="Retries with backoff for 429 / 5xx / connection errors of --publish-api.")
    ] = 5,
    resolution: Resolution = 20,
    device: Device = "auto",
    runtime: Runtime = "auto",
    model: Model = "auto",
    batch_size: BatchSize = None,
    probabilities: Annotated[
        bool,
        flag(
            "--probabilities",
            "Also publish per-class probabilities (softmax x 254, 255 nodata, uint8, 3 bands) as a second COG asset.",
        ),
    ] = False,
    precision: Annotated[
        str,
        typer.Option(
            metavar="PRECISION",
            callback=checked("check_precision"),
            help="auto (CUDA: fp16; CPU: bf16 where the CPU has native bfloat16, AVX512-BF16 or AMX, else fp32), "
            "fp32, bf16 or fp16. Reruns compare what was asked; what ran is recorded beside it.",
        ),
    ] = "auto",
    compile_model: Annotated[
        bool,
        flag(
            "--compile",
            "torch.compile the model (torch runtime only: CUDA, or --runtime torch): minutes of warm-up once per "
            "machine (cached), then faster patches; pays off for many full scenes.",
        ),
    ] = False,
    patch_size: PatchSize = None,
    overlap: Overlap = 64,
    cloud_buffer: CloudBuffer = 0,
    shadow_buffer: ShadowBuffer = 0,
    model_href: ModelHref = None,
    overwrite: Annotated[bool, flag("--overwrite", "Replace masks that are already published.")] = False,
    rerun_failed: Annotated[
        Optional[str],
        typer.Option(
            metavar="REPORT",
            help="Rerun only the items that failed or did not run in this run report (a .clouds2mask-runs/run-*.json "
            "of an earlier run).",
        ),
    ] = None,
    fail_fast: Annotated[
        bool,
        flag("--fail-fast", "Stop at the first failed item (exit 1); the items after it are reported as not run."),
    ] = False,
    requester_pays: RequesterPays = False,
    anon: Anon = None,
    endpoint_url: EndpointUrl = None,
    print_items: Annotated[
        bool,
        flag(
            "--print-items",
            "Write the mask items (published now or before with the same settings) as one ItemCollection on "
            "standard output, for stac-client, jq or another run.",
        ),
    ] = False,
) -> None:
    """Mask every item that the SOURCES yield for the filters, and publish COG masks plus STAC items to OUTPUT.

    [bold]Examples[/]

      stac-clouds2mask run ../shared/data/catalog.json -o ./masks

      stac-clouds2mask run --bbox 11.0 51.0 12.0 52.0 --datetime 2024-06-01/2024-06-30 --max-cloud 40 \
--requester-pays -o s3://my-bucket/masks

      stac-clouds2mask run ../shared/data/safe/*.SAFE --resolution 60 --bbox -8.9 52.55 -8.6 52.75 --clip -o ./masks

    [bold]Areas of interest[/]: with --clip only the AOI's window of each item is read (COG tiles by range
    requests, JPEG 2000 tiles decoded) and masked, with 96 px of context around it that is not published. The mask
    item is '<source id>_cloudmask-aoi-<AOI id>' (one per source item and AOI; whole-scene masks and masks of
    other AOIs are left alone), its geometry the AOI inside the footprint, its percentages those of the AOI. An
    item whose footprint misses the AOI, or whose AOI holds no valid pixel, is skipped with the reason. Every run
    also writes the time series (run-<...>.csv: datetime, ids, status, valid / clear / cloud / shadow %) and a
    page (run-<...>.html: previews, percentages, a chart over time) beside its run report, and prints the series.

    [bold]Exit status[/]: 0 every item published or skipped; 1 some items failed (listed at the end; with
    --fail-fast the rest are not run); 2 bad invocation (an option, filter, source or AOI that cannot be used, an
    output that cannot be written or a --publish-api that does not answer, checked once before any item: nothing
    is written); 3 the search found no item (an unknown --collection, dates with no data; the sources and
    filters are named), or not every id of --ids (each id not found is named; ids that --limit left out do
    not count): nothing is written.

    [bold]Run report[/]: every run writes OUTPUT/.clouds2mask-runs/run-<UTC time>-<random>.json with, per item, the
    status, stage, error class and message and seconds per stage, plus the settings (no credentials) and totals.

    [bold]Item ids[/] become folder and file names: an id (or target collection id) that is empty, '.' or '..',
    has a leading or trailing blank, contains '/', '\\', '?', '#', '*', '[', ']', '{', '}', '::' or control
    characters, or is longer than 200 bytes (UTF-8) is refused as a failed item before anything is read or
    written. An all-nodata scene is published with valid 0 % (every pixel 255).

    [bold]Untrusted sources[/]: a remote catalog or item may only name remote files (never local paths, file:,
    /vsi..., '::' chains); rasters open as GeoTIFF or JPEG 2000 only. Limits and allowlists are set with
    STAC_CLOUDS2MASK_* environment variables (docs/aws-batch.md). SIGINT/SIGTERM: the run report lists every
    item (unfinished ones as not run) and the exit status is 128 + the signal number.
    """

    def body() -> int:
        from stac_clouds2mask import EARTH_SEARCH, InvalidInputError, RunConfig, parse_headers, unfinished_ids
        from stac_clouds2mask import run as run_pipeline

        check_sources(sources or [])
        options = storage_options(anon, requester_pays, endpoint_url, header, header_host, modifier)
        api_headers = {
            **({"Authorization": f"Bearer {api_token}"} if api_token else {}),
            **parse_headers(api_header or [], "api_headers"),
        }
        hide(options.headers, api_headers)
        chosen = id_list(ids)
        if rerun_failed:
            if chosen:
                raise InvalidInputError("--rerun-failed and --ids both choose items: give one of them")
            chosen = unfinished_ids(rerun_failed, options)
            if not chosen:
                console.print(f"nothing to rerun: every item of {markup(rerun_failed)} was published or skipped")
                return 0
        filters = search_filters(
            options,
            bbox=bbox,
            intersects=intersects,
            datetime=datetime,
            max_cloud=max_cloud,
            ids=chosen,
            limit=limit,
            max_items=max_items,
            collection=collection,
        )
        config = RunConfig(
            output=output,
            publish_api=publish_api,
            api_headers=api_headers,
            resolution=resolution,
            device=device,
            model=model,
            overwrite=overwrite,
            batch_size=batch_size,
            options=options,
            collection_id=target_collection,
            api_retries=api_retries,
            compile=compile_model,
            precision=precision,
            runtime=runtime,
            probabilities=probabilities,
            patch_size=patch_size,
            overlap=overlap,
            cloud_buffer=cloud_buffer,
            shadow_buffer=shadow_buffer,
            model_href=model_href,
            fail_fast=fail_fast,
        )
        with progress() as display:
            report = run_pipeline(sources or [EARTH_SEARCH], config, filters, display, clip=clip)
        if print_items:
            typer.echo(json.dumps(item_collection(report)))
        summary(report)
        return report.exit_code

    guarded(body)
