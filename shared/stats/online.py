"""Online change detection on a model's per-event error stream. No I/O, no clock.

`ErrorDetector` feeds each labelled event's error, in event order, to one of river's change
detectors and reports the changes *for the worse* as they happen, before a window closes:

* ``"adwin"``: classification errors (0/1: prediction wrong) into ``river.drift.ADWIN``.
* ``"page_hinkley"``: absolute residuals ``|y - y_hat|``, divided by ``scale``, into
  ``river.drift.PageHinkley(mode="up")`` with a threshold from `calibrate_page_hinkley`.

A change is reported only when the mean error after it exceeds the mean before it; a
detected decrease is dropped (river still resets on it). After a detection river resets the
detector on the next value, and detection goes on. `ErrorDetector.to_dict` is JSON-able, and
a detector restored with `ErrorDetector.from_dict` reports exactly what an uninterrupted one does.

>>> rng = np.random.default_rng(0)
>>> rate = np.r_[np.full(3000, 0.1), np.full(2000, 0.4)]  # error rate 10 % -> 40 % at event 3000
>>> err = (rng.random(5000) < rate).astype(float)
>>> [(c.detector, c.index >= 3000, round(c.before, 2), round(c.after, 2))
...  for c in ErrorDetector("adwin").update(err, np.arange(5000.0))]
[('adwin', True, 0.1, 0.38)]
>>> cal = calibrate_page_hinkley(np.abs(rng.normal(size=3000)), length=2000, runs=100)
>>> ph = ErrorDetector.from_calibration(cal)
>>> res = np.abs(np.r_[rng.normal(0, 1, 3000), rng.normal(0, 2, 500)])  # residual std 1 -> 2 at 3000
>>> c = ph.update(res, np.arange(3500.0))[0]
>>> c.index - 3000, round(c.before, 2), round(c.after, 2)  # 35 events after the change
(35, 0.79, 1.55)
"""

from __future__ import annotations

import base64
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import river
from river._river_rust.drift import AdaptiveWindowing
from river.drift import ADWIN, PageHinkley

ADWIN_DELTA = 0.002  # river's default significance: 0 upward false changes on 1.2M stationary Bernoulli(0.1)
ADWIN_RECENT = 64  # ADWIN's `after`: mean of the last 64 errors (2 x river's clock of 32)
# PageHinkley on values divided by the calibration sample's std (all three in those units):
PH_DELTA = 0.1  # tolerated drift: sustained rises below 0.1 std are ignored; CUSUM-optimal for a 0.2 std rise
PH_MIN_INSTANCES = 30  # river's default: values after a reset before testing; also the `after` window
PH_ALPHA = 1.0  # no forgetting, so the statistic regenerates and a fresh-stretch calibration holds forever
SCALE_FLOOR = 1e-9  # scale of a constant sample (a perfect model): any later error is a change
THRESHOLD_FLOOR = 1.0  # scaled units; keeps float noise of a constant sample from alarming
CALIBRATION_CHUNK = 256  # resampled runs per vectorised pass (10,000 x 256 floats: 20 MB)
KINDS = ("adwin", "page_hinkley")
STATE_VERSION = 1


@dataclass(frozen=True)
class Change:
    """An upward change of the error stream, reported by `ErrorDetector.update`.

    ``index`` is the position of the detecting value in that update's input and ``time`` the
    event time passed with it (a NumPy scalar converted with ``.item()``). ``before`` and
    ``after`` are mean errors in the input's units (error rate, or absolute residual), see
    `ErrorDetector`; ``after > before`` always.
    """

    index: int
    time: Any
    before: float
    after: float
    detector: str  # "adwin" | "page_hinkley"


class ErrorDetector:
    """Detects rises of a model's error, one event at a time (river's ADWIN or PageHinkley).

    Parameters
    ----------
    kind : str
        ``"adwin"`` for 0/1 classification errors, ``"page_hinkley"`` for absolute residuals.
    threshold : float, optional
        PageHinkley only, required: the detection threshold (lambda) on scaled values, from
        `calibrate_page_hinkley`.
    delta : float, optional
        ADWIN's significance (default `ADWIN_DELTA`), or PageHinkley's tolerated drift on
        scaled values (default `PH_DELTA`).
    scale : float
        PageHinkley only: values are divided by it (the calibration sample's std), so one
        threshold works in any unit.
    min_instances : int
        PageHinkley only: values after a reset before it tests (river's ``min_instances``).
    alpha : float
        PageHinkley only: river's forgetting factor of the cumulative sum (default 1: none).

    Notes
    -----
    ``before`` and ``after`` of a `Change`:

    * ADWIN: on a detection river's ADWIN drops the old sub-window ``W0`` and keeps the recent
      ``W1``. ``before`` is the mean of the dropped ``W0`` (from ADWIN's total and width just
      before and right after the detecting update). ``after`` is the mean of the last
      `ADWIN_RECENT` errors (a ring buffer), not of ``W1``: ADWIN cuts at bucket boundaries, so
      ``W1`` keeps many pre-change errors (0.1 -> 0.5: W1's mean 0.21; the last 64: 0.45).
      Reported when ``W1``'s mean exceeds ``W0``'s and ``after > before``.
    * PageHinkley: ``after`` is the mean of the last ``min_instances`` values (a ring buffer),
      ``before`` the mean of the values since the last reset that precede them. Reported when
      ``after > before``; a detection exactly ``min_instances`` values after a reset has
      nothing before it and is not reported.

    Both ``after`` read the level at the moment of detection: a little high for a small rise
    (detection tends to come on a burst: 0.1 -> 0.15 reads ~0.20), low when detection comes
    sooner than the ring's length after the change.

    Cost per value (this machine): ~0.7 us for ADWIN, ~1.1 us for PageHinkley. `to_dict`
    stores ADWIN's Rust state as base64 bytes (restored without unpickling, so a checkpoint
    cannot run code) and the river version it came from; a checkpoint from another river
    version is refused.
    """

    def __init__(self, kind: str, threshold: float | None = None, delta: float | None = None, scale: float = 1.0,
                 min_instances: int = PH_MIN_INSTANCES, alpha: float = PH_ALPHA):
        if kind not in KINDS:
            raise ValueError(f"ErrorDetector.kind={kind!r}: must be one of {KINDS}")
        self.kind = kind
        if kind == "adwin":
            if threshold is not None or scale != 1.0:
                raise ValueError(f"ErrorDetector(kind='adwin', threshold={threshold!r}, scale={scale!r}): "
                                 "threshold and scale are for page_hinkley only")
            self.delta = ADWIN_DELTA if delta is None else float(delta)
            if not 0.0 < self.delta < 1.0:
                raise ValueError(f"ErrorDetector.delta={delta!r}: ADWIN's significance must be in (0, 1)")
            self.threshold, self.scale, self.min_instances, self.alpha = None, 1.0, None, None
            self._adwin = ADWIN(delta=self.delta)
            self._ring: deque[float] = deque(maxlen=ADWIN_RECENT)
            return
        if threshold is None or not math.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"ErrorDetector.threshold={threshold!r}: page_hinkley needs a finite threshold > 0 "
                             "(from calibrate_page_hinkley)")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"ErrorDetector.scale={scale!r}: must be finite and > 0")
        if int(min_instances) < 1:
            raise ValueError(f"ErrorDetector.min_instances={min_instances!r}: must be >= 1")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"ErrorDetector.alpha={alpha!r}: must be in (0, 1]")
        self.threshold, self.scale = float(threshold), float(scale)
        self.delta = PH_DELTA if delta is None else float(delta)
        self.min_instances, self.alpha = int(min_instances), float(alpha)
        self._ph = PageHinkley(min_instances=self.min_instances, delta=self.delta, threshold=self.threshold,
                               alpha=self.alpha, mode="up")
        self._ring = deque(maxlen=self.min_instances)

    @classmethod
    def from_calibration(cls, cal: Mapping[str, Any]) -> ErrorDetector:
        """A PageHinkley detector with the parameters `calibrate_page_hinkley` returned."""
        return cls("page_hinkley", threshold=cal["threshold"], delta=cal["delta"], scale=cal["scale"],
                   min_instances=cal["min_instances"], alpha=cal["alpha"])

    def update(self, values: np.ndarray | Sequence[float], times: np.ndarray | Sequence[Any]) -> list[Change]:
        """Feed `values` (errors, in event order) with their event `times`; return the upward changes."""
        x = np.asarray(values, dtype=float).ravel()
        if len(times) != x.size:
            raise ValueError(f"update: len(times)={len(times)} and len(values)={x.size}: must be equal")
        if not np.isfinite(x).all():
            raise ValueError(f"update: values[{int(np.argmin(np.isfinite(x)))}] is not finite: errors must be finite")
        found = self._update_adwin(x.tolist()) if self.kind == "adwin" else self._update_ph(x.tolist())
        out = []
        for i, before, after in found:
            t = times[i]
            out.append(Change(i, t.item() if isinstance(t, np.generic) else t, before, after, self.kind))
        return out

    def _update_adwin(self, x: list[float]) -> list[tuple[int, float, float]]:
        ad, ring, found = self._adwin, self._ring, []
        for i, v in enumerate(x):
            width, total = ad.width, ad.total
            ad.update(v)
            ring.append(v)
            if ad.drift_detected:
                kept, kept_total = ad.width, ad.total
                dropped = width + 1 - kept
                if kept <= 0 or dropped <= 0:  # pragma: no cover - ADWIN cuts between non-empty sub-windows
                    continue
                before, after = (total + v - kept_total) / dropped, sum(ring) / len(ring)
                if kept_total / kept > before and after > before:
                    found.append((i, before, after))
        return found

    def _update_ph(self, x: list[float]) -> list[tuple[int, float, float]]:
        ph, ring, scale, found = self._ph, self._ring, self.scale, []
        for i, v in enumerate(x):
            ring.append(v)
            ph.update(v / scale)
            if ph.drift_detected:
                n, k, recent = ph._x_mean.n, len(ring), sum(ring)
                after = recent / k
                if n > k:
                    before = (ph._x_mean.get() * n * scale - recent) / (n - k)
                    if after > before:
                        found.append((i, before, after))
        return found

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (strict JSON: no NaN or infinity)."""
        d: dict[str, Any] = {"version": STATE_VERSION, "river": river.__version__, "kind": self.kind,
                             "delta": self.delta}
        if self.kind == "adwin":
            ad = self._adwin
            d["adwin"] = {"detected": ad.drift_detected, "clock": ad.clock, "max_buckets": ad.max_buckets,
                          "min_window_length": ad.min_window_length, "grace_period": ad.grace_period,
                          "state": base64.b64encode(ad._helper.__getstate__()).decode(), "ring": list(self._ring)}
            return d
        ph = self._ph
        d.update(threshold=self.threshold, scale=self.scale, min_instances=self.min_instances, alpha=self.alpha)
        d["ph"] = {"detected": ph.drift_detected, "n": ph._x_mean.n, "mean": ph._x_mean._mean,
                   "sum_increase": ph._sum_increase, "sum_decrease": ph._sum_decrease,
                   "min_increase": None if math.isinf(ph._min_increase) else ph._min_increase,
                   "max_decrease": ph._max_decrease, "ring": list(self._ring)}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ErrorDetector:
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"ErrorDetector state version={d.get('version')!r}: must be {STATE_VERSION}")
        if d.get("river") != river.__version__:
            raise ValueError(f"ErrorDetector state river={d.get('river')!r}: must be the running river "
                             f"{river.__version__} (the detector's state layout is river's)")
        if d["kind"] == "adwin":
            out, a = cls("adwin", delta=d["delta"]), d["adwin"]
            ad = out._adwin = ADWIN(delta=out.delta, clock=int(a["clock"]), max_buckets=int(a["max_buckets"]),
                                    min_window_length=int(a["min_window_length"]),
                                    grace_period=int(a["grace_period"]))
            helper = AdaptiveWindowing(ad.delta, ad.clock, ad.max_buckets, ad.min_window_length, ad.grace_period)
            try:
                helper.__setstate__(base64.b64decode(a["state"]))
            except BaseException as e:  # pyo3 raises a PanicException, a BaseException, on bad bytes
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                raise ValueError(f"ErrorDetector state adwin.state: not a river {river.__version__} "
                                 f"ADWIN state ({type(e).__name__})") from None
            ad._helper, ad._drift_detected = helper, bool(a["detected"])
            out._ring.extend(float(v) for v in a["ring"])
            return out
        out = cls(d["kind"], threshold=d["threshold"], delta=d["delta"], scale=d["scale"],
                  min_instances=d["min_instances"], alpha=d["alpha"])
        p, ph = d["ph"], out._ph
        ph._drift_detected = bool(p["detected"])
        ph._x_mean.n, ph._x_mean._mean = float(p["n"]), float(p["mean"])
        ph._sum_increase, ph._sum_decrease = float(p["sum_increase"]), float(p["sum_decrease"])
        ph._min_increase = math.inf if p["min_increase"] is None else float(p["min_increase"])
        ph._max_decrease = float(p["max_decrease"])
        out._ring.extend(float(v) for v in p["ring"])
        return out

    def __repr__(self) -> str:
        if self.kind == "adwin":
            return f"ErrorDetector('adwin', delta={self.delta})"
        return (f"ErrorDetector('page_hinkley', threshold={self.threshold:.4g}, delta={self.delta}, "
                f"scale={self.scale:.4g})")


def page_hinkley_statistic(x: np.ndarray, delta: float = PH_DELTA, alpha: float = PH_ALPHA) -> np.ndarray:
    """River's PageHinkley "up" statistic after each value, for one or many sequences at once.

    For each column (sequence) of `x`, shape ``(length,)`` or ``(length, runs)``, with
    ``m_n`` the running mean of ``x_1..x_n`` (river's ``stats.Mean``, updated
    ``m_n = m_{n-1} + (x_n - m_{n-1}) / n``)::

        S_n = alpha * S_{n-1} + (x_n - m_n) - delta,   S_0 = 0
        PH_n = S_n - min(S_1, ..., S_n)

    computed with river's operations in river's order, so equal to the ``_sum_increase -
    _min_increase`` of ``PageHinkley(mode="up", delta=delta, alpha=alpha)`` fed the same
    values without a reset; river tests ``PH_n > threshold`` from ``n = min_instances``.
    Returns an array of `x`'s shape.

    >>> page_hinkley_statistic(np.array([0.0, 0.0, 3.0, 3.0]), delta=0.5).tolist()
    [0.0, 0.0, 1.5, 2.5]
    """
    x = np.asarray(x, dtype=float)
    if x.ndim not in (1, 2):
        raise ValueError(f"page_hinkley_statistic: x.ndim={x.ndim}: must be 1 (length,) or 2 (length, runs)")
    x2 = x[:, None] if x.ndim == 1 else x
    mean, s, low = np.zeros(x2.shape[1]), np.zeros(x2.shape[1]), np.full(x2.shape[1], np.inf)
    out = np.empty_like(x2)
    n = 0.0
    for t in range(x2.shape[0]):
        n += 1.0
        xt = x2[t]
        mean += (1.0 / n) * (xt - mean)
        s = alpha * s + (xt - mean) - delta
        np.minimum(low, s, out=low)
        np.subtract(s, low, out=out[t])
    return out.reshape(x.shape)


def calibrate_page_hinkley(sample: np.ndarray, length: int = 10_000, runs: int = 200, false_alarm: float = 0.05,
                           seed: int = 0, *, delta: float = PH_DELTA, min_instances: int = PH_MIN_INSTANCES,
                           alpha: float = PH_ALPHA, horizon: int | None = None) -> dict[str, Any]:
    """PageHinkley's threshold from a stationary sample of absolute residuals, for a false-alarm rate.

    Rule: ``scale = max(std(sample), SCALE_FLOOR)``; draw `runs` sequences of `length`
    values from `sample` i.i.d. with replacement (``np.random.default_rng(seed)``), divide by
    ``scale``, and take the maximum statistic each reaches where river tests it,
    ``M = max_{min_instances <= n <= length} PH_n`` (`page_hinkley_statistic`). The threshold
    is the empirical ``1 - false_alarm`` quantile of ``M`` (``method="higher"``), at least
    `THRESHOLD_FLOOR`.

    Bound: river alarms when ``PH_n > threshold``, so at most ``false_alarm`` of the resampled
    runs alarm: on i.i.d. data from the sample's distribution, a fresh (or just reset)
    detector raises a false detection within `length` events with probability about
    ``false_alarm``; the Monte-Carlo error of the quantile is Beta-distributed (runs=200,
    false_alarm=0.05: 95 % of calibrations give a true rate in [0.024, 0.084]). With
    ``alpha = 1`` the cumulative sum is a random walk with drift ``-delta``, reflected at its
    minimum: ``PH`` returns to 0 every ~1/delta**2 events, so every later `length`-stretch
    of a long-running detector behaves like a fresh one, and N stationary events raise about
    ``false_alarm * N / length`` false detections. Measured at the defaults, calibrated on
    5,000 |N(0, 1)| values: 16 over 4,000,000 events drawn from the sample (20 expected), 33
    over fresh |N(0, 1)| (the sample under-represents the tail). River's default alpha 0.9999
    gave 7-10 per 200,000 (1 expected): its leaky sum wanders by ~70 std over 10,000-event
    time scales, beyond a fresh stretch's reach. River's defaults outright (threshold 50,
    delta 0.005, on raw values) gave 34-38 per 200,000.
    `horizon` > `length` makes ``false_alarm`` refer to a stretch of `horizon` events without
    simulating it: the maximum of this reflected random walk with negative drift has an
    exponential tail, so its maximum over k independent stretches is Gumbel-like with the same
    scale β, shifted by ``β ln k``; the threshold becomes the `length` quantile plus
    ``β ln(horizon / length)``, with ``β = std(M) √6 / π`` estimated from the simulated maxima.
    Checked against direct simulation (|N(0, 1)|, 200-400 runs): 55.7 extrapolated vs 54.0
    simulated at 100,000 events, 63.5 vs 61.2 at 400,000 — a little conservative.
    Residuals that are autocorrelated or drift slowly alarm more often, and so does a stream
    after a real rise when its spread grew too (residual std 1 -> 2 quadruples the variance in
    scaled units): recalibrate on the new regime, or treat later detections as the same episode.

    Parameters
    ----------
    sample : array_like
        Absolute residuals of a stationary period (e.g. the first labelled windows), >= 100 values.
    length : int
        Events per stretch that the false-alarm rate refers to.
    runs : int
        Resampled stretches (drawn 256 at a time); the relative Monte-Carlo error of the rate is
        about ``1 / sqrt(runs * false_alarm)``.
    false_alarm : float
        Probability of a false detection per `length`-event stretch (per `horizon` events when
        given), in (0, 1).
    seed : int
        Seed of the resampling.
    delta, min_instances, alpha
        As in `ErrorDetector` (scaled units); the defaults are `PH_DELTA`, `PH_MIN_INSTANCES`, `PH_ALPHA`.

    Returns
    -------
    dict
        ``threshold``, ``scale``, ``delta``, ``min_instances``, ``alpha`` (the detector's
        parameters, see `ErrorDetector.from_calibration`) and ``false_alarm``, ``length``,
        ``runs``, ``seed``, ``n`` (sample size): JSON-able.

    >>> cal = calibrate_page_hinkley(np.abs(np.random.default_rng(1).normal(size=5000)), length=5000, runs=100)
    >>> round(cal["scale"], 2), 15 < cal["threshold"] < 60, cal["delta"]
    (0.61, True, 0.1)
    """
    x = np.asarray(sample, dtype=float).ravel()
    if x.size < 100:
        raise ValueError(f"calibrate_page_hinkley: len(sample)={x.size}: must be >= 100")
    if not np.isfinite(x).all():
        raise ValueError("calibrate_page_hinkley: sample: values must be finite")
    if not 0.0 < false_alarm < 1.0:
        raise ValueError(f"calibrate_page_hinkley: false_alarm={false_alarm!r}: must be in (0, 1)")
    if int(min_instances) < 1 or int(length) < int(min_instances):
        raise ValueError(f"calibrate_page_hinkley: length={length!r}: must be >= min_instances={min_instances!r} >= 1")
    if int(runs) < 1 / false_alarm:
        raise ValueError(f"calibrate_page_hinkley: runs={runs!r}: must be >= 1 / false_alarm = {1 / false_alarm:g}")
    if not 0.0 < alpha <= 1.0 or delta < 0:
        raise ValueError(f"calibrate_page_hinkley: alpha={alpha!r}, delta={delta!r}: need 0 < alpha <= 1, delta >= 0")
    scale = max(float(x.std()), SCALE_FLOOR)
    rng, peaks = np.random.default_rng(seed), []
    for start in range(0, int(runs), CALIBRATION_CHUNK):  # bounded memory: length x 256 values at a time
        draws = x[rng.integers(0, x.size, size=(int(length), min(CALIBRATION_CHUNK, int(runs) - start)))] / scale
        peaks.append(page_hinkley_statistic(draws, delta, alpha)[int(min_instances) - 1:].max(axis=0))
    peak = np.concatenate(peaks)
    threshold = float(np.quantile(peak, 1.0 - false_alarm, method="higher"))
    out = {"scale": scale, "delta": float(delta), "min_instances": int(min_instances),
           "alpha": float(alpha), "false_alarm": float(false_alarm), "length": int(length), "runs": int(runs),
           "seed": int(seed), "n": int(x.size)}
    if horizon is not None and int(horizon) > int(length):
        beta = float(peak.std()) * math.sqrt(6) / math.pi
        threshold += beta * math.log(int(horizon) / int(length))
        out.update(horizon=int(horizon), gumbel_scale=beta)
    return {"threshold": max(threshold, THRESHOLD_FLOOR), **out}
