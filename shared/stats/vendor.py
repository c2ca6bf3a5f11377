"""Vendor SLA statistics: mergeable per-day counters and the comparison with a contract. No I/O, no clock.

A `VendorDay` holds one vendor's calls of one event-time day (of one model): calls and failed
calls (``error``), a `LatencySketch` of ``latency_ms``, and, for the calls joined with their
label, the confusion counts against the positive label. Days over disjoint calls add up, so a
trailing period is the sum of its days (`period`). `compare` grades a period against a
`VendorSLA`: quality metrics below ``contracted - tolerance``, latency quantiles above
``1.2 x contracted``, uptime below contracted are violations; with fewer than ``min_samples``
labelled calls the status is ``insufficient data`` and nothing is a violation.

>>> d = VendorDay().add_calls([100.0, 120.0, 300.0], [False, False, True]).add_labelled([1, 0, 1], [1, 1, 1], 1)
>>> m = period([d])
>>> m["accuracy"], m["uptime"], m["precision"], m["recall"]
(0.6666666666666666, 0.6666666666666666, 1.0, 0.6666666666666666)
>>> compare(m, {"uptime": 0.99, "min_samples": 3})["violations"]
[{'sla': 'uptime', 'observed': 0.6666666666666666, 'contracted': 0.99, 'limit': 0.99}]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.policy import SLA_LATENCY_FACTOR
from shared.stats.sketch import LatencySketch

DAY = 86_400
QUALITY = ("accuracy", "precision", "recall")
# SLA term -> (metric key in `period`, VendorSLA field)
TERMS = {"accuracy": ("accuracy", "accuracy"), "precision": ("precision", "precision"), "recall": ("recall", "recall"),
         "latency_p95": ("latency_p95_ms", "latency_p95_ms"), "latency_p99": ("latency_p99_ms", "latency_p99_ms"),
         "uptime": ("uptime", "uptime")}
INSUFFICIENT, NO_SLA, OK, VIOLATION = "insufficient data", "no SLA", "ok", "violation"


@dataclass
class VendorDay:
    calls: int = 0
    errors: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)
    labelled: int = 0
    correct: int = 0
    tp: int = 0  # predicted positive, labelled positive
    fp: int = 0
    fn: int = 0

    def add_calls(self, latency_ms: Sequence[float | None] | np.ndarray, error: Sequence[bool] | np.ndarray) -> VendorDay:
        """Count calls (deduplicated): latency in ms (None/NaN: not measured) and whether each failed."""
        err = np.asarray(error, dtype=bool)
        self.calls += len(err)
        self.errors += int(err.sum())
        self.latency.update(np.array([np.nan if v is None else v for v in latency_ms], dtype=float))
        return self

    def add_labelled(self, predictions: Sequence[Any], labels: Sequence[Any], positive: Any = 1) -> VendorDay:
        """Count calls joined with their label (deduplicated)."""
        for p, y in zip(predictions, labels):
            self.labelled += 1
            self.correct += p == y
            pp, yp = p == positive, y == positive
            self.tp += pp and yp
            self.fp += pp and not yp
            self.fn += yp and not pp
        return self

    def merge(self, other: VendorDay) -> VendorDay:
        self.calls += other.calls
        self.errors += other.errors
        self.latency.merge(other.latency)
        self.labelled += other.labelled
        self.correct += other.correct
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self

    __iadd__ = merge

    def to_dict(self) -> dict[str, Any]:
        return {"c": [self.calls, self.errors, self.labelled, self.correct, self.tp, self.fp, self.fn],
                "lat": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VendorDay:
        c = [int(x) for x in d["c"]]
        return cls(c[0], c[1], LatencySketch.from_dict(d["lat"]), *c[2:])


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def period(days: Iterable[VendorDay]) -> dict[str, float | None]:
    """The metrics of a period: the sum of its days.

    Keys: calls, errors, labelled, accuracy, precision, recall, latency_p95_ms, latency_p99_ms,
    uptime (share of calls without error), latency_samples.
    """
    total = VendorDay()
    for d in days:
        total.merge(d)
    return {"calls": float(total.calls), "errors": float(total.errors), "labelled": float(total.labelled),
            "accuracy": _ratio(total.correct, total.labelled),
            "precision": _ratio(total.tp, total.tp + total.fp), "recall": _ratio(total.tp, total.tp + total.fn),
            "latency_p95_ms": total.latency.quantile(0.95), "latency_p99_ms": total.latency.quantile(0.99),
            "latency_samples": float(total.latency.n), "uptime": _ratio(total.calls - total.errors, total.calls)}


def compare(metrics: Mapping[str, float | None], sla: Mapping[str, Any] | None,
            latency_factor: float = SLA_LATENCY_FACTOR) -> dict[str, Any]:
    """Grade a period against an SLA (a `VendorSLA` as a dict; None: no SLA registered).

    Returns ``{"status", "terms": {sla: {observed, contracted, limit, ok}}, "violations": [...]}``;
    `status` is "no SLA", "insufficient data" (fewer than ``min_samples`` labelled calls: no
    violations), "violation" or "ok". A term whose observed value is unknown (e.g. precision
    without positive predictions) is reported with ``ok: None`` and is not a violation.

    >>> compare({"labelled": 50.0, "accuracy": 0.5}, {"accuracy": 0.9})["status"]
    'insufficient data'
    >>> r = compare({"labelled": 500.0, "accuracy": 0.885, "latency_p95_ms": 130.0}, {"accuracy": 0.9, "latency_p95_ms": 100})
    >>> r["status"], [v["sla"] for v in r["violations"]], r["terms"]["accuracy"]["ok"]
    ('violation', ['latency_p95'], True)
    """
    if sla is None:
        return {"status": NO_SLA, "terms": {}, "violations": []}
    tolerance = float(sla.get("tolerance", 0.02))
    min_samples = int(sla.get("min_samples", 100))
    terms: dict[str, dict[str, Any]] = {}
    for name, (key, field_) in TERMS.items():
        contracted = sla.get(field_)
        if contracted is None:
            continue
        observed = None if metrics.get(key) is None else float(metrics[key])
        if name in QUALITY:
            limit = contracted - tolerance
            ok = None if observed is None else bool(observed >= limit)
        elif name == "uptime":
            limit = contracted
            ok = None if observed is None else bool(observed >= limit)
        else:
            limit = contracted * latency_factor
            ok = None if observed is None else bool(observed <= limit)
        terms[name] = {"observed": observed, "contracted": float(contracted), "limit": float(limit), "ok": ok}
    if (metrics.get("labelled") or 0) < min_samples:
        return {"status": INSUFFICIENT, "terms": terms, "violations": [], "min_samples": min_samples}
    violations = [{"sla": n, "observed": t["observed"], "contracted": t["contracted"], "limit": t["limit"]}
                  for n, t in terms.items() if t["ok"] is False]
    return {"status": VIOLATION if violations else OK, "terms": terms, "violations": violations,
            "min_samples": min_samples}


def persistent(history: Mapping[int, str], end: int, period_days: int) -> bool:
    """In violation in two consecutive non-overlapping periods: the one ending at `end` and the
    one ending `period_days` earlier (`history`: period end -> status).

    >>> persistent({0: "violation", 7 * DAY: "violation"}, 7 * DAY, 7), persistent({7 * DAY: "violation"}, 7 * DAY, 7)
    (True, False)
    """
    return history.get(end) == VIOLATION and history.get(end - period_days * DAY) == VIOLATION
