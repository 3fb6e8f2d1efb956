"""The command line: `run` masks and publishes, `plan` / `run-shard` / `status` / `run-payload` scale it out,
`stack` applies published masks, `models` lists the models.

Each command lives in its own module and imports the package (torch, rasterio, ...) only when it runs,
so `--help` and argument errors answer at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from stac_clouds2mask import __version__

from .batch import plan, run_payload, run_shard, status
from .display import configure_output
from .models import models
from .options import FLAG, flag
from .run import run
from .stack import stack

app = typer.Typer(
    help=(
        "Cloud and cloud-shadow masks for Sentinel-2 items in STAC catalogs.\n\n"
        "Finds items (STAC API, static catalog or Sentinel-2 product folders), reads only the bands the model "
        "needs, runs the pretrained ukis-csmask U-Net (OpenVINO on a CPU, PyTorch on CUDA), and publishes one COG "
        "mask plus one "
        "STAC item per source item.\n\n"
        "Mask legend: 0 clear, 1 cloud, 2 cloud shadow, 255 nodata.\n\n"
        "Output: data on standard output (--print-items, payloads, JSON), everything else on standard error; "
        "without a terminal (a pipe, CloudWatch, CI) as plain lines: no progress bars, nothing wrapped or cut."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback(invoke_without_command=True)
def main(
    version: Annotated[bool, flag("--version", "Print the version and exit.")] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            metavar=FLAG,
            show_default=False,
            help="More output: -v the package's log messages (INFO), -vv every library's (DEBUG). Before the "
            "command: stac-clouds2mask -v run ... (also STAC_CLOUDS2MASK_LOG_LEVEL=INFO).",
        ),
    ] = 0,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", metavar=FLAG, help="Less output: errors, failed items and the summary (no progress)."
        ),
    ] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()
    configure_output(verbose, quiet)


app.command("run")(run)
app.command("models")(models)
app.command("run-payload")(run_payload)
app.command("plan")(plan)
app.command("run-shard")(run_shard)
app.command("status")(status)
app.command("stack")(stack)

__all__ = ["app"]
