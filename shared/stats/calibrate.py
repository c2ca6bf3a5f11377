"""Null distributions of the drift statistics for a window of n events, from the reference alone.

The window is compared with a reference that is itself a sample, so both are resampled
(two-sample bootstrap): R pairs of a reference of the reference's size and a window of size n
are drawn with replacement from the reference, and the statistic computed for each pair.
Resampling only the window would miss the reference's own noise and make ordinary values
look unusual (for PSI at n = 100,000 against 10,000 reference values, by a factor of ~10).

- binned statistics (PSI, JS): resampling n values and binning them is a multinomial draw
  of bin counts, so a null costs O(R x bins) whatever n is — no subsampling needed;
- KS: the same over the reference sample's positions; the draws are shared by every
  feature whose sample has the same size, and each feature's ties are applied afterwards.

Nulls depend on n only through the grid value `grid(n)` (2 significant digits), so one
computation serves every window of about that size, and each null draws from its own
generator seeded by (reference seed, statistic, feature, grid n): the same in every worker.

>>> rng = np.random.default_rng(0)
>>> null = bin_null([100, 100, 100, 100], 400, rng, resamples=200)
>>> null.shape, bool(np.all(null >= 0))
((200,), True)
>>> float(percentile(null, 0.0)), round(float(percentile(null, 10.0)), 3)
(0.0, 99.502)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from shared.policy import PSI_EPS
from shared.stats.drift import js_distance, psi

_CHUNK_CELLS = 2_000_000  # resampled rows x support held in memory at once (KS)


def grid(n: int) -> int:
    """The window size a null is computed for: n itself up to 100, else n to 2 significant digits.

    >>> grid(87), grid(1234), grid(98_765)
    (87, 1200, 99000)
    """
    if n <= 100:
        return int(n)
    scale = 10 ** (len(str(int(n))) - 2)
    return int(round(n / scale) * scale)


def _stat(name: str, eps: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if name == "psi":
        return lambda e, a: psi(e, a, eps)
    if name == "js_distance":
        return js_distance
    raise ValueError(f"statistic {name!r}: must be 'psi' or 'js_distance'")


def bin_null(ref_counts, n: int, rng: np.random.Generator, resamples: int = 1_000,
             statistic: str = "psi", eps: float = PSI_EPS) -> np.ndarray:
    """Null values of a binned statistic between the reference and a window of n values.

    Parameters
    ----------
    ref_counts : array_like, shape (B,)
        Reference counts per bin (m = their sum values).
    n : int
        Window size (non-null values).
    statistic : {"psi", "js_distance"}

    Returns
    -------
    ndarray, shape (resamples,)
    """
    counts = np.asarray(ref_counts, dtype=float)
    m = int(counts.sum())
    if m <= 0 or n <= 0:
        raise ValueError(f"bin_null: reference ({m}) and window ({n}) must be non-empty")
    p = counts / m
    ref = rng.multinomial(m, p, size=resamples) / m
    win = rng.multinomial(n, p, size=resamples) / n
    return np.asarray(_stat(statistic, eps)(ref, win))


def ks_nulls(ref_samples: Sequence[np.ndarray], s: int, rng: np.random.Generator,
             resamples: int = 200) -> list[np.ndarray]:
    """Null values of the KS statistic between each reference sample and a window sample of s values.

    Every sample must have the same size m. For each resample, a reference of m and a window
    of s points are drawn with replacement from positions 0..m-1 (so a value appears in
    proportion to its multiplicity), shared by all samples. With ``A`` and ``W`` the
    cumulative counts of drawn positions, the ECDFs of a sample's resamples differ only at
    the last position of each run of equal values (``ends``), so its statistic is
    ``max |A[ends] s - W[ends] m| / (m s)``: the draws and cumulative counts are paid once,
    and each sample costs a column gather. Measured: 20 samples of m = 10,000 (with ties),
    s = 12,000, R = 200 in ~0.15 s.

    Returns
    -------
    list of ndarray, each of shape (resamples,)
    """
    samples = [np.asarray(x, dtype=float) for x in ref_samples]
    m = samples[0].size if samples else 0
    if m == 0 or s <= 0 or any(x.size != m for x in samples):
        raise ValueError(f"ks_nulls: samples must be non-empty and of one size, and the window ({s}) positive")
    ends = [np.flatnonzero(np.append(x[1:] != x[:-1], True)) for x in samples]
    out = [np.empty(resamples) for _ in samples]
    rows = max(1, _CHUNK_CELLS // (m + s))
    for start in range(0, resamples, rows):
        r = min(rows, resamples - start)
        offset = (np.arange(r) * m)[:, None]
        ref = np.bincount((rng.integers(0, m, (r, m)) + offset).ravel(), minlength=r * m).reshape(r, m)
        win = np.bincount((rng.integers(0, m, (r, s)) + offset).ravel(), minlength=r * m).reshape(r, m)
        gap = np.cumsum(ref, axis=1) * s - np.cumsum(win, axis=1) * m
        for values, at in zip(out, ends):
            values[start:start + r] = np.abs(gap[:, at]).max(axis=1) / (m * s)
    return out


def ks_null(ref_sorted: np.ndarray, s: int, rng: np.random.Generator, resamples: int = 200) -> np.ndarray:
    """`ks_nulls` of one sorted reference sample."""
    return ks_nulls([ref_sorted], s, rng, resamples)[0]


def exceedance(null_values, observed):
    """Share of the null at or above `observed`, counting the observation itself:
    ``(1 + #{null >= observed}) / (R + 1)``.

    The +1 (Davison and Hinkley, 1997) makes it a valid p-value and never 0: with R
    resamples nothing rarer than 1 / (R + 1) can be claimed. Vectorised over `observed`.

    >>> exceedance([1.0, 2.0, 3.0], [0.5, 2.0, 9.0]).tolist()
    [1.0, 0.75, 0.25]
    """
    null = np.sort(np.asarray(null_values, dtype=float))
    below = np.searchsorted(null, np.asarray(observed, dtype=float), side="left")
    return (1 + null.size - below) / (null.size + 1)


def percentile(null_values, observed):
    """Where `observed` falls in the null, in percent: ``100 * (1 - exceedance)``.

    >>> float(percentile([1.0, 2.0, 3.0], 9.0))
    75.0
    """
    return 100.0 * (1.0 - exceedance(null_values, observed))
