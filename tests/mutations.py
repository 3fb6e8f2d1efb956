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
