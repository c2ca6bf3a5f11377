"""Fairness: mergeable per-group counters for segment attributes, and the gaps between groups.

`GroupCounts` counts, per attribute (e.g. ``"region"``) and group value (``"north"``), the
predictions ``n``, the predicted positives ``pred_pos`` and, for labelled events, ``labelled``,
``label_pos`` and the confusion counts ``tp`` (predicted and labelled positive) and ``fp``
(predicted positive, labelled negative). Counts over disjoint events add up (`merge`), so a
window is the sum of its partitions. `gaps` turns counts into DESIGN.md's fairness metrics:

- demographic parity difference = max - min positive-prediction rate ``pred_pos / n``;
- equalized-odds difference = max(TPR gap, FPR gap), TPR = ``tp / label_pos`` and
  FPR = ``fp / (labelled - label_pos)``;

both across the groups with at least ``min_group_size`` events; smaller groups are listed
under ``excluded``. Numbers only: `shared.policy` grades them.

>>> c = GroupCounts().update("region", ["n", "n", "s", "s", None], np.array([1, 1, 1, 0, 1], bool))
>>> g = gaps(c, min_group_size=2)["region"]
>>> g["demographic_parity_difference"], g["groups"]["s"]["positive_rate"], g["equalized_odds_difference"]
(0.5, 0.5, None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared.policy import FAIRNESS_MIN_GROUP

OTHER = "__other__"
MAX_GROUPS = 1000  # named groups per attribute; further values are counted under OTHER
FIELDS = ("n", "pred_pos", "labelled", "label_pos", "tp", "fp")


class GroupCounts:
    """Per attribute, per group value: the counts of `FIELDS`. Mergeable, JSON-able.

    Parameters
    ----------
    max_groups : int
        Named groups kept per attribute. Once an attribute has `max_groups` of them, events of
        any further value are counted under ``"__other__"`` (a real value ``"__other__"`` shares
        that group), so a high-cardinality segment (a user id by mistake) cannot grow the state
        without bound. Below the cap the state depends only on the events, not their order or
        split; above it, which values got a group of their own depends on arrival order (within
        a batch and in `merge`, in sorted value order).

    Use it for categorical segments with a handful of groups; it is not a heavy-hitter sketch.

    >>> a = GroupCounts().update("g", ["x", "y"], np.array([True, False]), np.array([True, True]))
    >>> b = GroupCounts().update("g", ["x"], np.array([False]), np.array([False]))
    >>> (a + b).table("g")["x"]
    {'n': 2, 'pred_pos': 1, 'labelled': 2, 'label_pos': 1, 'tp': 1, 'fp': 0}
    >>> GroupCounts(max_groups=1).update("g", ["x", "y", "z"], np.zeros(3, bool)).table("g")["__other__"]["n"]
    2
    """

    def __init__(self, max_groups: int = MAX_GROUPS):
        if max_groups < 1:
            raise ValueError(f"GroupCounts.max_groups={max_groups}: must be >= 1")
        self.max_groups = int(max_groups)
        self._reset()

    def _reset(self) -> None:
        self._counts: dict[str, dict[str, np.ndarray]] = {}  # attribute -> value -> int64 (len(FIELDS),)

    def _add(self, attribute: str, value: str, row: np.ndarray) -> None:
        groups = self._counts.setdefault(attribute, {})
        if value not in groups:
            named = len(groups) - (OTHER in groups)
            if named >= self.max_groups:
                value = OTHER
            groups.setdefault(value, np.zeros(len(FIELDS), dtype=np.int64))
        groups[value] += row

    def update(self, attribute: str, values: Sequence[str | None], pred_pos: np.ndarray,
               label_pos: np.ndarray | None = None) -> GroupCounts:
        """Count a batch of m events of one attribute; returns self.

        Parameters
        ----------
        attribute : str
            The segment attribute, e.g. ``"region"``.
        values : sequence of str or None, length m
            Each event's group; None: the event has no such segment and is skipped.
        pred_pos : ndarray of bool, shape (m,)
            Whether each prediction is positive.
        label_pos : ndarray of bool, shape (m,), optional
            Whether each label is positive; when given, every event counts as labelled.
        """
        pred = np.asarray(pred_pos, dtype=bool).reshape(-1)
        if len(pred) != len(values):
            raise ValueError(f"GroupCounts.update: pred_pos has {len(pred)} rows, values {len(values)}: must match")
        label = None if label_pos is None else np.asarray(label_pos, dtype=bool).reshape(-1)
        if label is not None and len(label) != len(values):
            raise ValueError(f"GroupCounts.update: label_pos has {len(label)} rows, values {len(values)}: must match")
        present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
        if not present.any():
            return self
        kept = np.asarray([v for v in values if v is not None], dtype=str)
        uniq, inv = np.unique(kept, return_inverse=True)
        pred = pred[present]
        cols = np.zeros((len(uniq), len(FIELDS)), dtype=np.int64)
        cols[:, 0] = np.bincount(inv, minlength=len(uniq))
        cols[:, 1] = np.bincount(inv, weights=pred, minlength=len(uniq))
        if label is not None:
            label = label[present]
            cols[:, 2] = cols[:, 0]
            cols[:, 3] = np.bincount(inv, weights=label, minlength=len(uniq))
            cols[:, 4] = np.bincount(inv, weights=pred & label, minlength=len(uniq))
            cols[:, 5] = np.bincount(inv, weights=pred & ~label, minlength=len(uniq))
        for value, row in zip(uniq.tolist(), cols):
            self._add(attribute, value, row)
        return self

    @property
    def attributes(self) -> list[str]:
        """The attributes counted, sorted."""
        return sorted(self._counts)

    def table(self, attribute: str) -> dict[str, dict[str, int]]:
        """``{value: {field: count}}`` of one attribute, values sorted (empty if never counted)."""
        groups = self._counts.get(attribute, {})
        return {v: dict(zip(FIELDS, (int(x) for x in groups[v]))) for v in sorted(groups)}

    def merge(self, other: GroupCounts) -> GroupCounts:
        """The counts of both (over disjoint events); returns self."""
        if other.max_groups != self.max_groups:
            raise ValueError(f"merge: GroupCounts(max_groups={self.max_groups}) and "
                             f"GroupCounts(max_groups={other.max_groups}) differ")
        for attribute in other.attributes:
            groups = other._counts[attribute]
            for value in sorted(groups):
                self._add(attribute, value, groups[value])
        return self

    __iadd__ = merge

    def __add__(self, other: GroupCounts) -> GroupCounts:
        return self.copy().merge(other)

    def copy(self) -> GroupCounts:
        out = GroupCounts(self.max_groups)
        out._counts = {a: {v: c.copy() for v, c in g.items()} for a, g in self._counts.items()}
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"max_groups", "fields", "counts": {attribute: {value: [counts in FIELDS order]}}}``."""
        return {"max_groups": self.max_groups, "fields": list(FIELDS),
                "counts": {a: {v: [int(x) for x in g[v]] for v in sorted(g)} for a, g in sorted(self._counts.items())}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroupCounts:
        if list(d["fields"]) != list(FIELDS):
            raise ValueError(f"GroupCounts.fields={d['fields']}: must be {list(FIELDS)}")
        out = cls(int(d["max_groups"]))
        out._counts = {a: {v: np.asarray(c, dtype=np.int64) for v, c in g.items()} for a, g in d["counts"].items()}
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupCounts) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"GroupCounts(max_groups={self.max_groups}, attributes={self.attributes})"


def _spread(rates: list[float]) -> float | None:
    return max(rates) - min(rates) if len(rates) >= 2 else None


def gaps(counts: GroupCounts, min_group_size: int = FAIRNESS_MIN_GROUP) -> dict[str, dict[str, Any]]:
    """Per attribute (sorted): the demographic-parity and equalized-odds differences.

    Returns
    -------
    dict
        ``{attribute: {"demographic_parity_difference", "equalized_odds_difference", "groups",
        "excluded"}}``.

        - ``demographic_parity_difference``: max - min of ``pred_pos / n`` over the groups with
          ``n >= min_group_size``; None with fewer than 2 of them.
        - ``equalized_odds_difference``: max(TPR gap, FPR gap) over the groups with
          ``labelled >= min_group_size``; a group enters the TPR gap only with a labelled
          positive and the FPR gap only with a labelled negative, a gap needs 2 groups, and
          the difference is None when neither gap is defined.
        - ``groups``: ``{value: {"n", "positive_rate", "tpr", "fpr"}}`` of the groups judged
          (``n >= min_group_size``), values sorted; ``tpr``/``fpr`` are None where undefined or
          where the group has fewer than ``min_group_size`` labelled events.
        - ``excluded``: ``{value: n}`` of the groups with ``n < min_group_size``.

    >>> pred, label = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1], bool), np.array([1, 1, 1, 0, 1, 1, 0, 0, 1], bool)
    >>> c = GroupCounts().update("g", ["a"] * 4 + ["b"] * 4 + ["c"], pred, label)
    >>> g = gaps(c, min_group_size=4)["g"]
    >>> g["demographic_parity_difference"], g["groups"]["a"]["tpr"], g["groups"]["b"]["tpr"], g["excluded"]
    (0.25, 0.6666666666666666, 0.5, {'c': 1})
    >>> g["equalized_odds_difference"]  # TPR gap 1/6, FPR gap 0
    0.16666666666666663
    """
    if min_group_size < 0:
        raise ValueError(f"gaps.min_group_size={min_group_size}: must be >= 0")
    out: dict[str, dict[str, Any]] = {}
    for attribute in counts.attributes:
        groups: dict[str, dict[str, Any]] = {}
        excluded: dict[str, int] = {}
        pos_rates, tprs, fprs = [], [], []
        for value, c in counts.table(attribute).items():
            if c["n"] < min_group_size or c["n"] == 0:
                excluded[value] = c["n"]
                continue
            rate = c["pred_pos"] / c["n"]
            pos_rates.append(rate)
            tpr = fpr = None
            if c["labelled"] >= min_group_size:
                negatives = c["labelled"] - c["label_pos"]
                tpr = c["tp"] / c["label_pos"] if c["label_pos"] > 0 else None
                fpr = c["fp"] / negatives if negatives > 0 else None
                tprs += [] if tpr is None else [tpr]
                fprs += [] if fpr is None else [fpr]
            groups[value] = {"n": c["n"], "positive_rate": rate, "tpr": tpr, "fpr": fpr}
        defined = [g for g in (_spread(tprs), _spread(fprs)) if g is not None]
        out[attribute] = {"demographic_parity_difference": _spread(pos_rates),
                          "equalized_odds_difference": max(defined) if defined else None,
                          "groups": groups, "excluded": excluded}
    return out
