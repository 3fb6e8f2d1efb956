"""Scale-out commands: `run-payload` (stac-task payloads), `plan`, `run-shard` and `status` (AWS Batch arrays)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from .display import console, guarded, progress, summary
from .options import (
    Anon,
    BatchSize,
    Bbox,
    Collection,
    Datetime,
    DeviceOverride,
    EndpointUrl,
    Ids,
    Intersects,
    Limit,
    MaxCloud,
    Model,
    Resolution,
    Sources,
    flag,
    id_list,
    search_filters,
    storage_options,
)


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
    device: DeviceOverride = None,
) -> None:
    """Run a stac-task payload (stactask's Task contract): mask its items into the static catalog of
    upload_options.path_template ('<root>/${collection}/${id}') and emit the payload with 'features' replaced
    by the mask items.

    [bold]tasks.clouds2mask parameters[/] (all optional, over workflow_options): resolution, model, device,
    overwrite, batch_size, publish_api, collection_id, api_retries, compile, precision, runtime, probabilities,
    fail_fast, write_report, limits (may only lower the operator's), requester_pays, anon, endpoint_url.
    Failed items are listed under 'clouds2mask:failures'.

    Exit status: 0 all items published or skipped, 1 some items failed, 2 bad invocation or bad payload.
    """

    def body() -> int:
        from stac_clouds2mask import task, write_bytes_atomic

        data = task.load_payload(payload_url)
        with progress(eta=False) as display:
            out, report, _ = task.run_payload(data, payload_url, device, display)
        text = json.dumps(out, indent=2)
        if output:
            write_bytes_atomic(output, text.encode("utf-8"))
        else:
            typer.echo(text)
        summary(report)
        return report.exit_code

    guarded(body)


def plan(
    sources: Sources,
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
    bbox: Bbox = None,
    intersects: Intersects = None,
    datetime: Datetime = None,
    max_cloud: MaxCloud = None,
    ids: Ids = None,
    limit: Limit = None,
    collection: Collection = None,
    resolution: Resolution = 20,
    model: Model = "auto",
    batch_size: BatchSize = None,
    publish_api: Annotated[
        Optional[str], typer.Option(metavar="URL", help="Shards also publish to this STAC API (Transactions).")
    ] = None,
    requester_pays: Annotated[
        bool, flag("--requester-pays", "Sources are in requester-pays buckets (e.g. s3://sentinel-s2-l1c).")
    ] = False,
    anon: Anon = None,
    endpoint_url: EndpointUrl = None,
    overwrite: Annotated[bool, flag("--overwrite", "Replace a different plan already at PLAN_URL.")] = False,
) -> None:
    """Search the SOURCES and write N shard payloads (balanced by item count, deterministic) plus a manifest.

    Then run `run-shard PLAN_URL` as an AWS Batch array job of the printed size (each child picks its shard
    from AWS_BATCH_JOB_ARRAY_INDEX), and `status PLAN_URL` to see what is done, failed or missing.
    Prints a JSON summary (manifest URL, plan id, shard and item counts) on standard output.
    """

    def body() -> int:
        from stac_clouds2mask import RunConfig, batch

        options = storage_options(anon, requester_pays, endpoint_url)
        filters = search_filters(
            options,
            bbox=bbox,
            intersects=intersects,
            datetime=datetime,
            max_cloud=max_cloud,
            ids=id_list(ids),
            limit=limit,
            collection=collection,
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
        console.print(
            f"planned {manifest['item_count']} item(s) in {manifest['shard_count']} shard(s){note} -> {manifest['url']}"
        )
        return 0

    guarded(body)


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
    device: DeviceOverride = None,
) -> None:
    """Run one shard of a plan: mask its items (skipping those already published with the same settings)
    and record the outcome under <masks>/.clouds2mask-runs/ for `status`.

    Exit status: 0 all items published or skipped, 1 some items failed, 2 bad invocation.
    """

    def body() -> int:
        from stac_clouds2mask import batch, write_json_atomic

        with progress(eta=False) as display:
            result = batch.run_shard(plan_url, index, device, display)
        if output_payload:
            write_json_atomic(output_payload, result.output_payload)
        console.print(f"shard {result.index}: {result.payload_url}")
        summary(result.report)
        return result.report.exit_code

    guarded(body)


def status(
    plan_url: Annotated[str, typer.Argument(metavar="PLAN_URL", help="The plan folder (or its manifest.json).")],
    as_json: Annotated[bool, flag("--json", "Print JSON instead of a table.")] = False,
) -> None:
    """Per shard: done, failed or missing, judged from what is published (and the shards' run records).

    Rerun the indices listed as missing or failed (or the whole array: done items are skipped).
    Exit status: 0 every shard done, 1 some shard not done, 2 bad invocation.
    """

    def body() -> int:
        from stac_clouds2mask import batch

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

    guarded(body)
