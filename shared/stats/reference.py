"""Fit a reference table once: decile edges, category counts, and a bounded KS sample.

The stream services bin each window at these edges and test against this sample, so the
reference is never re-binned on current data.

>>> cols = profile({"x": [float(i) for i in range(100)], "c": ["a", "b", "a", None]}, sample_size=10, seed=1)
>>> cols["x"].kind, len(cols["x"].edges), len(cols["x"].sample)
('numeric', 9, 10)
>>> cols["c"].categories, cols["c"].nulls
({'a': 2, 'b': 1}, 1)
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared.events import ReferenceColumn

DECILES = np.linspace(0.1, 0.9, 9)


def category_key(value: Any) -> str:
    """The category a raw value counts as: booleans as 'true'/'false', numbers as text.

    >>> category_key(True), category_key(3), category_key("x")
    ('true', '3', 'x')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def column_kind(values: Sequence[Any], declared: str | None = None) -> str:
    """'numeric' when declared so or when every non-null value is a number; else 'categorical'."""
    if declared in ("categorical", "boolean"):
        return "categorical"
    if declared == "numeric":
        return "numeric"
    present = [v for v in values if v is not None]
    return "numeric" if present and all(_is_number(v) for v in present) else "categorical"


def profile(columns: Mapping[str, Sequence[Any]], sample_size: int = 10_000, seed: int = 0,
            declared: Mapping[str, str] | None = None) -> dict[str, ReferenceColumn]:
    """Profile each column. Numeric: deciles (linear interpolation) and a uniform sample
    without replacement of at most `sample_size` values; categorical: counts per category."""
    declared = declared or {}
    rng = np.random.default_rng(seed)
    out: dict[str, ReferenceColumn] = {}
    for name in sorted(columns):
        values = list(columns[name])
        kind = column_kind(values, declared.get(name))
        if kind == "numeric":
            arr = np.array([np.nan if v is None else v for v in values], dtype=float)
            finite = arr[np.isfinite(arr)]
            nulls = int(arr.size - finite.size)
            if finite.size:
                edges = np.quantile(finite, DECILES).tolist()
                pick = finite if finite.size <= sample_size else rng.choice(finite, sample_size, replace=False)
                sample = np.sort(pick).tolist()
            else:
                edges, sample = [], []
            out[name] = ReferenceColumn(name=name, kind="numeric", n=int(finite.size), nulls=nulls,
                                        edges=edges, sample=sample)
        else:
            present = [category_key(v) for v in values if v is not None]
            out[name] = ReferenceColumn(name=name, kind="categorical", n=len(present),
                                        nulls=len(values) - len(present),
                                        categories=dict(Counter(present).most_common()))
    return out


def digest(raw: bytes) -> str:
    """Content hash of an uploaded reference: equal uploads give equal digests."""
    return hashlib.sha256(raw).hexdigest()[:32]
