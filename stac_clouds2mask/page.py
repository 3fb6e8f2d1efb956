"""The run page: a self-contained HTML file beside each run report (``run-<...>.html``).

It opens from disk or from a bucket as it is: no server, no CDN, no script. Per item a preview of the mask
over the true colour (embedded JPEG; for an item a rerun skipped, its published thumbnail), the percentages,
the status, and for a failure its stage and reason; for a run with two or more acquisition dates, a chart of
clear / cloud / shadow % over time, drawn here as inline SVG when the page is written (a few dozen lines
instead of a plotting library in the install).
"""

from __future__ import annotations

import base64
import datetime as dt
from html import escape
from typing import Any

from .timeseries import Row, rows

CHART_W, CHART_H = 880, 300
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 48, 16, 16, 44
SERIES = (  # name, row attribute, colour (the legend's, cloud darkened to show on white), dashed
    ("clear", "clear", "#3c8c3c", False),
    ("cloud", "cloud", "#7a8aa0", False),
    ("cloud shadow", "shadow", "#5a3c8c", False),
    ("valid", "valid", "#999999", True),
)
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.meta{color:#555;font-size:13px}.meta code{background:#eee;padding:1px 4px;border-radius:3px}
.totals span{display:inline-block;margin-right:10px;font-weight:600;padding:1px 8px;border-radius:8px;color:#fff}
.totals span.all{color:#222;padding-left:0}
.items{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:12px}
.item{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;font-size:12px;overflow-wrap:anywhere}
.item img,.item .none{width:100%;aspect-ratio:1;object-fit:contain;background:#181818;border-radius:4px;display:block}
.item .none{display:flex;align-items:center;justify-content:center;color:#aaa}
.status{display:inline-block;padding:1px 6px;border-radius:8px;color:#fff;font-weight:600}
.published{background:#3c8c3c}.skipped{background:#b08400}.failed{background:#b03030}.not_run{background:#777}
table.pct{border-collapse:collapse;margin-top:4px}table.pct td{padding:0 8px 0 0}
.error{color:#b03030;margin-top:4px}svg text{font-size:11px;fill:#444}
"""


def _when(row: Row) -> dt.datetime | None:
    if not row.datetime:
        return None
    return dt.datetime.fromisoformat(row.datetime.replace("Z", "+00:00"))


def chart(table: list[Row]) -> str | None:
    """Clear / cloud / shadow (and valid) % over acquisition time as inline SVG; None for fewer than two dates."""
    points = [(w, r) for r in table if (w := _when(r)) is not None and r.clear is not None]
    if len({w for w, _ in points}) < 2:
        return None
    t0, t1 = min(w for w, _ in points), max(w for w, _ in points)
    span = (t1 - t0).total_seconds()
    inner_w, inner_h = CHART_W - _PAD_L - _PAD_R, CHART_H - _PAD_T - _PAD_B

    def x(w: dt.datetime) -> float:
        return _PAD_L + inner_w * (w - t0).total_seconds() / span

    def y(v: float) -> float:
        return _PAD_T + inner_h * (1 - v / 100)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" role="img" '
        'aria-label="clear, cloud and shadow percentage over time" id="chart">'
    ]
    for v in (0, 25, 50, 75, 100):
        parts.append(f'<line x1="{_PAD_L}" x2="{CHART_W - _PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{_PAD_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v} %</text>')
    ticks = min(6, len({w for w, _ in points}))
    for i in range(ticks):
        w = t0 + (t1 - t0) * (i / (ticks - 1))
        anchor = "start" if i == 0 else "end" if i == ticks - 1 else "middle"  # the end labels stay in the picture
        parts.append(f'<text x="{x(w):.1f}" y="{CHART_H - _PAD_B + 16}" text-anchor="{anchor}">{w:%Y-%m-%d}</text>')
    for n, (name, attr, colour, dashed) in enumerate(SERIES):
        pts = sorted((x(w), y(getattr(r, attr))) for w, r in points)
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
        parts.append(
            f'<polyline class="series" data-series="{name}" fill="none" stroke="{colour}" '
            f'stroke-width="2"{dash} points="{line}"/>'
        )
        parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in pts)
        lx = _PAD_L + 10 + n * 120
        parts.append(
            f'<line x1="{lx}" x2="{lx + 18}" y1="{CHART_H - 10}" y2="{CHART_H - 10}" stroke="{colour}" '
            f'stroke-width="3"{dash}/><text x="{lx + 24}" y="{CHART_H - 6}">{name} %</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} %"


def _card(entry: dict[str, Any], preview: bytes | None) -> str:
    status = str(entry.get("status"))
    stats = entry.get("statistics") or {}
    if not preview:
        picture = '<div class="none">no preview</div>'
    else:  # a PNG is a skipped item's published thumbnail (the mask alone), a JPEG the mask over true colour
        png = preview.startswith(b"\x89PNG")
        kind, alt = ("png", "the published mask") if png else ("jpeg", "mask over true colour")
        picture = f'<img alt="{alt}" src="data:image/{kind};base64,{base64.b64encode(preview).decode()}">'

    lines = [f'<div class="item" data-source-id="{escape(str(entry["source_id"]))}">', picture]
    lines.append(f"<div><b>{escape(str(entry.get('datetime') or 'no date'))}</b></div>")
    lines.append(f"<div>{escape(str(entry['source_id']))}</div>")
    lines.append(
        f'<div><span class="status {escape(status)}">{escape(status.replace("_", " "))}</span>'
        + (f" {escape(str(entry['mask_item_id']))}" if entry.get("mask_item_id") else "")
        + "</div>"
    )
    if stats:
        cells = "".join(
            f"<tr><td>{name}</td><td>{_percent(stats.get(name))}</td></tr>"
            for name in ("valid", "clear", "cloud", "shadow")
        )
        lines.append(f'<table class="pct">{cells}</table>')
    if entry.get("error"):
        where = f"{entry['stage']}: " if entry.get("stage") else ""
        lines.append(f'<div class="error">{escape(where + str(entry["error"]))}</div>')
    lines.append("</div>")
    return "".join(lines)


def render(report: dict[str, Any], previews: dict[str, bytes]) -> str:
    """The page of a run report (the JSON dict) with the previews by source id."""
    table = rows(report)
    order = {row.source_id: i for i, row in enumerate(table)}
    entries = sorted(report.get("items", []), key=lambda e: order.get(e["source_id"], len(order)))
    settings = report.get("settings", {})
    totals = report.get("totals", {})
    aoi = settings.get("aoi")
    where = (
        f"area of interest <code>{escape(str(aoi['id']))}</code> (bbox {', '.join(f'{v:.5f}' for v in aoi['bbox'])})"
        if aoi
        else "whole scenes"
    )
    svg = chart(table)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>stac-clouds2mask run {escape(str(report.get('started', '')))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Cloud and cloud-shadow masks</h1>",
        f'<div class="meta">run {escape(str(report.get("started")))} to {escape(str(report.get("finished")))}, '
        f"{escape(str(report.get('seconds')))} s; {where}; resolution {escape(str(settings.get('resolution')))} m; "
        f"output <code>{escape(str(settings.get('output')))}</code>; stac-clouds2mask "
        f"{escape(str(report.get('software')))}</div>",
        '<p class="totals">'
        + "".join(
            f'<span class="{k}">{totals.get(k, 0)} {k.replace("_", " ")}</span>'
            for k in ("published", "skipped", "failed", "not_run")
        )
        + f'<span class="all">{totals.get("items", len(entries))} item(s)</span></p>',
    ]
    if svg:
        parts += ["<h2>Over time</h2>", svg]
    parts += ['<h2>Items</h2><div class="items">']
    parts += [_card(e, previews.get(e["source_id"])) for e in entries]
    parts += ["</div></body></html>"]
    return "\n".join(parts)
