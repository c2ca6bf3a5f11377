"""Due evaluations -> Findings, summaries and vendor reports. Pure: the registry values are passed in.

`finding_id` is a hash of (model, kind, vendor, window_start): the same period evaluated twice
(a replay after a restart) gives the same id. Severity comes from `shared.policy`
(`kind_severity`, raised by `escalate` for high-risk models).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from shared.events import Finding, ModelSpec, finding_id
from shared.policy import escalate, kind_severity, recommended_actions, threshold
from shared.stats.oversight import ReviewParams, coverage, evaluate as evaluate_reviews, partial_days, summarize, wilson
from shared.stats.vendor import VIOLATION, compare, period, persistent
from services.oversight.state import DAY, HISTORY, Config, ModelState, coverage_samples, vendor_days


def _at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def review_params(spec: ModelSpec, min_reviews: int) -> ReviewParams:
    o = spec.thresholds
    return ReviewParams(
        override_rate_min=threshold("override_rate_min", o),
        override_min_reviews=int(threshold("override_min_reviews", o)),
        min_reviews=int(o["min_reviews"]) if "min_reviews" in o else int(min_reviews),
        rubber_stamp_rate=threshold("rubber_stamp_rate", o),
        rubber_stamp_share=threshold("rubber_stamp_share", o),
        rubber_stamp_min_reviewers=int(threshold("rubber_stamp_min_reviewers", o)),
        workload_ratio=threshold("workload_ratio", o),
        workload_min_reviews=int(threshold("workload_min_reviews", o)),
        workload_volume_ratio=threshold("workload_volume_ratio", o),
        workload_p_value=threshold("workload_p_value", o))


def _finding(model_id: str, spec: ModelSpec, kind: str, start: int, end: int, n: int, metrics: dict,
             evidence: dict, vendor: str | None = None, *, every: int) -> Finding:
    """A finding of the period [start, end), evaluated every `every` seconds: the evidence says
    so, and the alerts service counts clear evaluations by it (the period is days long)."""
    sev = escalate(kind_severity(kind), spec.risk_tier)
    evidence = {**evidence, "evaluated_every_seconds": every}
    return Finding(finding_id=finding_id(model_id, kind, vendor, start), kind=kind, model_id=model_id, vendor=vendor,
                   window_start=_at(start), window_end=_at(end), n=n, metrics=metrics, severity=sev,
                   evidence=evidence, recommended_actions=recommended_actions(sev, metrics, kind, spec.thresholds))


def reviews_at(model_id: str, ms: ModelState, end: int, cfg: Config, spec: ModelSpec,
               min_reviews: int) -> tuple[list[Finding], dict[str, Any]]:
    """The review findings of hour `end` over the trailing period, and the period's summary."""
    start = end - cfg.days * DAY
    total, per_day = summarize(ms.reviews, end, cfg.days)
    out = evaluate_reviews(total, per_day, review_params(spec, min_reviews), partial_days(end, cfg.days, ms.first_review))
    metrics = out["metrics"]
    summary = {"model_id": model_id, "window_start": _at(start).isoformat(), "window_end": _at(end).isoformat(),
               **{k: out[k] for k in ("metrics", "reviewers", "rubber_stampers", "hours", "days", "conditions")}}
    found = []
    base_evidence = {"period_days": cfg.days, "min_reviews": review_params(spec, min_reviews).min_reviews}
    if out["conditions"]["override_rate_low"]:
        found.append(_finding(model_id, spec, "override_rate_low", start, end, total.n, metrics,
                              {**base_evidence, "threshold": threshold("override_rate_min", spec.thresholds),
                               "by_hour": out["hours"]}, every=cfg.step))
    if out["conditions"]["reviewer_rubber_stamping"]:
        found.append(_finding(model_id, spec, "reviewer_rubber_stamping", start, end, total.n, metrics,
                              {**base_evidence, "reviewers": out["rubber_stampers"], "per_reviewer": out["reviewers"],
                               "threshold": threshold("rubber_stamp_rate", spec.thresholds)}, every=cfg.step))
    if out["conditions"]["workload_pressure"]:
        found.append(_finding(model_id, spec, "workload_pressure", start, end, total.n, metrics,
                              {**base_evidence, "by_day": out["days"],
                               "ratio_threshold": threshold("workload_ratio", spec.thresholds)}, every=cfg.step))
    return found, summary


def coverage_at(model_id: str, ms: ModelState, end: int, cfg: Config, spec: ModelSpec) -> tuple[list[Finding], dict]:
    start = end - cfg.days * DAY
    low, rev = coverage_samples(ms, end, cfg)
    n_low, n_both, share = coverage(low, rev, max(low.k, rev.k))
    lo, hi = wilson(n_both, n_low)
    metrics = {"coverage": share, "coverage_ci_low": lo, "coverage_ci_high": hi,
               "low_confidence_sampled": float(n_low), "reviewed_sampled": float(n_both),
               "low_confidence_threshold": cfg.low_confidence}
    gap = (n_low >= threshold("coverage_min_predictions", spec.thresholds) and share is not None
           and share < threshold("review_coverage_min", spec.thresholds))
    found = []
    if gap:
        found.append(_finding(model_id, spec, "review_coverage_gap", start, end, n_low, metrics,
                              {"period_days": cfg.days, "minimum": threshold("review_coverage_min", spec.thresholds),
                               "sampled": "coverage is read on a bottom-k hash sample of low-confidence predictions"},
                              every=cfg.step))
    return found, metrics


def vendor_at(model_id: str, ms: ModelState, vendor: str, end: int, spec: ModelSpec,
              sla: dict | None) -> tuple[list[Finding], dict[str, Any]]:
    """A vendor's period ending at day end `end`: findings and the report (JSON-able)."""
    period_days = int((sla or {}).get("period_days", 7))
    start = end - period_days * DAY
    metrics = period(vendor_days(ms, vendor, end, period_days))
    graded = compare(metrics, sla)
    vs = ms.vendors[vendor]
    vs.history = [h for h in vs.history if h["end_ts"] != end]
    vs.history.append({"end_ts": end, "end": _at(end).isoformat(), "status": graded["status"],
                       "labelled": metrics["labelled"], "calls": metrics["calls"],
                       **{k: metrics[k] for k in ("accuracy", "precision", "recall", "latency_p95_ms",
                                                  "latency_p99_ms", "uptime")},
                       "violations": [v["sla"] for v in graded["violations"]]})
    vs.history = vs.history[-HISTORY:]
    found = []
    evidence = {"violations": graded["violations"], "period_days": period_days, "status": graded["status"],
                "sla": sla}
    n = int(metrics["labelled"])
    if graded["status"] == VIOLATION:
        found.append(_finding(model_id, spec, "vendor_sla_violation", start, end, n, metrics, evidence, vendor,
                              every=DAY))
        hist = {h["end_ts"]: h["status"] for h in vs.history}
        if persistent(hist, end, period_days):
            prev = end - period_days * DAY
            found.append(_finding(model_id, spec, "vendor_sla_persistent", start, end, n, metrics,
                                  {**evidence, "previous_period": {"start": _at(prev - period_days * DAY).isoformat(),
                                                                   "end": _at(prev).isoformat()}}, vendor,
                                  every=DAY))
    report = {"vendor": vendor, "model_id": model_id,
              "period": {"start": _at(start).isoformat(), "end": _at(end).isoformat(), "days": period_days},
              "sample_size": {"calls": int(metrics["calls"]), "labelled": n,
                              "min_samples": int((sla or {}).get("min_samples", 100))},
              "status": graded["status"], "metrics": metrics, "terms": graded["terms"],
              "violations": graded["violations"], "sla": sla,
              "trend": [{k: v for k, v in h.items() if k != "end_ts"} for h in vs.history]}
    return found, report
