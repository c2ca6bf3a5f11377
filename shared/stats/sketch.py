"""A mergeable quantile sketch with bounded relative error (DDSketch's log buckets). No I/O.

A positive value ``x`` is counted in bucket ``i = ceil(log(x) / log(gamma))`` with
``gamma = (1 + alpha) / (1 - alpha)``; the bucket's representative ``2 gamma^i / (gamma + 1)``
is within ``alpha`` (relative) of every value in it, so any quantile read off the counts is
within ``alpha`` of the exact order statistic (Masson et al., *DDSketch*, VLDB 2019).
Values at or below ``min_value`` share one zero bucket. State is a sparse map bucket -> count:
two sketches over disjoint values merge by adding counts, and order or batching never
matter. Use it for latencies (milliseconds); not for signed values.

>>> s = LatencySketch().update([10.0] * 94 + [100.0] * 5 + [1000.0])
>>> s.n, round(s.quantile(0.5), 1), round(s.quantile(0.95), 1), round(s.quantile(0.99), 1)
(100, 10.0, 100.0, 100.0)
>>> (LatencySketch().update([1, 2]) + LatencySketch().update([3])) == LatencySketch().update([3, 2, 1])
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_ALPHA = 0.005  # 0.5 % relative error: well inside the contract's 1 %
MIN_VALUE = 1e-6  # values at or below this (ms) count in the zero bucket


class LatencySketch:
    """Quantiles of non-negative values within `alpha` relative error; mergeable.

    Parameters
    ----------
    alpha : float
        Relative accuracy, in (0, 1).

    The quantile at ``q`` is the value of rank ``floor(q * (n - 1))`` (NumPy's
    ``method="lower"``), within ``alpha``.
    """

    def __init__(self, alpha: float = DEFAULT_ALPHA):
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"LatencySketch(alpha={alpha!r}): must be in (0, 1)")
        self.alpha = float(alpha)
        self.gamma = (1.0 + alpha) / (1.0 - alpha)
        self._log_gamma = math.log(self.gamma)
        self._reset()

    def _reset(self) -> None:
        self.counts: dict[int, int] = {}
        self.zeros = 0
        self.n = 0

    def update(self, values: Sequence[float] | np.ndarray) -> LatencySketch:
        """Count values (NaN skipped; negative values raise)."""
        x = np.asarray(values, dtype=float).ravel()
        x = x[~np.isnan(x)]
        if x.size == 0:
            return self
        if (x < 0).any() or np.isinf(x).any():
            raise ValueError("latency values must be finite and >= 0")
        small = x <= MIN_VALUE
        self.zeros += int(small.sum())
        idx = np.ceil(np.log(x[~small]) / self._log_gamma).astype(np.int64)
        keys, counts = np.unique(idx, return_counts=True)
        get = self.counts.get
        for k, c in zip(keys.tolist(), counts.tolist()):
            self.counts[k] = get(k, 0) + c
        self.n += int(x.size)
        return self

    def merge(self, other: LatencySketch) -> LatencySketch:
        if other.alpha != self.alpha:
            raise ValueError(f"merge: sketches of alpha {self.alpha} and {other.alpha} differ")
        for k, c in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + c
        self.zeros += other.zeros
        self.n += other.n
        return self

    __iadd__ = merge

    def __add__(self, other: LatencySketch) -> LatencySketch:
        return self.copy().merge(other)

    def copy(self) -> LatencySketch:
        out = LatencySketch(self.alpha)
        out.counts, out.zeros, out.n = dict(self.counts), self.zeros, self.n
        return out

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LatencySketch) and self.alpha == other.alpha and self.n == other.n
                and self.zeros == other.zeros and self.counts == other.counts)

    def quantile(self, q: float) -> float | None:
        """The value at quantile `q` (rank ``floor(q (n - 1))``); None when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q={q!r}: must be in [0, 1]")
        if self.n == 0:
            return None
        rank = math.floor(q * (self.n - 1))
        if rank < self.zeros:
            return 0.0
        seen = self.zeros
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen > rank:
                return 2.0 * self.gamma ** k / (self.gamma + 1.0)
        raise AssertionError("unreachable: counts sum to n")  # pragma: no cover

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "zeros": self.zeros, "n": self.n,
                "counts": [[k, c] for k, c in sorted(self.counts.items())]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatencySketch:
        out = cls(d["alpha"])
        out.zeros, out.n = int(d["zeros"]), int(d["n"])
        out.counts = {int(k): int(c) for k, c in d["counts"]}
        return out

    def __repr__(self) -> str:
        return f"LatencySketch(alpha={self.alpha}, n={self.n}, buckets={len(self.counts)})"
