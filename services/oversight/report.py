"""A vendor's SLA report for people: the JSON the oversight worker stores, as Markdown. Pure.

>>> md = markdown({"vendor": "acme", "status": "violation", "reports": [{"vendor": "acme", "model_id": "m",
...     "period": {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-08T00:00:00+00:00", "days": 7},
...     "sample_size": {"calls": 2100, "labelled": 2000, "min_samples": 100}, "status": "violation",
...     "terms": {"latency_p95": {"observed": 163.2, "contracted": 120.0, "limit": 144.0, "ok": False}},
...     "violations": [{"sla": "latency_p95", "observed": 163.2, "contracted": 120.0, "limit": 144.0}],
...     "metrics": {}, "trend": [{"end": "2026-01-08T00:00:00+00:00", "status": "violation", "labelled": 2000.0,
...                              "accuracy": 0.93, "latency_p95_ms": 163.2, "uptime": 0.999, "violations": ["latency_p95"]}]}]})
>>> print(md.splitlines()[0])
# Vendor SLA report: acme
>>> "| latency_p95 | 163.2 | 120 | 144 | violation |" in md
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LABELS = {True: "ok", False: "violation", None: "unknown"}


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 10 else f"{v:,.1f}".rstrip("0").rstrip(".")
    return str(v)


def _model(r: Mapping[str, Any]) -> list[str]:
    p, n = r["period"], r["sample_size"]
    out = [f"## Model {r['model_id']}", "",
           f"- Period: {p['start']} to {p['end']} ({p['days']} days)",
           f"- Sample size: {n['calls']:,} calls, {n['labelled']:,} labelled (minimum {n['min_samples']:,})",
           f"- Status: **{r['status']}**", ""]
    if r["terms"]:
        out += ["| SLA | observed | contracted | limit | status |", "|---|---|---|---|---|"]
        out += [f"| {name} | {_num(t['observed'])} | {_num(t['contracted'])} | {_num(t['limit'])} | {LABELS[t['ok']]} |"
                for name, t in r["terms"].items()]
        out.append("")
    if r["violations"]:
        out += ["Violations: " + ", ".join(f"{v['sla']} ({_num(v['observed'])} against a limit of {_num(v['limit'])})"
                                           for v in r["violations"]), ""]
    if r.get("trend"):
        out += ["Trend (period ending):", "", "| end | status | labelled | accuracy | latency p95 (ms) | uptime | violations |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {h['end']} | {h['status']} | {_num(h.get('labelled'))} | {_num(h.get('accuracy'))} | "
                f"{_num(h.get('latency_p95_ms'))} | {_num(h.get('uptime'))} | {', '.join(h.get('violations') or []) or '–'} |"
                for h in r["trend"]]
        out.append("")
    return out


def markdown(report: Mapping[str, Any]) -> str:
    """The report (``{"vendor", "status", "reports": [per model]}``) as Markdown."""
    lines = [f"# Vendor SLA report: {report['vendor']}", "", f"Overall status: **{report['status']}**", ""]
    for r in report["reports"]:
        lines += _model(r)
    return "\n".join(lines).rstrip() + "\n"


ORDER = ("violation", "insufficient data", "no SLA", "ok")


def combine(vendor: str, per_model: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The stored per-model reports as one: the worst status first (violation, insufficient data, no SLA, ok).

    >>> combine("v", {"b": {"status": "ok"}, "a": {"status": "violation"}})["status"]
    'violation'
    """
    reports = [dict(per_model[m]) for m in sorted(per_model)]
    status = min((r["status"] for r in reports), key=ORDER.index, default="insufficient data")
    return {"vendor": vendor, "status": status, "reports": reports}
