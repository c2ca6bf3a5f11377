"""A performance window -> findings; the online detectors' changes -> findings. Pure: no I/O, no clock.

A `PerfWindow` (`services.drift.labels`) holds a window's predictions with the labels that
counted. Judged on the primary variant's labelled predictions, once it has at least
`performance_min_labels` (100) of them (*Vigil's choice*: fewer say nothing reliable; the
gauge still moves):

- `performance_degradation`: per metric of the spec's `baseline_metrics` (without any, the
  first judged window's metrics become the baseline, said in the evidence),
  ``degradation`` = `shared.stats.performance.degradation`; the finding grades the worst
  metric with the contract's tiers. For accuracy a one-sided binomial z-test against the
  baseline (a two-proportion test against a first-window baseline, itself a sample) gives
  ``degradation_p_value``, and the tier counts only below 0.05 (a soft gate like PSI's: 100
  labels carry ±0.06 of noise, more than the 0.03 tier). For mae and rmse the same gate is a
  one-sided z-test of the window's mean per-event loss (``|e|``, ``e**2``) against the
  baseline's (`shared.stats.performance.worse_p_value`; against the first window's losses
  when that is the baseline): an RMSE from 1,000 labels carries ~2 % relative noise, close to
  the 0.03 tier;
- `concept_drift` (the contract's rule): the primary metric's degradation from the mean of
  the last 4 judged windows > 0.05, gated for accuracy by a two-proportion z-test against
  those windows' pooled counts, for rmse by the loss z-test against their pooled losses. The evidence says whether the window's inputs drifted: a
  fall in performance with no data drift is concept drift (P(y | x) changed), one with data
  drift may be the drift itself;
- `performance_trend`: the primary metric's least-squares trend over the last 7 judged
  windows; declining (slope worse, p < 0.05) and projected to cross the minimum acceptable
  value (`min_acceptable`, else baseline - 0.05 / baseline x 1.05 for errors: the high tier)
  within 7 windows -> a finding before any threshold is breached (retrain soon);
- `fairness_violation` (equalized odds): per fairness attribute, on the labelled
  predictions (demographic parity, which needs no labels, is judged when the drift window
  closes: `services.drift.evaluate`).

Online detection: the errors of the labelled primary predictions, in labels-log order, feed a
river detector (ADWIN on 0/1 errors; PageHinkley on absolute residuals, its threshold
calibrated on the first `CALIBRATION` residuals for 5 % false alarms per `PH_HORIZON`): an
upward change is a `concept_drift` finding at the detection's event time, before the window
closes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from shared import policy
from shared.events import Finding, ModelSpec
from shared.stats.canary import two_proportion_z
from shared.stats.fairness import GroupCounts, gaps
from shared.stats.online import ErrorDetector, calibrate_page_hinkley
from shared.stats.performance import HIGHER_IS_BETTER, LOSSES, classification_metrics, degradation, loss_moments, \
    pool_moments, primary_metric, regression_metrics, worse_p_value
from shared.stats.trend import trend
from services.drift.evaluate import finding, when
from services.drift.labels import MAX_CODES, LabelJoin, PerfWindow

HISTORY = max(policy.TREND_WINDOWS, policy.CONCEPT_DRIFT_WINDOWS + 1)
CALIBRATION = 2_000  # absolute residuals before PageHinkley's threshold is calibrated
# PageHinkley's false-alarm bound: 5 % per 1,000,000 stationary residuals (*Vigil's choice*; per
# 10,000, a model labelling 100 events a second would page every 30 minutes)
PH_HORIZON = 1_000_000


def _codes(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, MAX_CODES, x).astype(np.int64)  # the overflow code -1 is a class of its own


def window_metrics(w: PerfWindow, spec: ModelSpec, lj: LabelJoin) -> dict[str, float]:
    """The window's metrics on its labelled primary predictions (empty with none)."""
    lab = w.labelled
    if not len(lab):
        return {}
    if spec.task == "regression":
        lab = _scored(lab)
        return regression_metrics(lab["pred"], lab["label"]) if len(lab) else {}
    positive = lj.classes.code(1 if spec.positive_label is None else spec.positive_label) \
        if spec.task == "binary_classification" else None
    return classification_metrics(_codes(lab["pred"]), _codes(lab["label"]), positive)


def _losses(w: PerfWindow, spec: ModelSpec) -> dict[str, list[float]] | None:
    """A regression window's per-event loss moments (`loss_moments`), what its gates test."""
    if spec.task != "regression":
        return None
    lab = _scored(w.labelled)
    return loss_moments(lab["pred"], lab["label"]) if len(lab) else None


def _scored(lab: np.ndarray) -> np.ndarray:
    """A regression window's labelled rows whose prediction is a number (the others have no error)."""
    return lab[np.isfinite(lab["pred"])]


def _accuracy_p(acc: float, n: int, baseline: float) -> float | None:
    """One-sided p-value of "the window's accuracy is below the baseline" (normal approximation)."""
    from scipy.stats import norm
    if not 0.0 < baseline < 1.0 or n == 0:
        return None
    return float(norm.cdf((acc - baseline) / math.sqrt(baseline * (1 - baseline) / n)))


def evaluate(model_id: str, w: PerfWindow, spec: ModelSpec, lj: LabelJoin) -> tuple[list[Finding], list[tuple]]:
    """Findings of a due performance window, and its gauges [(gauge, labels, value)].

    Reads what the drift window of the same start recorded (`closed`: its drifted features and
    model version); updates the model's history and baseline in `lj.extra`.
    """
    th = spec.thresholds
    closed = lj.extra.setdefault("closed", {}).pop(str(w.start), {})
    drifted, version = closed.get("drifted", []), closed.get("version", "unknown")
    make = partial(finding, model_id, version, w.start, w.end, spec)
    metrics = window_metrics(w, spec, lj)
    n = len(w.labelled)
    primary = int((w.rows["variant"] == 0).sum())
    gauges = [("performance", {"model_id": model_id, "metric": k}, v) for k, v in metrics.items()]
    if n < policy.threshold("performance_min_labels", th):
        return [], gauges
    extra = lj.extra
    history: list = extra.setdefault("history", [])  # [[start, metrics, n], ...] of judged windows
    main = primary_metric(spec.task)
    base_source = "baseline_metrics"
    baseline = {k: v for k, v in spec.baseline_metrics.items() if k in metrics}
    losses = _losses(w, spec)
    if not baseline:
        base_source = "first_window"
        baseline = extra.setdefault("baseline", dict(metrics))
        extra.setdefault("baseline_n", n)
        if losses is not None:
            extra.setdefault("baseline_losses", losses)
    gauges += [("performance_baseline", {"model_id": model_id, "metric": k}, v) for k, v in baseline.items()]
    common = {"labelled": n, "predictions": primary, "label_coverage": n / primary if primary else None,
              "inputs_drifted": sorted(drifted)}
    out: list[Finding] = []

    if history or base_source == "baseline_metrics":
        degr = {k: degradation(k, b, metrics[k]) for k, b in baseline.items()}
        worst = max(degr, key=lambda k: (degr[k], k))
        m = {**metrics, "baseline": baseline[worst], "degradation": degr[worst]}
        if worst == "accuracy" and base_source == "first_window":  # the baseline is a sample too
            nb = extra["baseline_n"]
            m["degradation_p_value"] = two_proportion_z(round((1 - metrics["accuracy"]) * n), n,
                                                        round((1 - baseline["accuracy"]) * nb), nb)[1]
        elif worst == "accuracy":
            m["degradation_p_value"] = _accuracy_p(metrics["accuracy"], n, baseline["accuracy"])
        elif worst in LOSSES and losses is not None:
            ref = extra["baseline_losses"][worst] if base_source == "first_window" \
                else baseline[worst] ** (2 if worst == "rmse" else 1)
            m["degradation_p_value"] = worse_p_value(losses[worst], ref)
        ev = {**common, "metric": worst, "degradations": degr, "baseline_source": base_source}
        if (f := make("performance_degradation", None, n, m, ev)) is not None:
            out.append(f)

    previous = history[-policy.CONCEPT_DRIFT_WINDOWS:]
    if len(previous) == policy.CONCEPT_DRIFT_WINDOWS and main in metrics:
        mean = float(np.mean([h[1][main] for h in previous]))
        change = degradation(main, mean, metrics[main])
        m = {main: metrics[main], "mean_previous": mean, "concept_drift": change}
        if main == "accuracy":
            errs = sum(round((1 - h[1]["accuracy"]) * h[2]) for h in previous)
            m["concept_p_value"] = two_proportion_z(round((1 - metrics["accuracy"]) * n), n,
                                                    errs, sum(h[2] for h in previous))[1]
        elif main in LOSSES and losses is not None and all(len(h) > 3 for h in previous):
            m["concept_p_value"] = worse_p_value(losses[main], pool_moments([h[3][main] for h in previous]))
        ev = {**common, "rule": f"mean of the last {policy.CONCEPT_DRIFT_WINDOWS} windows - current",
              "explanation": "performance fell while the inputs drifted: the data drift may explain it" if drifted
              else "performance fell while the inputs did not drift: the relation between inputs and "
                   "outcome changed (concept drift)"}
        if (f := make("concept_drift", None, n, m, ev)) is not None:
            out.append(f)

    history.append([w.start, metrics, n] + ([losses] if losses is not None else []))
    del history[:-HISTORY]
    values = [h[1][main] for h in history[-policy.TREND_WINDOWS:] if main in h[1]]
    better = HIGHER_IS_BETTER[main]
    b = baseline.get(main, values[0])
    high = policy.TIERS["degradation"][1][0]  # the high tier: 0.05
    floor = spec.min_acceptable.get(main, b - high if better else b * (1 + high))
    t = trend(values, policy.TREND_HORIZON, floor, better)
    gauges.append(("performance_min_acceptable", {"model_id": model_id, "metric": main}, floor))
    if t is not None:
        gauges.append(("performance_projected", {"model_id": model_id, "metric": main}, t.projected))
    if t is not None and t.declining(policy.ALPHA, better) and t.windows_to_breach is not None \
            and t.windows_to_breach <= policy.TREND_HORIZON:
        m = {"slope": t.slope, "p_value": t.p_value, "projected": t.projected,
             "windows_to_breach": t.windows_to_breach, "min_acceptable": floor, main: metrics[main]}
        ev = {**common, "metric": main, "windows": len(values), "horizon": policy.TREND_HORIZON,
              "values": values, "min_acceptable_source": "min_acceptable" if main in spec.min_acceptable
              else "baseline"}
        if (f := make("performance_trend", None, n, m, ev, severity=policy.kind_severity("performance_trend"))) \
                is not None:
            out.append(f)

    out.extend(_equalized_odds(w, spec, lj, make, gauges, model_id))
    return out, gauges


def _equalized_odds(w: PerfWindow, spec: ModelSpec, lj: LabelJoin, make: Callable[..., Finding | None],
                    gauges: list, model_id: str) -> list[Finding]:
    if spec.fairness is None or not spec.fairness.attributes or spec.task == "regression":
        return []
    lab = w.labelled
    positive = lj.classes.code(1 if spec.positive_label is None else spec.positive_label)
    counts = GroupCounts()
    for attribute in spec.fairness.attributes:
        counts.update(attribute, lj.segments.column(lab["seg"], attribute), lab["pred"] == positive,
                      lab["label"] == positive)
    out = []
    for attribute, g in gaps(counts, spec.fairness.min_group_size).items():
        eod = g["equalized_odds_difference"]
        if eod is None:
            continue
        gauges.append(("fairness", {"model_id": model_id, "attribute": attribute,
                                    "metric": "equalized_odds_difference"}, eod))
        ev = {"groups": g["groups"], "excluded": g["excluded"], "min_group_size": spec.fairness.min_group_size,
              "positive_label": spec.positive_label if spec.positive_label is not None else 1}
        f = make("fairness_violation", attribute, len(lab), {"equalized_odds_difference": eod}, ev,
                 key=f"{attribute}/equalized_odds")
        if f is not None:
            out.append(f)
    return out


def detect(lj: LabelJoin, spec: ModelSpec) -> list[Any]:
    """Feed the counted labels resolved since the last call to the model's online detector;
    return its upward changes (`shared.stats.online.Change`)."""
    values, times = lj.drain()
    if not len(values):
        return []
    extra = lj.extra
    if extra.get("detector") is None:
        if spec.task != "regression":
            extra["detector"] = ErrorDetector("adwin").to_dict()
        else:
            sample = extra.setdefault("calibration", [])
            take = CALIBRATION - len(sample)
            sample.extend(values[:take].tolist())
            values, times = values[take:], times[take:]
            if len(sample) < CALIBRATION:
                return []
            cal = calibrate_page_hinkley(np.array(sample), horizon=PH_HORIZON)
            extra["detector"] = ErrorDetector.from_calibration(cal).to_dict()
            extra["calibrated"] = {k: v for k, v in cal.items() if isinstance(v, (int, float))}
            del extra["calibration"]
            if not len(values):
                return []
    try:
        det = ErrorDetector.from_dict(extra["detector"])
    except ValueError:  # a checkpoint from another river version: the detector starts afresh
        det = ErrorDetector("adwin") if spec.task != "regression" else ErrorDetector.from_calibration(extra["calibrated"])
    changes = det.update(values, times)
    extra["detector"] = det.to_dict()
    return changes


def change_findings(model_id: str, changes: list, spec: ModelSpec, lj: LabelJoin,
                    window_of: Callable[[float], tuple[int, int]]) -> list[Finding]:
    """`concept_drift` findings of online changes, each in the window holding its event time."""
    out = []
    for c in changes:
        start, end = window_of(c.time)
        if spec.task == "regression":
            change = (c.after - c.before) / c.before if c.before > 0 else c.after - c.before
        else:
            change = c.after - c.before
        m = {"error_before": c.before, "error_after": c.after, "concept_drift": change, "detected_at": c.time}
        ev = {"detector": c.detector, "detected_at": when(c.time).isoformat(),
              "error": "absolute residual" if spec.task == "regression" else "misclassification rate",
              "rule": "online change detection on the labelled predictions' errors, before the window closes"}
        version = lj.extra.get("closed", {}).get(str(start), {}).get("version", "unknown")
        if (f := finding(model_id, version, start, end, spec, "concept_drift", None, 0, m, ev, key="online")) \
                is not None:
            out.append(f)
    return out
