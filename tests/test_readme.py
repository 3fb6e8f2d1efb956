"""The README works as written: its Python blocks run, its shell blocks name only options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from stac_clouds2mask.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == language]


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


@pytest.mark.parametrize("number", range(len(blocks("python"))))
def test_python_blocks_run(number, shared_dir, tmp_path, monkeypatch):
    """Run where the README's relative paths hold: a checkout beside shared/."""
    (tmp_path / "shared").symlink_to(shared_dir)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    exec(compile(blocks("python")[number], f"README.md python block {number}", "exec"), {})


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
