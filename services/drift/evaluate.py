"""A closed window -> findings (data_drift, prediction_drift, data_quality). Pure: no I/O, no clock.

Statistics come from `shared.stats.window.evaluate`, severities from `shared.policy` (tiers,
gates, risk-tier escalation). What is emitted (*Vigil's choice*): a finding of severity
medium or above. Low findings would be one per feature per window — noise that the alerts
service records but never notifies — so they are not published; the gauges
(`gauges`) carry every feature's number for every window instead.

`finding_id` is a hash of (model, kind, feature, window_start): the same window evaluated
twice (a replay after a crash, another worker) gives the same id, so a repeat is recognisable.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from shared import policy
from shared.events import Finding, ModelSpec, finding_id
from shared.stats.baseline import Baseline
from shared.stats.window import evaluate as window_metrics
from services.drift.quality import CODES, MISSING, NULL, OUT_OF_RANGE, UNSEEN, WRONG_TYPE
from services.drift.windows import ClosedWindow

EMIT_AT = policy.MEDIUM  # findings below this are not published (gauges still move)


def _when(t: int) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def _finding(w: ClosedWindow, spec: ModelSpec, kind: str, feature: str | None, n: int,
             metrics: dict[str, float | None], evidence: dict[str, Any]) -> Finding | None:
    th = spec.thresholds
    sev = policy.escalate(policy.severity(metrics, th), spec.risk_tier)
    if policy.RANK[sev] < policy.RANK[EMIT_AT]:
        return None
    return Finding(finding_id=finding_id(w.model_id, kind, feature, w.start), kind=kind, model_id=w.model_id,
                   model_version=w.model_version, feature=feature, window_start=_when(w.start),
                   window_end=_when(w.end), n=n, metrics=metrics, severity=sev, evidence=evidence,
                   recommended_actions=policy.recommended_actions(sev, metrics, kind, th))


def drift_findings(w: ClosedWindow, base: Baseline, spec: ModelSpec, reference: str = "registered"
                   ) -> tuple[list[Finding], list[dict[str, Any]]]:
    """data_drift and prediction_drift findings of a window, and every row of metrics (for gauges)."""
    if w.state.n == 0:
        return [], []
    rows = window_metrics(w.state, base, spec.thresholds)
    out = []
    for r in rows:
        evidence = {**r["evidence"], "type": r["type"], "window_events": w.state.n}
        evidence["reference_distribution"] = evidence.pop("reference")
        evidence["reference"] = reference  # "registered" or "first_window"
        f = _finding(w, spec, r["kind"], r["feature"], r["n"], r["metrics"], evidence)
        if f is not None:
            out.append(f)
    return out, rows


def quality_findings(w: ClosedWindow, spec: ModelSpec) -> list[Finding]:
    """data_quality findings: per schema feature, and per unexpected feature name."""
    q, lay = w.quality, w.quality.layout
    n = q.n
    if n == 0:
        return []
    out = []
    for j, name in enumerate(lay.names):
        c = q.counts[j]
        share = c / n
        null_rate = (c[NULL] + c[MISSING]) / n
        limit = lay.max_null_rates[j]
        metrics = {"null_rate": float(null_rate), "max_null_rate": limit,
                   "missing_share": float(share[MISSING]), "wrong_type_share": float(share[WRONG_TYPE]),
                   "out_of_range_share": float(share[OUT_OF_RANGE]), "unseen_category_share": float(share[UNSEEN])}
        worst = max(share[WRONG_TYPE], share[OUT_OF_RANGE], share[UNSEEN],
                    share[MISSING] if share[MISSING] == 1.0 else 0.0,  # a feature absent from every event
                    null_rate - limit if limit is not None else 0.0)
        metrics["quality_violation"] = float(worst)
        evidence = {"counts": dict(zip(CODES, c.tolist())), "type": lay.types[j],
                    "range": [None if not np.isfinite(lay.mins[j]) else lay.mins[j],
                              None if not np.isfinite(lay.maxs[j]) else lay.maxs[j]],
                    "categories": None if lay.categories[j] is None else list(lay.categories[j])}
        if (f := _finding(w, spec, "data_quality", name, n, metrics, evidence)) is not None:
            out.append(f)
    for name, count in sorted(q.unexpected.items()):
        metrics = {"unexpected_share": count / n, "quality_violation": count / n}
        evidence = {"problem": "unexpected_feature", "events": count, "schema": list(lay.names)}
        if (f := _finding(w, spec, "data_quality", name, n, metrics, evidence)) is not None:
            out.append(f)
    return out


def findings(w: ClosedWindow, base: Baseline | None, spec: ModelSpec, reference: str = "registered"
             ) -> tuple[list[Finding], list[dict[str, Any]]]:
    """Every finding of a closed window, in a fixed order, and the drift metric rows (for gauges)."""
    drift, rows = drift_findings(w, base, spec, reference) if base is not None else ([], [])
    return [*drift, *quality_findings(w, spec)], rows


def gauges(model_id: str, rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, str], float]]:
    """(metric, labels, value) for the contract's gauges from a window's metric rows."""
    out = []
    for r in rows:
        m = r["metrics"]
        if r["kind"] == "data_drift":
            labels = {"model_id": model_id, "feature": r["feature"]}
            if m.get("psi") is not None:
                out.append(("psi", labels, m["psi"]))
            if m.get("ks_statistic") is not None:
                out.append(("ks_statistic", labels, m["ks_statistic"]))
        elif m.get("js_divergence") is not None:
            out.append(("js_divergence", {"model_id": model_id}, m["js_divergence"]))
    return out

