"""A reference profile prepared once for streaming: NumPy arrays, bin counts, cached null distributions.

`Baseline.from_profile` takes the ``ReferenceColumn`` profiles that ingest stores (see
`shared.stats.reference.profile`) and keeps what windows are binned at and tested against:

- numeric features: the 9 decile edges, the sorted KS sample, and the sample's counts per
  bin. PSI compares the window with those counts: the profile keeps the full reference's
  edges but not its bin counts, and with ties (integer-valued features) the full
  reference's bins are not 10% each; the sample's counts are exact while the reference has
  at most `reference_sample` (10,000) rows and otherwise off by ~1%;
- categorical features: the full reference's count per category, plus "other" (0);
- ``prediction``: class counts (categorical, or numeric classes when `task` is a
  classification: one bin per reference class) or counts at its deciles (scores,
  regression); ``confidence``: counts at its deciles.

A numeric column whose reference has no values is left out (nothing to compare with).

>>> from shared.stats.reference import profile
>>> cols = profile({"x": [float(i) for i in range(100)], "c": ["a", "b"] * 50, "prediction": [0, 1] * 50})
>>> base = Baseline.from_profile(cols, task="binary_classification")
>>> base.numeric_names, base.categorical[0].categories, base.prediction.edges.tolist()
(('x',), ('a', 'b'), [1.0])
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.events import ReferenceColumn
from shared.policy import PERCENTILE_RESAMPLES, PSI_EPS, KS_PERCENTILE_RESAMPLES
from shared.stats import calibrate
from shared.stats.bins import BinCounts
from shared.stats.sample import hash_ids

PREDICTION, CONFIDENCE, LABEL = "prediction", "confidence", "label"
MAX_CLASSES = 1_000  # more distinct numeric predictions than this: binned at deciles instead
_NULL_CACHE = 4_096  # null distributions kept per reference


@dataclass(frozen=True, eq=False)
class NumericRef:
    name: str
    edges: np.ndarray  # (B-1,) sorted
    sample: np.ndarray  # sorted, finite
    counts: np.ndarray  # (B,) the sample binned at `edges`


@dataclass(frozen=True, eq=False)
class CategoricalRef:
    name: str
    categories: tuple[str, ...]
    counts: np.ndarray  # (len(categories) + 1,): the last is "other", 0 in the reference


def _numeric(col: ReferenceColumn, edges: Sequence[float] | None = None) -> NumericRef | None:
    if not col.sample:
        return None
    sample = np.sort(np.asarray(col.sample, dtype=float))
    edges_arr = np.asarray(col.edges if edges is None else edges, dtype=float)
    return NumericRef(col.name, edges_arr, sample, BinCounts(edges_arr).update(sample).counts)


def _categorical(col: ReferenceColumn) -> CategoricalRef:
    cats = col.categories or {}
    return CategoricalRef(col.name, tuple(cats), np.array([*cats.values(), 0], dtype=np.int64))


@dataclass(eq=False)
class Baseline:
    numeric: tuple[NumericRef, ...]
    categorical: tuple[CategoricalRef, ...]
    prediction: NumericRef | CategoricalRef | None = None
    confidence: NumericRef | None = None
    seed: int = 0
    _nulls: dict[tuple, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        widths = {ref.edges.size for ref in self.numeric}
        if len(widths) > 1:
            raise ValueError(f"numeric features: all must have the same number of edges; got {sorted(widths)}")
        width = widths.pop() if widths else 0
        self.edges = np.array([r.edges for r in self.numeric]).reshape(len(self.numeric), width)
        self.ref_props = np.array([r.counts / r.counts.sum() for r in self.numeric]).reshape(len(self.numeric), width + 1)

    def __repr__(self) -> str:
        return (f"Baseline(numeric={list(self.numeric_names)}, categorical={[r.name for r in self.categorical]}, "
                f"prediction={self.prediction is not None}, confidence={self.confidence is not None}, seed={self.seed})")

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.numeric)

    @classmethod
    def from_profile(cls, columns: Mapping[str, ReferenceColumn | Mapping[str, Any]], task: str | None = None,
                     features: Sequence[str] | None = None, seed: int | None = None) -> Baseline:
        """Prepare a profile (column name -> ReferenceColumn or its JSON dict).

        `features` restricts and orders the tracked features (default: every column but
        prediction, confidence and label, sorted). `seed` seeds the null distributions;
        by default it is derived from the profile's content, so every worker agrees.
        """
        cols = {n: c if isinstance(c, ReferenceColumn) else ReferenceColumn.model_validate(c) for n, c in columns.items()}
        names = list(features) if features is not None else sorted(set(cols) - {PREDICTION, CONFIDENCE, LABEL})
        numeric = tuple(r for n in names if n in cols and cols[n].kind == "numeric" and (r := _numeric(cols[n])))
        categorical = tuple(_categorical(cols[n]) for n in names if n in cols and cols[n].kind == "categorical")
        prediction = None
        if (col := cols.get(PREDICTION)) is not None:
            if col.kind == "categorical":
                prediction = _categorical(col)
            else:
                classes = np.unique(np.asarray(col.sample or [], dtype=float))
                classify = task in ("binary_classification", "multiclass_classification") and 0 < classes.size <= MAX_CLASSES
                prediction = _numeric(col, classes[1:] if classify else None)
        confidence = _numeric(cols[CONFIDENCE]) if CONFIDENCE in cols and cols[CONFIDENCE].kind == "numeric" else None
        if seed is None:
            digest = json.dumps({n: [c.kind, c.n, c.edges, c.categories, c.sample[:50] if c.sample else None]
                                 for n, c in sorted(cols.items())}, sort_keys=True)
            seed = int(hash_ids([digest])[0])
        return cls(numeric, categorical, prediction, confidence, seed)

    # --- calibrated null distributions (see shared.stats.calibrate) -------------------------

    def _rng(self, *key: Any) -> np.random.Generator:
        words = [int(hash_ids([str(part)])[0]) for part in key]
        return np.random.default_rng([self.seed, *words])

    def _store(self, key: tuple, null: np.ndarray) -> None:
        if len(self._nulls) >= _NULL_CACHE:
            self._nulls.pop(next(iter(self._nulls)))
        self._nulls[key] = null

    def _cached(self, key: tuple, make) -> np.ndarray:
        if key not in self._nulls:
            self._store(key, np.sort(make(self._rng(*key))))
        return self._nulls[key]

    def bin_null(self, statistic: str, name: str, counts: np.ndarray, n: int, eps: float = PSI_EPS) -> np.ndarray:
        """Sorted null of `statistic` ("psi" or "js_distance") for `name` at window size ``grid(n)``."""
        g = calibrate.grid(n)
        return self._cached((statistic, name, g, eps), lambda rng: calibrate.bin_null(
            counts, g, rng, PERCENTILE_RESAMPLES, statistic, eps))

    def ks_nulls(self, refs: Sequence[NumericRef], sizes: Sequence[int]) -> list[np.ndarray]:
        """Sorted KS nulls, one per feature, for window samples of ``grid(size)`` values.

        Features whose reference samples have the same size share the resampled draws
        (seeded by that size and the grid n), so each null is the same whichever features
        are asked for together.
        """
        keys = [("ks_statistic", r.name, r.sample.size, calibrate.grid(s)) for r, s in zip(refs, sizes)]
        todo: dict[tuple[int, int], list[tuple[tuple, NumericRef]]] = {}
        for key, ref in zip(keys, refs):
            if key not in self._nulls:
                todo.setdefault(key[2:], []).append((key, ref))
        found = {}
        for (m, g), members in todo.items():
            nulls = calibrate.ks_nulls([ref.sample for _, ref in members], g, self._rng("ks_statistic", m, g),
                                       KS_PERCENTILE_RESAMPLES)
            found.update({key: np.sort(null) for (key, _), null in zip(members, nulls)})
        for key, null in found.items():
            self._store(key, null)
        return [found.get(key, self._nulls.get(key)) for key in keys]
