"""The CI scripts: what they promise about their environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_install_test_deps_waits_for_the_apt_lock(tmp_path):
    """Another apt holding its lock makes apt-get exit 100 at once: the script waits and tries again, and a
    failure for any other reason is passed on unchanged."""
    calls = tmp_path / "calls"
    fake = tmp_path / "apt-get"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'[ "$(wc -l < {calls})" -ge 3 ] && {{ [ "$3" = broken ] && exit 7; exit 0; }}\n'
        'echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1 (apt-get)" >&2\n'
        "exit 100\n"
    )
    fake.chmod(0o755)
    script = (ROOT / ".ci" / "install-test-deps").read_text()
    function = script[script.index("apt_get() {") : script.index("\n}\n", script.index("apt_get() {")) + 3]

    def apt_get(*args: str) -> subprocess.CompletedProcess:
        calls.unlink(missing_ok=True)
        body = f'{function}\nsleep() {{ :; }}\nPATH="{tmp_path}:$PATH"\napt_get {" ".join(args)}\n'
        return subprocess.run(["bash", "-c", body], capture_output=True, text=True)

    ok = apt_get("update", "-qq")
    assert ok.returncode == 0, ok.stderr
    assert calls.read_text().splitlines() == ["-o DPkg::Lock::Timeout=600 update -qq"] * 3
    assert "waiting" in ok.stderr
    broken = apt_get("broken")
    assert broken.returncode == 7 and len(calls.read_text().splitlines()) == 3
