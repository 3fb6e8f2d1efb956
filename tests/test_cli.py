"""The command line's shape: it starts without the heavy libraries, its flags take no value, and its
modules use only the package's public API, importing one another one way."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from graphlib import TopologicalSorter
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stac_clouds2mask
from stac_clouds2mask.cli import app

CLI_DIR = Path(stac_clouds2mask.__file__).parent / "cli"
HEAVY = ("torch", "rasterio", "pystac_client", "pystac", "shapely", "fsspec", "s3fs", "numpy", "xarray")


def test_importing_the_cli_loads_none_of_the_heavy_libraries():
    """`--help` and argument errors must answer at once: torch, rasterio and co. load only when a command runs."""
    code = "import json, sys, stac_clouds2mask.cli; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout)
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []


@pytest.mark.parametrize("command", ["run", "plan", "run-shard", "status", "run-payload", "stack", "models"])
def test_boolean_options_are_shown_as_flags(command):
    """typer shows a flag as `--overwrite <bool>`, as if it took a value: ours show none (typer's own --help does)."""
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = [line for line in result.output.splitlines() if "<bool>" in line and "--help" not in line]
    assert shown == []


def test_every_public_name_resolves():
    missing = [name for name in stac_clouds2mask.__all__ if not hasattr(stac_clouds2mask, name)]
    assert missing == []


def _imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import | ast.ImportFrom)]


def test_cli_modules_use_only_the_public_api_and_import_one_way():
    """From the package only names of `stac_clouds2mask.__all__` (or its public modules); between the CLI's
    own modules no cycle."""
    graph: dict[str, set[str]] = {}
    for path in sorted(CLI_DIR.glob("*.py")):
        graph[path.stem] = set()
        for node in _imports(path):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("stac_clouds2mask") for a in node.names), (
                    path.name,
                    ast.unparse(node),
                )
            elif node.level == 1:  # `from .run import run` or `from . import run`
                graph[path.stem].update([node.module] if node.module else [a.name for a in node.names])
            elif node.level > 1 or (node.module or "").startswith("stac_clouds2mask."):
                pytest.fail(f"{path.name}: {ast.unparse(node)} reaches past the public API")
            elif node.module == "stac_clouds2mask":
                for alias in node.names:
                    public = alias.name in stac_clouds2mask.__all__ or (
                        not alias.name.startswith("_") and (CLI_DIR.parent / f"{alias.name}.py").exists()
                    )
                    assert public, f"{path.name} imports {alias.name!r}, not in the public API"
    assert list(TopologicalSorter(graph).static_order())  # raises CycleError on a cycle


@pytest.mark.parametrize(
    "bad",
    [["--batch-size", "0"], ["--device", "gpu"], ["--resolution", "15"], ["--precision", "fp8"], ["--runtime", "onnx"]],
)
def test_argument_errors_answer_before_the_engine_loads(bad, tmp_path):
    """A bad value exits 2 with the reason while the command line is parsed: torch and co. never load."""
    code = (
        "import json, sys\n"
        "from stac_clouds2mask.cli import app\n"
        "try:\n"
        f"    app(['run', 'catalog.json', '-o', {str(tmp_path)!r}, *{bad!r}])\n"
        "except SystemExit as exc:\n"
        "    print(json.dumps([exc.code, sorted(sys.modules)]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    code_, loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert code_ == 2 and "Invalid value for" in run.stderr
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []
