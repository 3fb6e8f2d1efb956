"""A mutation check that stays: `python tests/mutations.py [NAME ...] [--list] [--baseline]`.

Each mutation below is a small deliberate bug: one exact text replacement in one product file (it must
match exactly once, or the check itself fails). Mutations are applied one at a time to a temporary copy
of the repository (tracked and untracked, non-ignored files), and the tests listed with each are run
there with PYTHONPATH pointing at the copy, stopping at the first failure. A mutation is *killed* when a
listed test fails and *SURVIVED* when they all pass; any other pytest outcome (collection error, no test
selected, timeout) is an ERROR and counts as surviving, since nothing showed the bug. One line per
mutation, then `mutations_survived=<n>` last. Not part of the default test run: it takes minutes.

`--baseline` first runs every listed selection on the unmutated copy: a killed mutation means nothing
if its tests fail without it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 900  # per mutation; a hang is an ERROR, not a kill


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # product file, relative to the repository root
    old: str  # must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids or file paths, run in this order with -x
    why: str = ""


MUTATIONS = (
    Mutation(
        "offset-dropped-before-infer",
        "stac_clouds2mask/runner.py",
        "offset=scene.offset,",
        "offset=0,",
        ("tests/test_run_offset.py", "tests/test_read.py::test_offset_removed_d_matches_e_where_they_overlap"),
        "the Scene knows the +1000 offset of baseline 04.00 but predict() is told 0",
    ),
    Mutation(
        "atomic-write-in-place",
        "stac_clouds2mask/storage.py",
        "    write(fs, tmp)\n    fs.mv(tmp, path)\n",
        "    write(fs, path)\n",
        (
            "tests/test_crash_publish.py::test_a_reader_finds_only_whole_files_and_a_rerun_leaves_no_temporaries",
            "tests/test_storage.py",
            "tests/test_publish.py::test_sigkill_mid_batch_on_s3_then_rerun_gives_a_whole_catalog",
        ),
        "documents and assets written under their final name: a crash leaves a partial object",
    ),
    Mutation(
        "item-drops-proj-and-mlm-extensions",
        "stac_clouds2mask/publish/items.py",
        "stac_extensions=sorted(EXT.values()),",
        'stac_extensions=sorted(v for k, v in EXT.items() if k not in ("proj", "mlm")),',
        (
            "tests/test_extensions.py",
            "tests/test_publish.py::test_item_and_collection_are_complete_and_valid",
        ),
        "proj:* and mlm:* fields kept, their schemas no longer declared (so never applied)",
    ),
    Mutation(
        "clouds2mask-percentage-as-string",
        "stac_clouds2mask/publish/items.py",
        "**{key: stats[name] for name, key in STATISTICS.items()},",
        '**{key: str(stats[name]) if name == "cloud" else stats[name] for name, key in STATISTICS.items()},',
        (
            "tests/test_extensions.py",
            "tests/test_publish.py::test_item_and_collection_are_complete_and_valid",
        ),
        "a clouds2mask:* field of the wrong type: only a schema of our own notices",
    ),
    Mutation(
        "overviews-average-classes",
        "stac_clouds2mask/publish/cog.py",
        'path, "mode", (MASK_DESCRIPTION,)',
        'path, "average", (MASK_DESCRIPTION,)',
        (
            "tests/test_overviews.py",
            "tests/test_publish.py::test_item_and_collection_are_complete_and_valid",
        ),
        "mask overviews averaged: class 1 next to 0 becomes a class that does not exist, or the wrong one",
    ),
    Mutation(
        "redaction-off",
        "stac_clouds2mask/report.py",
        "    if text is None:\n        return None\n    out = _URL.sub(",
        "    if True:\n        return text\n    out = _URL.sub(",
        (
            "tests/test_canaries.py",
            "tests/test_security.py::test_no_credential_reaches_any_output",
        ),
        "redact() returns its input: end-to-end checks only (the unit test of redact() is left out on purpose)",
    ),
    Mutation(
        "redaction-skipped-for-failed-items",
        "stac_clouds2mask/runner.py",
        "error=redact(error, self._secrets()),",
        "error=error,",
        (
            "tests/test_canaries.py",
            "tests/test_security.py::test_no_credential_reaches_any_output",
        ),
        "a failed item's error goes into outcomes and the run report unredacted",
    ),
    Mutation(
        "flat-blending-window",
        "stac_clouds2mask/infer/engine.py",
        "return torch.where(edge < ramp, 0.5 - 0.5 * torch.cos(torch.pi * edge / ramp), 1.0).float()",
        "return torch.ones(length)",
        (
            "tests/test_infer.py::test_blend_window_is_a_raised_cosine_ramp",
            "tests/test_infer.py::test_blending_lets_the_inside_view_win_over_patch_edges",
            "tests/test_fidelity.py",
        ),
        "patches blended with equal weights: seams where a patch edge sees less context",
    ),
    Mutation(
        "search-max-cloud-inverted",
        "stac_clouds2mask/search.py",
        "if cloud is None or cloud > f.max_cloud:",
        "if cloud is None or cloud < f.max_cloud:",
        ("tests/test_search.py",),
        "search stage: --max-cloud keeps the cloudy items and drops the clear ones",
    ),
    Mutation(
        "read-nearest-instead-of-average",
        "stac_clouds2mask/read.py",
        "resampling = Resampling.average if abs(ds.transform.a) < res - 1e-6 else Resampling.nearest",
        "resampling = Resampling.nearest",
        ("tests/test_read.py::test_finer_bands_are_box_averaged_onto_a_coarser_grid", "tests/test_read.py"),
        "read stage: finer bands subsampled instead of box-averaged onto the processing grid",
    ),
    Mutation(
        "infer-nodata-becomes-clear",
        "stac_clouds2mask/infer/engine.py",
        "cls[none] = NODATA",
        "cls[none] = 0",
        ("tests/test_infer.py",),
        "infer stage: pixels without data are called clear",
    ),
    Mutation(
        "publish-wrong-checksum",
        "stac_clouds2mask/publish/cog.py",
        'return "1220" + digest.hexdigest()',
        'return "1220" + digest.hexdigest()[::-1]',
        (
            "tests/test_crash_publish.py::test_a_reader_finds_only_whole_files_and_a_rerun_leaves_no_temporaries",
            "tests/test_publish.py::test_item_and_collection_are_complete_and_valid",
        ),
        "publish stage: file:checksum does not match the bytes published",
    ),
    Mutation(
        "overwrite-keeps-the-old-item",
        "stac_clouds2mask/publish/static.py",
        "write_json_atomic(item_url, d, self.options)\n        self.link_item(d)",
        "create_exclusive(item_url, json.dumps(d).encode(), self.options)\n        self.link_item(d)",
        (
            "tests/test_publish.py::test_rerun_skips_changed_settings_make_a_new_version_overwrite_replaces",
            "tests/test_pipeline.py::test_rerun_skips_and_overwrite_replaces",
        ),
        "--overwrite reports the item published but leaves the old item JSON in place",
    ),
    Mutation(
        "source-headers-not-sent-to-files",
        "stac_clouds2mask/storage.py",
        'return {"client_kwargs": {"headers": headers}}',
        "return {}",
        (
            "tests/test_private_sources.py::test_headers_go_only_to_their_hosts",
            "tests/test_private_sources.py::test_private_api_and_signed_files_end_to_end",
        ),
        "read stage: --header reaches the STAC API but not the files read through fsspec",
    ),
    Mutation(
        "source-headers-to-every-host",
        "stac_clouds2mask/storage.py",
        "return dict(self.headers) if self.headers and host(url) in self.header_hosts else {}",
        "return dict(self.headers)",
        ("tests/test_private_sources.py::test_headers_go_only_to_their_hosts",),
        "read stage: a private API's credentials go to whatever host an item's asset names",
    ),
    Mutation(
        "source-headers-not-sent-to-the-api",
        "stac_clouds2mask/search.py",
        "client = Client.open(url, stac_io=stac_io, timeout=60, request_modifier=with_headers)",
        "client = Client.open(url, stac_io=stac_io, timeout=60)",
        ("tests/test_private_sources.py::test_headers_go_only_to_their_hosts",),
        "search stage: a private API never receives its key (headers reach the files only)",
    ),
    Mutation(
        "modifier-not-applied",
        "stac_clouds2mask/read.py",
        "signed = modified(item, options.modifier) if options else item",
        "signed = item",
        ("tests/test_private_sources.py::test_the_published_item_keeps_the_unsigned_hrefs",),
        "read stage: --modifier parses but the files are opened unsigned",
    ),
    Mutation(
        "signed-item-published",
        "stac_clouds2mask/read.py",
        "    return Scene(\n        item=item,",
        "    return Scene(\n        item=signed,",
        ("tests/test_private_sources.py::test_the_published_item_keeps_the_unsigned_hrefs",),
        "read stage: the signed copy flows on to publishing (SAS tokens in published items)",
    ),
    Mutation(
        "payload-modifier-import-path",
        "stac_clouds2mask/task.py",
        'resolve_modifier(params.get("modifier"), named_only=True)',
        'resolve_modifier(params.get("modifier"), named_only=False)',
        ("tests/test_private_sources.py::test_payload_names_a_modifier_and_header_hosts_but_holds_no_header",),
        "a payload may name MODULE:FUNCTION and so run code of its choosing on the worker",
    ),
    Mutation(
        "api-error-not-redacted",
        "stac_clouds2mask/search.py",
        'return (f"HTTP {status}: " if status else "") + (redact(str(exc), hidden) or "")',
        'return (f"HTTP {status}: " if status else "") + str(exc)',
        ("tests/test_private_sources.py::test_a_wrong_key_is_refused_and_not_shown",),
        "search stage: an API that echoes the key puts it in the error a Python caller gets",
    ),
    Mutation(
        "log-lines-not-redacted",
        "stac_clouds2mask/cli/display.py",
        'return redact(super().format(record), OUTPUT.hidden) or ""',
        "return super().format(record)",
        ("tests/test_private_sources.py::test_private_api_and_signed_files_end_to_end",),
        "-vv logs pystac-client's request headers, the source key among them",
    ),
    Mutation(
        "datetime-year-read-as-its-first-day",
        "stac_clouds2mask/search.py",
        'return ItemSearch("", datetime=text).get_parameters()["datetime"]',
        'return ItemSearch("", datetime=text + "-01-01" if len(text) == 4 else text).get_parameters()["datetime"]',
        ("tests/test_search.py::test_every_datetime_form_pystac_client_accepts",),
        "search stage: --datetime 2017 selects January 1st only, not the year pystac-client means",
    ),
    Mutation(
        "max-items-ignored-on-static-sources",
        "stac_clouds2mask/search.py",
        "return list(_limit(_filter_static(found, filters), filters.max_items))",
        "return list(_limit(_filter_static(found, filters), filters.limit))",
        ("tests/test_search.py::test_max_items_is_the_maximum_and_limit_the_page_size",),
        "search stage: --max-items parses but static sources take every item",
    ),
    Mutation(
        "cli-errors-name-python-fields",
        "stac_clouds2mask/cli/display.py",
        "return f\"{flag_of(exc.field)}{'' if exc.reason.startswith(':') else ' '}{exc.reason}\"",
        "return str(exc)",
        ("tests/test_bad_inputs.py::test_bad_invocation",),
        "the command line says max_items where its flag is --max-items",
    ),
    Mutation(
        "print-items-skips-the-skipped",
        "stac_clouds2mask/runner.py",
        "item=pystac.Item.from_dict(found) if found else None,",
        "item=None,",
        ("tests/test_cli_output.py::test_print_items_patches_progress_and_a_rerun",),
        "--print-items prints nothing on a rerun that skips every item",
    ),
    Mutation(
        "patches-progress-dropped",
        "stac_clouds2mask/runner.py",
        "            self.progress.patches(done, total)\n",
        "            pass\n",
        ("tests/test_cli_output.py::test_print_items_patches_progress_and_a_rerun",),
        "the display never hears of the patches of the scene being inferred",
    ),
    Mutation(
        "execution-records-the-default-patch-size",
        "stac_clouds2mask/infer/engine.py",
        '"patch_size": [self.plan.patch_h, self.plan.patch_w],',
        '"patch_size": [DEFAULT_PATCH_SIZE, DEFAULT_PATCH_SIZE],',
        ("tests/test_provenance.py::test_the_plan_recomputed_from_the_published_mask_is_the_one_the_item_records",),
        "provenance: the item records the default patch size, not the plan fitted to the scene",
    ),
    Mutation(
        "execution-not-published",
        "stac_clouds2mask/publish/items.py",
        "**({EXECUTION: dict(result.execution)} if result.execution else {}),",
        "",
        ("tests/test_provenance.py::test_the_plan_recomputed_from_the_published_mask_is_the_one_the_item_records",),
        "provenance: what ran never reaches the item",
    ),
    Mutation(
        "settings-record-the-precision-that-ran",
        "stac_clouds2mask/config.py",
        '"precision": config.precision,',
        '"precision": __import__("stac_clouds2mask.infer.cpu").infer.cpu.cpu_precision(config.precision),',
        ("tests/test_provenance.py::test_a_rerun_on_a_machine_that_would_choose_another_precision_skips",),
        "rerun rule: the machine's choice joins the compared settings, so a rerun elsewhere makes a new version",
    ),
    Mutation(
        "patch-rows-not-overlapped",
        "stac_clouds2mask/infer/engine.py",
        "started.append((y0, group, net.submit(patches, bs)))",
        "started.append((y0, group, (lambda t: lambda: t)(net.submit(patches, bs)())))",
        ("tests/test_engine_contract.py::test_a_patch_row_starts_before_the_row_before_is_blended",),
        "infer stage: each batch waited for at once, so streams idle at the end of every patch row",
    ),
    Mutation(
        "plan-ignores-the-streams",
        "stac_clouds2mask/infer/engine.py",
        "else fitted_plan(valid, overlap, streams=streams)",
        "else fitted_plan(valid, overlap)",
        ("tests/test_engine_contract.py::test_the_engine_plans_for_the_streams_its_network_runs",),
        "infer stage: a network of two streams gets the one-stream plan, whose odd last patch leaves a core idle",
    ),
    Mutation(
        "plan-counts-pixels-not-rounds",
        "stac_clouds2mask/infer/plan.py",
        "            p.rounds(streams) * p.patch_h * p.patch_w,\n",
        "            p.processed_pixels,\n",
        (
            "tests/test_infer.py::test_with_two_streams_the_plan_keeps_both_busy",
            "tests/test_properties.py::test_the_fitted_plan_covers_the_data_and_is_never_busier_than_a_square_one",
        ),
        "infer stage: the planner counts processed pixels alone, as if one patch ran at a time",
    ),
    Mutation(
        "plan-any-amount-of-work",
        "stac_clouds2mask/infer/plan.py",
        "(p for p in plans if p.processed_pixels <= MORE_WORK * least)",
        "(p for p in plans)",
        ("tests/test_infer.py::test_with_two_streams_the_plan_keeps_both_busy",),
        "infer stage: a 512 px chip runs as two patches, twice the work, to finish a little sooner on idle streams",
    ),
    Mutation(
        "openvino-output-buffer-not-copied",
        "stac_clouds2mask/infer/runtimes.py",
        "out[i] = self.requests[k].get_output_tensor(0).data.copy()",
        "out[i] = self.requests[k].get_output_tensor(0).data",
        ("tests/test_engine_contract.py::test_openvino_batches_in_flight_each_get_their_own_logits",),
        "infer stage: a patch's logits overwritten by the next patch its OpenVINO request runs",
    ),
    Mutation(
        "auto-runtime-is-torch",
        "stac_clouds2mask/infer/runtimes.py",
        'return "openvino" if device.type == "cpu" and openvino_available() else "torch"',
        'return "torch"',
        ("tests/test_provenance.py::test_the_plan_recomputed_from_the_published_mask_is_the_one_the_item_records",),
        "infer stage: a plain run on a CPU never takes the OpenVINO path",
    ),
    Mutation(
        "openvino-always-fp32",
        "stac_clouds2mask/infer/runtimes.py",
        '"INFERENCE_PRECISION_HINT": {"bf16": "bf16", "fp32": "f32"}[precision],',
        '"INFERENCE_PRECISION_HINT": "f32",',
        ("tests/test_provenance.py::test_openvino_runs_in_the_precision_and_threads_it_records",),
        "infer stage: bf16 recorded, float32 run (on a CPU without native bf16 nothing shows: no bf16 there)",
    ),
    Mutation(
        "threads-ignore-cpu-affinity",
        "stac_clouds2mask/infer/cpu.py",
        'cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1',
        "cores = os.cpu_count() or 1",
        ("tests/test_provenance.py::test_threads_follow_the_cores_the_process_was_given",),
        "infer stage: a process given one core (taskset, a container's cpuset) starts a thread per host core",
    ),
    Mutation(
        "batch-last-shard-dropped",
        "stac_clouds2mask/batch.py",
        "return [ordered[k::n] for k in range(n)]",
        "return [ordered[k::n] for k in range(max(n - 1, 1))]",
        ("tests/test_batch.py::test_shards_are_balanced_and_deterministic",),
        "batch stage: a plan of N shards loses the items of the last one",
    ),
    # masks of an area of interest (tests/test_aoi.py)
    Mutation(
        "aoi-window-snapped-inward",
        "stac_clouds2mask/aoi.py",
        "    col0 = math.floor(round((left - transform.c) / res_x, 6))",
        "    col0 = math.ceil(round((left - transform.c) / res_x, 6))",
        ("tests/test_aoi.py::test_windows_hold_the_aoi_and_stay_on_the_grid",),
        "AOI: the published window starts a pixel inside the AOI, cutting off its western edge",
    ),
    Mutation(
        "aoi-pixels-outside-published-as-data",
        "stac_clouds2mask/scene.py",
        "        out[..., ~self.aoi.inside] = fill\n",
        "",
        ("tests/test_aoi.py::test_aoi_mask_is_a_window_of_the_whole_scene_grid",),
        "AOI: the window's pixels outside an --intersects polygon are published as classes, not nodata",
    ),
    Mutation(
        "aoi-id-the-same-for-every-area",
        "stac_clouds2mask/aoi.py",
        "    return hashlib.sha256(text.encode()).hexdigest()[:10]",
        '    return hashlib.sha256(b"aoi").hexdigest()[:10]',
        ("tests/test_aoi.py::test_aoi_ids_are_stable_and_tell_areas_apart",),
        "AOI: the mask of another AOI gets the first AOI's id, so a rerun skips it as already published",
    ),
    Mutation(
        "aoi-percentages-of-the-window",
        "stac_clouds2mask/publish/items.py",
        "    total = int(classes.size if area is None else np.count_nonzero(area))",
        "    total = int(classes.size)",
        ("tests/test_aoi.py::test_aoi_statistics_count_the_aoi_alone",),
        "AOI: valid % counts the window's pixels outside the AOI as missing data",
    ),
    Mutation(
        "aoi-read-fetches-whole-files",
        "stac_clouds2mask/read.py",
        "                block = WINDOW_BLOCK_BYTES if aoi is not None else None",
        "                block = None",
        ("tests/test_aoi.py::test_an_aoi_read_fetches_only_the_tiles_under_its_window",),
        "AOI: a clipped read of remote COGs fetches whole files (fsspec's 50 MiB read-ahead)",
    ),
    Mutation(
        "aoi-without-valid-pixels-published",
        "stac_clouds2mask/runner.py",
        "            if scene.aoi is not None and not scene.published().valid.any():",
        "            if False:",
        ("tests/test_aoi.py::test_items_with_nothing_in_the_aoi_are_skipped_with_the_reason",),
        "AOI: an AOI inside a swath-edge wedge publishes an all-nodata mask instead of skipping with the reason",
    ),
    Mutation(
        "time-series-in-report-order",
        "stac_clouds2mask/timeseries.py",
        '    return sorted(out, key=lambda r: (r.datetime is None, r.datetime or "", r.source_id))',
        "    return out",
        ("tests/test_aoi.py::test_time_series_csv_reads_in_pandas_as_the_report_says",),
        "time series: rows in the order items were processed, not by acquisition time",
    ),
    Mutation(
        "plan-drops-clip",
        "stac_clouds2mask/cli/batch.py",
        '            params["clip"] = aoi',
        "            pass",
        ("tests/test_aoi.py::test_plan_shards_carry_the_aoi_and_publish_aoi_masks",),
        "plan --clip: the shards mask whole scenes",
    ),
    # reading grids that are not the sample's (tests/test_read_grids.py)
    Mutation(
        "read-coarser-bands-bilinear",
        "stac_clouds2mask/read.py",
        "else Resampling.nearest",
        "else Resampling.bilinear",
        (
            "tests/test_read_grids.py::"
            "test_a_coarser_band_is_its_nearest_neighbour_upsampling_and_its_nodata_stays_whole",
        ),
        "read stage: a coarser band is interpolated onto the finer grid, blending neighbours and nodata into data",
    ),
    Mutation(
        "read-average-counts-nodata",
        "stac_clouds2mask/read.py",
        "src_nodata=src_nodata,",
        "src_nodata=ds.nodata,",
        ("tests/test_read_grids.py::test_finer_bands_average_only_their_data_onto_a_coarser_grid",),
        "read stage: the warper knows only the file's nodata tag: zeros of an untagged file pull averages down",
    ),
    Mutation(
        "read-valid-from-the-first-band-only",
        "stac_clouds2mask/read.py",
        "valid &= dn[i] != 0",
        "valid &= dn[0] != 0",
        ("tests/test_read_grids.py::test_a_pixel_that_is_nodata_in_any_band_is_nodata_in_the_mask",),
        "read stage: a pixel that is 0 in another band than the first is called valid",
    ),
    Mutation(
        "read-grid-rounds-down",
        "stac_clouds2mask/read.py",
        "width = max(1, math.ceil(round((right - left) / resolution, 6)))",
        "width = max(1, int((right - left) / resolution))",
        (
            "tests/test_read_grids.py::test_the_grid_covers_a_source_whose_extent_is_no_multiple_of_the_resolution",
            "tests/test_properties.py::test_the_processing_grid_covers_the_extent_with_less_than_one_pixel_to_spare",
        ),
        "read stage: the grid drops the last partial column: the mask does not cover the whole source",
    ),
    Mutation(
        "product-prefers-b8a-over-b08",
        "stac_clouds2mask/products.py",
        "keys += [STAND_INS[band][0] + r for r in _RESOLUTIONS]",
        "keys = [STAND_INS[band][0] + r for r in _RESOLUTIONS] + keys",
        ("tests/test_read_grids.py::test_a_product_folder_with_b08_and_b8a_reads_b08",),
        "a product folder holding B08 and B8A: the stand-in B8A is read although B08 is there",
    ),
    # the engine's contract (tests/test_engine_contract.py)
    Mutation(
        "autocast-never-enabled",
        "stac_clouds2mask/infer/device.py",
        "enabled=dtype is not None)",
        "enabled=False)",
        ("tests/test_engine_contract.py::test_bf16_asked_runs_in_bf16_on_a_cpu_that_has_it",),
        "infer stage: bf16 asked and reported, fp32 run",
    ),
    Mutation(
        "predict-ignores-precision",
        "stac_clouds2mask/infer/engine.py",
        "net = open_network(spec, dev, runtime, precision, module=model, mode=mode)",
        'net = open_network(spec, dev, runtime, "auto", module=model, mode=mode)',
        ("tests/test_engine_contract.py::test_a_precision_the_cpu_lacks_is_a_clear_error_not_a_silent_fp32_run",),
        "infer stage: the precision asked for is dropped; fp16 on a CPU runs as fp32 without a word",
    ),
    Mutation(
        "infer-declared-nodata-ignored",
        "stac_clouds2mask/infer/engine.py",
        "others = [(i, float(v)) for i, v in enumerate(nodata or ()) if v is not None and v != 0]",
        "others: list[tuple[int, float]] = []",
        ("tests/test_engine_contract.py::test_a_declared_nodata_value_never_reaches_the_network_as_data",),
        "infer stage: DN 65535 declared nodata enters the network as reflectance 6.4",
    ),
    # publishing over time (tests/test_publish_over_time.py)
    Mutation(
        "versions-successor-on-the-first-only",
        "stac_clouds2mask/publish/versions.py",
        "if i == len(previous) - 1:",
        "if i == 0:",
        (
            "tests/test_publish_over_time.py::"
            "test_a_chain_of_four_versions_links_every_version_to_its_neighbours_and_the_latest",
        ),
        "publish stage: from the third version on, successor-version links point past the next version",
    ),
    Mutation(
        "api-copy-keeps-static-version-links",
        "stac_clouds2mask/publish/publisher.py",
        '        versions.retarget(out, lambda iid: api.item_href(d["collection"], iid))\n',
        "",
        ("tests/test_publish_over_time.py::test_the_stac_api_copies_of_a_three_version_chain_link_to_api_urls",),
        "publish stage: the STAC API's copies link their versions by ../<id>/<id>.json, which the API cannot serve",
    ),
    Mutation(
        "collection-extent-ignores-ranges",
        "stac_clouds2mask/publish/collections.py",
        'times = [t for t in (props.get("datetime"), props.get("start_datetime"), props.get("end_datetime")) if t]',
        'times = [t for t in (props.get("datetime"),) if t]',
        ("tests/test_publish_over_time.py::test_sources_with_a_time_range_and_no_datetime_give_masks_with_that_range",),
        "publish stage: masks of sources with datetime null never grow the collection's temporal extent",
    ),
    Mutation(
        "claim-kept-when-publish-fails",
        "stac_clouds2mask/publish/static.py",
        "        try:\n            yield\n        finally:\n",
        "        yield\n        if True:\n",
        (
            "tests/test_publish_over_time.py::"
            "test_a_failed_publish_releases_its_claim_so_a_rerun_with_other_settings_is_not_blocked",
        ),
        "publish stage: a failed publish keeps its lock; a rerun with other settings is refused for an hour",
    ),
    # boundaries and limits (tests/test_boundaries.py)
    Mutation(
        "output-root-string-prefix",
        "stac_clouds2mask/trust.py",
        'path.startswith(base.rstrip("/") + "/")',
        'path.startswith(base.rstrip("/"))',
        (
            "tests/test_boundaries.py::test_under_root_admits_the_root_and_below_but_no_sibling_with_the_same_prefix",
            "tests/test_boundaries.py::test_the_operators_output_root_admits_payload_roots_below_it_but_not_a_sibling",
        ),
        "trust: s3://b/masks-private counts as under the output root s3://b/masks",
    ),
    Mutation(
        "local-root-string-prefix",
        "stac_clouds2mask/trust.py",
        "return path == root or path.startswith(root.rstrip(os.sep) + os.sep)",
        "return path.startswith(root.rstrip(os.sep))",
        ("tests/test_boundaries.py::test_a_local_root_admits_its_own_files_but_not_a_sibling_folders",),
        "trust: files in <root>-private count as under the local root <root>",
    ),
    Mutation(
        "products-cache-keyed-by-name",
        "stac_clouds2mask/products.py",
        "target = root / _sha256(archive)",
        'target = root / safe.removesuffix(".SAFE")',
        ("tests/test_products.py::test_zip_cache_is_keyed_by_content_verified_and_safe_under_concurrency",),
        "zipped products cached by name: a zip of the same name replaces the extraction another run reads",
    ),
    Mutation(
        "products-cache-unverified",
        "stac_clouds2mask/products.py",
        "if _intact(target, infos):\n                return target / safe",
        "if target.is_dir():\n                return target / safe",
        ("tests/test_products.py::test_zip_cache_is_keyed_by_content_verified_and_safe_under_concurrency",),
        "a cached extraction is used whatever its files now hold",
    ),
    Mutation(
        "products-extraction-not-private",
        "stac_clouds2mask/products.py",
        "tmp = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=root))",
        'tmp = root / f"{PARTIAL_PREFIX}{os.getpid()}"; tmp.mkdir(exist_ok=True)',
        ("tests/test_products.py::test_zip_cache_is_keyed_by_content_verified_and_safe_under_concurrency",),
        "concurrent extractions of one zip (threads of one process) share one partial folder",
    ),
    Mutation(
        "products-member-count-unbounded",
        "stac_clouds2mask/products.py",
        "if len(infos) > limits.max_product_members:",
        "if False:",
        ("tests/test_products.py::test_zip_extraction_is_bounded_extracts_what_is_read_and_cleans_up",),
        "a zip of any number of members is opened and scanned",
    ),
    Mutation(
        "products-bytes-unbounded",
        "stac_clouds2mask/products.py",
        "if total > limits.max_product_bytes:",
        "if False:",
        ("tests/test_products.py::test_zip_extraction_is_bounded_extracts_what_is_read_and_cleans_up",),
        "a zipped product may fill the cache folder's disk",
    ),
    Mutation(
        "products-ratio-unchecked",
        "stac_clouds2mask/products.py",
        "if i.file_size > RATIO_FLOOR_BYTES and i.file_size > MAX_COMPRESSION_RATIO * max(i.compress_size, 1):",
        "if False:",
        ("tests/test_products.py::test_zip_extraction_is_bounded_extracts_what_is_read_and_cleans_up",),
        "a deflate bomb (64 MiB from 64 KB) is extracted",
    ),
    Mutation(
        "products-extracts-every-member",
        "stac_clouds2mask/products.py",
        "chosen = [i for i in infos if i.filename in wanted]",
        'chosen = [i for i in infos if i.filename.startswith(f"{safe}/") and not i.filename.endswith("/")]',
        ("tests/test_products.py::test_zip_extraction_is_bounded_extracts_what_is_read_and_cleans_up",),
        "every member of a zipped product is extracted, not only those read",
    ),
    Mutation(
        "products-partial-left-on-error",
        "stac_clouds2mask/products.py",
        "        if tmp is not None:\n            shutil.rmtree(tmp, ignore_errors=True)",
        "        if False:\n            pass",
        ("tests/test_products.py::test_zip_extraction_is_bounded_extracts_what_is_read_and_cleans_up",),
        "an extraction that fails half way leaves its partial folder in the cache",
    ),
    Mutation(
        "products-metadata-read-unchecked",
        "stac_clouds2mask/products.py",
        '        _inside(root, href, f"product {source}: metadata file", limits.max_body_bytes)\n',
        "        pass\n",
        (
            "tests/test_products.py::test_the_product_folder_is_the_boundary",
            "tests/test_products.py::test_oversized_product_metadata_is_refused",
        ),
        "product metadata read through symbolic links out of the folder (or /dev/zero), at any size",
    ),
    Mutation(
        "products-assets-outside-allowed",
        "stac_clouds2mask/products.py",
        'if _inside(root, a.href, f"product {source}: asset {k!r}")}',
        "if os.path.isfile(a.href)}",
        ("tests/test_products.py::test_the_product_folder_is_the_boundary",),
        "band files outside the product folder (symbolic links, absolute IMAGE_FILE) are read",
    ),
    Mutation(
        "products-metadata-size-unbounded",
        "stac_clouds2mask/products.py",
        "if max_bytes is not None and st.st_size > max_bytes:",
        "if False:",
        ("tests/test_products.py::test_oversized_product_metadata_is_refused",),
        "a metadata file of any size is read whole",
    ),
    Mutation(
        "products-special-files-read",
        "stac_clouds2mask/products.py",
        "if not stat.S_ISREG(st.st_mode):",
        "if False:",
        ("tests/test_products.py::test_the_product_folder_is_the_boundary",),
        "a metadata or band file that is no regular file (a folder, a device, a FIFO) is opened",
    ),
    Mutation(
        "limits-nan-accepted",
        "stac_clouds2mask/limits.py",
        "if not math.isfinite(value):",
        "if False:",
        (
            "tests/test_task.py::test_numeric_parameters_are_finite_typed_and_within_limits",
            "tests/test_task.py::test_nan_never_reaches_a_run",
        ),
        "NaN and infinity pass as limits: every comparison with NaN is false, so the limit is off",
    ),
    Mutation(
        "limits-zero-accepted",
        "stac_clouds2mask/limits.py",
        "    if value <= 0:",
        "    if value < 0:",
        ("tests/test_boundaries.py::test_every_limit_refuses_zero_negative_and_nan_from_the_environment",),
        "limits: STAC_CLOUDS2MASK_MAX_PIXELS=0 is taken, and every item then fails",
    ),
    Mutation(
        "plan-merges-one-id-of-two-collections",
        "stac_clouds2mask/batch.py",
        "return f\"{item.collection_id or ''}/{item.id}\"",
        "return item.id",
        ("tests/test_boundaries.py::test_one_item_id_in_two_collections_stays_two_items_of_a_plan",),
        "batch stage: the same item id in two collections is planned once",
    ),
    Mutation(
        "payload-merges-one-id-of-two-collections",
        "stac_clouds2mask/task.py",
        "key = (item.collection_id, item.id)",
        "key = (None, item.id)",
        ("tests/test_boundaries.py::test_one_item_id_in_two_collections_stays_two_items_of_a_plan",),
        "a shard payload holding one item id of two collections is refused as a duplicate",
    ),
    # property tests (tests/test_properties.py)
    Mutation(
        "plan-short-run-sticks-out",
        "stac_clouds2mask/infer/plan.py",
        "run.append(min(first, _ceil(len(occupied) - patch)))",
        "run.append(first)",
        ("tests/test_properties.py::test_patches_stay_within_the_mirrored_margin_on_the_lattice",),
        "infer stage: a short run of data near a scene edge gets a patch that is mostly mirrored margin",
    ),
    Mutation(
        "resolve-climbs-into-the-bucket",
        "stac_clouds2mask/storage.py",
        "    return make_absolute_href(href, base)",
        '    return posixpath.normpath(posixpath.join(posixpath.dirname(base), href)).replace(":/", "://", 1)',
        ("tests/test_properties.py::test_relative_hrefs_resolve_within_the_bucket_or_host",),
        "hrefs: s3://bucket/a/b.json + ../../c.json loses the bucket",
    ),
    Mutation(
        "datetime-filter-needs-the-whole-item-inside",
        "stac_clouds2mask/search.py",
        "return (stop is None or first <= stop) and (start is None or last >= start)",
        "return (stop is None or last <= stop) and (start is None or first >= start)",
        ("tests/test_properties.py::test_a_datetime_filter_keeps_the_items_whose_time_meets_it",),
        "search stage: an item whose time range straddles the interval's start or end is dropped",
    ),
    Mutation(
        "segment-allows-dot-dot",
        "stac_clouds2mask/trust.py",
        'if name in (".", ".."):',
        'if name == ".":',
        ("tests/test_properties.py::test_an_accepted_id_is_exactly_one_path_segment_under_the_root",),
        "ids: an item id '..' is accepted as a folder name under the output root",
    ),
    Mutation(
        "stack-asset-hrefs-unchecked",
        "stac_clouds2mask/stack.py",
        "    _check_hrefs(src, keys)\n",
        "",
        ("tests/test_hostile_paths.py::test_stack_reads_a_remote_item_under_the_trust_rule",),
        "stack: a remote item's file:// href or a host outside the allow-list goes to GDAL",
    ),
    Mutation(
        "stack-any-gdal-driver",
        "stac_clouds2mask/stack.py",
        "grid.update(reader=TrustedReader, gdal_env=",
        "grid.update(gdal_env=",
        ("tests/test_hostile_paths.py::test_stack_reads_a_remote_item_under_the_trust_rule",),
        "stack: stackstac's own reader opens a remote VRT naming a local file",
    ),
    Mutation(
        "stack-file-pixels-unchecked",
        "stac_clouds2mask/stack.py",
        "if count != 1 or width * height > limit:",
        "if count != 1:",
        ("tests/test_hostile_paths.py::test_stack_pixel_limits_apply_to_the_grid_and_to_each_file",),
        "stack: a file larger than STAC_CLOUDS2MASK_MAX_PIXELS is read when the grid is small",
    ),
    Mutation(
        "search-link-any-method",
        "stac_clouds2mask/search_io.py",
        'METHODS = ("GET", "POST")',
        'METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")',
        ("tests/test_hostile_paths.py::test_next_link_with_another_method_is_refused",),
        "search: a next link's PUT / DELETE is sent",
    ),
    Mutation(
        "search-link-targets-unchecked",
        "stac_clouds2mask/search_io.py",
        "check_reference(href, None if href == self.home else self.home, what=what)",
        "check_reference(href, None, what=what)",
        ("tests/test_hostile_paths.py::test_next_link_to_metadata_or_local_files_is_refused",),
        "search: links judged as if the operator named them (local files allowed)",
    ),
    Mutation(
        "search-credentials-to-any-origin",
        "stac_clouds2mask/search_io.py",
        "prepared = (self.session if home else self._bare).prepare_request(request)",
        "prepared = self.session.prepare_request(request)",
        (
            "tests/test_hostile_paths.py::test_no_credential_goes_to_another_origin",
            "tests/test_hostile_paths.py::test_redirects_are_checked_hop_by_hop",
        ),
        "search: the session's auth, headers and parameters go to every origin a link or redirect names",
    ),
    Mutation(
        "search-link-headers-to-any-origin",
        "stac_clouds2mask/search_io.py",
        'if not home and (method != "GET" or link.get("headers") or link.get("body")):',
        "if False:",
        ("tests/test_hostile_paths.py::test_link_headers_and_body_only_towards_the_named_origin",),
        "search: a link's headers and body are sent to another origin",
    ),
    Mutation(
        "search-redirects-unchecked",
        "stac_clouds2mask/search_io.py",
        'home = self._check(href, method, "a request it leads to")',
        "home = origin(href) == origin(self.home)",
        ("tests/test_hostile_paths.py::test_redirects_are_checked_hop_by_hop",),
        "search: a redirect to the metadata service is followed",
    ),
    Mutation(
        "host-spellings-not-normalised",
        "stac_clouds2mask/trust.py",
        "return ipaddress.IPv4Address(socket.inet_aton(text))",
        "return None",
        (
            "tests/test_hostile_paths.py::test_metadata_address_in_any_spelling_is_refused",
            "tests/test_hostile_paths.py::test_spelled_hosts_reach_the_address_the_resolver_gives",
        ),
        "trust: 2852039166 / 0xa9fea9fe / 169.254.43518 pass as host names",
    ),
    Mutation(
        "ipv6-embedded-ipv4-ignored",
        "stac_clouds2mask/trust.py",
        "address = inner or address",
        "address = address",
        ("tests/test_hostile_paths.py::test_metadata_address_in_any_spelling_is_refused",),
        "trust: ::ffff:169.254.169.254 and 64:ff9b::a9fe:a9fe pass",
    ),
    Mutation(
        "derived-from-keeps-credentials",
        "stac_clouds2mask/publish/items.py",
        "    return public_url(href)",
        "    return href",
        ("tests/test_hostile_paths.py::test_credentials_of_a_source_url_reach_no_output",),
        "publish: a source URL's user info and signature are published in derived_from and processing:expression",
    ),
    Mutation(
        "plan-keeps-credentials",
        "stac_clouds2mask/batch.py",
        "if (where := credentials_in(payload)) is not None:",
        "if (where := credentials_in(payload)) is not None and False:",
        ("tests/test_hostile_paths.py::test_credentials_of_a_source_url_reach_no_output",),
        "plan: shard payloads are written with the credentials of their hrefs",
    ),
    Mutation(
        "terminal-control-characters-raw",
        "stac_clouds2mask/cli/display.py",
        'return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)',
        "return text",
        (
            "tests/test_hostile_paths.py::test_an_api_error_body_reaches_the_terminal_escaped",
            "tests/test_hostile_paths.py::test_status_shows_ids_of_a_plan_escaped",
        ),
        "display: escape sequences of an API's error body reach the terminal",
    ),
    Mutation(
        "status-prints-ids-raw",
        "stac_clouds2mask/cli/batch.py",
        'typer.echo(f"shard {s.index}: {plain(i.key)}: {plain(i.detail)}")',
        'typer.echo(f"shard {s.index}: {i.key}: {i.detail}")',
        ("tests/test_hostile_paths.py::test_status_shows_ids_of_a_plan_escaped",),
        "status: a payload's collection id printed with its escapes",
    ),
    Mutation(
        "api-segments-unquoted",
        "stac_clouds2mask/trust.py",
        'return quote(name, safe="")',
        "return name",
        ("tests/test_hostile_paths.py::test_ids_are_quoted_path_segments",),
        "publish API: ids go into URL paths as they are",
    ),
    Mutation(
        "percent-encoded-dot-segments-pass",
        "stac_clouds2mask/trust.py",
        'if decoded != name and (decoded in (".", "..") or "/" in decoded or "\\\\" in decoded):',
        "if False:",
        (
            "tests/test_hostile_paths.py::test_dot_segments_never_reach_the_api",
            "tests/test_hostile_paths.py::test_payload_collection_id_with_a_dot_segment_is_refused",
        ),
        "trust: %2e%2e as a collection id reaches the STAC API",
    ),
    Mutation(
        "item-collections-unbounded",
        "stac_clouds2mask/limits.py",
        "    if count > most:",
        "    if False:",
        ("tests/test_hostile_paths.py::test_item_collections_and_payloads_are_bounded",),
        "search / payload: any number of features becomes items",
    ),
    Mutation(
        "payload-size-uncapped",
        "stac_clouds2mask/task.py",
        "return read_json(url, options, Limits.from_env().max_body_bytes, strict=True)",
        "return read_json(url, options, strict=True)",
        ("tests/test_hostile_paths.py::test_item_collections_and_payloads_are_bounded",),
        "payload: a file of any size is read whole",
    ),
    Mutation(
        "footprint-copied-whole",
        "stac_clouds2mask/publish/items.py",
        "    geometry = footprint(aoi.geometry if aoi is not None else src.geometry)",
        "    geometry = aoi.geometry if aoi is not None else src.geometry",
        ("tests/test_hostile_paths.py::test_a_huge_footprint_is_published_simplified_and_covering",),
        "publish: a 200,000-vertex source geometry is copied into the mask item",
    ),
    Mutation(
        "mask-item-size-unguarded",
        "stac_clouds2mask/publish/publisher.py",
        "if size > most:",
        "if False:",
        ("tests/test_hostile_paths.py::test_a_mask_item_larger_than_our_reader_takes_is_not_written",),
        "publish: a mask item larger than the reader takes is written",
    ),
    Mutation(
        "payload-float-parameters-unchecked",
        "stac_clouds2mask/task.py",
        "if isinstance(value, float) and not math.isfinite(value):",
        "if False:",
        ("tests/test_task.py::test_numeric_parameters_are_finite_typed_and_within_limits",),
        "a payload's resolution NaN reaches the run's checks as a number",
    ),
    Mutation(
        "payload-json-nan-accepted",
        "stac_clouds2mask/storage.py",
        "return json.loads(data, parse_constant=_not_json) if strict else json.loads(data)",
        "return json.loads(data)",
        ("tests/test_task.py::test_nan_never_reaches_a_run",),
        "a payload file with NaN / Infinity literals is read as JSON",
    ),
    Mutation(
        "json-written-with-nan",
        "stac_clouds2mask/storage.py",
        "json.dumps(data, indent=2, allow_nan=False)",
        "json.dumps(data, indent=2)",
        ("tests/test_task.py::test_nan_never_reaches_a_run",),
        "documents (the run report among them) are written with NaN, which JSON readers refuse",
    ),
    Mutation(
        "api-retries-unbounded",
        "stac_clouds2mask/choices.py",
        "if not 0 <= retries <= MAX_API_RETRIES:",
        "if retries < 0:",
        ("tests/test_task.py::test_numeric_parameters_are_finite_typed_and_within_limits",),
        "a payload's api_retries of a billion is accepted",
    ),
    Mutation(
        "manifest-id-unchecked",
        "stac_clouds2mask/batch.py",
        'if why := unsafe_segment(manifest.get("id")):',
        "if why := None:",
        ("tests/test_batch.py::test_run_shard_refuses_what_a_local_manifest_may_not_name",),
        "a manifest id with '../' makes run-shard write its run record outside the plan",
    ),
    Mutation(
        "manifest-output-unchecked",
        "stac_clouds2mask/batch.py",
        'check_output_root(output if isinstance(output, str) else "", murl)',
        "None",
        ("tests/test_batch.py::test_run_shard_refuses_what_a_local_manifest_may_not_name",),
        "a manifest's output is not checked against STAC_CLOUDS2MASK_OUTPUT_ROOTS",
    ),
    Mutation(
        "manifest-shard-href-unchecked",
        "stac_clouds2mask/batch.py",
        'check_reference(resolve_href(murl, href), murl, what=f"shards[{k}].href")',
        "None",
        (
            "tests/test_batch.py::test_a_remote_manifest_names_shards_on_allowed_hosts_only",
            "tests/test_batch.py::test_run_shard_refuses_what_a_local_manifest_may_not_name",
        ),
        "a manifest's shard hrefs go to any host and any local file",
    ),
    Mutation(
        "task-failure-looks-like-success",
        "stac_clouds2mask/task.py",
        "raise items_failed(failures, features, len(job.items))",
        "pass",
        ("tests/test_task.py::test_a_failed_item_fails_the_task_through_stactasks_handler_and_cli",),
        "a failed item leaves stactask's handler and Task.cli with exit 0 and fewer features",
    ),
    Mutation(
        "task-failure-never-invalid-input",
        "stac_clouds2mask/task.py",
        "return (ItemsInvalid if invalid else ItemsFailed)(failures, features, total)",
        "return ItemsFailed(failures, features, total)",
        ("tests/test_task.py::test_a_failed_item_fails_the_task_through_stactasks_handler_and_cli",),
        "failures no retry can fix are not stactask's InvalidInput: runners retry them",
    ),
    Mutation(
        "s3-name-lookup-retried",
        "stac_clouds2mask/storage.py",
        "if caught_exception is not None and (cause := _name_resolution_error(caught_exception)) is not None:",
        "if False:",
        ("tests/test_storage.py::test_an_unreachable_source_fails_fast_and_names_the_cause",),
        "an S3 host that does not resolve is retried for minutes",
    ),
    Mutation(
        "s3-source-not-probed",
        "stac_clouds2mask/read.py",
        "    check_readable(fs, path, href)\n",
        "",
        ("tests/test_storage.py::test_an_unreachable_source_fails_fast_and_names_the_cause",),
        "GDAL meets the failure first: the error says 'Resource temporarily unavailable', not its cause",
    ),
    Mutation(
        "retries-not-counted-per-item",
        "stac_clouds2mask/runner.py",
        "work.outcome.retries = work.retries.count",
        "work.outcome.retries = 0",
        ("tests/test_storage.py::test_retries_are_shown_as_they_happen_and_counted_per_item",),
        "the run report's per-item retries stay 0",
    ),
    Mutation(
        "retries-not-carried-to-band-threads",
        "stac_clouds2mask/read.py",
        "list(pool.map(carrying_retries(read), range(len(datasets))))",
        "list(pool.map(read, range(len(datasets))))",
        ("tests/test_storage.py::test_retries_are_shown_as_they_happen_and_counted_per_item",),
        "retries of band reads (their own threads) are counted for no item",
    ),
    Mutation(
        "retries-not-shown",
        "stac_clouds2mask/cli/display.py",
        'self.bar.console.print(f"[yellow]retry {retries}[/]',
        'None and print(f"[yellow]retry {retries}[/]',
        (
            "tests/test_cli_output.py::test_rich_display_shows_each_retry_as_it_happens",
            "tests/test_storage.py::test_retries_are_shown_as_they_happen_and_counted_per_item",
        ),
        "retries are counted but not shown as they happen on a terminal",
    ),
    Mutation(
        "missing-ids-dropped-silently",
        "stac_clouds2mask/search.py",
        "if missing and not cut:",
        "if False:",
        ("tests/test_search.py::test_every_id_asked_for_and_not_found_is_named_and_nothing_runs",),
        "--ids a,typo runs a and exits 0",
    ),
    Mutation(
        "limit-cut-ids-called-missing",
        "stac_clouds2mask/search.py",
        "cut = filters.max_items is not None and any(",
        "cut = False and any(",
        ("tests/test_search.py::test_every_id_asked_for_and_not_found_is_named_and_nothing_runs",),
        "--ids with --max-items: the ids the maximum left out are called missing",
    ),
    Mutation(
        "output-probe-is-a-permission-check",
        "stac_clouds2mask/storage.py",
        "        probe = tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=existing)\n"
        '        with open(os.path.join(probe, "probe"), "xb") as f:\n'
        '            f.write(b"probe")\n',
        "        if not os.access(existing, os.W_OK | os.X_OK):\n"
        "            raise PermissionError(13, 'Permission denied')\n",
        ("tests/test_storage.py::test_an_output_that_takes_no_write_is_refused_before_any_item",),
        "/proc and /sys pass the pre-run check (root passes every permission check), then every item fails",
    ),
    Mutation(
        "output-probe-left-behind",
        "stac_clouds2mask/storage.py",
        "            shutil.rmtree(probe, ignore_errors=True)",
        "            pass",
        ("tests/test_storage.py::test_the_write_probe_leaves_nothing_behind",),
        "the local write probe stays in the output",
    ),
    Mutation(
        "s3-output-probe-left-behind",
        "stac_clouds2mask/storage.py",
        'fs.call_s3("delete_object", Bucket=bucket, Key=key)',
        "None",
        ("tests/test_storage.py::test_the_write_probe_leaves_nothing_behind",),
        "the S3 write probe stays in the bucket",
    ),
    Mutation(
        "published-catalog-relative-hrefs",
        "stac_clouds2mask/publish/static.py",
        "        if not self.published:\n            item_dir = join(",
        "        if True:\n            item_dir = join(",
        (
            "tests/test_consumers.py::test_stackstac_stacks_item_dicts_read_straight_from_s3",
            "tests/test_consumers.py::test_gdal_stacit_reads_item_json_read_straight_from_s3",
        ),
        "publish stage: a catalog on S3 keeps relative asset hrefs, which item dicts cannot resolve",
    ),
    Mutation(
        "published-catalog-without-self-links",
        "stac_clouds2mask/publish/static.py",
        'return [{"rel": "self", "href": url, "type": media_type}] if self.published else []',
        "return []",
        (
            "tests/test_consumers.py::test_a_catalog_at_a_url_is_published_a_local_one_stays_self_contained",
            "tests/test_consumers.py::test_stac_check_finds_no_errors",
        ),
        "publish stage: a catalog at a known URL has no self links",
    ),
    Mutation(
        "mask-proj-bbox-one-pixel-short",
        "stac_clouds2mask/publish/items.py",
        "right, bottom = left + t.a * width, top + t.e * height",
        "right, bottom = left + t.a * (width - 1), top + t.e * (height - 1)",
        ("tests/test_consumers.py::test_stackstac_pystac_route_needs_epsg_and_the_items_own_grid",),
        "publish stage: proj:bbox misses the last row and column (the grid the README's pystac route builds)",
    ),
    Mutation(
        "iter-items-relative-hrefs",
        "stac_clouds2mask/publish/documents.py",
        'return absolute_hrefs(copy.deepcopy(d), join(item_dir, f"{d[\'id\']}.json"), rels=("derived_from",))',
        "return copy.deepcopy(d)",
        (
            "tests/test_consumers.py::test_gdal_stacit_reads_a_feature_collection_of_local_items",
            "tests/test_readme.py::test_use_with_blocks_run_in_order",
        ),
        "the README's item dicts of a local catalog keep relative hrefs",
    ),
    Mutation(
        "render-colormap-bgr",
        "stac_clouds2mask/publish/legend.py",
        "return {str(v): list(rgba) for v, rgba",
        "return {str(v): [*rgba[2::-1], rgba[3]] for v, rgba",
        ("tests/test_consumers.py::test_titiler_stac_endpoint_draws_the_legend_colours_from_the_render_extension",),
        "publish stage: the render extension's colours are not the legend's",
    ),
    Mutation(
        "mask-renders-dropped",
        "stac_clouds2mask/publish/items.py",
        '            "renders": copy.deepcopy(MASK_RENDERS),\n',
        "",
        ("tests/test_consumers.py::test_titiler_stac_endpoint_draws_the_legend_colours_from_the_render_extension",),
        "publish stage: items say nothing of how to draw the mask",
    ),
    Mutation(
        "class-without-nodata-field",
        "stac_clouds2mask/publish/legend.py",
        '"description": "Cloud", "color_hint": "FFFFFF", "nodata": False}',
        '"description": "Cloud", "color_hint": "FFFFFF"}',
        ("tests/test_consumers.py::test_stac_geoparquet_round_trip_stays_valid",),
        "publish stage: a class object without `nodata` comes back null from GeoParquet",
    ),
    Mutation(
        "root-without-conformsto",
        "stac_clouds2mask/publish/static.py",
        '        root.setdefault("conformsTo", [])\n',
        "",
        ("tests/test_consumers.py::test_pystac_client_opens_the_root_without_warnings",),
        "publish stage: pystac-client warns NoConformsTo on the root",
    ),
    Mutation(
        "probability-band-names-reversed",
        "stac_clouds2mask/publish/items.py",
        "                        for name in CLASS_NAMES\n                    ],",
        "                        for name in reversed(CLASS_NAMES)\n                    ],",
        ("tests/test_consumers.py::test_odc_stac_names_the_probability_bands",),
        "publish stage: the probabilities asset's band names are not in the COG's band order",
    ),
    Mutation(
        "mask-statistics-not-in-the-cog",
        "stac_clouds2mask/publish/cog.py",
        "                forward_band_tags=True,\n",
        "",
        ("tests/test_consumers.py::test_gdalinfo_stats_leave_the_published_sidecar_as_its_checksum_says",),
        "publish stage: gdalinfo -stats computes the statistics and rewrites the checksummed sidecar",
    ),
    Mutation(
        "empty-mask-sidecar-not-as-gdal-writes-it",
        "stac_clouds2mask/publish/cog.py",
        "    if not (classes != NODATA).any():\n        lines +=",
        "    if False:\n        lines +=",
        ("tests/test_consumers.py::test_gdalinfo_stats_leave_the_published_sidecar_as_its_checksum_says",),
        "publish stage: gdalinfo -stats rewrites the sidecar of a mask without a valid pixel",
    ),
    Mutation(
        "gdal-lists-256-categories",
        "stac_clouds2mask/publish/legend.py",
        'names = [""] * (max(c["value"] for c in CLASSES if not c.get("nodata")) + 1)',
        'names = [""] * (NODATA + 1)',
        ("tests/test_consumers.py::test_gdal_shows_classes_colours_and_names",),
        "publish stage: GDAL and QGIS list 256 categories, 253 of them empty",
    ),
    Mutation(
        "buffer-claims-shadow-and-nodata",
        "stac_clouds2mask/buffers.py",
        "out[dilate(classes == cls, metres / pixel_size) & (out == CLEAR)] = cls",
        "out[dilate(classes == cls, metres / pixel_size)] = cls",
        ("tests/test_buffers.py",),
        "a cloud buffer overwrites the model's shadow and nodata pixels",
    ),
    Mutation(
        "runner-publishes-unbuffered-classes",
        "stac_clouds2mask/runner.py",
        "pred.classes, scene.resolution, self.config.cloud_buffer, self.config.shadow_buffer",
        "pred.classes, scene.resolution, 0, 0",
        ("tests/test_run_options.py::test_buffers_reach_the_published_mask_and_leave_the_probabilities",),
        "--cloud-buffer is recorded in the settings but the published mask is the unbuffered one",
    ),
    Mutation(
        "runner-ignores-patch-size",
        "stac_clouds2mask/runner.py",
        "patch_size=self.config.patch_size,",
        "patch_size=None,",
        ("tests/test_run_options.py::test_patch_size_and_overlap_reach_the_engine",),
        "--patch-size is recorded in the settings but the engine fits its own patch size",
    ),
    Mutation(
        "shared-weights-checked-by-size-only",
        "stac_clouds2mask/publish/shared_weights.py",
        "same = multihash_sha256(f) == checksum",
        "same = True",
        ("tests/test_model_asset.py",),
        "--model-href accepts another model's weights of the same size: the asset's checksum would lie",
    ),
    # options on their way to where they act: each dropped once between its entry point and its point of use
    Mutation(
        "run-batch-size-not-in-the-config",
        "stac_clouds2mask/cli/run.py",
        "            batch_size=batch_size,\n",
        "",
        ("tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[run-batch_size]",),
        "--batch-size parses, but the run sizes its batches for the device",
    ),
    Mutation(
        "runner-opens-the-network-in-auto-precision",
        "stac_clouds2mask/runner.py",
        "open_network(spec, self.device, c.runtime, c.precision, compile=c.compile)",
        'open_network(spec, self.device, c.runtime, "auto", compile=c.compile)',
        (
            "tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[run-precision]",
            "tests/test_options_arrive.py::test_each_payload_parameter_arrives_where_it_acts[precision]",
        ),
        "the precision asked for is recorded in the settings but the network runs in the machine's choice",
    ),
    Mutation(
        "runner-never-compiles",
        "stac_clouds2mask/runner.py",
        "open_network(spec, self.device, c.runtime, c.precision, compile=c.compile)",
        "open_network(spec, self.device, c.runtime, c.precision, compile=False)",
        (
            "tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[run-compile_model]",
            "tests/test_options_arrive.py::test_each_run_config_field_and_limit_arrives_where_it_acts[config-compile]",
        ),
        "--compile parses, the model runs uncompiled",
    ),
    Mutation(
        "runner-predicts-without-probabilities",
        "stac_clouds2mask/runner.py",
        "with_probabilities=self.config.probabilities,",
        "with_probabilities=False,",
        ("tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[run-probabilities]",),
        "--probabilities recorded in the settings, no probabilities asset published",
    ),
    Mutation(
        "runner-api-without-the-retries",
        "stac_clouds2mask/runner.py",
        "                retries=config.api_retries,\n",
        "",
        (
            "tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[run-api_retries]",
            "tests/test_options_arrive.py::test_each_payload_parameter_arrives_where_it_acts[api_retries]",
        ),
        "--api-retries 1 parses, the STAC API session retries five times",
    ),
    Mutation(
        "runner-publishes-to-the-default-collection",
        "stac_clouds2mask/runner.py",
        "            collection_id=config.collection_id,\n",
        "",
        (
            "tests/test_options_arrive.py::"
            "test_each_option_of_each_command_arrives_where_it_acts[run-target_collection]",
            "tests/test_options_arrive.py::"
            "test_each_run_config_field_and_limit_arrives_where_it_acts[config-collection_id]",
        ),
        "--target-collection parses, the masks go to <source collection>-cloudmask",
    ),
    Mutation(
        "run-searches-with-the-environments-limits",
        "stac_clouds2mask/runner.py",
        "search_all(sources, filters, config.options, config.limits)",
        "search_all(sources, filters, config.options)",
        (
            "tests/test_options_arrive.py::"
            "test_each_run_config_field_and_limit_arrives_where_it_acts[limits-max_documents]",
            "tests/test_options_arrive.py::"
            "test_each_run_config_field_and_limit_arrives_where_it_acts[limits-max_depth]",
        ),
        "limits given to stac_clouds2mask.run do not bound the catalogs the search walks",
    ),
    Mutation(
        "plan-leaves-out-the-batch-size",
        "stac_clouds2mask/cli/batch.py",
        '            ("batch_size", batch_size),\n',
        "",
        ("tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[plan-batch_size]",),
        "plan --batch-size parses, no shard payload holds it",
    ),
    Mutation(
        "plan-leaves-out-requester-pays",
        "stac_clouds2mask/cli/batch.py",
        'params["requester_pays"] = True',
        "pass",
        ("tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[plan-requester_pays]",),
        "plan --requester-pays reaches the plan's search, not the shards that read the files",
    ),
    Mutation(
        "payload-device-override-ignored",
        "stac_clouds2mask/task.py",
        'device=device or p.get("device", "auto"),',
        'device=p.get("device", "auto"),',
        (
            "tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[run-payload-device]",
            "tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[run-shard-device]",
        ),
        "run-payload --device / run-shard --device parse, the payload's device runs",
    ),
    Mutation(
        "payload-limits-ignored",
        "stac_clouds2mask/task.py",
        'limits=dataclasses.replace(Limits.from_env(), **p.get("limits", {})),',
        "limits=Limits.from_env(),",
        ("tests/test_options_arrive.py::test_each_payload_parameter_arrives_where_it_acts[limits]",),
        "a payload's lower limits are checked, then the operator's limits act",
    ),
    Mutation(
        "requester-pays-not-given-to-s3fs",
        "stac_clouds2mask/storage.py",
        'kwargs["requester_pays"] = True',
        "pass",
        (
            "tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[run-requester_pays]",
            "tests/test_options_arrive.py::test_each_payload_parameter_arrives_where_it_acts[requester_pays]",
        ),
        "--requester-pays parses, the band files are read without x-amz-request-payer (403 on sentinel-s2-l1c)",
    ),
    Mutation(
        "header-hosts-not-in-the-storage-options",
        "stac_clouds2mask/cli/options.py",
        "header_hosts=tuple(header_host or ()),",
        "header_hosts=(),",
        (
            "tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[run-header_host]",
            "tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[plan-header_host]",
        ),
        "--header-host parses, the headers go to the sources' hosts only",
    ),
    Mutation(
        "stack-reads-s3-with-the-environments-settings",
        "stac_clouds2mask/stack.py",
        "gdal_env=TRUSTED_GDAL_ENV.updated(always=s3_config)",
        "gdal_env=TRUSTED_GDAL_ENV",
        (
            "tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[stack-endpoint_url]",
            "tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[stack-anon]",
        ),
        "stack --endpoint-url / --anon reach the catalogs, GDAL reads the COGs from AWS with signed requests",
    ),
    Mutation(
        "stack-keeps-clear-only",
        "stac_clouds2mask/cli/stack.py",
        "items, masks, band_list, keep=keep_classes,",
        "items, masks, band_list,",
        ("tests/test_options_arrive.py::test_each_option_of_each_command_arrives_where_it_acts[stack-keep]",),
        "stack --keep parses, only clear pixels are kept",
    ),
    Mutation(
        "settings-without-the-overlap",
        "stac_clouds2mask/config.py",
        '        "overlap": config.overlap,\n',
        "",
        (
            "tests/test_options_arrive.py::"
            "test_every_field_either_changes_the_recorded_settings_or_leaves_the_mask_as_it_is",
            "tests/test_options_arrive.py::"
            "test_a_rerun_with_a_setting_changed_publishes_and_with_any_other_field_changed_skips",
        ),
        "rerun rule: a rerun with another --overlap skips as if the mask were the same",
    ),
    Mutation(
        "stack-open-env-entered-twice",
        "stac_clouds2mask/stack.py",
        "            with self.gdal_env.open_vrt:\n",
        "            with self.gdal_env.open, self.gdal_env.open_vrt:\n",
        ("tests/test_stack.py::test_unsigned_reads_end_with_their_stack",),
        "after a stack with --anon the reader threads keep sending unsigned requests: a private bucket gives 403",
    ),
)


def copy_tree(dest: Path) -> None:
    """The repository's tracked and untracked non-ignored files (no .git, no caches)."""
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def shared_dir() -> str:
    """Where the tests find shared/ from the real checkout (a temporary copy has no sibling shared/)."""
    return os.environ.get("STAC_CLOUDS2MASK_SHARED") or str(ROOT.parent / "shared")


def _exists(copy: Path, test: str) -> bool:
    """Whether a listed file (or file::function, or file::function[parameters]) is there: the "before" run
    predates some of them. (A parametrized case that is not there makes pytest fail to select it: an ERROR.)"""
    path, _, name = test.partition("::")
    if not (copy / path).is_file():
        return False
    function = name.partition("[")[0]
    return not name or re.search(rf"^def {re.escape(function)}\b", (copy / path).read_text(), re.M) is not None


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[str, str]:
    """('killed', test) / ('SURVIVED', '') / ('ERROR', why) for one selection in the copy."""
    present = [t for t in tests if _exists(copy, t)]
    if not present:
        return "ERROR", "none of the listed tests exists"
    env = {**os.environ, "PYTHONPATH": str(copy), "STAC_CLOUDS2MASK_SHARED": shared_dir()}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE", "--no-header", *present]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "ERROR", f"timed out after {TIMEOUT_S} s"
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
    if proc.returncode == 0:
        return "SURVIVED", ""
    if proc.returncode == 1 and failed:
        return "killed", failed[0]
    tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
    return "ERROR", f"pytest exit {proc.returncode}: {tail}"


def apply(copy: Path, m: Mutation) -> None:
    target = copy / m.path
    text = target.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(f"mutation {m.name}: the text to replace occurs {text.count(m.old)} times in {m.path}")
    target.write_text(text.replace(m.old, m.new))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--baseline", action="store_true", help="first run every selection unmutated")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.path}: {m.why}")
        return 0
    survived = 0
    with tempfile.TemporaryDirectory(prefix="clouds2mask-mutants-") as tmp:
        copy = Path(tmp) / "repo"
        copy.mkdir()
        copy_tree(copy)
        if args.baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            verdict, detail = run_tests(copy, tests)
            print(f"baseline (unmutated): {'pass' if verdict == 'SURVIVED' else f'{verdict} {detail}'}", flush=True)
        for m in chosen:
            original = (copy / m.path).read_text()
            apply(copy, m)
            t0 = time.monotonic()
            try:
                verdict, detail = run_tests(copy, m.tests)
            finally:
                (copy / m.path).write_text(original)
            survived += verdict != "killed"
            shown = f"killed by {detail}" if verdict == "killed" else f"{verdict} {detail}".strip()
            print(f"{m.name:40} {shown} ({time.monotonic() - t0:.0f} s)", flush=True)
    print(f"mutations_survived={survived}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
