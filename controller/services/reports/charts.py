"""Server-rendered SVG charts for the report page: no JavaScript, scale to any width
(``viewBox``), readable on a laptop and in a phone's browser, and printable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, Decimal
from html import escape

# One colour per venue type, in the canonical order of controller.domain.venue_types.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
)


@dataclass(frozen=True, slots=True)
class Series:
    key: str
    label: str
    color: str
    values: Sequence[Decimal]  # one per day


def axis(value: Decimal, ticks: int = 4) -> tuple[Decimal, Decimal]:
    """(step, top) of a value axis: a 1/2/2.5/5 x 10^k step, at most ``ticks`` steps."""
    if value <= 0:
        return Decimal("0.25"), Decimal(1)
    rough = value / ticks
    exponent = rough.adjusted()
    step = Decimal(10).scaleb(exponent)
    for factor in ("1", "2", "2.5", "5"):
        candidate = Decimal(factor).scaleb(exponent)
        if candidate >= rough:
            step = candidate
            break
    count = (value / step).to_integral_value(rounding=ROUND_CEILING)
    return step, step * count


def _num(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def stacked_bars(
    days: Sequence[date],
    series: Sequence[Series],
    *,
    open_days: frozenset[date] = frozenset(),
    title: str,
    unit: str,
    open_label: str,
) -> str:
    """Stacked bars per day (one segment per series); open days drawn lighter."""
    width, height = 720, 300
    left, right, top, bottom = 52, 8, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(days), 1)
    totals = [sum((s.values[i] for s in series), Decimal(0)) for i in range(len(days))]
    step, top_value = axis(max(totals, default=Decimal(0)))
    count = int(top_value / step)
    slot = plot_w / n
    bar_w = max(slot * 0.78, 1.0)
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(count + 1):
        value = step * k
        y = top + plot_h - plot_h * k / count
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
            f"{_num(value)}</text>"
        )
    out.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(unit)}</text>'
    )
    label_every = max(1, -(-len(days) // 10))
    for i, day in enumerate(days):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        opacity = ' opacity="0.45"' if day in open_days else ""
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            h = float(value / top_value) * plot_h
            y -= h
            note = f" ({open_label})" if day in open_days else ""
            out.append(
                f'<rect class="bar" data-type="{escape(s.key)}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}" fill="{s.color}"{opacity}>'
                f"<title>{day.isoformat()} {escape(s.label)}: {value} {escape(unit)}{note}"
                "</title></rect>"
            )
        if i % label_every == 0 or i == len(days) - 1:
            out.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}" '
                f'class="axis" text-anchor="middle">{day.strftime("%m-%d")}</text>'
            )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'class="baseline"/>'
    )
    out.append("</svg>")
    return "".join(out)


def series_by_key(
    days: Sequence[date],
    values: Mapping[tuple[date, str], Decimal],
    keys: Sequence[str],
    labels: Mapping[str, str],
) -> list[Series]:
    """Series for the keys that have any value, in the given key order."""
    out = []
    for i, key in enumerate(keys):
        row = [values.get((day, key), Decimal(0)) for day in days]
        if any(v > 0 for v in row):
            out.append(Series(key, labels.get(key, key), PALETTE[i % len(PALETTE)], row))
    return out
