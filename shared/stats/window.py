"""One model's drift state for one event-time window: mergeable, checkpointable, evaluated once.

`WindowState` counts, per batch and vectorised: events (each event_id once), per-feature
bins at the reference deciles and nulls, categories, predictions and confidence, and keeps a
`BottomK` sample of the numeric features for KS. Two states over disjoint events merge into
the state of their union; a batch's order and split do not change the state.
`evaluate` turns a state into per-feature metric dicts; `shared.policy` grades them.

>>> from shared.stats.reference import profile
>>> rng = np.random.default_rng(0)
>>> base = Baseline.from_profile(profile({"x": rng.normal(size=2000).tolist()}))
>>> w = WindowState(WindowLayout.of(base)).update([f"e{i}" for i in range(500)], {"x": rng.normal(1, 1, 500)})
>>> w.n, w.update(["e0"], {"x": [9.0]}).n  # e0 again: counted once
(500, 500)
>>> [(r["feature"], r["metrics"]["ks_p_adjusted"] < 0.05, r["metrics"]["psi"] > 0.3) for r in evaluate(w, base)]
[('x', True, True)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shared.policy import PERCENTILE_RESAMPLES, threshold
from shared.stats.baseline import Baseline, CategoricalRef
from shared.stats.bins import BinCounts, CategoryCounts
from shared.stats.calibrate import percentile
from shared.stats.drift import benjamini_hochberg, chi2_two_sample, js_distance, js_divergence, ks_p_values, ks_statistic, psi
from shared.stats.sample import BottomK, from_text, hash_ids, to_text

# Events kept per window for KS. Above scipy's 10,000 cut-off, so a busy window's p-values
# take the asymptotic path (~0.1 ms) instead of the exact one (10-60 ms per feature).
DEFAULT_SAMPLE_SIZE = 12_000


@dataclass(frozen=True)
class WindowLayout:
    """What a window counts: fixed by the reference, stored with every checkpoint."""

    numeric: tuple[str, ...] = ()
    edges: tuple[tuple[float, ...], ...] = ()
    categorical: tuple[tuple[str, tuple[str, ...]], ...] = ()
    prediction_kind: str | None = None  # "numeric" (edges) | "categorical" (categories) | None
    prediction: tuple = ()
    confidence: tuple[float, ...] | None = None
    sample_size: int = DEFAULT_SAMPLE_SIZE

    @classmethod
    def of(cls, base: Baseline, sample_size: int = DEFAULT_SAMPLE_SIZE) -> WindowLayout:
        pred = base.prediction
        kind = None if pred is None else "categorical" if isinstance(pred, CategoricalRef) else "numeric"
        return cls(base.numeric_names, tuple(tuple(r.edges.tolist()) for r in base.numeric),
                   tuple((r.name, r.categories) for r in base.categorical), kind,
                   () if pred is None else pred.categories if kind == "categorical" else tuple(pred.edges.tolist()),
                   None if base.confidence is None else tuple(base.confidence.edges.tolist()), int(sample_size))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WindowLayout:
        return cls(tuple(d["numeric"]), tuple(tuple(e) for e in d["edges"]),
                   tuple((n, tuple(c)) for n, c in d["categorical"]), d["prediction_kind"], tuple(d["prediction"]),
                   None if d["confidence"] is None else tuple(d["confidence"]), int(d["sample_size"]))


def _take(col: Any, keep: np.ndarray | None) -> Any:
    if keep is None:
        return col
    return col[keep] if isinstance(col, np.ndarray) else [col[i] for i in keep]


class WindowState:
    """Mergeable drift state of one model's window. See the module docstring."""

    def __init__(self, layout: WindowLayout):
        self.layout = layout
        self._reset()

    def _reset(self) -> None:
        lay = self.layout
        width = len(lay.edges[0]) if lay.edges else 0
        self.n = 0
        self.seen = np.empty(0, dtype=np.uint64)  # sorted keys of the events counted
        self.numeric = BinCounts(np.array(lay.edges, dtype=float).reshape(len(lay.numeric), width))
        self.categorical = {name: CategoryCounts(cats) for name, cats in lay.categorical}
        self.sample = BottomK(lay.sample_size, len(lay.numeric))
        self.prediction: BinCounts | CategoryCounts | None = (
            BinCounts(lay.prediction) if lay.prediction_kind == "numeric"
            else CategoryCounts(lay.prediction) if lay.prediction_kind == "categorical" else None)
        self.confidence = None if lay.confidence is None else BinCounts(lay.confidence)

    def _fresh(self, keys: np.ndarray) -> np.ndarray | None:
        """Record new keys; return the batch positions to count (None: all of them)."""
        uniq, first = np.unique(keys, return_index=True)
        pos = np.searchsorted(self.seen, uniq)
        if self.seen.size:
            new = self.seen[np.minimum(pos, self.seen.size - 1)] != uniq
            uniq, first, pos = uniq[new], first[new], pos[new]
        self.seen = np.insert(self.seen, pos, uniq)
        return None if uniq.size == keys.size else np.sort(first)

    def update(self, ids: Sequence[str] | np.ndarray, columns: Mapping[str, Any],
               prediction: Sequence[Any] | np.ndarray | None = None,
               confidence: Sequence[float] | np.ndarray | None = None) -> WindowState:
        """Count a columnar batch of m events; an event_id already counted is skipped.

        Parameters
        ----------
        ids : list of str (m,), or their `hash_ids` keys (uint64)
        columns : feature -> values (m,)
            Numeric: floats with NaN for null; a feature absent from the batch is null for
            all its events. Categorical: raw values (None is null). Unknown names ignored.
        prediction, confidence : (m,), optional
        """
        keys = ids if isinstance(ids, np.ndarray) and ids.dtype == np.uint64 else hash_ids(ids)
        for name, col in [*columns.items(), ("prediction", prediction), ("confidence", confidence)]:
            if col is not None and len(col) != keys.size:
                raise ValueError(f"update: {name!r} has {len(col)} values for {keys.size} event ids")
        keep = self._fresh(keys)
        m = keys.size if keep is None else keep.size
        if m == 0:
            return self
        lay = self.layout
        x = np.full((len(lay.numeric), keys.size), np.nan)
        for j, name in enumerate(lay.numeric):
            if (col := columns.get(name)) is not None:
                x[j] = np.asarray(col, dtype=float)
        if keep is not None:
            keys, x = keys[keep], x[:, keep]
        self.numeric.update(x)
        self.sample.update(keys, x.T)
        for name, counts in self.categorical.items():
            if (col := columns.get(name)) is None:
                counts.nulls += m
            else:
                counts.update(_take(col, keep))
        if self.prediction is not None and prediction is not None:
            pred = _take(prediction, keep)
            self.prediction.update(np.asarray(pred, dtype=float) if isinstance(self.prediction, BinCounts) else pred)
        if self.confidence is not None and confidence is not None:
            self.confidence.update(np.asarray(_take(confidence, keep), dtype=float))
        self.n += m
        return self

    def merge(self, other: WindowState) -> WindowState:
        """Add the state of a disjoint stream (another partition or worker); returns self.

        Counts cannot be un-counted, so events seen by both states are an error: replay an
        overlapping stream through `update`, which skips what was counted.
        """
        if self.layout != other.layout:
            raise ValueError("merge: window layouts differ; both states must come from the same reference")
        pos = np.searchsorted(self.seen, other.seen)
        if self.seen.size and np.any(self.seen[np.minimum(pos, self.seen.size - 1)] == other.seen):
            raise ValueError("merge: the windows share events; merge needs disjoint streams (use update to replay)")
        self.seen = np.insert(self.seen, pos, other.seen)
        self.n += other.n
        self.numeric.merge(other.numeric)
        for name, counts in self.categorical.items():
            counts.merge(other.categorical[name])
        self.sample.merge(other.sample)
        for mine, theirs in ((self.prediction, other.prediction), (self.confidence, other.confidence)):
            if mine is not None:
                mine.merge(theirs)
        return self

    __iadd__ = merge

    def __add__(self, other: WindowState) -> WindowState:
        return WindowState.from_dict(self.to_dict()).merge(other)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able and compact: counts as lists, keys and sample values as base64 little-endian."""
        def counts(c: BinCounts | CategoryCounts | None) -> list | None:
            return None if c is None else [c.counts.tolist(), np.asarray(c.nulls).tolist()]
        return {"version": 1, "layout": self.layout.to_dict(), "n": self.n, "seen": to_text(self.seen, "<u8"),
                "numeric": counts(self.numeric), "categorical": {n: counts(c) for n, c in self.categorical.items()},
                "sample": [to_text(self.sample.keys, "<u8"), to_text(self.sample.values, "<f8")],
                "prediction": counts(self.prediction), "confidence": counts(self.confidence)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WindowState:
        if d.get("version") != 1:
            raise ValueError(f"window state version={d.get('version')!r}: must be 1")
        state = cls(WindowLayout.from_dict(d["layout"]))
        state.n, state.seen = int(d["n"]), from_text(d["seen"], "<u8")

        def fill(c: BinCounts | CategoryCounts | None, saved: list | None) -> None:
            if c is not None and saved is not None:
                c.counts = np.array(saved[0], dtype=np.int64).reshape(c.counts.shape)
                c.nulls = np.array(saved[1], dtype=np.int64) if isinstance(saved[1], list) else int(saved[1])
        fill(state.numeric, d["numeric"])
        for name, c in state.categorical.items():
            fill(c, d["categorical"].get(name))
        fill(state.prediction, d["prediction"])
        fill(state.confidence, d["confidence"])
        keys = from_text(d["sample"][0], "<u8")
        state.sample.update(keys, from_text(d["sample"][1], "<f8").reshape(keys.size, state.sample.width))
        return state

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, WindowState) and self.layout == other.layout and self.n == other.n
                and np.array_equal(self.seen, other.seen) and self.numeric == other.numeric
                and self.categorical == other.categorical and self.sample == other.sample
                and self.prediction == other.prediction and self.confidence == other.confidence)

    def __repr__(self) -> str:
        return f"WindowState(n={self.n}, numeric={len(self.layout.numeric)}, categorical={len(self.categorical)})"


def _num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def evaluate(window: WindowState, base: Baseline, thresholds: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Drift metrics of a window against its reference: one dict per feature, then predictions.

    Each dict has ``kind`` ("data_drift" | "prediction_drift"), ``feature`` (None for
    predictions), ``type``, ``n`` (non-null values), ``metrics`` (the contract's keys, None
    when a side has no values) and ``evidence`` (the bins compared). Numeric: psi,
    ks_statistic, ks_p_value, ks_p_adjusted; categorical: psi, chi2_statistic, chi2_p_value,
    chi2_p_adjusted — Benjamini-Hochberg over all of the model's feature tests together; and
    psi_p_adjusted, PSI's exceedance in its calibrated null (1 - percentile/100), adjusted the
    same way across the features.
    Predictions: js_divergence, js_distance, chi2_statistic, chi2_p_value and, with a
    confidence reference, confidence_psi. ``<metric>_percentile`` places psi, ks_statistic
    and js_distance in their calibrated null for this n. Only ``thresholds["psi_eps"]`` is
    read here; grading is `shared.policy.severity`.
    """
    if WindowLayout.of(base, window.layout.sample_size) != window.layout:
        raise ValueError("evaluate: the window was not built from this reference (layouts differ)")
    eps = threshold("psi_eps", thresholds)
    out: list[dict[str, Any]] = []
    n_num = window.numeric.n
    win_props = window.numeric.proportions()
    psis = psi(base.ref_props, win_props, eps) if len(base.numeric) else np.empty(0)
    values = window.sample.values
    sizes = (~np.isnan(values)).sum(axis=0) if values.size else np.zeros(len(base.numeric), dtype=int)
    cols = np.ascontiguousarray(np.sort(values, axis=0).T)  # NaN sorts last
    ds = np.array([ks_statistic(r.sample, cols[j, :sizes[j]]) if sizes[j] else np.nan for j, r in enumerate(base.numeric)])
    ps = ks_p_values(np.nan_to_num(ds), [r.sample.size for r in base.numeric], np.maximum(sizes, 1))
    ps[sizes == 0] = np.nan
    ks_nulls = base.ks_nulls(*zip(*[(r, s) for r, s in zip(base.numeric, sizes) if s])) if sizes.any() else []
    ks_null = iter(ks_nulls)
    for j, ref in enumerate(base.numeric):
        n, s = int(n_num[j]), int(sizes[j])
        m = {"psi": _num(psis[j]) if n else None, "ks_statistic": _num(ds[j]), "ks_p_value": _num(ps[j]),
             "ks_p_adjusted": None,
             "psi_percentile": float(percentile(base.bin_null("psi", ref.name, ref.counts, n, eps), psis[j])) if n else None,
             "ks_statistic_percentile": float(percentile(next(ks_null), ds[j])) if s else None}
        out.append({"kind": "data_drift", "feature": ref.name, "type": "numeric", "n": n, "metrics": m,
                    "evidence": {"edges": ref.edges.tolist(), "reference": base.ref_props[j].tolist(),
                                 "window": win_props[j].tolist(), "nulls": int(window.numeric.nulls[j]),
                                 "sample_size": s, "reference_sample_size": int(ref.sample.size)}})
    for ref in base.categorical:
        c = window.categorical[ref.name]
        m: dict[str, float | None] = dict.fromkeys(("psi", "chi2_statistic", "chi2_p_value", "chi2_p_adjusted", "psi_percentile"))
        if c.n and ref.counts.sum():
            stat, p, _ = chi2_two_sample(ref.counts, c.counts)
            value = psi(ref.counts / ref.counts.sum(), c.proportions(), eps)
            m.update(psi=value, chi2_statistic=stat, chi2_p_value=p,
                     psi_percentile=float(percentile(base.bin_null("psi", ref.name, ref.counts, c.n, eps), value)))
        out.append({"kind": "data_drift", "feature": ref.name, "type": "categorical", "n": c.n, "metrics": m,
                    "evidence": {"categories": list(c.labels), "reference": (ref.counts / max(ref.counts.sum(), 1)).tolist(),
                                 "window": c.proportions().tolist(), "nulls": c.nulls}})
    tests = [("ks_p_value", "ks_p_adjusted") if r["type"] == "numeric" else ("chi2_p_value", "chi2_p_adjusted") for r in out]
    raw = [r["metrics"][p] for r, (p, _) in zip(out, tests)]
    for r, (_, adj), a in zip(out, tests, benjamini_hochberg([np.nan if p is None else p for p in raw])):
        r["metrics"][adj] = _num(a)
    # PSI's own significance: its exceedance in the calibrated null, adjusted the same way
    floor = 1.0 / (PERCENTILE_RESAMPLES + 1)
    pcts = [r["metrics"]["psi_percentile"] for r in out]
    psi_ps = [np.nan if q is None else max(1.0 - q / 100.0, floor) for q in pcts]
    for r, a in zip(out, benjamini_hochberg(psi_ps)):
        r["metrics"]["psi_p_adjusted"] = _num(a)
    if (pred := _prediction(window, base, eps)) is not None:
        out.append(pred)
    return out


def _prediction(window: WindowState, base: Baseline, eps: float) -> dict[str, Any] | None:
    ref, c = base.prediction, window.prediction
    if ref is None or c is None:
        return None
    m: dict[str, float | None] = dict.fromkeys(("js_divergence", "js_distance", "chi2_statistic", "chi2_p_value",
                                               "js_distance_percentile"))
    n = int(c.n)
    if n and ref.counts.sum():
        stat, p, _ = chi2_two_sample(ref.counts, c.counts)
        dist = js_distance(ref.counts, c.counts)
        m.update(js_divergence=js_divergence(ref.counts, c.counts), js_distance=dist, chi2_statistic=stat, chi2_p_value=p,
                 js_distance_percentile=float(percentile(base.bin_null("js_distance", "prediction", ref.counts, n), dist)))
    if base.confidence is not None and window.confidence is not None:
        conf = base.confidence
        m["confidence_psi"] = (psi(conf.counts / conf.counts.sum(), window.confidence.proportions(), eps)
                               if window.confidence.n else None)
    labels = list(c.labels) if isinstance(c, CategoryCounts) else None
    return {"kind": "prediction_drift", "feature": None, "type": "categorical" if labels else "numeric", "n": n,
            "metrics": m, "evidence": {"categories": labels, "edges": None if labels else ref.edges.tolist(),
                                       "reference": (ref.counts / max(ref.counts.sum(), 1)).tolist(),
                                       "window": c.proportions().tolist()}}
