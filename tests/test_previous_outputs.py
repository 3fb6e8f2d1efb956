"""Masks published by the previous release (projection v2 with `proj:code` only, classification v1.1.0,
a model asset pointing at PyPI) are still recognised: a rerun with the same settings skips them and
leaves their bytes alone; `--overwrite` rewrites them in the current layout."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from stac_clouds2mask.cli import app

SOURCE = "s2b-t32upc-20200406-l1c-n0209-10x10"


def as_previous_release(path: Path) -> bytes:
    """Rewrite a published item as the previous release wrote it; returns the bytes written."""
    d = json.loads(path.read_text())
    ext = d["stac_extensions"]
    ext[ext.index("https://stac-extensions.github.io/projection/v1.2.0/schema.json")] = (
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
    )
    ext[ext.index("https://stac-extensions.github.io/classification/v2.0.0/schema.json")] = (
        "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
    )
    del d["properties"]["proj:epsg"]
    d["assets"]["model"] = {
        "href": "https://pypi.org/project/ukis-csmask/1.0.0/",
        "type": "text/html",
        "roles": ["mlm:model"],
        "mlm:artifact_type": "onnx",
    }
    data = json.dumps(d, indent=2).encode()
    path.write_bytes(data)
    return data


def run(*args: str) -> str:
    result = CliRunner().invoke(app, ["run", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_previous_release_outputs_are_skipped_then_overwritten(sample_catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    run(str(sample_catalog), "-o", str(out), "--ids", SOURCE)
    [item] = out.glob(f"*/{SOURCE}_cloudmask/{SOURCE}_cloudmask.json")
    old = as_previous_release(item)

    output = run(str(sample_catalog), "-o", str(out), "--ids", SOURCE)
    assert "0 published, 1 skipped" in output
    assert item.read_bytes() == old and not list(out.glob(f"*/{SOURCE}_cloudmask_v2"))

    run(str(sample_catalog), "-o", str(out), "--ids", SOURCE, "--overwrite")
    d = json.loads(item.read_text())
    assert d["properties"]["proj:epsg"] == 32632 and d["assets"]["model"]["href"].endswith(".onnx")
