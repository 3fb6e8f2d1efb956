"""`stac-clouds2mask models`: the embedded pretrained models."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .options import flag


def models(as_json: Annotated[bool, flag("--json", "Print JSON instead of a table.")] = False) -> None:
    """List the embedded pretrained models (ukis-csmask 1.0.0 weights; OpenVINO runs their ONNX graphs on a
    CPU, PyTorch runs them natively on CUDA)."""
    from stac_clouds2mask import list_models

    rows = [{"name": m.name, "level": m.level, "bands": list(m.bands), "version": m.version} for m in list_models()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "level", "bands", "version", title="Embedded models (auto picks 6-band when SWIR is present)")
    for r in rows:
        table.add_row(r["name"], r["level"], ", ".join(r["bands"]), r["version"])
    Console().print(table)
