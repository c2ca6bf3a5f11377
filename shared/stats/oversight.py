"""Human-oversight statistics: mergeable per-bucket review counters and their evaluation. No I/O, no clock.

A `ReviewCounts` holds one model's reviews of one event-time bucket (an hour by default) as
counters only: reviews and overrides (final human decision differs from the AI's), per
reviewer, per hour of day, and, for reviews that carry ``human_initial_decision``, how often
the reviewer's own first judgement disagreed with the AI and how often they then switched to
the AI's answer (anchoring). Counters over disjoint reviews add up (`merge`), so a trailing
period is the sum of its buckets.

`KeySample` is a bottom-k set of 64-bit id hashes (order-free, mergeable, exact below k):
coverage compares the low-confidence predictions' sample with the reviewed cases' sample on
their common bottom-k (a coordinated sample, as in KMV sketches).

>>> c = ReviewCounts().update(["a", "a", "b"], [0.0, 3600.0, 7200.0], [True, False, False])
>>> c.n, c.overrides, c.reviewers["a"], c.hours[1]
(3, 1, [2, 1], [1, 0])
>>> [round(x, 4) for x in wilson(10, 100)]
[0.0552, 0.1744]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
DAY = 86_400


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval of a binomial proportion: (low, high); (None, None) when n is 0.

    ``(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = successes / n``.

    >>> [round(x, 4) for x in wilson(0, 50)]
    [0.0, 0.0713]
    """
    if n <= 0:
        return None, None
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    den = 1 + z2 / n
    low = 0.0 if successes == 0 else max(0.0, (centre - half) / den)
    high = 1.0 if successes == n else min(1.0, (centre + half) / den)
    return low, high


def rate(k: int, n: int) -> float | None:
    return k / n if n else None


@dataclass
class ReviewCounts:
    """Counters of one bucket's reviews. See the module docstring."""

    n: int = 0
    overrides: int = 0
    reviewers: dict[str, list[int]] = field(default_factory=dict)  # id -> [reviews, overrides]
    hours: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in range(24)])  # hour of day (UTC)
    initial: int = 0  # reviews with human_initial_decision
    initial_disagree: int = 0  # ... whose initial decision differed from the AI's
    switched: int = 0  # ... of which the final decision is the AI's (switched to the AI)

    def update(self, reviewer: Sequence[str], ts: Sequence[float] | np.ndarray, override: Sequence[bool] | np.ndarray,
               initial_disagree: Sequence[bool | None] | None = None,
               switched: Sequence[bool] | None = None) -> ReviewCounts:
        """Count m reviews (already deduplicated): reviewer ids, event times (epoch s), whether the
        final decision overrides the AI; optionally, per review, whether the initial decision
        disagreed with the AI (None: no initial decision) and whether the reviewer switched to it."""
        ov = np.asarray(override, dtype=bool)
        m = len(ov)
        if m == 0:
            return self
        self.n += m
        self.overrides += int(ov.sum())
        hod = (np.floor(np.asarray(ts, dtype=float)) // 3600 % 24).astype(np.int64)
        hn = np.bincount(hod, minlength=24)
        ho = np.bincount(hod, weights=ov, minlength=24)
        for h in np.flatnonzero(hn).tolist():
            self.hours[h][0] += int(hn[h])
            self.hours[h][1] += int(ho[h])
        ids, inv = np.unique(np.asarray(reviewer, dtype=object).astype(str), return_inverse=True)
        rn = np.bincount(inv, minlength=len(ids))
        ro = np.bincount(inv, weights=ov, minlength=len(ids))
        for i, r in enumerate(ids.tolist()):
            cur = self.reviewers.get(r)
            if cur is None:
                self.reviewers[r] = [int(rn[i]), int(ro[i])]
            else:
                cur[0] += int(rn[i])
                cur[1] += int(ro[i])
        if initial_disagree is not None:
            has = [d for d in initial_disagree if d is not None]
            self.initial += len(has)
            self.initial_disagree += sum(has)
            self.switched += sum(bool(s) for d, s in zip(initial_disagree, switched or ()) if d)
        return self

    def merge(self, other: ReviewCounts) -> ReviewCounts:
        self.n += other.n
        self.overrides += other.overrides
        for r, (k, o) in other.reviewers.items():
            cur = self.reviewers.setdefault(r, [0, 0])
            cur[0] += k
            cur[1] += o
        for h in range(24):
            self.hours[h][0] += other.hours[h][0]
            self.hours[h][1] += other.hours[h][1]
        self.initial += other.initial
        self.initial_disagree += other.initial_disagree
        self.switched += other.switched
        return self

    __iadd__ = merge

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "o": self.overrides, "r": self.reviewers, "h": self.hours,
                "i": [self.initial, self.initial_disagree, self.switched]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReviewCounts:
        i = d["i"]
        return cls(int(d["n"]), int(d["o"]), {k: list(v) for k, v in d["r"].items()}, [list(h) for h in d["h"]],
                   int(i[0]), int(i[1]), int(i[2]))


class KeySample:
    """The `k` smallest distinct uint64 keys offered: an order-free, mergeable sample of a set.

    >>> a = KeySample(3).update(np.array([5, 1, 9, 1], dtype=np.uint64))
    >>> (a + KeySample(3).update(np.array([2, 7], dtype=np.uint64))).keys.tolist()
    [1, 2, 5]
    """

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"KeySample(k={k}): must be >= 1")
        self.k = int(k)
        self.keys = np.empty(0, dtype=np.uint64)

    def update(self, keys: np.ndarray) -> KeySample:
        keys = np.asarray(keys, dtype=np.uint64)
        if len(self.keys) >= self.k:
            keys = keys[keys < self.keys[-1]]
        if keys.size:
            self.keys = np.unique(np.concatenate([self.keys, keys]))[: self.k]
        return self

    def merge(self, other: KeySample) -> KeySample:
        return self.update(other.keys)

    __iadd__ = merge

    def __add__(self, other: KeySample) -> KeySample:
        out = KeySample(max(self.k, other.k))
        return out.update(self.keys).update(other.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def to_list(self) -> list[str]:
        return [str(k) for k in self.keys.tolist()]

    @classmethod
    def from_list(cls, k: int, keys: Iterable[str]) -> KeySample:
        out = cls(k)
        out.keys = np.array([int(x) for x in keys], dtype=np.uint64)
        return out


def coverage(low: KeySample, reviewed: KeySample, k: int) -> tuple[int, int, float | None]:
    """Share of the low-confidence set that is in the reviewed set, from two bottom-k samples.

    On S = the k smallest keys of the union (known exactly from the two samples), membership in
    each set is exact, so ``|S ∩ low ∩ reviewed| / |S ∩ low|`` is the coordinated-sample
    estimate; exact when the union holds at most k keys. Returns (sampled low-confidence,
    of them reviewed, share).

    >>> low = KeySample(10).update(np.arange(1, 9, dtype=np.uint64))
    >>> coverage(low, KeySample(10).update(np.array([2, 4, 100], dtype=np.uint64)), 10)
    (8, 2, 0.25)
    """
    union = np.unique(np.concatenate([low.keys, reviewed.keys]))[:k]
    in_low = np.isin(union, low.keys, assume_unique=True)
    both = in_low & np.isin(union, reviewed.keys, assume_unique=True)
    n_low, n_both = int(in_low.sum()), int(both.sum())
    return n_low, n_both, rate(n_both, n_low)


def workload(day_n: Sequence[int], day_overrides: Sequence[int], quantile: float = 0.75) -> dict[str, float | None]:
    """Override rate on high-volume days (volume at or above the `quantile` of daily volumes)
    against low-volume days (at or below the 1 - `quantile` one). Days without reviews are left out.

    Also reports ``volume_ratio`` (mean volume of high over low days) and ``p_value``, the
    two-sided pooled two-proportion z-test of the two override rates.

    >>> w = workload([100, 100, 400, 400], [10, 10, 4, 4])
    >>> w["high_rate"], w["low_rate"], round(w["ratio"], 6), w["volume_ratio"], w["p_value"] < 1e-6
    (0.01, 0.1, 0.1, 4.0, True)
    """
    n = np.asarray(day_n, dtype=float)
    o = np.asarray(day_overrides, dtype=float)
    keep = n > 0
    n, o = n[keep], o[keep]
    out: dict[str, float | None] = {"days": float(len(n)), "high_n": 0.0, "low_n": 0.0, "high_rate": None,
                                    "low_rate": None, "ratio": None, "high_volume": None, "low_volume": None,
                                    "volume_ratio": None, "p_value": None}
    if len(n) < 2:
        return out
    hi_cut, lo_cut = np.quantile(n, quantile), np.quantile(n, 1 - quantile)
    hi, lo = n >= hi_cut, n <= lo_cut
    if np.array_equal(hi, lo):  # all days equal: no high/low contrast
        return out
    out.update(high_n=float(n[hi].sum()), low_n=float(n[lo].sum()), high_volume=float(n[hi].mean()),
               low_volume=float(n[lo].mean()), high_rate=float(o[hi].sum() / n[hi].sum()),
               low_rate=float(o[lo].sum() / n[lo].sum()))
    if out["low_rate"]:
        out["ratio"] = out["high_rate"] / out["low_rate"]
    out["volume_ratio"] = out["high_volume"] / out["low_volume"]
    n1, n2, k1, k2 = n[hi].sum(), n[lo].sum(), o[hi].sum(), o[lo].sum()
    pooled = (k1 + k2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    out["p_value"] = float(2 * stats.norm.sf(abs(k1 / n1 - k2 / n2) / se)) if se > 0 else 1.0
    return out


@dataclass(frozen=True)
class ReviewParams:
    """What judges a period's reviews: thresholds from `shared.policy` (per-model overrides applied)."""

    override_rate_min: float = 0.02
    override_min_reviews: int = 100
    min_reviews: int = 50  # per reviewer, before they are judged
    rubber_stamp_rate: float = 0.01
    rubber_stamp_share: float = 0.30
    rubber_stamp_min_reviewers: int = 3
    workload_quantile: float = 0.75
    workload_ratio: float = 0.5
    workload_min_reviews: int = 100  # in each of the high- and low-volume groups
    workload_volume_ratio: float = 1.5  # the busy days must be busier than this, by mean volume
    workload_p_value: float = 0.05  # the two rates must differ significantly


def summarize(buckets: Mapping[int, ReviewCounts], end: int, days: int) -> tuple[ReviewCounts, list[list[int]]]:
    """The period ``[end - days * 86400, end)``: merged counters, and per trailing 24 h slice
    (oldest first) [reviews, overrides]. Bucket keys are start times (epoch seconds)."""
    start = end - days * DAY
    total = ReviewCounts()
    per_day = [[0, 0] for _ in range(days)]
    for s, c in buckets.items():
        if start <= s < end:
            total.merge(c)
            d = days - 1 - (end - 1 - s) // DAY
            per_day[d][0] += c.n
            per_day[d][1] += c.overrides
    return total, per_day


def partial_days(end: int, days: int, since: float | None) -> int:
    """How many of the oldest trailing 24 h slices of ``[end - days * 86400, end)`` begin before
    `since` (the first review ever counted): partly before monitoring began, their volume says
    nothing about workload.

    >>> partial_days(10 * DAY, 7, 5.5 * DAY), partial_days(10 * DAY, 7, 3 * DAY), partial_days(10 * DAY, 7, None)
    (3, 0, 0)
    """
    if since is None:
        return 0
    return sum(1 for d in range(days) if end - (days - d) * DAY < since)


def evaluate(total: ReviewCounts, per_day: Sequence[Sequence[int]], p: ReviewParams, partial: int = 0) -> dict[str, Any]:
    """A period's review statistics and which oversight conditions hold.

    Returns ``{"metrics": {...numbers}, "reviewers": {id: {...}}, "hours": [...], "days": [...],
    "rubber_stampers": [...], "conditions": {kind: bool}}``. A condition never holds on too
    small a sample: override_rate_low needs `override_min_reviews` reviews; rubber-stamping
    needs `rubber_stamp_min_reviewers` reviewers with `min_reviews` each; workload pressure
    needs `workload_min_reviews` reviews on each side, busy days `workload_volume_ratio` times
    busier than quiet ones and rates that differ significantly, and compares only whole days (the
    `partial` oldest slices, begun before the first review, are left out).
    """
    lo, hi = wilson(total.overrides, total.n)
    metrics: dict[str, float | None] = {
        "reviews": float(total.n), "overrides": float(total.overrides), "override_rate": rate(total.overrides, total.n),
        "override_rate_ci_low": lo, "override_rate_ci_high": hi}
    reviewers = {}
    for r, (k, o) in sorted(total.reviewers.items()):
        if k >= p.min_reviews:
            rl, rh = wilson(o, k)
            reviewers[r] = {"reviews": k, "overrides": o, "override_rate": o / k, "ci_low": rl, "ci_high": rh}
    stampers = sorted(r for r, v in reviewers.items() if v["override_rate"] < p.rubber_stamp_rate)
    share = rate(len(stampers), len(reviewers))
    metrics.update(reviewers_judged=float(len(reviewers)), rubber_stampers=float(len(stampers)),
                   rubber_stamp_share=share)
    whole = per_day[partial:]
    w = workload([d[0] for d in whole], [d[1] for d in whole], p.workload_quantile)
    metrics.update({f"workload_{k}": v for k, v in w.items()})
    metrics.update(anchored_reviews=float(total.initial),
                   initial_disagreement_rate=rate(total.initial_disagree, total.initial),
                   switch_to_ai_rate=rate(total.switched, total.initial_disagree))
    conditions = {
        "override_rate_low": total.n >= p.override_min_reviews and metrics["override_rate"] < p.override_rate_min,
        "reviewer_rubber_stamping": len(reviewers) >= p.rubber_stamp_min_reviewers and share is not None
        and share > p.rubber_stamp_share,
        "workload_pressure": w["ratio"] is not None and w["high_n"] >= p.workload_min_reviews
        and w["low_n"] >= p.workload_min_reviews and w["ratio"] < p.workload_ratio
        and w["volume_ratio"] >= p.workload_volume_ratio and w["p_value"] < p.workload_p_value,
    }
    hours = [{"hour": h, "reviews": k, "overrides": o, "override_rate": rate(o, k)} for h, (k, o) in enumerate(total.hours)]
    days = [{"reviews": k, "overrides": o, "override_rate": rate(o, k), "whole": d >= partial}
            for d, (k, o) in enumerate(per_day)]
    return {"metrics": metrics, "reviewers": reviewers, "rubber_stampers": stampers, "hours": hours, "days": days,
            "conditions": conditions}
