"""Charts and number formats for the dashboard, drawn server-side as inline SVG.

No JavaScript and no chart library: a page works with scripts off and under a CSP that
allows none, and nothing is loaded from outside Warden. Every text that goes into the SVG
is escaped here (labels include tenant-controlled data only through numbers and days, but
the escaping does not rely on that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup, escape

_SI: Final = ("", "k", "M", "G", "T", "P", "E")
_BINARY: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def compact(value: float) -> str:
    """A count short enough for a table cell: 950, 12,300, 4.5 M, 100 T."""
    if abs(value) < 100_000:
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    scaled, step = float(value), 0
    while abs(scaled) >= 1000 and step < len(_SI) - 1:
        scaled, step = scaled / 1000, step + 1
    return f"{scaled:.3g} {_SI[step]}"


def size(value: float) -> str:
    """Bytes in binary units: 512 B, 1.5 KiB, 4 GiB."""
    scaled, step = float(value), 0
    while abs(scaled) >= 1024 and step < len(_BINARY) - 1:
        scaled, step = scaled / 1024, step + 1
    return f"{scaled:.0f} B" if step == 0 else f"{scaled:.3g} {_BINARY[step]}"


def quantity(name: str, value: float) -> str:
    """A quota or usage figure in its unit, chosen by its name."""
    if name.endswith("_bytes"):
        return size(value)
    if name.endswith("_s"):
        return f"{value:,.2f} s"
    return compact(value)


@dataclass(frozen=True)
class Bar:
    label: str  # shown under the bar (a day: MM-DD)
    value: float
    title: str  # the tooltip and the accessible text: the exact figure


# The drawing area, in SVG user units (the CSS scales the whole chart to its box).
_WIDTH: Final = 560
_HEIGHT: Final = 180
_TOP: Final = 16
_BOTTOM: Final = 24
_LEFT: Final = 48


def bar_chart(title: str, bars: Sequence[Bar], chart_id: str) -> Markup:
    """Vertical bars scaled to the largest value; an empty series draws a flat baseline."""
    plot_h = _HEIGHT - _TOP - _BOTTOM
    slot = (_WIDTH - _LEFT) / max(len(bars), 1)
    peak = max((b.value for b in bars), default=0.0)
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<text class="axis" x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end">'
        f"{escape(compact(peak))}</text>",
        f'<text class="axis" x="{_LEFT - 6}" y="{_HEIGHT - _BOTTOM}" text-anchor="end">0</text>',
        f'<line class="baseline" x1="{_LEFT}" y1="{_HEIGHT - _BOTTOM}" x2="{_WIDTH}" '
        f'y2="{_HEIGHT - _BOTTOM}"/>',
    ]
    for i, bar in enumerate(bars):
        h = 0.0 if peak <= 0 else plot_h * bar.value / peak
        x = _LEFT + i * slot + slot * 0.15
        parts.append(
            f'<g class="bar" data-label="{escape(bar.label)}" data-value="{bar.value:g}">'
            f"<title>{escape(bar.title)}</title>"
            f'<rect x="{x:.1f}" y="{_HEIGHT - _BOTTOM - h:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{h:.1f}"/>'
            f'<text class="axis" x="{x + slot * 0.35:.1f}" y="{_HEIGHT - 8}" '
            f'text-anchor="middle">{escape(bar.label)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from escaped parts only


def meter(used: float, limit: float) -> Markup:
    """A horizontal bar of ``used`` out of ``limit`` (full, and marked, at or over it)."""
    ratio = 1.0 if limit <= 0 else min(max(used / limit, 0.0), 1.0)
    level = "full" if ratio >= 1.0 else "high" if ratio >= 0.8 else "ok"
    return Markup(  # noqa: S704 - numbers only
        f'<svg class="meter {level}" viewBox="0 0 100 8" preserveAspectRatio="none" '
        f'role="img" aria-label="{ratio:.0%} used" xmlns="http://www.w3.org/2000/svg">'
        f'<rect class="track" width="100" height="8"/>'
        f'<rect class="fill" width="{ratio * 100:.1f}" height="8"/></svg>'
    )
