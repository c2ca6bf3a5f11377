"""Canary and shadow deployments: mergeable per-variant counters, the canary test and shadow agreement.

`VariantCounts` holds one model's window per variant (``primary``, ``canary``, ``shadow``):
calls, failed calls, a `BottomK` latency sample keyed by the event's hash key and, for the
primary and the shadow, a `BottomK` of the prediction keyed by the *request id's* hash. Both
sides keep the requests with the smallest keys, so a request sampled on one side is sampled
on the other (coordinated sampling) and the pairs survive: two independent samples of k out
of N would share only about k^2 / N requests. Counters over disjoint events add up; the
samples are order-free and merge like `BottomK`.

`compare_canary` tests the canary's error rate against the primary's (`two_proportion_z`)
and its latency (`mann_whitney`) and names a decision; `shadow_agreement` compares the
paired predictions.

>>> keys = hash_ids([f"e{i}" for i in range(400)])
>>> vc = VariantCounts()
>>> vc = vc.update("primary", keys[:200], np.arange(200) < 4, np.full(200, 50.0))
>>> vc = vc.update("canary", keys[200:], np.arange(200) < 30, np.full(200, 50.0))
>>> r = compare_canary(vc, min_calls=100)
>>> r["decision"], r["metrics"]["canary_error_rate"], r["metrics"]["primary_error_rate"]
('rollback', 0.15, 0.02)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from shared.policy import ALPHA, CANARY_ERROR_MARGIN, CANARY_MIN_CALLS
from shared.stats.sample import BottomK, from_text, to_text
from shared.stats.sample import hash_ids  # noqa: F401  (re-exported: callers key events with it)

VARIANTS = ("primary", "canary", "shadow")
PAIRED = ("primary", "shadow")  # the variants whose predictions are sampled by request id
LATENCY_SAMPLE = 2_000  # latencies kept per variant and window
SHADOW_SAMPLE = 5_000  # predictions kept per paired variant and window
ROLLBACK, MONITOR_CLOSELY, PROCEED = "rollback", "monitor_closely", "proceed"

def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of H1 "rate 1 > rate 2" (one-sided).

    ``z = (x1/n1 - x2/n2) / sqrt(p (1 - p) (1/n1 + 1/n2))`` with the pooled rate
    ``p = (x1 + x2) / (n1 + n2)``, and ``p_value = P(Z >= z)`` for a standard normal Z.
    ``z**2`` is Pearson's chi-squared statistic of the 2x2 table without continuity correction.

    Returns
    -------
    (z, p_value) : tuple of float
        ``(0.0, 1.0)`` when ``n1`` or ``n2`` is 0 or the pooled rate is 0 or 1.

    >>> z, p = two_proportion_z(60, 1000, 40, 1000)
    >>> round(z, 4), round(p, 4)
    (2.052, 0.0201)
    >>> two_proportion_z(0, 100, 0, 100), two_proportion_z(0, 0, 1, 5)
    ((0.0, 1.0), (0.0, 1.0))
    """
    for name, x, n in (("x1", x1, n1), ("x2", x2, n2)):
        if not 0 <= x <= n:
            raise ValueError(f"two_proportion_z: {name}={x} of n={n}: must have 0 <= {name} <= n")
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    if pooled <= 0.0 or pooled >= 1.0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(z), float(stats.norm.sf(z))


def mann_whitney(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mann-Whitney U of `a` and the one-sided p-value of H1 "a tends to be larger than b".

    ``scipy.stats.mannwhitneyu(a, b, alternative="greater", method="asymptotic")``: the normal
    approximation with tie correction and continuity correction, the same method at every
    sample size (scipy's "auto" switches to the exact distribution below 9 values without
    ties). NaN values are dropped first.

    Returns
    -------
    (u, p_value) : tuple of float
        ``(nan, 1.0)`` when either side has fewer than 2 values.

    >>> u, p = mann_whitney(np.arange(10.0, 30.0), np.arange(20.0))
    >>> u, p < 0.01
    (350.0, True)
    >>> mann_whitney(np.array([1.0]), np.arange(5.0))
    (nan, 1.0)
    """
    a = np.asarray(a, dtype=float).reshape(-1)
    b = np.asarray(b, dtype=float).reshape(-1)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) < 2 or len(b) < 2:
        return math.nan, 1.0
    res = stats.mannwhitneyu(a, b, alternative="greater", method="asymptotic")
    return float(res.statistic), float(res.pvalue)


def _sample_to_dict(s: BottomK) -> list[str]:
    return [to_text(s.keys, "<u8"), to_text(s.values[:, 0], "<f8")]


def _sample_from_dict(k: int, d: list[str]) -> BottomK:
    return BottomK(k).update(from_text(d[0], "<u8"), from_text(d[1], "<f8"))


class VariantCounts:
    """One model's window of its variants: calls, errors, latency and paired prediction samples.

    Parameters
    ----------
    latency_k : int
        Latencies kept per variant (`BottomK` by event key; NaN latencies are not sampled).
    shadow_k : int
        Predictions kept for ``primary`` and ``shadow`` (`BottomK` by request-id key).

    ``n`` and ``errors`` are plain sums: the caller counts each event once (as for
    `VendorDay`) and each request once per variant (a request key seen twice on one side
    keeps the value that arrived first). Predictions are float codes: the caller maps class labels to codes and
    passes regression values as themselves.

        >>> req = hash_ids(["r1", "r2", "r3"])
    >>> vc = VariantCounts().update("primary", req, np.zeros(3, bool), np.ones(3), req, np.array([1.0, 0.0, 1.0]))
    >>> vc = vc.update("shadow", req[:2], np.zeros(2, bool), np.ones(2), req[:2], np.array([1.0, 1.0]))
    >>> shadow_agreement(vc)
    {'pairs': 2, 'agreement': 0.5, 'disagreement': 0.5}
    >>> VariantCounts.from_dict(vc.to_dict()) == vc
    True
    """

    def __init__(self, latency_k: int = LATENCY_SAMPLE, shadow_k: int = SHADOW_SAMPLE):
        if latency_k < 1 or shadow_k < 1:
            raise ValueError(f"VariantCounts(latency_k={latency_k}, shadow_k={shadow_k}): both must be >= 1")
        self.latency_k, self.shadow_k = int(latency_k), int(shadow_k)
        self._reset()

    def _reset(self) -> None:
        self.n = {v: 0 for v in VARIANTS}
        self.errors = {v: 0 for v in VARIANTS}
        self.latency = {v: BottomK(self.latency_k) for v in VARIANTS}
        self.predictions = {v: BottomK(self.shadow_k) for v in PAIRED}

    def update(self, variant: str, keys: np.ndarray, errors: np.ndarray, latency_ms: np.ndarray,
               request_keys: np.ndarray | None = None, predictions: np.ndarray | None = None) -> VariantCounts:
        """Count a batch of m calls of one variant; returns self.

        Parameters
        ----------
        variant : {"primary", "canary", "shadow"}
        keys : ndarray of uint64, shape (m,)
            The events' hash keys (`hash_ids` of the event ids): the latency sample's keys.
        errors : ndarray of bool, shape (m,)
            Whether each call failed.
        latency_ms : ndarray of float, shape (m,)
            NaN: not measured (counted as a call, not sampled).
        request_keys, predictions : ndarray, shape (m,), optional
            uint64 hashes of the request ids (0: no request id, skipped) and the float-coded
            predictions (NaN: none, skipped). Sampled for ``primary`` and ``shadow`` only.
        """
        if variant not in VARIANTS:
            raise ValueError(f"VariantCounts.update: variant={variant!r}: must be one of {list(VARIANTS)}")
        keys = np.asarray(keys, dtype=np.uint64).reshape(-1)
        err = np.asarray(errors, dtype=bool).reshape(-1)
        lat = np.asarray(latency_ms, dtype=float).reshape(-1)
        if not len(keys) == len(err) == len(lat):
            raise ValueError(f"VariantCounts.update: keys, errors, latency_ms have {len(keys)}, {len(err)}, "
                             f"{len(lat)} rows: must match")
        self.n[variant] += len(keys)
        self.errors[variant] += int(err.sum())
        measured = ~np.isnan(lat)
        self.latency[variant].update(keys[measured], lat[measured])
        if (request_keys is None) != (predictions is None):
            raise ValueError("VariantCounts.update: request_keys and predictions: give both or neither")
        if request_keys is not None and variant in PAIRED:
            req = np.asarray(request_keys, dtype=np.uint64).reshape(-1)
            pred = np.asarray(predictions, dtype=float).reshape(-1)
            if not len(req) == len(pred) == len(keys):
                raise ValueError(f"VariantCounts.update: request_keys, predictions have {len(req)}, {len(pred)} "
                                 f"rows, keys {len(keys)}: must match")
            ok = (req != 0) & ~np.isnan(pred)
            self.predictions[variant].update(req[ok], pred[ok])
        return self

    def merge(self, other: VariantCounts) -> VariantCounts:
        """The window of both (disjoint calls; samples dedup by key); returns self."""
        if (self.latency_k, self.shadow_k) != (other.latency_k, other.shadow_k):
            raise ValueError(f"merge: VariantCounts(latency_k={self.latency_k}, shadow_k={self.shadow_k}) and "
                             f"VariantCounts(latency_k={other.latency_k}, shadow_k={other.shadow_k}) differ")
        for v in VARIANTS:
            self.n[v] += other.n[v]
            self.errors[v] += other.errors[v]
            self.latency[v].merge(other.latency[v])
        for v in PAIRED:
            self.predictions[v].merge(other.predictions[v])
        return self

    __iadd__ = merge

    def __add__(self, other: VariantCounts) -> VariantCounts:
        return VariantCounts(self.latency_k, self.shadow_k).merge(self).merge(other)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; sample keys (uint64) and values as base64 of their little-endian bytes: exact."""
        return {"version": 1, "latency_k": self.latency_k, "shadow_k": self.shadow_k,
                "variants": {v: {"n": self.n[v], "errors": self.errors[v],
                                 "latency": _sample_to_dict(self.latency[v])} for v in VARIANTS},
                "predictions": {v: _sample_to_dict(self.predictions[v]) for v in PAIRED}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VariantCounts:
        if d.get("version") != 1:
            raise ValueError(f"VariantCounts.version={d.get('version')!r}: must be 1")
        out = cls(int(d["latency_k"]), int(d["shadow_k"]))
        for v in VARIANTS:
            s = d["variants"][v]
            out.n[v], out.errors[v] = int(s["n"]), int(s["errors"])
            out.latency[v] = _sample_from_dict(out.latency_k, s["latency"])
        for v in PAIRED:
            out.predictions[v] = _sample_from_dict(out.shadow_k, d["predictions"][v])
        return out

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, VariantCounts)
                and (self.latency_k, self.shadow_k) == (other.latency_k, other.shadow_k)
                and self.n == other.n and self.errors == other.errors and self.latency == other.latency
                and self.predictions == other.predictions)

    def __repr__(self) -> str:
        return f"VariantCounts(n={self.n}, errors={self.errors})"


def _none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _median(s: BottomK) -> float | None:
    return float(np.median(s.values[:, 0])) if len(s) else None


def compare_canary(vc: VariantCounts, margin: float = CANARY_ERROR_MARGIN, alpha: float = ALPHA,
                   min_calls: int = CANARY_MIN_CALLS) -> dict[str, Any] | None:
    """Compare the canary with the primary: error rate (`two_proportion_z`) and latency (`mann_whitney`).

    Returns
    -------
    dict or None
        None when the canary or the primary has fewer than `min_calls` calls. Else
        ``{"metrics": {...}, "decision": str}``; metrics: ``canary_calls``, ``primary_calls``,
        ``canary_error_rate``, ``primary_error_rate``, ``error_rate_difference`` (canary -
        primary), ``z`` and ``p_value`` (H1: canary rate > primary rate),
        ``canary_latency_p50_ms``, ``primary_latency_p50_ms`` (medians of the samples),
        ``latency_u`` and ``latency_p_value`` (H1: canary latencies larger); None where
        undefined. Decision:

        - ``"rollback"``: canary error rate > primary + `margin` and ``p_value < alpha``;
        - ``"monitor_closely"``: canary error rate > primary + `margin` without significance,
          or ``latency_p_value < alpha`` with the canary's median above the primary's;
        - ``"proceed"`` otherwise.

    >>> keys = hash_ids([f"e{i}" for i in range(400)])
    >>> vc = VariantCounts().update("primary", keys[:200], np.zeros(200, bool), np.arange(200.0))
    >>> compare_canary(vc) is None
    True
    >>> vc = vc.update("canary", keys[200:], np.zeros(200, bool), np.arange(200.0) + 100)
    >>> compare_canary(vc)["decision"]
    'monitor_closely'
    """
    nc, np_ = vc.n["canary"], vc.n["primary"]
    if nc < min_calls or np_ < min_calls or nc == 0 or np_ == 0:
        return None
    ec, ep = vc.errors["canary"] / nc, vc.errors["primary"] / np_
    z, p = two_proportion_z(vc.errors["canary"], nc, vc.errors["primary"], np_)
    u, lat_p = mann_whitney(vc.latency["canary"].values[:, 0], vc.latency["primary"].values[:, 0])
    c50, p50 = _median(vc.latency["canary"]), _median(vc.latency["primary"])
    worse = ec > ep + margin
    slower = lat_p < alpha and c50 is not None and p50 is not None and c50 > p50
    decision = ROLLBACK if worse and p < alpha else MONITOR_CLOSELY if worse or slower else PROCEED
    return {"metrics": {"canary_calls": float(nc), "primary_calls": float(np_),
                        "canary_error_rate": ec, "primary_error_rate": ep, "error_rate_difference": ec - ep,
                        "z": z, "p_value": p, "canary_latency_p50_ms": c50, "primary_latency_p50_ms": p50,
                        "latency_u": _none(u), "latency_p_value": None if math.isnan(u) else lat_p},
            "decision": decision}


def shadow_agreement(vc: VariantCounts, numeric: bool = False, tolerance: float = 0.01) -> dict[str, Any] | None:
    """Share of requests on which the primary and the shadow agree, over the sampled pairs.

    A pair is a request key in both the primary's and the shadow's prediction sample.
    Classification (`numeric` False): a pair agrees when the codes are equal. Numeric: when
    ``|a - b| <= tolerance * max(|a|, |b|)`` (relative to the larger magnitude, symmetric in
    a and b; equal values, zeros included, always agree, and near zero the rule is strict: pass
    a larger `tolerance` or round the values first if tiny absolute differences should agree).

    Returns
    -------
    dict or None
        ``{"pairs": int, "agreement": float, "disagreement": float}``; None with no pairs.

    >>> req = hash_ids(["a", "b", "c", "d"])
    >>> no_err, lat = np.zeros(4, bool), np.ones(4)
    >>> vc = VariantCounts().update("primary", req, no_err, lat, req, np.array([100.0, 0.0, 5.0, 1.0]))
    >>> vc = vc.update("shadow", req, no_err, lat, req, np.array([100.5, 0.0, 6.0, 1.0]))
    >>> shadow_agreement(vc, numeric=True)
    {'pairs': 4, 'agreement': 0.75, 'disagreement': 0.25}
    >>> shadow_agreement(vc)["agreement"]
    0.5
    """
    if tolerance < 0:
        raise ValueError(f"shadow_agreement.tolerance={tolerance}: must be >= 0")
    prim, shad = vc.predictions["primary"], vc.predictions["shadow"]
    _, ip, js = np.intersect1d(prim.keys, shad.keys, assume_unique=True, return_indices=True)
    if len(ip) == 0:
        return None
    a, b = prim.values[ip, 0], shad.values[js, 0]
    if numeric:
        agree = (a == b) | (np.abs(a - b) <= tolerance * np.maximum(np.abs(a), np.abs(b)))
    else:
        agree = a == b
    return {"pairs": int(len(ip)), "agreement": float(agree.mean()), "disagreement": float((~agree).mean())}
