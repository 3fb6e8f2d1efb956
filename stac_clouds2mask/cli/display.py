"""What the commands print: progress, the summary of a run, and errors turned into exit statuses."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
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

from stac_clouds2mask import ItemOutcome, Progress, RunReport, header_secrets

if TYPE_CHECKING:
    from stac_clouds2mask import Interrupted, InvalidInputError

console = Console(stderr=True)

EXIT_BAD_INVOCATION = 2
EXIT_NOTHING_FOUND = 3
LOG_LEVEL_ENV = "STAC_CLOUDS2MASK_LOG_LEVEL"
PATCH_LINES_SECONDS = 30.0  # without a terminal: at most one patches line per item this often (and per 10 %)


@dataclass
class Output:
    """How much the commands print: `quiet` (no progress display) is set by -q or STAC_CLOUDS2MASK_LOG_LEVEL
    ERROR; `hidden`: credential values no log line may show."""

    quiet: bool = False
    hidden: list[str] = field(default_factory=list)


OUTPUT = Output()


def no_terminal() -> bool:
    """No terminal (a pipe, a file, CloudWatch, CI): plain lines, no bar frames, nothing wrapped or cut."""
    return not console.is_terminal


def plain(text: object) -> str:
    """Text that may hold what others wrote (messages, API answers, ids, URLs) as the terminal gets it:
    credentials redacted (report.redact, with the environment's secrets) and every character that is not
    printable escaped as Python writes it (\\x1b, \\n, \\u202e): no escape sequence, hyperlink,
    bidirectional override or made-up line reaches the terminal. Rich markup is escaped separately."""
    from stac_clouds2mask import redact

    text = redact(str(text), OUTPUT.hidden) or ""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def markup(text: object) -> str:
    """plain(text) for rich's console and tables: its markup ('[red]', '[link=...]') escaped too."""
    return escape(plain(text))


def say(text: str) -> None:
    """One line on standard error, never wrapped or cut, what others wrote in it shown as plain() says."""
    console.print(markup(text), soft_wrap=True, highlight=False)


def warn(text: str) -> None:
    console.print(f"[yellow]warning:[/] {markup(text)}", soft_wrap=True, highlight=False)


class _Stderr(logging.StreamHandler):
    """A handler writing to the standard error of the moment (test runners swap it), credentials redacted."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass

    def format(self, record: logging.LogRecord) -> str:
        from stac_clouds2mask import redact

        return redact(super().format(record), OUTPUT.hidden) or ""  # redact adds the environment's


_HANDLER = _Stderr()


def configure_output(verbose: int, quiet: bool) -> None:
    """The log level from -v (INFO, -vv DEBUG for every library), -q (errors only, no progress) or
    STAC_CLOUDS2MASK_LOG_LEVEL (a level name); the package's log messages on standard error."""
    if verbose or quiet:
        level = logging.ERROR if quiet else (logging.INFO if verbose == 1 else logging.DEBUG)
    else:
        name = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
        level = logging.getLevelName(name) if name else logging.WARNING
        if not isinstance(level, int):
            raise typer.BadParameter(
                f"{LOG_LEVEL_ENV}={name!r} is not a log level (DEBUG, INFO, WARNING, ERROR)", param_hint="environment"
            )
    OUTPUT.quiet = quiet or level >= logging.ERROR
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    logging.captureWarnings(True)
    root.setLevel(level if level <= logging.DEBUG else logging.WARNING)  # other libraries speak at DEBUG only
    logging.getLogger("stac_clouds2mask").setLevel(level)
    _HANDLER.setLevel(level)


def hide(*headers: Mapping[str, str]) -> None:
    """Keep these header values, and their credentials alone ('Bearer TOKEN' -> 'TOKEN'), out of every log line."""
    OUTPUT.hidden.extend(v for h in headers for v in header_secrets(h) if v)


def _outcome_text(outcome: ItemOutcome) -> tuple[str, str]:
    """(status word, the rest of the line) of an item's outcome."""
    word = {"published": "published", "skipped": "skipped", "failed": "failed", "not_run": "not run"}[outcome.status]
    detail = f": {plain(outcome.error)}" if outcome.status == "failed" or outcome.mask_item_id is None else ""
    timing = " ".join(f"{k} {v:.1f}s" for k, v in outcome.seconds.items())
    return word, f"{shown(outcome.source_id)}{detail}" + (f" ({timing})" if timing else "")


class RichProgressDisplay(Progress):
    """Items done / total, the current item and stage, and the time left; while an item is inferred, its
    patches done / total and their time left on a second bar."""

    def __init__(self, bar: RichProgress):
        self.bar = bar
        self.task = bar.add_task("searching", total=None)
        self.patch_task = bar.add_task("  patches", total=None, visible=False)

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total, description=f"{total} item(s)")

    def stage(self, item_id: str, stage: str) -> None:
        self.bar.update(self.task, description=markup(f"{stage:<7} {shown(item_id)}"))
        if stage == "infer":
            self.bar.reset(self.patch_task, total=None, visible=False)

    def patches(self, done: int, total: int) -> None:
        self.bar.update(self.patch_task, total=total, completed=done, visible=done < total)

    def retry(self, item_id: str, retries: int, reason: str) -> None:
        """Shown as it happens: an unreachable source is not a stage that seems to hang."""
        self.bar.console.print(f"[yellow]retry {retries}[/] {markup(shown(item_id) + ': ' + reason)}")

    def item_done(self, outcome: ItemOutcome) -> None:
        word, rest = _outcome_text(outcome)
        color = {"published": "green", "skipped": "yellow", "failed": "red", "not_run": "yellow"}[outcome.status]
        self.bar.console.print(f"[{color}]{word}[/] {markup(rest)}", soft_wrap=True, highlight=False)
        self.bar.advance(self.task)


class PlainProgressDisplay(Progress):
    """The same as plain lines for logs (CloudWatch, CI): one line per item and stage, and while an item is
    inferred a patches line every 10 % or PATCH_LINES_SECONDS, with the time left."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.inferring = ""  # the item being inferred (the next one is read meanwhile, in another thread)
        self.patch_start = 0.0
        self.patch_line = (0.0, -1)  # (time, tenth) of the last patches line

    def start(self, total: int) -> None:
        self.total = total
        say(f"{total} item(s)")

    def stage(self, item_id: str, stage: str) -> None:
        if stage in ("read", "infer", "publish"):
            say(f"[{self.done}/{self.total}] {stage} {shown(item_id)}")
        if stage == "infer":
            self.inferring = item_id
            self.patch_start, self.patch_line = time.monotonic(), (time.monotonic(), -1)

    def patches(self, done: int, total: int) -> None:
        now = time.monotonic()
        tenth = done * 10 // max(total, 1)
        last_time, last_tenth = self.patch_line
        if done < total and tenth == last_tenth and now - last_time < PATCH_LINES_SECONDS:
            return
        self.patch_line = (now, tenth)
        elapsed = now - self.patch_start
        left = elapsed * (total - done) / done if done else None
        eta = f", {_duration(left)} left" if left is not None and done < total else ""
        say(f"[{self.done}/{self.total}] infer {shown(self.inferring)}: patches {done}/{total}{eta}")

    def retry(self, item_id: str, retries: int, reason: str) -> None:
        """Shown as it happens: an unreachable source is not a stage that seems to hang."""
        say(f"[{self.done}/{self.total}] retry {retries} {shown(item_id)}: {reason}")

    def item_done(self, outcome: ItemOutcome) -> None:
        self.done += 1
        word, rest = _outcome_text(outcome)
        say(f"[{self.done}/{self.total}] {word} {rest}")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@contextmanager
def progress(eta: bool = True) -> Iterator[Progress]:
    """The run's progress on standard error: bars on a terminal, plain lines otherwise, nothing under -q."""
    if OUTPUT.quiet:
        yield Progress()
        return
    if no_terminal():
        yield PlainProgressDisplay()
        return
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
    counts = f"{len(pub)} published, {len(skip)} skipped, {len(fail)} failed{rest} of {len(report.outcomes)} item(s)"
    if no_terminal():
        say(counts)
        if fail:
            say("Failed items:")
        for o in fail:
            say(f"failed item {shown(o.source_id)} (stage {o.stage or '-'}): {o.error or ''}")
    else:
        console.print(f"\n[bold]{markup(counts)}[/]")
        if fail:
            table = Table("source item", "stage", "error", title="Failed items", title_style="bold red")
            for o in fail:
                table.add_row(markup(shown(o.source_id)), markup(o.stage or ""), markup(o.error or ""))
            console.print(table)
    series(report)
    if report.path:
        say(f"run report: {report.path}")
        if report.series_path:
            say(f"time series: {report.series_path}")
        if report.page_path:
            say(f"run page: {report.page_path}")
    elif report.report_error:
        warn(report.report_error)


SERIES_ROWS = 40  # rows of the time series printed at the end of a run; the CSV holds them all


def series(report: RunReport) -> None:
    """The run's time series, by acquisition time: a compact table on a terminal, one line per item otherwise
    (the first SERIES_ROWS items; the CSV holds them all)."""
    rows = [r for r in report.rows if r.status in ("published", "skipped") and r.valid is not None]
    if not rows:
        return
    cells = [
        [(r.datetime or "")[:16].replace("T", " "), shown(r.source_id), *(f"{v:.1f}" for v in r.percentages())]
        for r in rows[:SERIES_ROWS]
    ]
    if no_terminal():
        say("over time (date, source item, valid %, clear %, cloud %, shadow %):")
        for row in cells:
            say("  " + " ".join(row))
    else:
        table = Table("date", "source item", "valid %", "clear %", "cloud %", "shadow %", title="Over time", box=None)
        table.columns[1].overflow = "fold"
        for row in cells:
            table.add_row(*(markup(c) for c in row))
        console.print(table)
    if len(rows) > SERIES_ROWS:
        say(f"... and {len(rows) - SERIES_ROWS} more item(s) in the time series file")


# the command line's name of each field (RunConfig, SearchFilters, StorageOptions) whose flag is not
# '--' + the field with '-' for '_'
FLAGS = {
    "collection_id": "--target-collection",
    "collections": "--collection",
    "api_headers": "--api-header",
    "headers": "--header",
    "header_hosts": "--header-host",
}


def flag_of(field: str) -> str:
    """The flag that sets a field of the package's settings."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def option_message(exc: InvalidInputError) -> str:
    """An error of the package told in flags: a setting's field as its flag, a search's filters as options."""
    from stac_clouds2mask import EmptySearchError, OptionError

    if isinstance(exc, OptionError):
        return f"{flag_of(exc.field)}{'' if exc.reason.startswith(':') else ' '}{exc.reason}"
    if isinstance(exc, EmptySearchError):
        return exc.told(" ".join(f"{flag_of(field)} {value}" for field, value in exc.conditions), "--ids")
    return str(exc)


def guarded(body: Callable[[], int]) -> NoReturn:
    """Run a command body and exit with its status; an unusable invocation exits 2 and a search that finds
    nothing 3, each with its reason on one line; SIGINT / SIGTERM exit 128 + the signal number."""
    from stac_clouds2mask import EmptySearchError, Interrupted, InvalidInputError, interruptible

    try:
        with interruptible():
            code = body()
    except EmptySearchError as exc:
        console.print(f"[red]error:[/] {markup(option_message(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_NOTHING_FOUND) from exc
    except InvalidInputError as exc:
        console.print(f"[red]error:[/] {markup(option_message(exc))}", soft_wrap=True, highlight=False)
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
