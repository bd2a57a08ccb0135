"""The console's small day chart: the last 24 hours in bins, as inline SVG (no script,
no outside assets; scales with ``viewBox``). The value axis is the report charts' one
(``controller.services.reports.charts.axis``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape
from zoneinfo import ZoneInfo

from controller.services.reports.charts import PALETTE, axis


@dataclass(frozen=True, slots=True)
class Line:
    key: str
    label: str
    bins: Sequence[tuple[int, int]]  # (epoch minute the bin starts, count), oldest first


def day_chart(lines: Sequence[Line], tz: ZoneInfo, *, title: str, unit: str) -> str:
    """Grouped bars per bin (one per line), hour labels in ``tz``."""
    width, height = 720, 180
    left, right, top, bottom = 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max((len(line.bins) for line in lines), default=0) or 1
    biggest = max((c for line in lines for _, c in line.bins), default=0)
    step, top_value = axis(Decimal(max(biggest, 3)), ticks=3)  # whole numbers
    count = max(1, int(top_value / step))
    slot = plot_w / n
    bar_w = max(slot * 0.8 / max(len(lines), 1), 1.0)
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" style="width:100%;height:auto">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(count + 1):
        y = top + plot_h - plot_h * k / count
        text = f"{step * k:f}"
        label = text.rstrip("0").rstrip(".") if "." in text else text
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            'stroke="#d5dae0" stroke-width="0.5"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{label}</text>"
        )
    for j, line in enumerate(lines):
        color = PALETTE[j % len(PALETTE)]
        for i, (minute, value) in enumerate(line.bins):
            if value <= 0:
                continue
            h = float(Decimal(value) / top_value) * plot_h
            x = left + i * slot + slot * 0.1 + j * bar_w
            at = datetime.fromtimestamp(minute * 60, tz).strftime("%H:%M")
            out.append(
                f'<rect data-series="{escape(line.key)}" x="{x:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{at} {escape(line.label)}: {value} {escape(unit)}</title></rect>"
            )
    bins = lines[0].bins if lines else []
    for i, (minute, _) in enumerate(bins):
        if i % 6 == 0:
            at = datetime.fromtimestamp(minute * 60, tz).strftime("%H:%M")
            out.append(
                f'<text x="{left + i * slot:.1f}" y="{height - 8}" font-size="10">{at}</text>'
            )
    legend_x = left + 4
    for j, line in enumerate(lines):
        color = PALETTE[j % len(PALETTE)]
        out.append(
            f'<rect x="{legend_x}" y="{top}" width="9" height="9" fill="{color}"/>'
            f'<text x="{legend_x + 12}" y="{top + 8}" font-size="10">{escape(line.label)}</text>'
        )
        legend_x += 16 + sum(11 if ord(c) > 0x2E7F else 7 for c in line.label)  # CJK: wider
    out.append("</svg>")
    return "".join(out)
