"""Scale-out commands: `run-payload` (stac-task payloads), `plan`, `run-shard` and `status` (AWS Batch arrays)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from .display import console, guarded, hide, markup, plain, progress, summary
from .options import (
    Anon,
    BatchSize,
    Bbox,
    Clip,
    CloudBuffer,
    Collection,
    Datetime,
    DeviceOverride,
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
    Resolution,
    ShadowBuffer,
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
            "(upload_options.path_template, tasks.clouds2mask), at a path or fsspec URL, or - for standard input.",
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
    patch_size, overlap, cloud_buffer, shadow_buffer, model_href, fail_fast, write_report, limits (may only
    lower the operator's), requester_pays, anon, endpoint_url, header_hosts (the hosts that receive the worker's
    STAC_CLOUDS2MASK_SOURCE_HEADERS), modifier (a named one: planetary-computer), clip (a GeoJSON polygon: mask
    only this area of interest of each item). Failed items are listed under 'clouds2mask:failures', items the
    AOI holds nothing of under 'clouds2mask:nothing_to_mask'.

    Exit status: 0 all items published or skipped, 1 some items failed, 2 bad invocation or bad payload.
    """

    def body() -> int:
        from stac_clouds2mask import task, write_bytes_atomic

        data = task.load_payload(payload_url)
        origin = None if payload_url == "-" else payload_url  # standard input: named by the operator, as a flag
        with progress(eta=False) as display:
            out, report, _ = task.run_payload(data, origin, device, display)
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
    resolution: Resolution = 20,
    model: Model = "auto",
    batch_size: BatchSize = None,
    patch_size: PatchSize = None,
    overlap: Overlap = None,
    cloud_buffer: CloudBuffer = None,
    shadow_buffer: ShadowBuffer = None,
    model_href: ModelHref = None,
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
        from stac_clouds2mask import InvalidInputError, RunConfig, batch

        options = storage_options(anon, requester_pays, endpoint_url, header, header_host)
        hide(options.headers)
        filters = search_filters(
            options,
            bbox=bbox,
            intersects=intersects,
            datetime=datetime,
            max_cloud=max_cloud,
            ids=id_list(ids),
            limit=limit,
            max_items=max_items,
            collection=collection,
        )
        params: dict[str, Any] = {"resolution": resolution, "model": model}
        for name, value in (
            ("batch_size", batch_size),
            ("patch_size", patch_size),
            ("overlap", overlap),
            ("cloud_buffer", cloud_buffer),
            ("shadow_buffer", shadow_buffer),
            ("publish_api", publish_api),
            ("model_href", model_href),
            ("anon", anon),
            ("endpoint_url", endpoint_url),
            ("modifier", modifier),  # a named one only: the shards' payloads hold it (checked with the parameters)
        ):
            if value is not None:
                params[name] = value
        if requester_pays:
            params["requester_pays"] = True
        if clip:
            aoi = filters.aoi()
            if aoi is None:
                raise InvalidInputError("--clip needs an area of interest: --bbox and/or --intersects")
            params["clip"] = aoi
        # checks resolution, model, patches and buffers early
        RunConfig(
            **{k: v for k, v in params.items() if k in RunConfig.__dataclass_fields__}, output=masks, device="cpu"
        )
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
            f"planned {manifest['item_count']} item(s) in {manifest['shard_count']} shard(s){note} -> "
            + markup(manifest["url"])
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
        console.print(f"shard {result.index}: {markup(result.payload_url)}")
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

            title = f"plan {markup(st.plan_id)}"
            table = Table("shard", "state", "items", "done", "failed", "missing", title=title)
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
                        typer.echo(f"shard {s.index}: {plain(i.key)}: {plain(i.detail)}")
            todo = st.indices("missing") + st.indices("failed")
            summary = (
                f"{len(st.indices('done'))} done, {len(st.indices('failed'))} failed, "
                f"{len(st.indices('missing'))} missing of {len(st.shards)} shard(s)"
            )
            typer.echo(summary + (f"; rerun indices: {','.join(map(str, sorted(todo)))}" if todo else ""))
        return 0 if st.complete else 1

    guarded(body)
