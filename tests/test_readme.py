"""The README works as written: its Python blocks run, its shell blocks name only options that exist, and the
"Use with" section's blocks (Python and shell) run in order on a published catalog."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main

from typer.testing import CliRunner

from stac_clouds2mask.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
USE_WITH = "## Use with"


def use_with_section() -> str:
    text = README.read_text()
    start = text.index(USE_WITH)
    return text[start : text.index("\n## ", start)]


def blocks(language: str, text: str | None = None) -> list[str]:
    """The README's blocks of `language` (of `text` when given)."""
    return [body for lang, body in BLOCK.findall(README.read_text() if text is None else text) if lang == language]


def commands(script: str) -> list[list[str]]:
    """The `stac-clouds2mask ...` command lines of a shell block, continuations joined, comments dropped."""
    lines = script.replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        words = shlex.split(line, comments=True)
        while "stac-clouds2mask" in words:
            words = words[words.index("stac-clouds2mask") + 1 :]
            end = next((i for i, w in enumerate(words) if w in ("&&", "||", ";", "|")), len(words))
            out.append(words[:end])
            words = words[end:]
    return out


STANDALONE = [body for body in blocks("python") if body not in blocks("python", use_with_section())]


@pytest.mark.parametrize("number", range(len(STANDALONE)))
def test_python_blocks_run(number, shared_dir, tmp_path, monkeypatch):
    """Run where the README's relative paths hold: a checkout beside shared/."""
    (tmp_path / "shared").symlink_to(shared_dir)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    exec(compile(STANDALONE[number], f"README.md python block {number}", "exec"), {})


@pytest.fixture(scope="module")
def published_masks(sample_catalog, tmp_path_factory) -> Path:
    """The catalog the "Use with" section reads, published as the section says."""
    out = tmp_path_factory.mktemp("readme") / "masks"
    result = CliRunner().invoke(app, ["run", str(sample_catalog), "--output", str(out), "--probabilities"])
    assert result.exit_code == 0, result.output
    return out


def test_use_with_blocks_run_in_order(published_masks, shared_dir, tmp_path, monkeypatch):
    """Every block of "Use with", top to bottom in one folder holding ./masks: Python blocks in this process,
    shell blocks with bash (GDAL's tools from Debian's gdal-bin, with GDAL's default of reading sidecars)."""
    section = use_with_section()
    assert blocks("python", section) and blocks("bash", section)
    if shutil.which("gdalinfo") is None and not os.environ.get("CI"):
        pytest.skip("needs gdalinfo and gdal_translate from Debian's gdal-bin (apt install gdal-bin)")
    (tmp_path / "shared").symlink_to(shared_dir)
    repo = tmp_path / "repo"
    shutil.copytree(published_masks, repo / "masks")
    monkeypatch.chdir(repo)
    env = {k: v for k, v in os.environ.items() if k != "GDAL_DISABLE_READDIR_ON_OPEN"}
    for number, (language, body) in enumerate(BLOCK.findall(section)):
        if language == "python":
            exec(compile(body, f"README.md Use with block {number}", "exec"), {})
        else:
            run = subprocess.run(["bash", "-euo", "pipefail", "-c", body], capture_output=True, text=True, env=env)
            assert run.returncode == 0, f"README.md Use with block {number}: {run.stderr}"
    assert (repo / "items.json").is_file() and (repo / "t32upc.tif").is_file()


def test_shell_blocks_use_only_options_that_exist():
    group = typer.main.get_command(app)
    used = [words for script in blocks("bash") for words in commands(script)]
    assert used, "no stac-clouds2mask command found in the README"
    shared = {o for p in group.params for o in (*p.opts, *p.secondary_opts)}  # before the command: -v, -q
    for words in used:
        while words and words[0] in shared:
            words = words[1:]
        command = group.commands.get(words[0]) if words else None
        assert command is not None, f"unknown command in README: stac-clouds2mask {' '.join(words)}"
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        flags = [w.split("=")[0] for w in words[1:] if w.startswith("-") and not re.match(r"-[0-9.]", w)]
        unknown = [f for f in flags if f not in known]
        assert unknown == [], f"stac-clouds2mask {words[0]}: no option {', '.join(unknown)}"
