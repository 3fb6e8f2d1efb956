"""The command line: `stac-clouds2mask run` masks and publishes; `stac-clouds2mask models` lists the models."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgress,
)
from rich.table import Table

from . import __version__
from .errors import InvalidInputError
from .model import list_models
from .pipeline import Interrupted, ItemOutcome, Progress, RunConfig, RunReport, interruptible
from .pipeline import run as run_pipeline
from .search import EARTH_SEARCH, SearchFilters, load_geojson
from .storage import StorageOptions, read_json

app = typer.Typer(
    help=(
        "Cloud and cloud-shadow masks for Sentinel-2 items in STAC catalogs.\n\n"
        "Finds items (STAC API or static catalog), reads only the bands the model needs, runs the pretrained "
        "ukis-csmask U-Net natively in PyTorch, and publishes one COG mask plus one STAC item per source item.\n\n"
        "Mask legend: 0 clear, 1 cloud, 2 cloud shadow, 255 nodata."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console(stderr=True)


class RichProgressDisplay(Progress):
    """Items done / total, the current item and stage, and the time left."""

    def __init__(self, bar: RichProgress):
        self.bar = bar
        self.task = bar.add_task("searching", total=None)

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total, description=f"{total} item(s)")

    def stage(self, item_id: str, stage: str) -> None:
        self.bar.update(self.task, description=escape(f"{stage:<7} {_shown(item_id)}"))

    def item_done(self, outcome: ItemOutcome) -> None:
        mark = {
            "published": "[green]published",
            "skipped": "[yellow]skipped",
            "failed": "[red]failed",
            "not_run": "[yellow]not run",
        }[outcome.status]
        detail = f": {outcome.error}" if outcome.status == "failed" else ""
        timing = " ".join(f"{k} {v:.1f}s" for k, v in outcome.seconds.items())
        self.bar.console.print(
            f"{mark}[/] {escape(_shown(outcome.source_id) + detail)} {('(' + timing + ')') if timing else ''}"
        )
        self.bar.advance(self.task)


def _shown(item_id: str) -> str:
    """An item id as printed: as is when plain, quoted (control characters escaped) when not."""
    return item_id if item_id.isprintable() and item_id.strip() == item_id and item_id else repr(item_id)


def _summary(report: RunReport) -> None:
    pub, skip, fail, not_run = (report.by_status(s) for s in ("published", "skipped", "failed", "not_run"))
    rest = f", {len(not_run)} not run" if not_run else ""
    console.print(
        f"\n[bold]{len(pub)} published, {len(skip)} skipped, {len(fail)} failed{rest}[/] of {len(report.outcomes)} "
        "item(s)"
    )
    if fail:
        table = Table("source item", "stage", "error", title="Failed items", title_style="bold red")
        for o in fail:
            table.add_row(escape(_shown(o.source_id)), escape(o.stage or ""), escape(o.error or ""))
        console.print(table)
    if report.path:
        console.print(f"run report: {escape(report.path)}")
    elif report.report_error:
        console.print(f"[yellow]warning:[/] {escape(report.report_error)}")


def unfinished_ids(report_url: str, options: StorageOptions) -> tuple[str, ...]:
    """Source ids of the items a run report lists as failed or not run."""
    try:
        report = read_json(report_url, options)
        return tuple(i["source_id"] for i in report["items"] if i["status"] in ("failed", "not_run"))
    except FileNotFoundError as exc:
        raise InvalidInputError(f"run report not found: {report_url}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{report_url} is not a stac-clouds2mask run report: {exc}") from exc


def _headers(values: list[str] | None) -> dict[str, str]:
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


@app.command()
def run(
    sources: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="SOURCE...",
            help="STAC API root URL(s), or static catalog.json / collection.json / item / ItemCollection files at "
            "any path or fsspec URL (s3://, https://). Default: Earth Search v1.",
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
    bbox: Annotated[
        Optional[tuple[float, float, float, float]],
        typer.Option(help="Area of interest W S E N in degrees (WGS84).", metavar="W S E N"),
    ] = None,
    intersects: Annotated[
        Optional[str],
        typer.Option(
            metavar="FILE", help="Area of interest as a GeoJSON file (geometry, feature or feature collection)."
        ),
    ] = None,
    datetime: Annotated[
        Optional[str],
        typer.Option(
            metavar="DATETIME",
            help="RFC 3339 instant or interval, e.g. 2024-06-01/2024-06-30 or 2024-06-01T00:00:00Z/..",
        ),
    ] = None,
    max_cloud: Annotated[
        Optional[float],
        typer.Option(
            metavar="PERCENT",
            help="Keep items whose eo:cloud_cover is at most this (%); items without it are left out.",
        ),
    ] = None,
    ids: Annotated[
        Optional[list[str]],
        typer.Option("--ids", metavar="ID", help="Only these item ids (repeat the option or separate with commas)."),
    ] = None,
    limit: Annotated[Optional[int], typer.Option(metavar="N", help="At most this many items.")] = None,
    collection: Annotated[
        Optional[list[str]],
        typer.Option(
            "--collection",
            "-c",
            metavar="ID",
            help="Source collection(s); for a STAC API the default is sentinel-2-l1c.",
        ),
    ] = None,
    publish_api: Annotated[
        Optional[str],
        typer.Option(
            metavar="URL",
            help="Also publish the items to this STAC API (Transactions extension): POST, or PUT when the item exists.",
        ),
    ] = None,
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
    resolution: Annotated[
        int,
        typer.Option(
            metavar="METRES",
            help="Processing grid in metres: 10, 20, 30 or 60. Data coarser than this is processed at its own "
            "resolution.",
        ),
    ] = 20,
    device: Annotated[
        str, typer.Option(metavar="DEVICE", help="auto (CUDA when present, else CPU), cpu or cuda.")
    ] = "auto",
    model: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="auto (6-band when SWIR is present, L1C or L2A by the item's level) or a name from "
            "`stac-clouds2mask models`.",
        ),
    ] = "auto",
    batch_size: Annotated[
        Optional[int], typer.Option(metavar="N", help="Patches per batch (default: sized for the device).")
    ] = None,
    probabilities: Annotated[
        bool,
        typer.Option(
            "--probabilities",
            help="Also publish per-class probabilities (softmax x 255, uint8, 3 bands) as a second COG asset.",
        ),
    ] = False,
    precision: Annotated[
        str,
        typer.Option(
            metavar="PRECISION",
            help="auto (CUDA: fp16; CPU: the fastest of fp32 and, where the CPU has native bfloat16, bf16, measured "
            "once per machine), fp32, bf16 or fp16.",
        ),
    ] = "auto",
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the model: minutes of warm-up once per machine (cached), then ~1.3x faster patches "
            "on CPU; pays off for many full scenes.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace masks that are already published.")] = False,
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
        typer.Option(
            "--fail-fast", help="Stop at the first failed item (exit 1); the items after it are reported as not run."
        ),
    ] = False,
    requester_pays: Annotated[
        bool,
        typer.Option("--requester-pays", help="Pay for reads from requester-pays buckets (e.g. s3://sentinel-s2-l1c)."),
    ] = False,
    anon: Annotated[
        Optional[bool],
        typer.Option(
            "--anon/--no-anon",
            help="Force anonymous or signed S3 requests (default: signed when AWS credentials are found).",
        ),
    ] = None,
    endpoint_url: Annotated[
        Optional[str],
        typer.Option(
            metavar="URL",
            help="Custom S3 endpoint, e.g. https://eodata.dataspace.copernicus.eu (also AWS_ENDPOINT_URL).",
        ),
    ] = None,
) -> None:
    """Mask every item that the SOURCES yield for the filters, and publish COG masks plus STAC items to OUTPUT.

    [bold]Examples[/]

      stac-clouds2mask run ../shared/data/catalog.json -o ./masks

      stac-clouds2mask run --bbox 11.0 51.0 12.0 52.0 --datetime 2024-06-01/2024-06-30 --max-cloud 40 \
--requester-pays -o s3://my-bucket/masks

    [bold]Exit status[/]: 0 every item published or skipped (also when the search finds none); 1 some items failed
    (listed at the end; with --fail-fast the rest are not run); 2 bad invocation (an option, filter, source or
    AOI that cannot be used: nothing is written).

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
    try:
        options = StorageOptions(anon=anon, requester_pays=requester_pays, endpoint_url=endpoint_url)
        id_list = tuple(i.strip() for v in ids or [] for i in v.split(",") if i.strip()) or None
        if rerun_failed:
            if id_list:
                raise InvalidInputError("--rerun-failed and --ids both choose items: give one of them")
            id_list = unfinished_ids(rerun_failed, options)
            if not id_list:
                console.print(f"nothing to rerun: every item of {rerun_failed} was published or skipped")
                raise typer.Exit(0)
        filters = SearchFilters(
            bbox=bbox,
            intersects=load_geojson(intersects, options) if intersects else None,
            datetime=datetime,
            max_cloud=max_cloud,
            ids=id_list,
            limit=limit,
            collections=tuple(collection) if collection else None,
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
            probabilities=probabilities,
            fail_fast=fail_fast,
        )
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with interruptible(), RichProgress(*columns, console=console, transient=False) as bar:
            report = run_pipeline(sources or [EARTH_SEARCH], config, filters, RichProgressDisplay(bar))
    except InvalidInputError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    except Interrupted as exc:
        exit_interrupted(exc)
    _summary(report)
    raise typer.Exit(report.exit_code)


def exit_interrupted(exc: Interrupted) -> NoReturn:
    """Report an interrupted run (its report lists every item) and exit 128 + the signal number."""
    console.print(
        f"[red]interrupted[/] by {exc}: the items not finished are reported as not run "
        "(rerun them with --rerun-failed REPORT)"
    )
    if exc.report is not None:
        _summary(exc.report)
    # the report is written: a read still hanging in a worker thread (joined at interpreter exit) must
    # not delay the exit past the few seconds a scheduler allows between SIGTERM and SIGKILL
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exc.exit_code)


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """List the embedded pretrained models (ukis-csmask 1.0.0 weights, run natively in PyTorch)."""
    rows = [{"name": m.name, "level": m.level, "bands": list(m.bands), "version": m.version} for m in list_models()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "level", "bands", "version", title="Embedded models (auto picks 6-band when SWIR is present)")
    for r in rows:
        table.add_row(r["name"], r["level"], ", ".join(r["bands"]), r["version"])
    Console().print(table)


@app.callback(invoke_without_command=True)
def main(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


from . import cli_batch  # noqa: E402

cli_batch.register(app)
from . import cli_stack  # noqa: E402

cli_stack.register(app)
