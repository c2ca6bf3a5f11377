"""The model report: one self-contained HTML page a person can open without Grafana.

`render(data) -> str` is pure (no I/O, no clock: the caller passes `generated_at`). The page
has no script and loads nothing: inline CSS, SVG plots drawn here, and a Content-Security-Policy
that forbids every fetch, so the file opens offline and shows the same thing anywhere.

Sections: the header (model, task, risk tier, mode, generated at); data drift — a heatmap of
PSI per feature x window coloured by the contract's tiers (`shared.policy.TIERS`, with the
model's own overrides) and KS of the most drifting features; prediction drift (JS divergence);
performance — the primary metric per window against its baseline and minimum acceptable value,
with the newest `performance_trend` finding's projection and where it crosses the minimum;
open alerts; recent actions; oversight (override rate over time, rubber-stamping and other
oversight findings); fairness gaps. A section without data says "no data".

`data` (what `services.alerts.api` gathers from Redis)::

    model_id        str
    generated_at    aware datetime
    spec            ModelSpec as JSON, or None (no spec registered)
    mode            {"mode", "since", "reason", "by"?} (GET /v1/models/{id}/mode)
    windows         [{"start": epoch s, "psi": {feature: v}, "ks_statistic": {feature: v},
                      "js_divergence": v, "performance": {metric: v},
                      "performance_baseline": {metric: v}, "performance_min_acceptable": {metric: v},
                      "fairness": {(attribute, metric): v}}, ...]  oldest first (`windows_of`)
    trend           the newest performance_trend finding, or None
    alerts          open alerts (lifecycle's dicts)
    actions         recent actions, newest first
    oversight       {"summary": the latest review summary or None, "rates": [(epoch s, rate)],
                     "findings": [oversight findings]}
    fairness        [fairness_violation findings]
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from shared import policy
from shared.history import Window
from shared.svg import nice_ticks
from shared.stats.performance import HIGHER_IS_BETTER, primary_metric

# --- the one place for colours ----------------------------------------------------------------
TIER_COLOURS = {policy.CRITICAL: "#b3261e", policy.HIGH: "#ef6c00", policy.MEDIUM: "#f6c343",
                policy.LOW: "#e3f1e5"}
TIER_TEXT = {policy.CRITICAL: "#ffffff", policy.HIGH: "#ffffff", policy.MEDIUM: "#3d2e00", policy.LOW: "#1e3d22"}
TIER_LINES = {**TIER_COLOURS, policy.MEDIUM: "#b58900"}  # threshold lines: the medium yellow is too pale for one
NO_VALUE = "#eceff1"
SERIES = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f")
INK, GRID, MUTED = "#263238", "#cfd8dc", "#607d8b"
BASELINE, MINIMUM, PROJECTION = "#2e7d32", "#b3261e", "#6a1b9a"
MODE_COLOURS = {"human_review": "#b3261e", "automated": "#2e7d32"}

TOP_FEATURES = 6  # features drawn in the KS plot: the most drifting
PLOT_W, PLOT_H = 1100, 260
MARGIN = (56, 16, 28, 40)  # left, right, top, bottom
OVERSIGHT_KINDS = ("override_rate_low", "reviewer_rubber_stamping", "workload_pressure", "review_coverage_gap")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#263238;margin:0;background:#f5f7f8}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}h3{font-size:15px;margin:16px 0 8px}
section{background:#fff;border:1px solid #dde3e6;border-radius:8px;padding:16px 20px;margin:0 0 18px}
dl.facts{display:flex;flex-wrap:wrap;gap:6px 28px;margin:8px 0 0}dl.facts div{display:flex;gap:6px}
dt{color:#607d8b}dd{margin:0;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceff1;vertical-align:top}
th{color:#607d8b;font-weight:600}
.sev{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px}
.mode{display:inline-block;padding:1px 10px;border-radius:10px;color:#fff;font-weight:600}
.nodata{color:#607d8b;font-style:italic}.note{color:#607d8b;font-size:12px}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;margin:6px 0}
.legend span{display:inline-flex;align-items:center;gap:4px}
.legend i{display:inline-block;width:14px;height:10px;border-radius:2px}
svg{display:block;max-width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#455a64}
"""


# --- small helpers ----------------------------------------------------------------------------


def e(value: Any) -> str:
    """Escaped text for HTML content and attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def num(v: float | None) -> str:
    """A number for a person: 3 decimals, small ones in scientific notation, '–' for none.

    >>> num(0.23456), num(0.00012), num(None), num(12345.6)
    ('0.235', '1.20e-04', '–', '12,346')
    """
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "–"
    if v != 0 and abs(v) < 0.001:
        return f"{v:.2e}"
    return f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"


def epoch(t: Any) -> float | None:
    """Epoch seconds of an epoch number, an RFC 3339 string or a datetime."""
    if t is None:
        return None
    if isinstance(t, (int, float)):
        return float(t)
    if isinstance(t, datetime):
        return t.timestamp()
    return datetime.fromisoformat(str(t).replace("Z", "+00:00")).timestamp()


def when(t: Any, seconds: bool = False) -> str:
    """A time as 'YYYY-MM-DD HH:MM UTC'."""
    s = epoch(t)
    if s is None:
        return "–"
    return datetime.fromtimestamp(s, timezone.utc).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else "") + " UTC")


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def tiers(metric: str, spec: Mapping[str, Any] | None) -> tuple[tuple[float, str], ...]:
    """A metric's tiers for this model: its threshold overrides, else the contract's."""
    th = (spec or {}).get("thresholds") or {}
    try:
        return policy.validate_thresholds({metric: th[metric]})[metric] if metric in th else policy.TIERS[metric]
    except ValueError:
        return policy.TIERS[metric]


def tier_of(metric: str, value: float | None, spec: Mapping[str, Any] | None) -> str:
    th = (spec or {}).get("thresholds") or {}
    try:
        return policy.tier(metric, value, th)
    except ValueError:
        return policy.tier(metric, value)


def badge(severity: str) -> str:
    colour, text = TIER_COLOURS.get(severity, NO_VALUE), TIER_TEXT.get(severity, INK)
    return f'<span class="sev" style="background:{colour};color:{text}">{e(severity)}</span>'


def nodata(what: str = "no data") -> str:
    return f'<p class="nodata">{e(what)}</p>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table of already escaped cells."""
    rows = list(rows)
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def legend(items: Iterable[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(f'<span><i style="background:{c}"></i>{e(label)}</span>'
                                            for label, c in items) + "</div>"


# --- history -> data --------------------------------------------------------------------------


def windows_of(history: Sequence[Window]) -> list[dict[str, Any]]:
    """The drift history's windows (`shared.history.Window`) as the report's window dicts."""
    out = []
    for w in history:
        row: dict[str, Any] = {"start": w.start, "js_divergence": w.get("js_divergence")}
        for gauge, key in (("psi", "feature"), ("ks_statistic", "feature"), ("performance", "metric"),
                           ("performance_baseline", "metric"), ("performance_min_acceptable", "metric"),
                           ("performance_projected", "metric")):
            row[gauge] = {dict(labels).get(key): v for labels, v in w.of(gauge).items()}
        row["fairness"] = {(dict(labels).get("attribute"), dict(labels).get("metric")): v
                           for labels, v in w.of("fairness").items()}
        out.append(row)
    return out


# --- SVG plots --------------------------------------------------------------------------------


class Frame:
    """A plot's coordinates: time on x, a value range on y, inside PLOT_W x PLOT_H less margins."""

    def __init__(self, t0: float, t1: float, y0: float, y1: float, width: int = PLOT_W, height: int = PLOT_H):
        if t1 <= t0:
            t1 = t0 + 1
        if y1 <= y0:
            y0, y1 = y0 - 0.5, y1 + 0.5
        self.t0, self.t1, self.y0, self.y1, self.width, self.height = t0, t1, y0, y1, width, height
        self.left, self.right, self.top, self.bottom = MARGIN[0], width - MARGIN[1], MARGIN[2], height - MARGIN[3]

    def x(self, t: float) -> float:
        return self.left + (t - self.t0) / (self.t1 - self.t0) * (self.right - self.left)

    def y(self, v: float) -> float:
        return self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)


def y_range(values: Iterable[float], floor_zero: bool = False) -> tuple[float, float]:
    vs = [v for v in values if finite(v)]
    if not vs:
        return 0.0, 1.0
    lo, hi = min(vs), max(vs)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 0.05
    lo = 0.0 if floor_zero and lo >= 0 else lo - pad
    return lo, hi + pad


def time_ticks(t0: float, t1: float, n: int = 6) -> list[float]:
    if t1 <= t0:
        return [t0]
    return [t0 + (t1 - t0) * i / (n - 1) for i in range(n)]


def nice_frame(t0: float, t1: float, values: Iterable[float], floor_zero: bool = False) -> tuple[Frame, list[float]]:
    """A frame whose value range ends on round ticks (`shared.svg.nice_ticks`), and the ticks."""
    ticks = nice_ticks(*y_range(values, floor_zero), n=4)
    return Frame(t0, t1, ticks[0], ticks[-1]), ticks


def axes(f: Frame, label: str, ticks: Sequence[float]) -> str:
    """The frame, horizontal grid lines at `ticks` with values, time ticks and the y label."""
    parts = [f'<rect x="{f.left}" y="{f.top}" width="{f.right - f.left}" height="{f.bottom - f.top}" '
             f'fill="#fff" stroke="{GRID}"/>']
    for v in ticks:
        y = f.y(v)
        parts.append(f'<line x1="{f.left}" x2="{f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}" '
                     f'stroke-dasharray="2 3"/><text x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
    stamps = time_ticks(f.t0, f.t1)
    for i, t in enumerate(stamps):
        anchor = "start" if i == 0 else "end" if i == len(stamps) - 1 else "middle"
        stamp = datetime.fromtimestamp(t, timezone.utc).strftime("%m-%d %H:%M")
        parts.append(f'<text x="{f.x(t):.1f}" y="{f.bottom + 16}" text-anchor="{anchor}">{stamp}</text>')
    parts.append(f'<text x="14" y="{(f.top + f.bottom) / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(f.top + f.bottom) / 2:.1f})">{e(label)}</text>')
    return "".join(parts)


def line(f: Frame, points: Sequence[tuple[float, float]], colour: str, name: str, dash: str = "",
         width: float = 2.0) -> str:
    """A series as a polyline with a dot per point (a tooltip each)."""
    pts = [(t, v) for t, v in points if finite(v)]
    if not pts:
        return ""
    coords = " ".join(f"{f.x(t):.1f},{f.y(v):.1f}" for t, v in pts)
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    dots = "".join(f'<circle cx="{f.x(t):.1f}" cy="{f.y(v):.1f}" r="2.5" fill="{colour}">'
                   f'<title>{e(name)} {when(t)}: {num(v)}</title></circle>' for t, v in pts)
    return (f'<g data-series="{e(name)}"><polyline points="{coords}" fill="none" stroke="{colour}" '
            f'stroke-width="{width}"{dash_attr}/>{dots}</g>')


def hline(f: Frame, v: float, colour: str, label: str, role: str) -> str:
    y = f.y(v)
    return (f'<g data-role="{e(role)}" data-value="{v!r}"><line x1="{f.left}" x2="{f.right}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text x="{f.right - 4}" y="{y - 4:.1f}" text-anchor="end" style="fill:{colour}">'
            f'{e(label)} {num(v)}</text></g>')


def svg(f: Frame, body: str, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {f.width} {f.height}" width="{f.width}" '
            f'height="{f.height}" role="img" aria-label="{e(title)}">{body}</svg>')


# --- data drift -------------------------------------------------------------------------------


def features_of(windows: Sequence[Mapping[str, Any]], metric: str) -> list[str]:
    """Every feature with a value of `metric`, the most drifting (largest value) first."""
    peak: dict[str, float] = {}
    for w in windows:
        for feature, v in (w.get(metric) or {}).items():
            if finite(v):
                peak[feature] = max(peak.get(feature, -math.inf), v)
            else:
                peak.setdefault(feature, -math.inf)
    return sorted(peak, key=lambda k: (-peak[k], k))


def heatmap(windows: Sequence[Mapping[str, Any]], spec: Mapping[str, Any] | None) -> str:
    """PSI per feature (rows, most drifting first) x window (columns), coloured by tier."""
    features = features_of(windows, "psi")
    if not features:
        return nodata("no data: no window with PSI values yet")
    label_w = min(220, 12 + 7 * max(len(f[:30]) for f in features))
    cell_w = max(3.0, min(48.0, (PLOT_W - label_w - 16) / len(windows)))
    row_h, top = 20, 8
    width = int(max(label_w + cell_w * len(windows), label_w + 200) + 16)
    height = top + row_h * len(features) + 30
    parts = []
    for r, feature in enumerate(features):
        y = top + r * row_h
        short = feature if len(feature) <= 30 else feature[:29] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end"><title>{e(feature)}</title>'
                     f'{e(short)}</text>')
        cells = []
        for c, w in enumerate(windows):
            v = (w.get("psi") or {}).get(feature)
            sev = tier_of("psi", v, spec) if finite(v) else None
            fill = TIER_COLOURS[sev] if sev else NO_VALUE
            tip = f"{feature} · {when(w['start'])} · PSI {num(v)}" + (f" ({sev})" if sev else " (no value)")
            cells.append(f'<rect x="{label_w + c * cell_w:.1f}" y="{y}" width="{max(cell_w - 1, 1):.1f}" '
                         f'height="{row_h - 2}" fill="{fill}" data-start="{w["start"]}" data-tier="{sev or "none"}">'
                         f'<title>{e(tip)}</title></rect>')
        parts.append(f'<g class="row" data-feature="{e(feature)}">{"".join(cells)}</g>')
    for c, anchor in ((0, "start"), (len(windows) - 1, "end")):  # the first and the last window's start
        x = label_w + (c + (anchor == "end")) * cell_w
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="{anchor}">'
                     f'{datetime.fromtimestamp(windows[c]["start"], timezone.utc).strftime("%m-%d %H:%M")}</text>')
    rules = tiers("psi", spec)
    keys = [(f"≤ {num(rules[-1][0])} (low)", TIER_COLOURS[policy.LOW])]
    keys += [(f"> {num(above)} ({sev})", TIER_COLOURS[sev]) for above, sev in reversed(rules)]
    body = "".join(parts)
    return (legend([*keys, ("no value", NO_VALUE)]) +
            f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="PSI per feature and window">{body}</svg>')


def series_plot(windows: Sequence[Mapping[str, Any]], metric: str, names: Sequence[str], label: str,
                spec: Mapping[str, Any] | None, tier_metric: str | None = None) -> str:
    """Lines of `metric` per name (feature) over windows, with the tier thresholds as lines."""
    ts = [w["start"] for w in windows]
    points = {n: [(w["start"], (w.get(metric) or {}).get(n)) for w in windows] for n in names}
    rules = tiers(tier_metric, spec) if tier_metric else ()
    values = [v for pts in points.values() for _, v in pts] + [above for above, _ in rules]
    f, ticks = nice_frame(min(ts), max(ts), values, floor_zero=True)
    body = axes(f, label, ticks)
    body += "".join(hline(f, above, TIER_LINES[sev], sev, f"tier-{sev}")
                    for above, sev in rules)
    body += "".join(line(f, points[n], SERIES[i % len(SERIES)], n) for i, n in enumerate(names))
    return legend((n, SERIES[i % len(SERIES)]) for i, n in enumerate(names)) + svg(f, body, label)


def drift_section(data: Mapping[str, Any]) -> str:
    windows, spec = data.get("windows") or [], data.get("spec")
    drifted = [w for w in windows if w.get("psi") or w.get("ks_statistic")]
    out = ['<section id="drift"><h2>Data drift per feature</h2>']
    if not drifted:
        out.append(nodata("no data: no drift window evaluated yet"))
        return "".join(out) + "</section>"
    out.append(f'<h3>PSI per feature and window ({len(drifted)} windows, most drifting feature first)</h3>')
    out.append(heatmap(drifted, spec))
    top = features_of(drifted, "ks_statistic")[:TOP_FEATURES]
    out.append(f"<h3>KS statistic of the {len(top)} most drifting features</h3>")
    out.append(series_plot(drifted, "ks_statistic", top, "KS statistic", spec, "ks_statistic") if top
               else nodata("no data: no numeric feature"))
    js = [w for w in windows if finite(w.get("js_divergence"))]
    out.append("<h3>Prediction drift (Jensen–Shannon divergence)</h3>")
    if js:
        rows = [{"start": w["start"], "js": {"prediction": w["js_divergence"]}} for w in js]
        out.append(series_plot(rows, "js", ["prediction"], "JS divergence", spec))
    else:
        out.append(nodata())
    return "".join(out) + "</section>"


# --- performance ------------------------------------------------------------------------------


def first_finite(*values: Any) -> float | None:
    return next((v for v in values if finite(v)), None)


def latest(windows: Sequence[Mapping[str, Any]], gauge: str, metric: str) -> float | None:
    for w in reversed(windows):
        v = (w.get(gauge) or {}).get(metric)
        if finite(v):
            return v
    return None


def projection(trend: Mapping[str, Any] | None, metric: str, window_seconds: float) -> dict[str, Any] | None:
    """The trend finding's fitted line from its window to `horizon` windows ahead, and where it
    crosses the minimum acceptable value (`windows_to_breach` windows after its window)."""
    if not trend or (trend.get("evidence") or {}).get("metric", metric) != metric:
        return None
    m, ev = trend.get("metrics") or {}, trend.get("evidence") or {}
    slope, projected = m.get("slope"), m.get("projected")
    if not (finite(slope) and finite(projected)):
        return None
    horizon = int(ev.get("horizon") or policy.TREND_HORIZON)
    t_last = epoch(trend["window_start"])
    out = {"t0": t_last, "v0": projected - slope * horizon, "t1": t_last + horizon * window_seconds,
           "v1": projected, "breach": None, "windows_to_breach": m.get("windows_to_breach"),
           "min_acceptable": m.get("min_acceptable")}
    wtb, floor = m.get("windows_to_breach"), m.get("min_acceptable")
    if finite(wtb) and finite(floor) and wtb <= horizon:
        out["breach"] = (t_last + wtb * window_seconds, floor)
    return out


def performance_plot(windows: Sequence[Mapping[str, Any]], metric: str, baseline: float | None,
                     floor: float | None, proj: dict[str, Any] | None) -> str:
    points = [(w["start"], (w.get("performance") or {}).get(metric)) for w in windows]
    points = [(t, v) for t, v in points if finite(v)]
    ts = [t for t, _ in points] + ([proj["t1"]] if proj else [])
    values = [v for _, v in points] + [x for x in (baseline, floor) if finite(x)] + \
        ([proj["v0"], proj["v1"]] if proj else [])
    f, ticks = nice_frame(min(ts), max(ts), values)
    body = axes(f, metric, ticks)
    if finite(baseline):
        body += hline(f, baseline, BASELINE, "baseline", "baseline")
    if finite(floor):
        body += hline(f, floor, MINIMUM, "min acceptable", "min-acceptable")
    body += line(f, points, SERIES[0], metric)
    if proj:
        body += (f'<g data-role="projection"><line x1="{f.x(proj["t0"]):.1f}" y1="{f.y(proj["v0"]):.1f}" '
                 f'x2="{f.x(proj["t1"]):.1f}" y2="{f.y(proj["v1"]):.1f}" stroke="{PROJECTION}" stroke-width="2" '
                 f'stroke-dasharray="4 3"/><title>projected {num(proj["v1"])} at {when(proj["t1"])}</title></g>')
    if proj and proj["breach"]:
        t, v = proj["breach"]
        body += (f'<g data-role="breach" data-t="{t!r}" data-value="{v!r}"><circle cx="{f.x(t):.1f}" '
                 f'cy="{f.y(v):.1f}" r="6" fill="none" stroke="{MINIMUM}" stroke-width="2.5"/>'
                 f'<text x="{f.x(t):.1f}" y="{f.y(v) + 18:.1f}" text-anchor="middle" style="fill:{MINIMUM}">'
                 f'breach in {proj["windows_to_breach"]:.1f} windows</text></g>')
    keys = [(metric, SERIES[0]), ("baseline", BASELINE), ("min acceptable", MINIMUM)]
    return legend(keys + ([("trend projection", PROJECTION)] if proj else [])) + svg(f, body, f"{metric} per window")


def performance_section(data: Mapping[str, Any]) -> str:
    windows, spec = data.get("windows") or [], data.get("spec") or {}
    task = spec.get("task", "binary_classification")
    metric = primary_metric(task)
    judged = [w for w in windows if finite((w.get("performance") or {}).get(metric))]
    out = [f'<section id="performance"><h2>Performance ({e(metric)})</h2>']
    if not judged:
        return "".join(out) + nodata("no data: no performance window evaluated yet (labels needed)") + "</section>"
    baseline = first_finite(latest(windows, "performance_baseline", metric),
                            (spec.get("baseline_metrics") or {}).get(metric))
    trend = data.get("trend")
    floor = first_finite(latest(windows, "performance_min_acceptable", metric),
                         (spec.get("min_acceptable") or {}).get(metric))
    if trend and finite((trend.get("metrics") or {}).get("min_acceptable")):
        floor = trend["metrics"]["min_acceptable"]
    proj = projection(trend, metric, float(spec.get("window_seconds") or 900))
    out.append(performance_plot(judged, metric, baseline, floor, proj))
    out.append(trend_text(trend, metric, HIGHER_IS_BETTER.get(metric, True)))
    metrics = sorted({k for w in judged for k in (w.get("performance") or {})})
    last = judged[-1]
    out.append("<h3>Latest window</h3>" + table(
        ["window", *metrics],
        [[e(when(last["start"])), *(e(num(last["performance"].get(k))) for k in metrics)]]))
    return "".join(out) + "</section>"


def trend_text(trend: Mapping[str, Any] | None, metric: str, higher_is_better: bool) -> str:
    if not trend:
        return '<p class="note">No declining trend found (a performance_trend finding projects a breach).</p>'
    m = trend.get("metrics") or {}
    wtb = m.get("windows_to_breach")
    breach = (f"crosses the minimum acceptable {num(m.get('min_acceptable'))} in {wtb:.1f} windows"
              if finite(wtb) else "does not cross the minimum acceptable value")
    direction = "falling" if higher_is_better else "rising"
    return (f'<p class="trend"><strong>Trend ({e(trend.get("severity"))}):</strong> {e(metric)} is {direction} '
            f'by {e(num(abs(m.get("slope") or 0)))} a window (p = {e(num(m.get("p_value")))}), projected '
            f'{e(num(m.get("projected")))} in {policy.TREND_HORIZON} windows; it {e(breach)}. '
            f'<span class="note">Window of {e(when(trend.get("window_start")))}.</span></p>')


# --- alerts, actions, oversight, fairness ----------------------------------------------------


def alerts_section(alerts: Sequence[Mapping[str, Any]]) -> str:
    rows = sorted(alerts, key=lambda a: (-policy.RANK.get(a.get("severity"), -1), str(a.get("kind")),
                                         str(a.get("feature"))))
    body = table(["severity", "status", "kind", "feature", "title", "first seen", "last seen", "occurrences"],
                 ([badge(a.get("severity", "")), e(a.get("status")), e(a.get("kind")),
                   e(a.get("feature") or a.get("vendor") or ""), e(a.get("title")), e(when(a.get("first_seen"))),
                   e(when(a.get("last_seen"))), e(a.get("occurrences"))] for a in rows), "alerts") \
        if rows else nodata("no open alerts")
    return f'<section id="alerts"><h2>Open alerts ({len(rows)})</h2>{body}</section>'


def actions_section(actions: Sequence[Mapping[str, Any]]) -> str:
    body = table(["created", "type", "priority", "reason"],
                 ([e(when(a.get("created_at"))), e(a.get("type")), e(a.get("priority")), e(a.get("reason"))]
                  for a in actions), "actions") if actions else nodata("no actions")
    return f'<section id="actions"><h2>Recent actions</h2>{body}</section>'


def findings_table(findings: Sequence[Mapping[str, Any]], detail) -> str:
    return table(["window end", "kind", "severity", "detail"],
                 ([e(when(f.get("window_end"))), e(f.get("kind")), badge(f.get("severity", "")), detail(f)]
                  for f in findings), "findings")


def _oversight_detail(f: Mapping[str, Any]) -> str:
    ev, m = f.get("evidence") or {}, f.get("metrics") or {}
    if f.get("kind") == "reviewer_rubber_stamping":
        return "reviewers: " + e(", ".join(str(r) for r in ev.get("reviewers") or []))
    return e(", ".join(f"{k} {num(v)}" for k, v in m.items() if finite(v)))


def count(v: Any) -> str:
    return f"{int(v):,}" if finite(v) else "–"


def oversight_summary(summary: Mapping[str, Any]) -> str:
    """The latest trailing period: override rate, reviews, and each judged reviewer."""
    m, stampers = summary.get("metrics") or {}, set(summary.get("rubber_stampers") or [])
    rate = f"{num(m.get('override_rate'))} (95% CI {num(m.get('override_rate_ci_low'))}–" \
           f"{num(m.get('override_rate_ci_high'))})"
    facts = [("override rate", rate), ("reviews", count(m.get("reviews"))), ("overrides", count(m.get("overrides"))),
             ("period", f"{when(summary.get('window_start'))} – {when(summary.get('window_end'))}"),
             ("rubber-stamping reviewers", f"{len(stampers)} of {count(m.get('reviewers_judged'))} judged")]
    out = '<dl class="facts">' + "".join(f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in facts) + "</dl>"
    reviewers = summary.get("reviewers") or {}
    if reviewers:
        rows = ([e(r), e(count(v.get("reviews"))), e(num(v.get("override_rate"))),
                 badge(policy.HIGH) + " rubber-stamping" if r in stampers else ""]
                for r, v in sorted(reviewers.items(), key=lambda kv: (kv[1].get("override_rate") or 0, kv[0])))
        out += "<h3>Reviewers judged (lowest override rate first)</h3>" + \
            table(["reviewer", "reviews", "override rate", ""], rows, "reviewers")
    return out


def oversight_section(data: Mapping[str, Any], spec: Mapping[str, Any] | None) -> str:
    ov = data.get("oversight") or {}
    summary, rates, findings = ov.get("summary"), ov.get("rates") or [], ov.get("findings") or []
    out = ['<section id="oversight"><h2>Human oversight</h2>']
    if not (summary or rates or findings):
        return "".join(out) + nodata("no data: no reviews of this model") + "</section>"
    if summary:
        out.append(oversight_summary(summary))
    if rates:
        floor = policy.threshold("override_rate_min", (spec or {}).get("thresholds") or {})
        ts = [t for t, _ in rates]
        f, ticks = nice_frame(min(ts), max(ts), [v for _, v in rates] + [floor], floor_zero=True)
        body = axes(f, "override rate", ticks) + hline(f, floor, MINIMUM, "minimum", "override-min") + \
            line(f, rates, SERIES[0], "override rate")
        out.append("<h3>Override rate (trailing period, each hour)</h3>" + svg(f, body, "override rate"))
    out.append(f"<h3>Oversight findings ({len(findings)})</h3>")
    out.append(findings_table(findings, _oversight_detail) if findings else nodata("no oversight findings"))
    return "".join(out) + "</section>"


def fairness_section(data: Mapping[str, Any], spec: Mapping[str, Any] | None) -> str:
    windows, findings = data.get("windows") or [], data.get("fairness") or []
    gaps: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for w in windows:
        for key, v in (w.get("fairness") or {}).items():
            if finite(v):
                gaps.setdefault(tuple(key), []).append((w["start"], v))
    out = ['<section id="fairness"><h2>Fairness</h2>']
    if not (gaps or findings):
        return "".join(out) + nodata("no data: no fairness attributes, or groups too small") + "</section>"
    rows = []
    for (attribute, metric), pts in sorted(gaps.items()):
        v = pts[-1][1]
        sev = tier_of(metric, v, spec) if metric in policy.TIERS else policy.LOW
        rows.append([e(attribute), e(metric), f"{badge(sev)} {e(num(v))}", e(num(max(x for _, x in pts))),
                     e(len(pts))])
    if rows:
        out.append(table(["attribute", "metric", "latest", "max", "windows"], rows, "fairness"))
    out.append(f"<h3>Fairness findings ({len(findings)})</h3>")
    detail = lambda f: e(f"{f.get('feature') or ''} " + ", ".join(  # noqa: E731
        f"{k} {num(v)}" for k, v in (f.get("metrics") or {}).items() if finite(v)))
    out.append(findings_table(findings, detail) if findings else nodata("no fairness findings"))
    return "".join(out) + "</section>"


# --- the page ---------------------------------------------------------------------------------


def header(data: Mapping[str, Any]) -> str:
    spec, mode = data.get("spec"), data.get("mode") or {}
    name = mode.get("mode", "automated")
    mode_html = (f'<span class="mode" style="background:{MODE_COLOURS.get(name, MUTED)}">'
                 f'{e(name.replace("_", " "))}</span>')
    if mode.get("since"):
        mode_html += f' <span class="note">since {e(when(mode["since"]))}: {e(mode.get("reason") or "")}</span>'
    windows = data.get("windows") or []
    span = f"{when(windows[0]['start'])} – {when(windows[-1]['start'])}" if windows else "no windows yet"
    facts = [("task", e((spec or {}).get("task", "unknown (no spec registered)"))),
             ("risk tier", e((spec or {}).get("risk_tier", "–"))), ("mode", mode_html),
             ("owners", e(", ".join((spec or {}).get("owners") or []) or "–")),
             ("window", e(f"{(spec or {}).get('window_seconds', '–')} s")), ("windows shown", e(span)),
             ("generated", e(when(data.get("generated_at"), seconds=True)))]
    dl = "".join(f"<div><dt>{e(k)}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (f'<header><section><h1>Model report: <span id="model-id">{e(data.get("model_id"))}</span></h1>'
            f'<dl class="facts">{dl}</dl></section></header>')


def render(data: Mapping[str, Any]) -> str:
    """The report of one model as a self-contained HTML document."""
    spec = data.get("spec")
    sections = [drift_section(data), performance_section(data), alerts_section(data.get("alerts") or []),
                actions_section(data.get("actions") or []), oversight_section(data, spec),
                fairness_section(data, spec)]
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Vigil report: {e(data.get('model_id'))}</title><style>{CSS}</style></head>"
            f"<body><main>{header(data)}{''.join(sections)}"
            '<p class="note">Vigil model report. Numbers per window from the drift and oversight workers; '
            "alerts, actions and findings from the alerts service.</p></main></body></html>\n")
