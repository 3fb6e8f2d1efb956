"""`stac-clouds2mask run`: mask every item the sources yield and publish COG masks plus STAC items."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer

from .display import console, guarded, progress, summary
from .options import (
    Anon,
    checked,
    BatchSize,
    Bbox,
    Collection,
    Datetime,
    Device,
    EndpointUrl,
    Ids,
    Intersects,
    Limit,
    MaxCloud,
    Model,
    PublishApi,
    RequesterPays,
    Resolution,
    Runtime,
    check_sources,
    flag,
    id_list,
    search_filters,
    storage_options,
)


def _headers(values: list[str] | None) -> dict[str, str]:
    """--api-header values as a dict, refusing names and values that would not be one valid header."""
    from stac_clouds2mask import InvalidInputError

    headers = {}
    for value in values or []:
        name, sep, text = value.partition(":")
        name = name.strip()
        if not sep or not name:
            raise InvalidInputError(
                "--api-header must look like 'Name: value' (got one without a name or ':'; the value is not shown)"
            )
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise InvalidInputError(f"--api-header name {name!r} is not a valid HTTP header name")
        if any(c in text for c in "\r\n\0"):
            raise InvalidInputError(f"--api-header {name!r} has a line break or NUL in its value (not shown)")
        headers[name] = text.strip()
    return headers


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
    datetime: Datetime = None,
    max_cloud: MaxCloud = None,
    ids: Ids = None,
    limit: Limit = None,
    collection: Collection = None,
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
) -> None:
    """Mask every item that the SOURCES yield for the filters, and publish COG masks plus STAC items to OUTPUT.

    [bold]Examples[/]

      stac-clouds2mask run ../shared/data/catalog.json -o ./masks

      stac-clouds2mask run --bbox 11.0 51.0 12.0 52.0 --datetime 2024-06-01/2024-06-30 --max-cloud 40 \
--requester-pays -o s3://my-bucket/masks

    [bold]Exit status[/]: 0 every item published or skipped; 1 some items failed (listed at the end; with
    --fail-fast the rest are not run); 2 bad invocation (an option, filter, source or AOI that cannot be used, an
    output that cannot be written or a --publish-api that does not answer, checked once before any item: nothing
    is written); 3 the search found no item (an unknown --ids or --collection, dates with no data; the sources
    and filters are named: nothing is written).

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
        from stac_clouds2mask import EARTH_SEARCH, InvalidInputError, RunConfig, unfinished_ids
        from stac_clouds2mask import run as run_pipeline

        check_sources(sources or [])
        options = storage_options(anon, requester_pays, endpoint_url)
        chosen = id_list(ids)
        if rerun_failed:
            if chosen:
                raise InvalidInputError("--rerun-failed and --ids both choose items: give one of them")
            chosen = unfinished_ids(rerun_failed, options)
            if not chosen:
                console.print(f"nothing to rerun: every item of {rerun_failed} was published or skipped")
                return 0
        filters = search_filters(
            options,
            bbox=bbox,
            intersects=intersects,
            datetime=datetime,
            max_cloud=max_cloud,
            ids=chosen,
            limit=limit,
            collection=collection,
        )
        config = RunConfig(
            output=output,
            publish_api=publish_api,
            api_headers={**({"Authorization": f"Bearer {api_token}"} if api_token else {}), **_headers(api_header)},
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
            fail_fast=fail_fast,
        )
        with progress() as display:
            report = run_pipeline(sources or [EARTH_SEARCH], config, filters, display)
        summary(report)
        return report.exit_code

    guarded(body)
