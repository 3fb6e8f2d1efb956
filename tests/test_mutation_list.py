"""tests/mutations.py stays usable: every hand-listed mutation still finds its text exactly once in the
product code, and every test it lists exists (running the mutations themselves takes minutes: see there)."""

from __future__ import annotations

from pathlib import Path

import mutations

ROOT = Path(__file__).resolve().parent.parent


def test_every_mutation_applies_once_and_names_existing_tests():
    names = [m.name for m in mutations.MUTATIONS]
    assert len(names) == len(set(names))
    stages = {m.path.split("/")[1].removesuffix(".py") for m in mutations.MUTATIONS}
    assert {"search", "read", "infer", "publish", "batch", "runner", "storage", "report"} <= stages
    for m in mutations.MUTATIONS:
        assert (ROOT / m.path).read_text().count(m.old) == 1, f"{m.name}: update its text in tests/mutations.py"
        assert m.old != m.new and m.tests, m.name
        for test in m.tests:
            assert mutations._exists(ROOT, test), f"{m.name}: {test} does not exist"
