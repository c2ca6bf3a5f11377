"""Self-contained SVG charts (no JavaScript, no fonts to fetch): for benchmark plots and
reports that must open offline. Pure: data in, markup out.

>>> svg = line_chart([0, 1, 2], {"a": [1.0, 2.0, None]}, title="t <1>")
>>> svg.startswith("<svg") and "t &lt;1&gt;" in svg and svg.count("<polyline") == 1
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi].

    >>> nice_ticks(0, 97)
    [0, 20, 40, 60, 80, 100]
    """
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, v = [], first
    while v < hi + step * 0.999:
        ticks.append(round(v, 10))
        v += step
    return ticks


def line_chart(x: Sequence[float], series: Mapping[str, Sequence[float | None]], *, title: str = "",
               x_label: str = "", y_label: str = "", width: int = 860, height: int = 360,
               y_min: float | None = 0.0) -> str:
    """One polyline per series over shared x values (None: a gap), with axes, ticks and a legend."""
    left, right, top, bottom = 64, 150, 36, 46
    pw, ph = width - left - right, height - top - bottom
    ys = [v for vals in series.values() for v in vals if v is not None and math.isfinite(v)]
    xs = [v for v in x if math.isfinite(v)]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y_lo = min(ys) if ys else 0.0
    y_lo = min(y_lo, y_min) if y_min is not None else y_lo
    y_ticks = nice_ticks(y_lo, max(ys) if ys else 1.0)
    x_ticks = nice_ticks(x_lo, x_hi)
    y0, y1 = y_ticks[0], y_ticks[-1]
    x0, x1 = x_ticks[0], x_ticks[-1]

    def px(v: float) -> float:
        return left + (v - x0) / ((x1 - x0) or 1.0) * pw

    def py(v: float) -> float:
        return top + ph - (v - y0) / ((y1 - y0) or 1.0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    for t in y_ticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in x_ticks:
        out.append(f'<text x="{px(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{t:g}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2})">{escape(y_label)}</text>')
    for i, (name, vals) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        runs, run = [], []
        for xv, yv in zip(x, vals):
            if yv is None or not math.isfinite(yv):
                runs, run = (runs + [run]) if run else runs, []
                continue
            run.append(f"{px(xv):.1f},{py(yv):.1f}")
        runs += [run] if run else []
        for r in runs:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{" ".join(r)}"/>')
        ly = top + 14 + i * 18
        out.append(f'<line x1="{left + pw + 12}" x2="{left + pw + 32}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{colour}" stroke-width="3"/>')
        out.append(f'<text x="{left + pw + 38}" y="{ly}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
