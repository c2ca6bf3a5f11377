"""Least-squares trend of a metric over the last windows. No I/O, no clock.

DESIGN.md: slope over the last `shared.policy.TREND_WINDOWS` windows; declining when the slope
is in the worse direction with p < 0.05; report the slope, its p-value, the value projected
`shared.policy.TREND_HORIZON` windows ahead and when the minimum acceptable value would be
crossed. The caller passes the last windows' values, oldest first; window k sits at x = k.

>>> t = trend([0.90, 0.89, 0.88, 0.87, 0.86, 0.85, 0.84], min_acceptable=0.80)
>>> round(t.slope, 6), round(t.projected, 6), round(t.windows_to_breach, 6), t.declining()
(-0.01, 0.77, 4.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from shared.policy import ALPHA, TREND_HORIZON

MIN_POINTS = 3  # a slope's t statistic needs n - 2 >= 1 degrees of freedom


@dataclass(frozen=True)
class Trend:
    """A fitted line ``intercept + slope * x`` over `n` windows at x = 0..n-1.

    `projected` is the fitted value `horizon` windows after the last; `windows_to_breach` how
    many windows after the last the line crosses the minimum acceptable value (0.0: already
    past it; None: no minimum given, or the line never crosses it).
    """

    n: int
    slope: float
    intercept: float
    p_value: float
    projected: float
    windows_to_breach: float | None

    def declining(self, alpha: float = ALPHA, higher_is_better: bool = True) -> bool:
        """Whether the metric is getting worse: slope in the worse direction and ``p_value < alpha``.

        >>> Trend(7, -0.01, 0.9, 0.001, 0.77, None).declining(), Trend(7, -0.01, 0.9, 0.2, 0.77, None).declining()
        (True, False)
        >>> Trend(7, 0.5, 2.0, 0.001, 8.5, None).declining(higher_is_better=False)
        True
        """
        worse = self.slope < 0 if higher_is_better else self.slope > 0
        return bool(worse and self.p_value < alpha)


def trend(values: Sequence[float], horizon: int = TREND_HORIZON, min_acceptable: float | None = None,
          higher_is_better: bool = True) -> Trend | None:
    """Ordinary least-squares line through ``(k, values[k])``, k = 0..n-1; None when n < 3.

    With ``x̄ = (n - 1) / 2``, ``Sxx = Σ(x - x̄)²``: ``slope = Σ(x - x̄)(y - ȳ) / Sxx``,
    ``intercept = ȳ - slope x̄``; the slope's standard error is ``sqrt(SSE / (n - 2) / Sxx)``
    with SSE the residual sum of squares, and `p_value` the two-sided p of
    ``t = slope / se`` under Student's t with n - 2 degrees of freedom (as
    `scipy.stats.linregress`). A perfect line (SSE = 0) has p 0.0, or 1.0 if it is flat.

    Parameters
    ----------
    values : sequence of float, shape (n,)
        The metric of consecutive windows, oldest first; all finite.
    horizon : int
        `projected` is the fitted value at ``x = n - 1 + horizon``; >= 0.
    min_acceptable : float, optional
        The value the metric must not cross: below it when `higher_is_better`, above it if not.
    higher_is_better : bool
        The metric's direction (`shared.stats.performance.HIGHER_IS_BETTER`).

    Examples
    --------
    >>> trend([0.9, 0.9]) is None
    True
    >>> t = trend([3.0, 5.0, 7.0, 9.0], horizon=2, min_acceptable=13.0, higher_is_better=False)
    >>> t.slope, t.intercept, t.p_value, t.projected, t.windows_to_breach
    (2.0, 3.0, 0.0, 13.0, 2.0)
    >>> trend([0.8, 0.85, 0.9], min_acceptable=0.7).windows_to_breach is None
    True
    """
    y = np.asarray(values, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"values.shape={y.shape}: must be 1-D")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"values[{i}]={y[i]}: must be finite")
    if horizon < 0:
        raise ValueError(f"horizon={horizon}: must be >= 0")
    n = y.size
    if n < MIN_POINTS:
        return None
    x = np.arange(n, dtype=float)
    dx = x - x.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (y - y.mean())) / sxx
    intercept = float(y.mean()) - slope * float(x.mean())
    df = n - 2
    # t is unit-free: fit it on y - ȳ scaled by a power of two (exact) to max |z| in [0.5, 1), so
    # the squares of a tiny metric's residuals cannot underflow to a false perfect fit
    z = y - y.mean()
    z = np.ldexp(z, -int(np.frexp(np.abs(z).max())[1]))
    z_slope = float(dx @ z) / sxx
    residual = z - z_slope * dx
    se = math.sqrt(float(residual @ residual) / df / sxx)
    if se == 0.0:
        p_value = 1.0 if slope == 0.0 else 0.0
    else:
        p_value = float(2.0 * student_t.sf(abs(z_slope / se), df))
    last = intercept + slope * (n - 1)
    return Trend(n=n, slope=slope, intercept=intercept, p_value=p_value, projected=last + slope * horizon,
                 windows_to_breach=_windows_to_breach(last, slope, min_acceptable, higher_is_better))


def _windows_to_breach(last: float, slope: float, minimum: float | None, higher_is_better: bool) -> float | None:
    """Windows after the last until ``last + slope * w`` crosses `minimum` in the worse direction."""
    if minimum is None:
        return None
    sign = 1.0 if higher_is_better else -1.0  # flip a lower-is-better metric into a higher-is-better one
    margin, rate = sign * (last - minimum), sign * slope
    if margin < 0:
        return 0.0
    if rate >= 0:
        return None
    return margin / -rate
