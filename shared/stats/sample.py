"""A bounded, mergeable, order-independent sample: the k events with the smallest hash keys.

Each event's key is a 64-bit hash of its ``event_id`` (`hash_ids`), so which events are kept
depends only on the set of events: a window split over partitions or workers, or rebuilt
after a ``kill -9`` and a replay, keeps the same sample, and an event delivered twice has the
same key and enters once. While a window has at most k events the sample is the window.
Uniform hashes make the kept events a uniform random sample without replacement.

>>> keys = hash_ids([f"e{i}" for i in range(6)])
>>> a = BottomK(3).update(keys[:4], np.arange(4.0))
>>> b = BottomK(3).update(keys[4:], np.arange(4.0, 6.0)).update(keys[:1], [0.0])  # e0 again
>>> whole = BottomK(3).update(keys, np.arange(6.0))
>>> (a + b) == whole, len(whole)
(True, 3)
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

_SEED = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64 with full avalanche."""
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    return h ^ (h >> np.uint64(31))


def hash_ids(ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """64-bit keys of event ids, vectorised: deterministic across processes, platforms and runs.

    The UTF-8 bytes, zero-padded to 8-byte little-endian words, are folded as
    ``h = mix(h ^ word)`` over the non-zero words (``mix`` = splitmix64's finaliser, so ids
    of one length that differ in one word never collide). Measured on 100,000 UUIDs: 12 ms
    (8 of them building the byte array), against 60 ms for ``hashlib.blake2b(digest_size=8)``
    per id. Python's ``hash()`` is salted per process and unusable here. Not a
    cryptographic hash: ids are not adversarial, and a collision (about 3e-10 for a window
    of 100,000 events) only drops one event from a sample. Limits: NumPy drops trailing NUL
    characters, and a run of 8 NUL bytes inside an id is skipped.

    Returns
    -------
    ndarray of uint64, shape (len(ids),)

    >>> keys = hash_ids(["a", "b", "a", "é"])
    >>> bool(keys[0] == keys[2] == hash_ids(["a"])[0]), len(set(keys.tolist()))
    (True, 3)
    """
    if len(ids) == 0:
        return np.empty(0, dtype=np.uint64)
    try:
        raw = np.asarray(ids, dtype="S")
    except UnicodeEncodeError:
        raw = np.asarray([s.encode() for s in ids], dtype="S")
    width = -(-raw.dtype.itemsize // 8) * 8
    if width != raw.dtype.itemsize:
        raw = raw.astype(f"S{width}")
    words = raw.view("<u8").reshape(len(raw), width // 8)
    h = _mix(words[:, 0] ^ _SEED)
    for j in range(1, words.shape[1]):
        w = words[:, j]
        h = np.where(w != 0, _mix(h ^ w), h)
    return h


class BottomK:
    """The `k` rows with the smallest keys, over everything seen; equal keys count once.

    Parameters
    ----------
    k : int
        Capacity.
    width : int
        Values per row (one per feature). One key array is shared by all features of a
        model, and the values are a (k, width) matrix: one selection serves every feature.

    Updates buffer candidates (only keys below the current k-th smallest can enter) and
    compact when the buffer holds k rows, so a full sample costs O(entrants), not O(k), per
    batch. `keys` and `values` compact first; they are sorted by key.
    """

    def __init__(self, k: int, width: int = 1):
        if k < 1 or width < 0:
            raise ValueError(f"BottomK(k={k}, width={width}): k must be >= 1 and width >= 0")
        self.k, self.width = int(k), int(width)
        self._reset()

    def _reset(self) -> None:
        self._keys = np.empty(0, dtype=np.uint64)
        self._values = np.empty((0, self.width))
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._n_pending = 0
        self._cut: np.uint64 | None = None  # the k-th smallest key once full

    def update(self, keys: np.ndarray, values: Sequence[float] | np.ndarray) -> BottomK:
        """Offer rows: `keys` (m,) uint64, `values` (m, width), or (m,) when width is 1."""
        keys = np.asarray(keys, dtype=np.uint64)
        values = np.asarray(values, dtype=float).reshape(len(keys), self.width)
        if self._cut is not None:
            enter = keys < self._cut
            keys, values = keys[enter], values[enter]
        if len(keys):
            self._pending.append((keys, values))
            self._n_pending += len(keys)
            if self._n_pending >= self.k:
                self._compact()
        return self

    def _compact(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *(k for k, _ in self._pending)])
        values = np.concatenate([self._values, *(v for _, v in self._pending)])
        uniq, first = np.unique(keys, return_index=True)
        self._keys, self._values = uniq[: self.k], values[first[: self.k]]
        self._pending, self._n_pending = [], 0
        self._cut = self._keys[-1] if len(self._keys) == self.k else None

    @property
    def keys(self) -> np.ndarray:
        self._compact()
        return self._keys

    @property
    def values(self) -> np.ndarray:
        self._compact()
        return self._values

    def __len__(self) -> int:
        return len(self.keys)

    def merge(self, other: BottomK) -> BottomK:
        """The sample of both streams (equal keys once); returns self."""
        if (self.k, self.width) != (other.k, other.width):
            raise ValueError(f"merge: BottomK(k={self.k}, width={self.width}) and "
                             f"BottomK(k={other.k}, width={other.width}) differ")
        return self.update(other.keys, other.values)

    __iadd__ = merge

    def __add__(self, other: BottomK) -> BottomK:
        return self.copy().merge(other)

    def copy(self) -> BottomK:
        out = BottomK(self.k, self.width)
        out._keys, out._values, out._cut = self.keys.copy(), self.values.copy(), self._cut
        return out

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, BottomK) and (self.k, self.width) == (other.k, other.width)
                and np.array_equal(self.keys, other.keys)
                and np.array_equal(self.values, other.values, equal_nan=True))

    def __repr__(self) -> str:
        return f"BottomK(k={self.k}, width={self.width}, size={len(self)})"


def to_text(a: np.ndarray, dtype: Any = None) -> str:
    """An array's bytes as base64 text, for a JSON checkpoint (`dtype`: cast first; None: as it is).

    >>> from_text(to_text(np.arange(3), "<u8"), "<u8")
    array([0, 1, 2], dtype=uint64)
    """
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode()


def from_text(s: str, dtype: Any) -> np.ndarray:
    """The array `to_text` wrote (a writable copy)."""
    return np.frombuffer(base64.b64decode(s), dtype=dtype).copy()
