"""Small line charts as inline SVG, drawn in the server (no chart library, no script).

:func:`line_chart` returns the SVG markup as :class:`markupsafe.Markup`; every
text in it (title, labels) is escaped, and numbers are formatted by the
server, so nothing from a queue or a payload can inject markup.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from markupsafe import Markup, escape

from jobs_dashboard.sampler import Point

WIDTH = 480
HEIGHT = 140
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 10, 22


def _number(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _clock(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%H:%M:%S")


def line_chart(points: Sequence[Point], label: str, unit: str = "") -> Markup:
    """An SVG line chart of ``points`` titled ``label`` (``unit`` after the largest value).

    Points whose value is ``None`` break the line. With fewer than two known
    values the chart says that it is waiting for samples.
    """
    known = [p for p in points if p.value is not None]
    title = escape(label)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{title}"><title>{title}</title>',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{WIDTH - _LEFT - _RIGHT}" '
        f'height="{HEIGHT - _TOP - _BOTTOM}" fill="none" stroke="#d0d4da"/>',
    ]
    if len(known) < 2:
        parts.append(
            f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle" fill="#6b7280" '
            'font-size="12">waiting for samples…</text></svg>'
        )
        return Markup("".join(parts))
    start, end = points[0].at, points[-1].at
    span = max(end - start, 1e-9)
    top = max(p.value for p in known if p.value is not None)
    scale = top if top > 0 else 1.0
    inner_w, inner_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    lines: list[list[str]] = [[]]
    for point in points:
        if point.value is None:
            if lines[-1]:
                lines.append([])
            continue
        x = _LEFT + (point.at - start) / span * inner_w
        y = _TOP + inner_h - point.value / scale * inner_h
        lines[-1].append(f"{x:.1f},{y:.1f}")
    for line in lines:
        if len(line) >= 2:
            parts.append(
                f'<polyline points="{" ".join(line)}" fill="none" stroke="#2563eb" stroke-width="2"/>'
            )
        elif line:
            cx, cy = line[0].split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="#2563eb"/>')
    text = 'font-size="11" fill="#4b5563"'
    parts += [
        f'<text x="{_LEFT - 4}" y="{_TOP + 9}" text-anchor="end" {text}>{escape(_number(top))}</text>',
        f'<text x="{_LEFT - 4}" y="{HEIGHT - _BOTTOM}" text-anchor="end" {text}>0</text>',
        f'<text x="{_LEFT}" y="{HEIGHT - 6}" {text}>{_clock(start)}</text>',
        f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 6}" text-anchor="end" {text}>{_clock(end)} UTC</text>',
        f'<text x="{_LEFT + 6}" y="{_TOP + 12}" {text}>{title}{escape(" " + unit if unit else "")}</text>',
        "</svg>",
    ]
    return Markup("".join(parts))


def sparkline(points: Sequence[Point], label: str, width: int = 120, height: int = 24) -> Markup:
    """A small line of ``points`` without axes (for a table cell), titled ``label`` for a tooltip.

    Empty (a blank of the same size) with fewer than two known values.
    """
    title = escape(label)
    head = (
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{title}"><title>{title}</title>'
    )
    known = [p.value for p in points if p.value is not None]
    if len(known) < 2:
        return Markup(head + "</svg>")
    start, span = points[0].at, max(points[-1].at - points[0].at, 1e-9)
    scale = max(known) or 1.0
    segments: list[list[str]] = [[]]
    for point in points:
        if point.value is None:
            segments.append([])
            continue
        x = 1 + (point.at - start) / span * (width - 2)
        y = height - 2 - point.value / scale * (height - 4)
        segments[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(
        f'<polyline points="{" ".join(s)}" fill="none" stroke="#2563eb" stroke-width="1.5"/>'
        for s in segments
        if len(s) >= 2
    )
    return Markup(head + lines + "</svg>")
