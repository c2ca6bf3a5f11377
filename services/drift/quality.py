"""Data quality of a window against the ModelSpec feature schema: mergeable counts, no I/O.

Each event's value of each schema feature gets one status code (vectorised per batch by
`statuses`); a window keeps, per feature, the count of each code, plus the count of each
unexpected feature name (at most `MAX_UNEXPECTED` names). Counts add, so states merge.

>>> from shared.events import FeatureSpec
>>> lay = QualityLayout.of({"x": FeatureSpec(min=0, max=1), "c": FeatureSpec(type="categorical", categories=["a"])})
>>> codes = statuses(lay, [{"x": 0.5, "c": "a"}, {"x": 2.0, "c": "b"}, {"x": None}, {"x": "7", "c": "a", "z": 1}])
>>> q = QualityState(lay).update(codes, [{"x": 0.5}, {"x": 2.0}, {"x": None}, {"x": "7", "z": 1}])
>>> q.counts[lay.names.index("x")].tolist(), q.unexpected
([1, 1, 0, 1, 1, 0], {'z': 1})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.events import FeatureSpec
from shared.stats.reference import category_key

OK, NULL, MISSING, WRONG_TYPE, OUT_OF_RANGE, UNSEEN = range(6)
CODES = ("ok", "null", "missing", "wrong_type", "out_of_range", "unseen_category")
MAX_UNEXPECTED = 50  # unexpected feature names tracked per window (bounded state and labels)
_ABSENT = object()
_NUMBER = (int, float)


@dataclass(frozen=True)
class QualityLayout:
    """The schema a window is checked against: name, type, range, categories, max null rate."""

    names: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    mins: tuple[float, ...] = ()
    maxs: tuple[float, ...] = ()
    max_null_rates: tuple[float | None, ...] = ()
    categories: tuple[tuple[str, ...] | None, ...] = ()

    @classmethod
    def of(cls, features: Mapping[str, FeatureSpec]) -> QualityLayout:
        names = tuple(sorted(features))
        fs = [features[n] for n in names]
        return cls(names, tuple(f.type for f in fs),
                   tuple(-np.inf if f.min is None else float(f.min) for f in fs),
                   tuple(np.inf if f.max is None else float(f.max) for f in fs),
                   tuple(f.max_null_rate for f in fs),
                   tuple(None if f.categories is None else tuple(f.categories) for f in fs))

    def to_dict(self) -> dict[str, Any]:
        finite = lambda xs: [x if np.isfinite(x) else None for x in xs]  # noqa: E731 - JSON has no inf
        return {"names": list(self.names), "types": list(self.types), "mins": finite(self.mins),
                "maxs": finite(self.maxs), "max_null_rates": list(self.max_null_rates),
                "categories": [None if c is None else list(c) for c in self.categories]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QualityLayout:
        return cls(tuple(d["names"]), tuple(d["types"]), tuple(-np.inf if x is None else x for x in d["mins"]),
                   tuple(np.inf if x is None else x for x in d["maxs"]), tuple(d["max_null_rates"]),
                   tuple(None if c is None else tuple(c) for c in d["categories"]))


def _numeric_codes(values: list, lo: float, hi: float) -> np.ndarray:
    types = set(map(type, values))
    if types <= {float, int, type(None)}:  # fast path: numbers and nulls
        try:
            return _range_codes(np.array(values, dtype=float), lo, hi)
        except OverflowError:  # an integer beyond a float's range: the loop below compares it exactly
            pass
    out = np.empty(len(values), dtype=np.int8)
    for i, v in enumerate(values):
        if v is _ABSENT:
            out[i] = MISSING
        elif v is None:
            out[i] = NULL
        elif type(v) not in _NUMBER:
            out[i] = WRONG_TYPE
        else:
            out[i] = OUT_OF_RANGE if (v < lo or v > hi) else OK
    return out


def _range_codes(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Codes of numbers present, null as NaN."""
    codes = np.where(np.isnan(x), NULL, OK).astype(np.int8)
    codes[(x < lo) | (x > hi)] = OUT_OF_RANGE
    return codes


def _categorical_codes(values: list, kind: str, cats: tuple[str, ...] | None) -> np.ndarray:
    allowed = None if cats is None else set(cats)
    out = np.empty(len(values), dtype=np.int8)
    for i, v in enumerate(values):
        if v is _ABSENT:
            out[i] = MISSING
        elif v is None:
            out[i] = NULL
        elif kind == "boolean" and type(v) is not bool:
            out[i] = WRONG_TYPE
        elif allowed is not None and category_key(v) not in allowed:
            out[i] = UNSEEN
        else:
            out[i] = OK
    return out


def statuses(layout: QualityLayout, features: Sequence[Mapping[str, Any]],
             present: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Status code of every schema feature of every event: int8 (len(names), m). `present`:
    numeric features already read as floats (NaN: null) where every event has them."""
    out = np.empty((len(layout.names), len(features)), dtype=np.int8)
    for j, name in enumerate(layout.names):
        if present and name in present and layout.types[j] == "numeric":
            out[j] = _range_codes(present[name], layout.mins[j], layout.maxs[j])
            continue
        values = [f.get(name, _ABSENT) for f in features]
        if layout.types[j] == "numeric":
            out[j] = _numeric_codes(values, layout.mins[j], layout.maxs[j])
        else:
            out[j] = _categorical_codes(values, layout.types[j], layout.categories[j])
    return out


class QualityState:
    """Counts per (schema feature, status code) and per unexpected feature name."""

    def __init__(self, layout: QualityLayout):
        self.layout = layout
        self._reset()

    def _reset(self) -> None:
        self.counts = np.zeros((len(self.layout.names), len(CODES)), dtype=np.int64)
        self.unexpected: dict[str, int] = {}
        self.n = 0

    def update(self, codes: np.ndarray, features: Sequence[Mapping[str, Any]]) -> QualityState:
        """Count the codes (features, m) of m events and their feature names outside the schema."""
        m = codes.shape[1] if codes.ndim == 2 else len(features)
        self.n += m
        for j in range(codes.shape[0]):
            self.counts[j] += np.bincount(codes[j], minlength=len(CODES))
        known = set(self.layout.names)
        if known:
            extra = set().union(*features) - known
            if extra:
                for f in features:
                    for name in f.keys() - known:
                        if name in self.unexpected or len(self.unexpected) < MAX_UNEXPECTED:
                            self.unexpected[name] = self.unexpected.get(name, 0) + 1
        return self

    def merge(self, other: QualityState) -> QualityState:
        if self.layout != other.layout:
            raise ValueError("merge: quality layouts differ; both states must come from the same ModelSpec")
        self.counts += other.counts
        self.n += other.n
        for name, c in other.unexpected.items():
            if name in self.unexpected or len(self.unexpected) < MAX_UNEXPECTED:
                self.unexpected[name] = self.unexpected.get(name, 0) + c
        return self

    __iadd__ = merge

    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout.to_dict(), "n": self.n, "counts": self.counts.tolist(),
                "unexpected": dict(self.unexpected)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QualityState:
        q = cls(QualityLayout.from_dict(d["layout"]))
        q.n = int(d["n"])
        q.counts = np.array(d["counts"], dtype=np.int64).reshape(q.counts.shape)
        q.unexpected = dict(d["unexpected"])
        return q

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, QualityState) and self.layout == other.layout and self.n == other.n
                and np.array_equal(self.counts, other.counts) and self.unexpected == other.unexpected)
