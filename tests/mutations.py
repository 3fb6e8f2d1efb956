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
        '"clouds2mask:cloud_percentage": stats["cloud"],',
        '"clouds2mask:cloud_percentage": str(stats["cloud"]),',
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
        'write_json_atomic(self.item_url(collection_id, d["id"]), d, self.options)\n        self.link_item(d)',
        'create_exclusive(self.item_url(collection_id, d["id"]), json.dumps(d).encode(), self.options)\n'
        "        self.link_item(d)",
        (
            "tests/test_publish.py::test_rerun_skips_changed_settings_make_a_new_version_overwrite_replaces",
            "tests/test_pipeline.py::test_rerun_skips_and_overwrite_replaces",
        ),
        "--overwrite reports the item published but leaves the old item JSON in place",
    ),
    Mutation(
        "batch-last-shard-dropped",
        "stac_clouds2mask/batch.py",
        "return [ordered[k::n] for k in range(n)]",
        "return [ordered[k::n] for k in range(max(n - 1, 1))]",
        ("tests/test_batch.py::test_shards_are_balanced_and_deterministic",),
        "batch stage: a plan of N shards loses the items of the last one",
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
        'check_reference(resolve(murl, href), murl, what=f"shards[{k}].href")',
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
        ("tests/test_storage.py::test_retries_are_shown_as_they_happen_and_counted_per_item",),
        "retries are counted but not shown as they happen",
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
        "cut = filters.limit is not None and any(",
        "cut = False and any(",
        ("tests/test_search.py::test_every_id_asked_for_and_not_found_is_named_and_nothing_runs",),
        "--ids with --limit: the ids the limit left out are called missing",
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
    """Whether a listed file (or file::function) is there: the "before" run predates some of them."""
    path, _, name = test.partition("::")
    if not (copy / path).is_file():
        return False
    return not name or re.search(rf"^def {re.escape(name)}\b", (copy / path).read_text(), re.M) is not None


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
