"""What the commands print: progress, the summary of a run, and errors turned into exit statuses."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgress,
)
from rich.table import Table

from stac_clouds2mask import ItemOutcome, Progress, RunReport

if TYPE_CHECKING:
    from stac_clouds2mask import Interrupted

console = Console(stderr=True)

EXIT_BAD_INVOCATION = 2
EXIT_NOTHING_FOUND = 3


class RichProgressDisplay(Progress):
    """Items done / total, the current item and stage, and the time left."""

    def __init__(self, bar: RichProgress):
        self.bar = bar
        self.task = bar.add_task("searching", total=None)

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total, description=f"{total} item(s)")

    def stage(self, item_id: str, stage: str) -> None:
        self.bar.update(self.task, description=escape(f"{stage:<7} {shown(item_id)}"))

    def retry(self, item_id: str, retries: int, reason: str) -> None:
        """Shown as it happens: an unreachable source is not a stage that seems to hang."""
        self.bar.console.print(f"[yellow]retry {retries}[/] {escape(shown(item_id) + ': ' + shown(reason))}")

    def item_done(self, outcome: ItemOutcome) -> None:
        mark = {
            "published": "[green]published",
            "skipped": "[yellow]skipped",
            "failed": "[red]failed",
            "not_run": "[yellow]not run",
        }[outcome.status]
        detail = f": {outcome.error}" if outcome.status == "failed" else ""
        timing = " ".join(f"{k} {v:.1f}s" for k, v in outcome.seconds.items())
        self.bar.console.print(
            f"{mark}[/] {escape(shown(outcome.source_id) + detail)} {('(' + timing + ')') if timing else ''}"
        )
        self.bar.advance(self.task)


@contextmanager
def progress(eta: bool = True) -> Iterator[RichProgressDisplay]:
    """A progress bar on standard error for the duration of a run."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    with RichProgress(*columns, console=console, transient=False) as bar:
        yield RichProgressDisplay(bar)


def shown(item_id: str) -> str:
    """An item id as printed: as is when plain, quoted (control characters escaped) when not."""
    return item_id if item_id.isprintable() and item_id.strip() == item_id and item_id else repr(item_id)


def summary(report: RunReport) -> None:
    """Counts per status, the failed items with stage and error, and where the run report is."""
    pub, skip, fail, not_run = (report.by_status(s) for s in ("published", "skipped", "failed", "not_run"))
    rest = f", {len(not_run)} not run" if not_run else ""
    console.print(
        f"\n[bold]{len(pub)} published, {len(skip)} skipped, {len(fail)} failed{rest}[/] of {len(report.outcomes)} "
        "item(s)"
    )
    if fail:
        table = Table("source item", "stage", "error", title="Failed items", title_style="bold red")
        for o in fail:
            table.add_row(escape(shown(o.source_id)), escape(o.stage or ""), escape(o.error or ""))
        console.print(table)
    if report.path:
        console.print(f"run report: {escape(report.path)}")
    elif report.report_error:
        console.print(f"[yellow]warning:[/] {escape(report.report_error)}")


def guarded(body: Callable[[], int]) -> NoReturn:
    """Run a command body and exit with its status; an unusable invocation exits 2 and a search that finds
    nothing 3, each with its reason on one line; SIGINT / SIGTERM exit 128 + the signal number."""
    from stac_clouds2mask import EmptySearchError, Interrupted, InvalidInputError, interruptible

    try:
        with interruptible():
            code = body()
    except EmptySearchError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_NOTHING_FOUND) from exc
    except InvalidInputError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INVOCATION) from exc
    except Interrupted as exc:
        exit_interrupted(exc)
    raise typer.Exit(code)


def exit_interrupted(exc: Interrupted) -> NoReturn:
    """Report an interrupted run (its report lists every item) and exit 128 + the signal number."""
    console.print(
        f"[red]interrupted[/] by {exc}: the items not finished are reported as not run "
        "(rerun them with --rerun-failed REPORT)"
    )
    if exc.report is not None:
        summary(exc.report)
    # the report is written: a read still hanging in a worker thread (joined at interpreter exit) must
    # not delay the exit past the few seconds a scheduler allows between SIGTERM and SIGKILL
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exc.exit_code)
