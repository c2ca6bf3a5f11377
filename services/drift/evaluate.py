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
from shared.stats.canary import MONITOR_CLOSELY, ROLLBACK, compare_canary, shadow_agreement
from shared.stats.fairness import gaps
from shared.stats.window import evaluate as window_metrics
from services.drift.quality import CODES, MISSING, NULL, OUT_OF_RANGE, UNSEEN, WRONG_TYPE
from services.drift.windows import ClosedWindow

EMIT_AT = policy.MEDIUM  # findings below this are not published (gauges still move)


def when(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def finding(model_id: str, model_version: str, start: int, end: int, spec: ModelSpec, kind: str,
            feature: str | None, n: int, metrics: dict[str, float | None], evidence: dict[str, Any],
            key: str | None = None, severity: str | None = None, emit_at: str = EMIT_AT) -> Finding | None:
    """A finding of window [start, end), or None below `emit_at`. Its severity is the policy's
    grade of `metrics` (or `severity`, for kinds graded as a condition), raised for high-risk
    models; its id hashes (model, kind, `key` or the feature, start)."""
    th = spec.thresholds
    sev = policy.escalate(severity or policy.severity(metrics, th), spec.risk_tier)
    if policy.RANK[sev] < policy.RANK[emit_at]:
        return None
    return Finding(finding_id=finding_id(model_id, kind, feature if key is None else key, start), kind=kind,
                   model_id=model_id, model_version=model_version, feature=feature, window_start=when(start),
                   window_end=when(end), n=n, metrics=metrics, severity=sev, evidence=evidence,
                   recommended_actions=policy.recommended_actions(sev, metrics, kind, th))


def _finding(w: ClosedWindow, spec: ModelSpec, kind: str, feature: str | None, n: int,
             metrics: dict[str, float | None], evidence: dict[str, Any], **kw: Any) -> Finding | None:
    return finding(w.model_id, w.model_version, w.start, w.end, spec, kind, feature, n, metrics, evidence, **kw)


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


def variant_findings(w: ClosedWindow, spec: ModelSpec) -> list[Finding]:
    """canary_regression (the canary against the primary: error rate, latency) and
    shadow_disagreement (shadow and primary predictions of the same request_id).

    A canary to roll back is a finding of `KIND_SEVERITY` (high: rollback recommended); one to
    monitor closely (worse without significance, or slower) is published at low: recorded by
    the alerts service, not notified (*Vigil's choice*)."""
    th, out = spec.thresholds, []
    c = compare_canary(w.variants, margin=policy.threshold("canary_error_margin", th), alpha=policy.ALPHA,
                       min_calls=int(policy.threshold("canary_min_calls", th)))
    if c is not None and c["decision"] in (ROLLBACK, MONITOR_CLOSELY):
        rollback = c["decision"] == ROLLBACK
        metrics = {**c["metrics"], "rollback_recommended": float(rollback)}
        evidence = {"decision": c["decision"], "calls": {v: w.variants.n[v] for v in ("primary", "canary")},
                    "rule": "canary error rate above primary + canary_error_margin with p < 0.05 (two-proportion "
                            "z-test): roll back; worse without significance, or slower (Mann-Whitney U): monitor"}
        f = _finding(w, spec, "canary_regression", None, w.variants.n["canary"], metrics, evidence,
                     severity=policy.kind_severity("canary_regression") if rollback else policy.LOW,
                     emit_at=policy.LOW)
        if f is not None:
            out.append(f)
    s = shadow_agreement(w.variants, numeric=spec.task == "regression")
    if s is not None and s["pairs"] >= policy.threshold("shadow_min_pairs", th):
        evidence = {"pairs": s["pairs"], "rule": "predictions of shadow and primary for the same request_id differ"
                    + (" by more than 1% (relative)" if spec.task == "regression" else "")}
        f = _finding(w, spec, "shadow_disagreement", None, s["pairs"],
                     {"disagreement": s["disagreement"], "agreement": s["agreement"]}, evidence)
        if f is not None:
            out.append(f)
    return out


def parity(w: ClosedWindow, spec: ModelSpec) -> dict[str, dict[str, Any]]:
    """Per fairness attribute: the groups' positive-prediction rates and their gaps (`gaps`)."""
    if spec.fairness is None or not spec.fairness.attributes:
        return {}
    return gaps(w.groups, spec.fairness.min_group_size)


def fairness_findings(w: ClosedWindow, spec: ModelSpec) -> list[Finding]:
    """fairness_violation by demographic parity, per attribute (needs no labels; equalized odds
    comes with the labels: `services.drift.performance`)."""
    out = []
    for attribute, g in parity(w, spec).items():
        dpd = g["demographic_parity_difference"]
        if dpd is None:
            continue
        evidence = {"groups": g["groups"], "excluded": g["excluded"], "min_group_size": spec.fairness.min_group_size,
                    "positive_label": 1 if spec.positive_label is None else spec.positive_label}
        f = _finding(w, spec, "fairness_violation", attribute, sum(x["n"] for x in g["groups"].values()),
                     {"demographic_parity_difference": dpd}, evidence, key=f"{attribute}/demographic_parity")
        if f is not None:
            out.append(f)
    return out


def findings(w: ClosedWindow, base: Baseline | None, spec: ModelSpec, reference: str = "registered"
             ) -> tuple[list[Finding], list[dict[str, Any]]]:
    """Every finding of a closed window, in a fixed order, and the drift metric rows (for gauges)."""
    drift, rows = drift_findings(w, base, spec, reference) if base is not None else ([], [])
    return [*drift, *quality_findings(w, spec), *variant_findings(w, spec), *fairness_findings(w, spec)], rows


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

