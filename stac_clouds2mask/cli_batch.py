"""Scale-out commands: `run-payload` (stac-task payloads), `plan`, `run-shard` and `status` (AWS Batch arrays).

`register(app)` adds them to the main typer app (stac_clouds2mask.cli). The cli module is imported
lazily inside the commands, so either module may be imported first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from . import batch, task
from .errors import InvalidInputError
from .storage import StorageOptions, write_bytes_atomic, write_json_atomic


def _console():
    from .cli import console

    return console


def _guard(fn: Callable[[], int]) -> None:
    """Run a command body; InvalidInputError -> exit 2 with the message, else exit with its code."""
    from .cli import exit_interrupted
    from .pipeline import Interrupted, interruptible

    try:
        with interruptible():
            code = fn()
    except InvalidInputError as exc:
        _console().print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    except Interrupted as exc:
        exit_interrupted(exc)
    raise typer.Exit(code)


@contextmanager
def _progress() -> Iterator[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    from .cli import RichProgressDisplay

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with RichProgress(*columns, console=_console(), transient=False) as bar:
        yield RichProgressDisplay(bar)


def _summary(report) -> None:
    from .cli import _summary as summary

    summary(report)


DeviceOpt = Annotated[
    Optional[str], typer.Option(metavar="DEVICE", help="Override the payload's device: auto, cpu or cuda.")
]


def run_payload(
    payload_url: Annotated[
        str,
        typer.Argument(
            metavar="PAYLOAD_URL",
            help="stac-task payload: a FeatureCollection with 'features' (source items) and 'process' "
            "(upload_options.path_template, tasks.clouds2mask), at a path or fsspec URL.",
        ),
    ],
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            metavar="URL",
            help="Write the output payload here (path or fsspec URL); default: standard output.",
        ),
    ] = None,
    device: DeviceOpt = None,
) -> None:
    """Run a stac-task payload (stactask's Task contract): mask its items into the static catalog of
    upload_options.path_template ('<root>/${collection}/${id}') and emit the payload with 'features' replaced
    by the mask items.

    [bold]tasks.clouds2mask parameters[/] (all optional, over workflow_options): resolution, model, device,
    overwrite, batch_size, publish_api, collection_id, api_retries, compile, precision, probabilities,
    fail_fast, write_report, limits (may only lower the operator's), requester_pays, anon, endpoint_url.
    Failed items are listed under 'clouds2mask:failures'.

    Exit status: 0 all items published or skipped, 1 some items failed, 2 bad invocation or bad payload.
    """

    def body() -> int:
        data = task.load_payload(payload_url)
        with _progress() as progress:
            out, report, _ = task.run_payload(data, payload_url, device, progress)
        text = json.dumps(out, indent=2)
        if output:
            write_bytes_atomic(output, text.encode("utf-8"))
        else:
            typer.echo(text)
        _summary(report)
        return report.exit_code

    _guard(body)


def plan(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="SOURCE...",
            help="STAC API root URL(s) or static catalog / collection / item / ItemCollection files at any path or "
            "fsspec URL.",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            metavar="PLAN_URL",
            help="Folder for the plan: manifest.json and shards/shard-NNNNN.json, e.g. s3://bucket/plans/2024-summer/.",
        ),
    ] = ...,  # type: ignore[assignment]
    masks: Annotated[
        str,
        typer.Option(
            "--masks",
            metavar="TARGET",
            help="Where the shards publish masks: the static catalog root, e.g. s3://bucket/cloudmasks.",
        ),
    ] = ...,  # type: ignore[assignment]
    shards: Annotated[
        int,
        typer.Option(
            "--shards",
            "-n",
            metavar="N",
            help="Number of shards (array size); at most the number of items, at most 10000.",
        ),
    ] = 1,
    bbox: Annotated[
        Optional[tuple[float, float, float, float]],
        typer.Option(help="Area of interest W S E N in degrees (WGS84).", metavar="W S E N"),
    ] = None,
    intersects: Annotated[
        Optional[str], typer.Option(metavar="FILE", help="Area of interest as a GeoJSON file.")
    ] = None,
    datetime: Annotated[
        Optional[str],
        typer.Option(metavar="DATETIME", help="RFC 3339 instant or interval, e.g. 2024-06-01/2024-08-31."),
    ] = None,
    max_cloud: Annotated[
        Optional[float], typer.Option(metavar="PERCENT", help="Keep items whose eo:cloud_cover is at most this (%).")
    ] = None,
    ids: Annotated[
        Optional[list[str]],
        typer.Option("--ids", metavar="ID", help="Only these item ids (repeat or separate with commas)."),
    ] = None,
    limit: Annotated[Optional[int], typer.Option(metavar="N", help="At most this many items per source.")] = None,
    collection: Annotated[
        Optional[list[str]],
        typer.Option(
            "--collection",
            "-c",
            metavar="ID",
            help="Source collection(s); for a STAC API the default is sentinel-2-l1c.",
        ),
    ] = None,
    resolution: Annotated[int, typer.Option(metavar="METRES", help="Processing grid: 10, 20, 30 or 60 m.")] = 20,
    model: Annotated[str, typer.Option(metavar="NAME", help="auto or a name from `stac-clouds2mask models`.")] = "auto",
    batch_size: Annotated[
        Optional[int], typer.Option(metavar="N", help="Patches per batch (default: sized for the device).")
    ] = None,
    publish_api: Annotated[
        Optional[str], typer.Option(metavar="URL", help="Shards also publish to this STAC API (Transactions).")
    ] = None,
    requester_pays: Annotated[
        bool,
        typer.Option("--requester-pays", help="Sources are in requester-pays buckets (e.g. s3://sentinel-s2-l1c)."),
    ] = False,
    anon: Annotated[
        Optional[bool], typer.Option("--anon/--no-anon", help="Force anonymous or signed S3 requests.")
    ] = None,
    endpoint_url: Annotated[
        Optional[str], typer.Option(metavar="URL", help="Custom S3 endpoint for sources and outputs.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a different plan already at PLAN_URL.")
    ] = False,
) -> None:
    """Search the SOURCES and write N shard payloads (balanced by item count, deterministic) plus a manifest.

    Then run `run-shard PLAN_URL` as an AWS Batch array job of the printed size (each child picks its shard
    from AWS_BATCH_JOB_ARRAY_INDEX), and `status PLAN_URL` to see what is done, failed or missing.
    Prints a JSON summary (manifest URL, plan id, shard and item counts) on standard output.
    """

    def body() -> int:
        from .search import SearchFilters, load_geojson

        options = StorageOptions(anon=anon, requester_pays=requester_pays, endpoint_url=endpoint_url)
        id_list = tuple(i.strip() for v in ids or [] for i in v.split(",") if i.strip()) or None
        filters = SearchFilters(
            bbox=bbox,
            intersects=load_geojson(intersects, options) if intersects else None,
            datetime=datetime,
            max_cloud=max_cloud,
            ids=id_list,
            limit=limit,
            collections=tuple(collection) if collection else None,
        )
        params: dict[str, Any] = {"resolution": resolution, "model": model}
        for name, value in (
            ("batch_size", batch_size),
            ("publish_api", publish_api),
            ("anon", anon),
            ("endpoint_url", endpoint_url),
        ):
            if value is not None:
                params[name] = value
        if requester_pays:
            params["requester_pays"] = True
        from .pipeline import RunConfig

        RunConfig(output=masks, resolution=resolution, model=model, device="cpu")  # checks resolution and model early
        manifest = batch.plan(
            sources, output, masks, shards, filters, params, source_options=options, overwrite=overwrite
        )
        summary = {
            "manifest": manifest["url"],
            "plan": manifest["id"],
            "shards": manifest["shard_count"],
            "items": manifest["item_count"],
            "masks": manifest["output"],
        }
        typer.echo(json.dumps(summary))
        note = (
            f" (fewer than --shards {shards}: one item per shard at most)" if manifest["shard_count"] < shards else ""
        )
        _console().print(
            f"planned {manifest['item_count']} item(s) in {manifest['shard_count']} shard(s){note} -> {manifest['url']}"
        )
        return 0

    _guard(body)


def run_shard(
    plan_url: Annotated[
        str, typer.Argument(metavar="PLAN_URL", help="The plan folder (or its manifest.json) written by `plan`.")
    ],
    index: Annotated[
        Optional[int],
        typer.Option(
            "--index",
            "-i",
            metavar="I",
            help="Shard to run (default: $AWS_BATCH_JOB_ARRAY_INDEX, else the :INDEX suffix of $AWS_BATCH_JOB_ID; "
            "0 for a one-shard plan).",
        ),
    ] = None,
    output_payload: Annotated[
        Optional[str], typer.Option(metavar="URL", help="Also write the shard's output payload (mask items) here.")
    ] = None,
    device: DeviceOpt = None,
) -> None:
    """Run one shard of a plan: mask its items (skipping those already published with the same settings)
    and record the outcome under <masks>/.clouds2mask-runs/ for `status`.

    Exit status: 0 all items published or skipped, 1 some items failed, 2 bad invocation.
    """

    def body() -> int:
        with _progress() as progress:
            result = batch.run_shard(plan_url, index, device, progress)
        if output_payload:
            write_json_atomic(output_payload, result.output_payload)
        _console().print(f"shard {result.index}: {result.payload_url}")
        _summary(result.report)
        return result.report.exit_code

    _guard(body)


def status(
    plan_url: Annotated[str, typer.Argument(metavar="PLAN_URL", help="The plan folder (or its manifest.json).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Per shard: done, failed or missing, judged from what is published (and the shards' run records).

    Rerun the indices listed as missing or failed (or the whole array: done items are skipped).
    Exit status: 0 every shard done, 1 some shard not done, 2 bad invocation.
    """

    def body() -> int:
        st = batch.status(plan_url)
        if as_json:
            typer.echo(json.dumps(st.to_dict(), indent=2))
        else:
            from rich.console import Console
            from rich.table import Table

            table = Table("shard", "state", "items", "done", "failed", "missing", title=f"plan {st.plan_id}")
            for s in st.shards:
                color = {"done": "green", "failed": "red", "missing": "yellow"}[s.state]
                table.add_row(
                    str(s.index),
                    f"[{color}]{s.state}[/]",
                    str(len(s.items)),
                    str(s.count("done")),
                    str(s.count("failed")),
                    str(s.count("missing")),
                )
            Console().print(table)
            for s in st.shards:
                for i in s.items:
                    if i.state == "failed":
                        typer.echo(f"shard {s.index}: {i.key}: {i.detail}")
            todo = st.indices("missing") + st.indices("failed")
            summary = (
                f"{len(st.indices('done'))} done, {len(st.indices('failed'))} failed, "
                f"{len(st.indices('missing'))} missing of {len(st.shards)} shard(s)"
            )
            typer.echo(summary + (f"; rerun indices: {','.join(map(str, sorted(todo)))}" if todo else ""))
        return 0 if st.complete else 1

    _guard(body)


def register(app: typer.Typer) -> None:
    """Add run-payload, plan, run-shard and status to the app."""
    app.command("run-payload")(run_payload)
    app.command("plan")(plan)
    app.command("run-shard")(run_shard)
    app.command("status")(status)
