"""What the run's area saw over time: one row per source item, by acquisition time, from the run report.

The rows are written beside the run report as CSV (``run-<...>.csv``: pandas reads it as it is, with
``parse_dates=["datetime"]``), shown on the run page and printed at the end of a CLI run. Percentages are
those the mask item records: of the AOI for a clipped run, of the whole grid otherwise; empty where the item
has no mask (failed, not run, skipped for having nothing to mask).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

COLUMNS = (
    "datetime",
    "source_id",
    "mask_item_id",
    "status",
    "valid_percent",
    "clear_percent",
    "cloud_percent",
    "shadow_percent",
)
_STATISTICS = ("valid", "clear", "cloud", "shadow")


@dataclass(frozen=True)
class Row:
    """One source item of a run."""

    datetime: str | None
    source_id: str
    mask_item_id: str | None
    status: str
    valid: float | None
    clear: float | None
    cloud: float | None
    shadow: float | None

    def values(self) -> list[Any]:
        return [self.datetime, self.source_id, self.mask_item_id, self.status, *self.percentages()]

    def percentages(self) -> tuple[float | None, ...]:
        return (self.valid, self.clear, self.cloud, self.shadow)


def rows(report: dict[str, Any]) -> list[Row]:
    """The rows of a run report (the JSON dict), sorted by acquisition time (items without one last), then id."""
    out = []
    for entry in report.get("items", []):
        stats = entry.get("statistics") or {}
        out.append(
            Row(
                entry.get("datetime"),
                entry["source_id"],
                entry.get("mask_item_id"),
                entry["status"],
                *(stats.get(name) for name in _STATISTICS),
            )
        )
    return sorted(out, key=lambda r: (r.datetime is None, r.datetime or "", r.source_id))


def to_csv(table: list[Row]) -> str:
    """The rows as CSV with a header line; empty cells where a value is missing."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in table:
        writer.writerow(["" if v is None else v for v in row.values()])
    return buffer.getvalue()
