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

from stac_clouds2mask import ItemOutcome, Progress, RunReport, redact

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

    def item_done(self, outcome: ItemOutcome) -> None:
        mark = {
            "published": "[green]published",
            "skipped": "[yellow]skipped",
            "failed": "[red]failed",
            "not_run": "[yellow]not run",
        }[outcome.status]
        detail = f": {plain(outcome.error)}" if outcome.status == "failed" or outcome.mask_item_id is None else ""
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


def plain(text: object) -> str:
    """Text that may hold what others wrote (messages, API answers, ids, URLs) as the terminal gets it:
    credentials redacted (report.redact, with the environment's secrets) and every character that is not
    printable escaped as Python writes it (\\x1b, \\n, \\u202e): no escape sequence, hyperlink,
    bidirectional override or made-up line reaches the terminal. Rich markup is escaped separately."""
    text = redact(str(text)) or ""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def markup(text: object) -> str:
    """plain(text) for rich's console and tables: its markup ('[red]', '[link=...]') escaped too."""
    return escape(plain(text))


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
            table.add_row(escape(shown(o.source_id)), markup(o.stage or ""), markup(o.error or ""))
        console.print(table)
    series(report)
    if report.path:
        console.print(f"run report: {markup(report.path)}")
        if report.series_path:
            console.print(f"time series: {markup(report.series_path)}")
        if report.page_path:
            console.print(f"run page: {markup(report.page_path)}")
    elif report.report_error:
        console.print(f"[yellow]warning:[/] {markup(report.report_error)}")


SERIES_ROWS = 40  # rows of the time series printed at the end of a run; the CSV holds them all


def series(report: RunReport) -> None:
    """The run's time series as a compact table (the first SERIES_ROWS rows by acquisition time)."""
    rows = [r for r in report.rows if r.status in ("published", "skipped") and r.valid is not None]
    if not rows:
        return
    table = Table("date", "source item", "valid %", "clear %", "cloud %", "shadow %", title="Over time", box=None)
    for r in rows[:SERIES_ROWS]:
        table.add_row(
            escape((r.datetime or "")[:16].replace("T", " ")),
            escape(shown(r.source_id)),
            *(f"{v:.1f}" if v is not None else "" for v in r.percentages()),
        )
    console.print(table)
    if len(rows) > SERIES_ROWS:
        console.print(f"... and {len(rows) - SERIES_ROWS} more row(s) in the time series file")


def guarded(body: Callable[[], int]) -> NoReturn:
    """Run a command body and exit with its status; an unusable invocation exits 2 and a search that finds
    nothing 3, each with its reason on one line; SIGINT / SIGTERM exit 128 + the signal number."""
    from stac_clouds2mask import EmptySearchError, Interrupted, InvalidInputError, interruptible

    try:
        with interruptible():
            code = body()
    except EmptySearchError as exc:
        console.print(f"[red]error:[/] {markup(exc)}")
        raise typer.Exit(EXIT_NOTHING_FOUND) from exc
    except InvalidInputError as exc:
        console.print(f"[red]error:[/] {markup(exc)}")
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
