"""The drift worker's label join: pending predictions, labels, performance windows. No I/O, no clock.

Labels (`vigil.labels`, keyed by model_id like the predictions, so a model's labels and
predictions meet in one partition state) are joined to predictions by event_id. Per model a
`LabelJoin` keeps:

- `pending`: each counted prediction's join row (`ROW`: key, window start, event time,
  prediction code or value, label, label time, score, segment code, variant), 57 bytes, in
  an append-only pool found through a two-level key-sorted index (`Pending`: adding a batch
  costs O(batch + MERGE_MIN) and amortised O(pending / MERGE_MIN) per row, 12 bytes an entry
  moved; a batch of labels costs two vectorised binary searches);
- `open`: the performance windows not yet evaluated, start -> [end, predictions]: the drift
  windows (same epochs, same starts), keyed by *prediction* time;
- `done`: the keys of evaluated windows (8 bytes each), kept `retention` seconds of label
  time to tell a late label (its window was evaluated) from one that matches nothing;
- `buffer`: labels that came before their prediction (at most `LABEL_BUFFER`).

When a label counts: a label for a prediction in window W = [s, e) counts when its time is
before ``e + label_wait`` and the labels' watermark before it (the running maximum of label
time in log order) is below ``e + label_wait + lateness``; the first such label of a
prediction wins; a later one is counted ``late`` (`vigil_labels_late_total`). W is
evaluated once the predictions' watermark passed ``e + lateness`` (all its predictions are
in) and the labels' watermark passed ``e + label_wait + lateness`` (every label that can
count is in). Both rules read only each topic's own log order, so what a window holds never
depends on how the two topics interleave, how they were cut into batches, or a restart from
any checkpoint: the join is exact.

A label that matches nothing waits in the buffer until the predictions' watermark passes its
time + one window + lateness (a prediction arriving after that precedes it in event time
and is late), then counts as unmatched (`vigil_labels_unmatched_total`). Labels are assumed
not to precede their prediction by more than a window.

Online detection reads the labels in labels-log order: `queue` holds each counted label in
that order until its prediction is known (matched, or expired from the buffer), and
`drain` hands the resolved head to the detector, so the detector's input order is the
labels log's whatever the interleaving.

Bounds: a window's predictions wait `retention` (7 days) of prediction time for their labels
(a model that gets none holds 7 days of predictions, no more), and at most `max_pending` rows
per model (default 2,000,000: about 150 MiB, 76 bytes a pending prediction with its index,
measured by `python -m bench.labels`; *Vigil's choice*); past either the oldest open windows
are dropped unevaluated (counted in `evicted`). Only a labels topic lagging the predictions
by more than the retention could then see a label count in one run and not in another.
Class labels get integer codes in first-seen order (`Classes`); metrics are invariant to
the coding, and the table is checkpointed with the state.

>>> cfg = JoinConfig(label_wait=60, lateness=0, size=60)
>>> lj = LabelJoin()
>>> rows = lj.rows(hash_ids(["a", "b"]), np.array([0, 0]), np.array([1.0, 2.0]), lj.classes.codes([1, 0]))
>>> lj.add_predictions(rows, {0: 60}, cfg).matched
0
>>> lj.add_labels(hash_ids(["a", "b", "a", "zz"]), np.array([70.0, 80.0, 90.0, 95.0]), [1, 1, 0, 1], cfg)
Joined(matched=2, late=0, duplicate=1, unmatched=0, buffered=1)
>>> [(w.start, w.rows["label"].tolist()) for w in lj.due(pred_wm=60.0, cfg=cfg)]
[]
>>> lj.add_labels(hash_ids(["c"]), np.array([121.0]), [1], cfg).buffered
1
>>> [(w.start, len(w.labelled)) for w in lj.due(pred_wm=60.0, cfg=cfg)]
[(0, 2)]
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from shared.events import event_time
from shared.stats.canary import VARIANTS
from shared.stats.sample import from_text, to_text
from shared.stats.sample import hash_ids  # noqa: F401  (the doctests key events with it)

ROW = np.dtype([("key", "<u8"), ("start", "<i8"), ("ts", "<f8"), ("pred", "<f8"), ("label", "<f8"),
                ("lts", "<f8"), ("score", "<f4"), ("seg", "<i4"), ("variant", "i1")])
VARIANT_CODE = {v: i for i, v in enumerate(VARIANTS)}  # ROW's variant: 0 primary
MERGE_MIN = 65_536  # the small run is merged into the large one past this many rows
LABEL_BUFFER = 100_000
MAX_PENDING = 2_000_000
MAX_DONE = 4_000_000
MAX_CODES = 10_000  # distinct classes / segment combinations per model; beyond: -1 (other)
EMPTY = np.empty(0, dtype=ROW)
SKIP = -1.0  # a queue item that feeds no detector (errors are >= 0; JSON has no NaN)
CHUNK = "c"  # a queue entry of several resolved errors: [CHUNK, errors, times] (an item: [key, error, time])


def canonical(v: Any) -> str:
    """A label's identity: JSON true/false, numbers by value (1 == 1.0), strings apart from numbers.

    >>> canonical(1) == canonical(1.0), canonical(True) == canonical(1), canonical("1") == canonical(1)
    (True, False, False)
    """
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        try:
            f = float(v)
        except OverflowError:  # an integer beyond a float's range: itself
            return str(v)
        return str(int(f)) if f.is_integer() and abs(f) < 2 ** 53 else repr(f)
    return "s:" + str(v)


_HASHABLE = (int, float, str, bool)


class Codes:
    """Values -> integer codes in first-seen order (at most MAX_CODES; beyond them -1)."""

    def __init__(self, values: Sequence[Any] = ()):
        self.values: list[Any] = []
        self.index: dict[str, int] = {}
        self._seen: dict[tuple[type, Any], int] = {}
        for v in values:
            self.code(v)

    def key(self, v: Any) -> str:
        return canonical(v)

    def code(self, v: Any) -> int:
        k = self.key(v)
        c = self.index.get(k)
        if c is None:
            if len(self.values) >= MAX_CODES:
                return -1
            c = self.index[k] = len(self.values)
            self.values.append(v)
        return c

    def codes(self, values: Sequence[Any]) -> np.ndarray:
        """Codes of a batch: a cache by (type, value) spares the canonical key (1.4 µs) per event."""
        seen = self._seen
        try:
            out = [seen.get((type(v), v)) for v in values]
        except TypeError:  # an unhashable value: the slow path codes it
            out = None
        if out is None or None in out:
            out = [self.code(v) for v in values]
            if len(seen) < MAX_CODES:
                seen.update(((type(v), v), c) for v, c in zip(values, out) if type(v) in _HASHABLE and c >= 0)
        return np.array(out, dtype=float)


class Segments(Codes):
    """Segment maps (name -> value) -> codes; None (no segment) -> -1."""

    def key(self, v: Any) -> str:
        try:
            return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:  # an integer beyond 64 bits
            return json.dumps(v, sort_keys=True, separators=(",", ":"))

    def code(self, v: Any) -> int:
        return -1 if not v else super().code(v)

    def column(self, codes: np.ndarray, attribute: str) -> list[str | None]:
        """Each row's value of one attribute (None: the row has none)."""
        table = [None if not isinstance(s, dict) or s.get(attribute) is None else str(s[attribute])
                 for s in self.values] + [None]
        return [table[c] for c in codes.tolist()]  # -1 -> the trailing None


@dataclass(frozen=True)
class JoinConfig:
    label_wait: int  # seconds after a window's end that its labels count
    lateness: int  # allowed lateness of both topics
    size: int  # the current window size (a buffered label waits one window)
    retention: int = 7 * 86_400  # label time an evaluated window's keys are kept (late vs unmatched)
    max_pending: int = MAX_PENDING


@dataclass
class Joined:
    matched: int = 0  # labels that counted
    late: int = 0  # labels after their window's label_wait (or its evaluation)
    duplicate: int = 0  # a second label of a prediction already labelled
    unmatched: int = 0  # labels whose prediction never came (expired from the buffer)
    buffered: int = 0  # labels waiting for their prediction

    def __iadd__(self, other: Joined) -> Joined:
        for k in ("matched", "late", "duplicate", "unmatched", "buffered"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self


@dataclass
class PerfWindow:
    """A performance window due for evaluation: its prediction rows (all variants)."""

    start: int
    end: int
    rows: np.ndarray  # ROW

    @property
    def labelled(self) -> np.ndarray:
        """The primary predictions with a label that counted."""
        r = self.rows
        return r[(r["variant"] == 0) & ~np.isnan(r["label"])]


class Pending:
    """Join rows in an append-only pool, found by key through a two-level sorted index.

    The index is (key, slot) in two key-sorted runs of plain arrays: a small one (at most
    `MERGE_MIN` entries) that each batch is merged into, and a large one it is merged into when
    full (an LSM of two levels). Rows never move when the index does, so a merge copies 12
    bytes an entry; removing windows (evaluated, evicted) drops their entries from the index
    and compacts the pool when half of it is dead.
    """

    def __init__(self, rows: np.ndarray | None = None):
        """Empty, or holding `rows` (distinct keys, any order) in the large run."""
        rows = EMPTY if rows is None else rows
        self.pool = np.empty(max(1024, len(rows)), dtype=ROW)
        self.pool[:len(rows)] = rows
        self.used = len(rows)  # pool rows written
        order = np.argsort(rows["key"], kind="stable")
        self.keys = [np.ascontiguousarray(rows["key"][order]), np.empty(0, dtype=np.uint64)]  # large run, small run
        self.slots = [order.astype(np.int64), np.empty(0, dtype=np.int64)]

    def __len__(self) -> int:
        return len(self.keys[0]) + len(self.keys[1])

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Each key's pool slot, -1 where it is not pending."""
        out = np.full(len(keys), -1, dtype=np.int64)
        for k, sl in zip(self.keys, self.slots):
            if len(k):
                pos = np.minimum(np.searchsorted(k, keys), len(k) - 1)
                hit = k[pos] == keys
                out[hit] = sl[pos[hit]]
        return out

    def add(self, rows: np.ndarray) -> None:
        """Add rows of new keys, sorted by key."""
        n = len(rows)
        if self.used + n > len(self.pool):
            grown = np.empty(max(2 * len(self.pool), self.used + n), dtype=ROW)
            grown[:self.used] = self.pool[:self.used]
            self.pool = grown
        self.pool[self.used:self.used + n] = rows
        slots = np.arange(self.used, self.used + n, dtype=np.int64)
        self.used += n
        self._merge(1, rows["key"], slots)
        if len(self.keys[1]) > MERGE_MIN:
            self._merge(0, self.keys[1], self.slots[1])
            self.keys[1], self.slots[1] = self.keys[1][:0], self.slots[1][:0]

    def _merge(self, level: int, keys: np.ndarray, slots: np.ndarray) -> None:
        at = np.searchsorted(self.keys[level], keys)
        self.keys[level] = np.insert(self.keys[level], at, keys)
        self.slots[level] = np.insert(self.slots[level], at, slots)

    def take(self, starts: Sequence[int]) -> np.ndarray:
        """Remove and return the rows of these window starts (any order)."""
        if not len(self):
            return EMPTY
        gone = np.isin(self.pool["start"][:self.used], np.asarray(starts, dtype=np.int64))
        out = self.pool[:self.used][gone & self._alive()]
        for level in (0, 1):
            keep = ~gone[self.slots[level]]
            self.keys[level], self.slots[level] = self.keys[level][keep], self.slots[level][keep]
        if len(self) < self.used // 2:
            self._compact()
        return out

    def _alive(self) -> np.ndarray:
        alive = np.zeros(self.used, dtype=bool)
        for sl in self.slots:
            alive[sl] = True
        return alive

    def _compact(self) -> None:
        self.__init__(self.rows())

    def rows(self) -> np.ndarray:
        """The pending rows, in pool order (a copy)."""
        return self.pool[:self.used][self._alive()]


@dataclass
class LabelJoin:
    """One model's join state. See the module docstring."""

    wm: float = -math.inf  # labels watermark
    pending: Pending = field(default_factory=Pending)
    open: dict[int, list[int]] = field(default_factory=dict)  # start -> [end, predictions]
    done: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))  # sorted
    done_end: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    buffer: dict[int, list[float]] = field(default_factory=dict)  # key -> [label time, label, wm before]
    queue: list[list] = field(default_factory=list)  # [key, error or None (waiting) or SKIP, time], or a CHUNK
    classes: Codes = field(default_factory=Codes)
    segments: Segments = field(default_factory=Segments)
    evicted: int = 0  # rows dropped past retention or max_pending (never evaluated)
    extra: dict[str, Any] = field(default_factory=dict)  # the performance evaluation's own state
    _waiting: dict[int, list] = field(default_factory=dict, repr=False)  # key -> its queue item
    _oldest: float = field(default=-math.inf, repr=False)  # at most the buffer's oldest label time

    def __len__(self) -> int:
        return len(self.pending)

    # --- predictions --------------------------------------------------------------------------

    def rows(self, keys: np.ndarray, starts: np.ndarray, ts: np.ndarray, pred: np.ndarray,
             score: np.ndarray | None = None, segments: Sequence[Any] | None = None,
             variants: np.ndarray | None = None) -> np.ndarray:
        """Join rows of counted predictions; `pred`: class codes (`self.classes`) or regression values."""
        out = np.empty(len(keys), dtype=ROW)
        out["key"], out["start"], out["ts"], out["pred"] = keys, starts, ts, pred
        out["label"], out["lts"] = np.nan, np.nan
        out["score"] = np.nan if score is None else score
        out["seg"] = -1 if segments is None or not any(segments) else [self.segments.code(s) for s in segments]
        out["variant"] = 0 if variants is None else variants
        return out

    def add_predictions(self, rows: np.ndarray, ends: Mapping[int, int], cfg: JoinConfig) -> Joined:
        """Add join rows (log order; a key already pending keeps its first row); `ends`: window
        start -> end for the starts in `rows`. Labels waiting in the buffer join them (counted
        matched or late)."""
        out = Joined()
        if not len(rows):
            return out
        _, first = np.unique(rows["key"], return_index=True)
        rows = rows[first]  # key-sorted, first occurrence of each key
        rows = rows[self.pending.find(rows["key"]) < 0]
        if not len(rows):
            return out
        for s, n in zip(*np.unique(rows["start"], return_counts=True)):
            w = self.open.setdefault(int(s), [int(ends[int(s)]), 0])
            w[1] += int(n)
        if self.buffer:
            out = self._join_buffered(rows, cfg)
        self.pending.add(rows)
        return out

    def _join_buffered(self, rows: np.ndarray, cfg: JoinConfig) -> Joined:
        out, buffer = Joined(), self.buffer
        for i, k in [(i, k) for i, k in enumerate(rows["key"].tolist()) if k in buffer]:
            lts, label, before = self.buffer.pop(k)
            item = self._waiting.pop(k, None)
            if self._counts(int(rows["start"][i]), lts, before, cfg):
                rows["label"][i], rows["lts"][i] = label, lts
                out.matched += 1
                if item is not None:
                    item[1] = float(self._errors(rows["pred"][i:i + 1], np.array([label]), rows["variant"][i:i + 1])[0])
                    item[2] = float(rows["ts"][i])
            else:
                out.late += 1
                if item is not None:
                    item[1] = SKIP
        return out

    def _counts(self, start: int, lts: float, before: float, cfg: JoinConfig) -> bool:
        end = self.open[start][0]
        return lts < end + cfg.label_wait and before < end + cfg.label_wait + cfg.lateness

    def _errors(self, pred: np.ndarray, label: np.ndarray, variant: np.ndarray) -> np.ndarray:
        """The online detectors' input: 0/1 wrong (classes) or |residual|; SKIP off primary (and
        for a prediction that is no number)."""
        err = np.abs(pred - label) if self.extra.get("numeric") else (pred != label).astype(float)
        return np.where((variant == 0) & np.isfinite(err), err, SKIP)

    # --- labels ---------------------------------------------------------------------------------

    def add_labels(self, keys: np.ndarray, lts: np.ndarray, labels: Sequence[Any], cfg: JoinConfig,
                   numeric: bool = False, pred_wm: float = -math.inf) -> Joined:
        """Join a batch of labels of this model (log order); `pred_wm`: the predictions' watermark
        (a label no prediction can still join counts as unmatched at once)."""
        out = Joined()
        if not len(keys):
            return out
        before = np.maximum.accumulate(np.concatenate([[self.wm], lts]))[:-1]
        self.wm = max(self.wm, float(lts.max()))
        values = np.asarray(labels, dtype=float) if numeric else self.classes.codes(labels)
        self.extra["numeric"] = numeric
        _, first = np.unique(keys, return_index=True)
        repeat = np.ones(len(keys), dtype=bool)
        repeat[first] = False  # a second copy in the batch: the first one decides
        slots = self.pending.find(keys)
        found = (slots >= 0) & ~repeat
        items: list[tuple[int, list]] = []
        matched = None
        at = np.flatnonzero(found)
        if at.size:
            pool, sl = self.pending.pool, slots[at]
            starts = np.array(sorted(self.open), dtype=np.int64)
            ends = np.array([self.open[x][0] for x in starts.tolist()], dtype=np.int64)[
                np.searchsorted(starts, pool["start"][sl])]
            labelled = ~np.isnan(pool["label"][sl])
            ok = ~labelled & (lts[at] < ends + cfg.label_wait) & (before[at] < ends + cfg.label_wait + cfg.lateness)
            out.duplicate += int(labelled.sum())
            out.matched += int(ok.sum())
            out.late += int((~labelled & ~ok).sum())
            i, j = at[ok], sl[ok]
            pool["label"][j], pool["lts"][j] = values[i], lts[i]
            err = self._errors(pool["pred"][j], values[i], pool["variant"][j])
            use = err != SKIP
            matched = (i[use], err[use], pool["ts"][j[use]])  # in log order
        out.duplicate += int(repeat.sum())
        rest = np.flatnonzero(~found & ~repeat)
        if rest.size and self.done.size:
            pos = np.minimum(np.searchsorted(self.done, keys[rest]), self.done.size - 1)
            late = self.done[pos] == keys[rest]
            out.late += int(late.sum())
            rest = rest[~late]
        hopeless = pred_wm - cfg.size - cfg.lateness
        for i in rest.tolist():
            k = int(keys[i])
            if k in self.buffer:
                out.duplicate += 1
                continue
            if lts[i] <= hopeless:
                out.unmatched += 1
                continue
            self.buffer[k] = [float(lts[i]), float(values[i]), float(before[i])]
            self._oldest = min(self._oldest, float(lts[i]))
            item = [k, None, float(lts[i])]
            self._waiting[k] = item
            items.append((i, item))
            out.buffered += 1
        if not items:  # nothing waits: the batch's errors go in as one chunk
            if matched is not None and len(matched[0]):
                self.queue.append([CHUNK, matched[1], matched[2]])
        else:
            if matched is not None:
                items += [(a, [k, e, t]) for a, k, e, t in zip(matched[0].tolist(), keys[matched[0]].tolist(),
                                                               matched[1].tolist(), matched[2].tolist())]
            items.sort(key=lambda t: t[0])
            self.queue.extend(item for _, item in items)
        if len(self.buffer) > LABEL_BUFFER:  # keep the smallest keys: an order-free choice
            for k in sorted(self.buffer)[LABEL_BUFFER:]:
                del self.buffer[k]
                if (item := self._waiting.pop(k, None)) is not None:
                    item[1] = SKIP
                out.unmatched += 1
        return out

    def expire(self, pred_wm: float, cfg: JoinConfig) -> int:
        """Buffered labels no prediction can still join (its time + a window + lateness passed by
        the predictions' watermark): dropped, and counted unmatched."""
        cut = pred_wm - cfg.size - cfg.lateness
        if not self.buffer or cut < self._oldest:
            return 0
        gone = [k for k, (t, _, _) in self.buffer.items() if t <= cut]
        self._oldest = min((t for t, _, _ in self.buffer.values() if t > cut), default=math.inf)
        for k in gone:
            del self.buffer[k]
            if (item := self._waiting.pop(k, None)) is not None:
                item[1] = SKIP
        return len(gone)

    def drain(self) -> tuple[np.ndarray, np.ndarray]:
        """(errors, prediction times) of the counted labels at the head of the queue whose
        prediction is known, in labels-log order; the queue keeps the rest."""
        n = 0
        while n < len(self.queue) and self.queue[n][1] is not None:
            n += 1
        head, self.queue = self.queue[:n], self.queue[n:]
        errs, times, run = [], [], []  # consecutive single items are gathered into one array
        for it in head:
            if it[0] == CHUNK:
                if run:
                    errs.append(np.array([r[1] for r in run], dtype=float))
                    times.append(np.array([r[2] for r in run], dtype=float))
                    run = []
                errs.append(np.asarray(it[1], dtype=float))
                times.append(np.asarray(it[2], dtype=float))
            elif it[1] != SKIP:
                run.append(it)
        if run:
            errs.append(np.array([r[1] for r in run], dtype=float))
            times.append(np.array([r[2] for r in run], dtype=float))
        if not errs:
            return np.empty(0), np.empty(0)
        return np.concatenate(errs), np.concatenate(times)

    # --- windows ---------------------------------------------------------------------------------

    def due(self, pred_wm: float, cfg: JoinConfig) -> list[PerfWindow]:
        """The performance windows due now, in order: their rows leave `pending`, their keys go
        to `done`. Also forgets done keys past retention and enforces `max_pending`."""
        out, starts = [], []
        for s in sorted(self.open):
            end = self.open[s][0]
            if end + cfg.lateness > pred_wm or end + cfg.label_wait + cfg.lateness > self.wm:
                break
            starts.append(s)
        if starts:
            rows = self.pending.take(starts)
            order = np.lexsort((rows["key"], rows["start"]))  # by window, then key: the same order after any history
            rows = rows[order]
            bounds = np.searchsorted(rows["start"], starts + [starts[-1] + 1])
            for i, s in enumerate(starts):
                end = self.open.pop(s)[0]
                out.append(PerfWindow(s, end, rows[bounds[i]:bounds[i + 1]]))
            self._remember(rows["key"], np.repeat([w.end for w in out], np.diff(bounds)))
            keep = self.done_end + cfg.retention > self.wm  # once per evaluation, not per batch
            if not keep.all():
                self.done, self.done_end = self.done[keep], self.done_end[keep]
        stale = [s for s, (end, _) in sorted(self.open.items()) if end + cfg.retention <= pred_wm]
        left = len(self) - sum(self.open[s][1] for s in stale)
        for s in sorted(self.open)[len(stale):]:  # the oldest first, while over max_pending
            if left <= cfg.max_pending:
                break
            stale.append(s)
            left -= self.open[s][1]
        if stale:  # past retention (labels that never came) or over max_pending: dropped unevaluated
            self.evicted += sum(self.open.pop(s)[1] for s in stale)
            self.pending.take(stale)
        if out or stale:  # what closed drift windows left for performance windows that are gone
            closed = self.extra.get("closed", {})  # (those due now read theirs in their evaluation)
            live = self.open.keys() | {w.start for w in out}
            for k in [k for k in closed if int(k) not in live]:
                del closed[k]
        return out

    def _remember(self, keys: np.ndarray, ends: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        keys, ends = keys[order], ends[order]
        pos = np.searchsorted(self.done, keys)
        self.done, self.done_end = np.insert(self.done, pos, keys), np.insert(self.done_end, pos, ends)
        if self.done.size > MAX_DONE:  # forget the oldest windows' keys first
            keep = np.argsort(-self.done_end, kind="stable")[:MAX_DONE]
            keep.sort()
            self.done, self.done_end = self.done[keep], self.done_end[keep]

    # --- checkpoint ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"wm": None if self.wm == -math.inf else self.wm, "pending": to_text(self.pending.rows()),
                "open": [[s, e, n] for s, (e, n) in sorted(self.open.items())],
                "done": to_text(self.done), "done_end": to_text(self.done_end),
                "buffer": [[str(k), t, y, None if b == -math.inf else b] for k, (t, y, b) in self.buffer.items()],
                "queue": [[CHUNK, np.asarray(v).tolist(), np.asarray(t).tolist()] if k == CHUNK else [str(k), v, t]
                          for k, v, t in self.queue],
                "classes": self.classes.values, "segments": self.segments.values, "evicted": self.evicted,
                "extra": self.extra}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabelJoin:
        out = cls(-math.inf if d["wm"] is None else float(d["wm"]), Pending(from_text(d["pending"], ROW)),
                  {int(s): [int(e), int(n)] for s, e, n in d["open"]},
                  from_text(d["done"], np.uint64), from_text(d["done_end"], np.int64),
                  {int(k): [float(t), float(y), -math.inf if b is None else float(b)] for k, t, y, b in d["buffer"]},
                  [[CHUNK, np.array(v, dtype=float), np.array(t, dtype=float)] if k == CHUNK else [int(k), v, t]
                   for k, v, t in d["queue"]], Codes(d["classes"]), Segments(d["segments"]),
                  int(d["evicted"]), dict(d["extra"]))
        out._waiting = {it[0]: it for it in out.queue if it[0] != CHUNK and it[1] is None}
        return out




def check_label(e: Any, model_id: str, numeric: bool) -> str | float:
    """A label event's time (epoch seconds) when it can be joined, else why not (a str naming the field).

    >>> check_label({"event_id": "e", "model_id": "m", "label": "x", "timestamp": 0}, "m", numeric=True)
    "label='x': must be a number for a regression model"
    >>> check_label({"event_id": "e", "model_id": "m", "label": "x", "timestamp": 60}, "m", numeric=False)
    60.0
    """
    if not isinstance(e, dict):
        return f"event must be a JSON object, got {type(e).__name__}"
    if not isinstance(e.get("event_id"), str) or not e["event_id"]:
        return "event_id: must be a non-empty string"
    if e.get("model_id") != model_id:
        return f"model_id={e.get('model_id')!r}: must equal the record key {model_id!r}"
    label = e.get("label")
    if label is None or isinstance(label, (dict, list)):
        return f"label={label!r}: must be a class label or a number"
    if numeric and (type(label) not in (int, float) or not math.isfinite(label)):
        return f"label={label!r}: must be a number for a regression model"
    try:
        return event_time(e.get("timestamp"))
    except (ValueError, TypeError) as exc:
        return str(exc)
