"""Vigil's severity policy: every threshold, tier and response action, as tables.

Values come from DESIGN.md "Default statistics and thresholds"; where DESIGN.md is silent the
choice is marked *Vigil's choice*. Statistics (``shared.stats``) return numbers; this module
alone turns numbers into severities and actions.

Per-model overrides come from ``ModelSpec.thresholds`` and are checked by
:func:`validate_thresholds`. Valid keys:

- a tier metric (``psi``, ``ks_statistic``, ``js_distance``, ``degradation``, ``quality_violation``,
  ``demographic_parity_difference``, ``equalized_odds_difference``, ``concept_drift``,
  ``disagreement`` (shadow), ``percentile``): the tiers, as ``[[above, severity], ...]`` in any order or as
  ``{severity: above}``; a severity must not need a lower value than a milder one;
- ``ks_p_value`` / ``chi2_p_value``: the significance level of the KS gate (on the
  Benjamini-Hochberg adjusted p-value) and of the chi-squared gate, in (0, 1);
  ``psi_p_value``: of the PSI gate on its calibrated percentile (1 turns it off);
  ``performance_p_value``: of the accuracy gates of degradation and concept drift;
- ``calibrated``: ``true`` applies the ``percentile`` tiers to each statistic's calibrated
  percentile instead of the statistic itself;
- any key of :data:`SCALARS` (``psi_eps``, ``rollback_degradation``, ``override_rate_min``...).

>>> tier("psi", 0.25)
'high'
>>> tier("psi", 0.25, {"psi": [[0.3, "critical"], [0.2, "medium"]]})
'medium'
>>> escalate("high", "high"), escalate("low", "high")
('critical', 'low')
>>> recommended_actions("critical", {"degradation": 0.2})
['page_oncall', 'enable_human_review', 'queue_retraining', 'rollback']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from shared.events import SEVERITIES, Severity

LOW, MEDIUM, HIGH, CRITICAL = SEVERITIES
RANK = {s: i for i, s in enumerate(SEVERITIES)}

# --- statistics -----------------------------------------------------------------------------
PSI_BINS = 10  # reference deciles: 9 inner edges, open outer bins
PSI_EPS = 1e-4  # proportions floored here before the log
ALPHA = 0.05  # significance of every drift test (after Benjamini-Hochberg for features)
PERCENTILE_RESAMPLES = 1_000  # resampled windows per calibrated null (PSI, JS): 99.9 is resolvable
KS_PERCENTILE_RESAMPLES = 200  # KS tiers stop at high (99th percentile): 200 resolve 99.5, 5x cheaper
# --- performance, trend, fairness -----------------------------------------------------------
CONCEPT_DRIFT_WINDOWS = 4  # mean of the last 4 windows minus the current one
TREND_WINDOWS = 7  # least-squares slope over the last 7 windows
TREND_HORIZON = 7  # projected 7 windows ahead
ROLLBACK_DEGRADATION = 0.15  # a critical finding with more degradation recommends rollback
FAIRNESS_MIN_GROUP = 100
PERFORMANCE_MIN_LABELS = 100  # labelled predictions before a window's performance is judged (Vigil's choice)
# --- oversight ------------------------------------------------------------------------------
OVERSIGHT_DAYS = 7
OVERRIDE_RATE_MIN = 0.02
RUBBER_STAMP_RATE = 0.01  # a reviewer overriding less than this is rubber-stamping
RUBBER_STAMP_SHARE = 0.30  # ... and more than this share of reviewers doing so is a finding
WORKLOAD_QUANTILE = 0.75  # high-volume days: the top quartile
WORKLOAD_RATIO = 0.5  # their override rate below half of the low-volume days'
# Minimum samples so small samples never alarm, and review coverage (Vigil's choice where DESIGN.md is silent)
OVERRIDE_MIN_REVIEWS = 100  # reviews in the period before override_rate_low can fire
MIN_REVIEWS = 50  # a reviewer's reviews in the period before they are judged (Settings.oversight_min_reviews)
RUBBER_STAMP_MIN_REVIEWERS = 3  # reviewers judged before a share of them means anything
WORKLOAD_MIN_REVIEWS = 100  # reviews in each of the high- and low-volume day groups
WORKLOAD_VOLUME_RATIO = 1.5  # high-volume days must be this much busier than low-volume ones
WORKLOAD_P_VALUE = ALPHA  # and the two override rates must differ (two-proportion z-test)
REVIEW_COVERAGE_MIN = 0.5  # share of low-confidence predictions reviewed, below it review_coverage_gap
COVERAGE_MIN_PREDICTIONS = 100  # low-confidence predictions (sampled) before coverage is judged
# --- vendors, canary ------------------------------------------------------------------------
SLA_TOLERANCE = 0.02
SLA_LATENCY_FACTOR = 1.2
SLA_MIN_SAMPLES = 100
SLA_PERIOD_DAYS = 7
CANARY_ERROR_MARGIN = 0.005
CANARY_MIN_CALLS = 100  # calls of canary and of primary in a window before they are compared (Vigil's choice)
SHADOW_MIN_PAIRS = 100  # shadow/primary pairs (same request_id) before agreement is judged (Vigil's choice)

TIERS: dict[str, tuple[tuple[float, Severity], ...]] = {  # metric -> ((above, severity), ...), highest first
    "psi": ((0.3, CRITICAL), (0.2, HIGH), (0.1, MEDIUM)),
    "ks_statistic": ((0.2, HIGH), (0.1, MEDIUM)),
    "js_distance": ((0.3, CRITICAL), (0.2, HIGH), (0.1, MEDIUM)),
    "degradation": ((0.10, CRITICAL), (0.05, HIGH), (0.03, MEDIUM)),
    "demographic_parity_difference": ((0.2, HIGH), (0.1, MEDIUM)),
    "equalized_odds_difference": ((0.2, HIGH), (0.1, MEDIUM)),
    "concept_drift": ((0.05, MEDIUM),),  # mean of the last 4 windows - current
    # share of shadow predictions that differ from the primary's for the same request (Vigil's choice)
    "disagreement": ((0.25, HIGH), (0.10, MEDIUM)),
    "percentile": ((99.9, CRITICAL), (99.0, HIGH), (95.0, MEDIUM)),  # calibrated mode; Vigil's choice
    # data quality: the worst share of a window's events breaking the schema (null rate above
    # max_null_rate counts by its excess); Vigil's choice
    "quality_violation": ((0.10, HIGH), (0.01, MEDIUM)),
}
# A tier counts only when its test rejects: metric -> (p-value metric, override key of its alpha).
GATES: dict[str, tuple[str, str]] = {
    "ks_statistic": ("ks_p_adjusted", "ks_p_value"),
    "js_distance": ("chi2_p_value", "chi2_p_value"),
}
# A PSI tier counts only when the value is unusual for a window of this size: its exceedance
# in the reference's calibrated null at this n, Benjamini-Hochberg adjusted across the model's
# features (`psi_p_adjusted`), below `psi_p_value`. A PSI of 0.12 is ordinary noise for a
# window of 60 events and a shift for one of 60,000; without this gate small windows (the
# first, partial window of a stream) and many features raise false alarms. *Vigil's choice*;
# `psi_p_value: 1` turns it off. A PSI reported without `psi_p_adjusted` is not gated.
SOFT_GATES: dict[str, tuple[str, str]] = {"psi": ("psi_p_adjusted", "psi_p_value"),
                                          # accuracy's fall must be significant too (binomial z-test),
                                          # and mae's and rmse's (z-test of the mean per-event loss);
                                          # other metrics report no p-value and are not gated
                                          "degradation": ("degradation_p_value", "performance_p_value"),
                                          "concept_drift": ("concept_p_value", "performance_p_value")}
CALIBRATED = ("psi", "ks_statistic", "js_distance")  # metrics reported with a `<metric>_percentile`
# Overridable numbers: key -> (default, low, high); a value must lie in (low, high].
SCALARS: dict[str, tuple[float, float, float]] = {
    "ks_p_value": (ALPHA, 0.0, 1.0),
    "chi2_p_value": (ALPHA, 0.0, 1.0),
    "psi_p_value": (ALPHA, 0.0, 1.0),
    "psi_eps": (PSI_EPS, 0.0, 0.01),
    "rollback_degradation": (ROLLBACK_DEGRADATION, 0.0, 1.0),
    "override_rate_min": (OVERRIDE_RATE_MIN, 0.0, 1.0),
    "rubber_stamp_rate": (RUBBER_STAMP_RATE, 0.0, 1.0),
    "rubber_stamp_share": (RUBBER_STAMP_SHARE, 0.0, 1.0),
    "workload_ratio": (WORKLOAD_RATIO, 0.0, 1.0),
    "override_min_reviews": (OVERRIDE_MIN_REVIEWS, 0.0, math.inf),
    "min_reviews": (MIN_REVIEWS, 0.0, math.inf),
    "rubber_stamp_min_reviewers": (RUBBER_STAMP_MIN_REVIEWERS, 0.0, math.inf),
    "workload_min_reviews": (WORKLOAD_MIN_REVIEWS, 0.0, math.inf),
    "workload_volume_ratio": (WORKLOAD_VOLUME_RATIO, 0.0, math.inf),
    "workload_p_value": (WORKLOAD_P_VALUE, 0.0, 1.0),
    "review_coverage_min": (REVIEW_COVERAGE_MIN, 0.0, 1.0),
    "coverage_min_predictions": (COVERAGE_MIN_PREDICTIONS, 0.0, math.inf),
    "canary_error_margin": (CANARY_ERROR_MARGIN, 0.0, 1.0),
    "canary_min_calls": (CANARY_MIN_CALLS, 0.0, math.inf),
    "shadow_min_pairs": (SHADOW_MIN_PAIRS, 0.0, math.inf),
    "performance_min_labels": (PERFORMANCE_MIN_LABELS, 0.0, math.inf),
    "performance_p_value": (ALPHA, 0.0, 1.0),
    "fairness_min_group": (FAIRNESS_MIN_GROUP, 0.0, math.inf),
}
FLAGS = {"calibrated": False}
# Oversight and vendor findings are conditions, not graded numbers: one severity per kind
# (Vigil's choice), raised one tier for high-risk models by `escalate`.
KIND_SEVERITY: dict[str, Severity] = {
    "override_rate_low": MEDIUM,
    "reviewer_rubber_stamping": MEDIUM,
    "workload_pressure": MEDIUM,
    "review_coverage_gap": MEDIUM,
    "vendor_sla_violation": MEDIUM,
    "vendor_sla_persistent": HIGH,
    "performance_trend": MEDIUM,  # declining, projected to breach: retrain soon (notify, normal retraining)
    "canary_regression": HIGH,  # a canary to roll back (one to monitor closely is published at low)
}


class Response(NamedTuple):
    type: str  # an Action type of the contract
    priority: str


RESPONSES: dict[Severity, tuple[Response, ...]] = {
    CRITICAL: (Response("page_oncall", "urgent"), Response("enable_human_review", "urgent"),
               Response("queue_retraining", "urgent")),
    HIGH: (Response("notify", "high"), Response("queue_retraining", "high"),
           Response("increase_monitoring_frequency", "high")),
    MEDIUM: (Response("notify", "normal"), Response("queue_retraining", "normal")),
    LOW: (),  # recorded, no notification
}
ROLLBACK = Response("rollback", "urgent")


def _bad(key: str, value: Any, rule: str) -> ValueError:
    return ValueError(f"thresholds.{key}={value!r}: {rule}")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(key, value, "must be a finite number")
    return float(value)


def _tiers(key: str, value: Any) -> tuple[tuple[float, Severity], ...]:
    pairs = list(value.items()) if isinstance(value, Mapping) else value
    if isinstance(value, Mapping):
        pairs = [(above, sev) for sev, above in pairs]
    if not isinstance(pairs, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
        raise _bad(key, value, 'must be [[above, severity], ...] or {severity: above}')
    rules = []
    for above, sev in pairs:
        if sev not in SEVERITIES:
            raise _bad(key, value, f"severity {sev!r} must be one of {', '.join(SEVERITIES)}")
        rules.append((_number(key, above), sev))
    if len({sev for _, sev in rules}) != len(rules):
        raise _bad(key, value, "each severity may appear once")
    rules.sort(key=lambda r: (-r[0], -RANK[r[1]]))
    if any(RANK[a[1]] < RANK[b[1]] for a, b in zip(rules, rules[1:])):
        raise _bad(key, value, "a more severe tier must not have a lower threshold than a milder one")
    return tuple(rules)


def validate_thresholds(thresholds: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``ModelSpec.thresholds`` and return it normalised (tiers sorted, highest first).

    Raises ValueError naming the key, the value and the rule it breaks.

    >>> validate_thresholds({"psi": {"medium": 0.2, "high": 0.4}, "ks_p_value": 0.01})
    {'psi': ((0.4, 'high'), (0.2, 'medium')), 'ks_p_value': 0.01}
    >>> validate_thresholds({"psi": [[0.3, "medium"], [0.2, "high"]]})
    Traceback (most recent call last):
    ...
    ValueError: thresholds.psi=[[0.3, 'medium'], [0.2, 'high']]: a more severe tier must not have a lower threshold than a milder one
    """
    out: dict[str, Any] = {}
    for key, value in (thresholds or {}).items():
        if key in TIERS:
            out[key] = _tiers(key, value)
        elif key in SCALARS:
            _, low, high = SCALARS[key]
            number = _number(key, value)
            if not low < number <= high:
                raise _bad(key, value, f"must be > {low} and <= {high}")
            out[key] = number
        elif key in FLAGS:
            if not isinstance(value, bool):
                raise _bad(key, value, "must be true or false")
            out[key] = value
        else:
            valid = ", ".join(sorted([*TIERS, *SCALARS, *FLAGS]))
            raise ValueError(f"thresholds.{key}: unknown key; valid keys: {valid}")
    return out


def threshold(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The value of an overridable number or flag for a model.

    >>> threshold("psi_eps"), threshold("ks_p_value", {"ks_p_value": 0.01})
    (0.0001, 0.01)
    """
    if name in SCALARS:
        default = SCALARS[name][0]
    elif name in FLAGS:
        default = FLAGS[name]
    else:
        raise ValueError(f"threshold {name!r}: unknown; valid: {', '.join(sorted([*SCALARS, *FLAGS]))}")
    if overrides and name in overrides:
        return validate_thresholds({name: overrides[name]})[name]
    return default


def tier(metric: str, value: float | None, overrides: Mapping[str, Any] | None = None) -> Severity:
    """Severity of one metric value: the first tier whose threshold the value exceeds (strictly).

    A missing or NaN value is ``low``.

    >>> tier("psi", 0.1), tier("psi", 0.1000001), tier("ks_statistic", 0.9)
    ('low', 'medium', 'high')
    """
    if metric not in TIERS:
        raise ValueError(f"metric {metric!r}: no tiers; valid: {', '.join(TIERS)}")
    rules = _tiers(metric, overrides[metric]) if overrides and metric in overrides else TIERS[metric]
    if value is None or not math.isfinite(value):
        return LOW
    return next((sev for above, sev in rules if value > above), LOW)


def passes_gate(metric: str, metrics: Mapping[str, float | None], overrides: Mapping[str, Any] | None = None) -> bool:
    """Whether a gated metric's test rejects (p-value below its alpha); ungated metrics pass.

    >>> passes_gate("psi", {"psi": 0.12, "psi_p_adjusted": 0.4}), passes_gate("psi", {"psi": 0.12, "psi_p_adjusted": 0.01})
    (False, True)
    >>> passes_gate("ks_statistic", {"ks_p_adjusted": 0.04}), passes_gate("ks_statistic", {"ks_p_adjusted": 0.06})
    (True, False)
    """
    if metric in SOFT_GATES:
        p_key, alpha_key = SOFT_GATES[metric]
        p = metrics.get(p_key)
        return p is None or not math.isfinite(p) or p < threshold(alpha_key, overrides)
    if metric not in GATES:
        return True
    p_key, alpha_key = GATES[metric]
    p = metrics.get(p_key)
    return p is not None and math.isfinite(p) and p < threshold(alpha_key, overrides)


def severity(metrics: Mapping[str, float | None], overrides: Mapping[str, Any] | None = None) -> Severity:
    """Severity of a finding: the highest tier over its tiered metrics, each counted only when its
    gate passes. With ``calibrated: true`` the ``percentile`` tiers are applied to
    ``<metric>_percentile`` for psi, ks_statistic and js_distance (when reported).

    >>> severity({"psi": 0.15, "ks_statistic": 0.25, "ks_p_adjusted": 0.001})
    'high'
    >>> severity({"psi": 0.15, "ks_statistic": 0.25, "ks_p_adjusted": 0.2})
    'medium'
    >>> severity({"psi": 0.15, "psi_percentile": 99.5}, {"calibrated": True})
    'high'
    """
    calibrated = threshold("calibrated", overrides)
    worst = LOW
    for metric, value in metrics.items():
        if metric not in TIERS or metric == "percentile" or not passes_gate(metric, metrics, overrides):
            continue
        if calibrated and metric in CALIBRATED and metrics.get(f"{metric}_percentile") is not None:
            sev = tier("percentile", metrics[f"{metric}_percentile"], overrides)
        else:
            sev = tier(metric, value, overrides)
        worst = max(worst, sev, key=RANK.__getitem__)
    return worst


def kind_severity(kind: str) -> Severity:
    """Severity of an oversight or vendor finding, before `escalate`.

    >>> kind_severity("vendor_sla_persistent"), kind_severity("override_rate_low")
    ('high', 'medium')
    """
    if kind not in KIND_SEVERITY:
        raise ValueError(f"kind {kind!r}: no severity; valid: {', '.join(KIND_SEVERITY)}")
    return KIND_SEVERITY[kind]


def escalate(sev: Severity, risk_tier: str) -> Severity:
    """Raise a finding of a high-risk model one tier, capped at critical.

    ``low`` stays ``low``: a quiet window is not a finding, whatever the model's risk
    (*Vigil's choice*; otherwise every quiet window of a high-risk model would notify).

    >>> escalate("medium", "high"), escalate("critical", "high"), escalate("medium", "low")
    ('high', 'critical', 'medium')
    """
    if risk_tier != "high" or sev == LOW:
        return sev
    return SEVERITIES[min(RANK[sev] + 1, RANK[CRITICAL])]


def responses(sev: Severity, metrics: Mapping[str, float | None] | None = None, kind: str | None = None,
              overrides: Mapping[str, Any] | None = None) -> tuple[Response, ...]:
    """The response actions (type and priority) for a finding's severity.

    Rollback is added to a critical finding whose ``degradation`` exceeds
    ``rollback_degradation`` (0.15), and to any ``canary_regression`` of medium or above.

    >>> responses("medium")
    (Response(type='notify', priority='normal'), Response(type='queue_retraining', priority='normal'))
    """
    out = RESPONSES[sev]
    degradation = (metrics or {}).get("degradation")
    if sev == CRITICAL and degradation is not None and degradation > threshold("rollback_degradation", overrides):
        out += (ROLLBACK,)
    elif kind == "canary_regression" and sev != LOW:
        out += (ROLLBACK,)
    return out


def recommended_actions(sev: Severity, metrics: Mapping[str, float | None] | None = None,
                        kind: str | None = None, overrides: Mapping[str, Any] | None = None) -> list[str]:
    """Action types for ``Finding.recommended_actions``; see :func:`responses` for priorities.

    >>> recommended_actions("high")
    ['notify', 'queue_retraining', 'increase_monitoring_frequency']
    >>> recommended_actions("low")
    []
    """
    return [r.type for r in responses(sev, metrics, kind, overrides)]
