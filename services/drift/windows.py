"""Event-time tumbling windows per model, aligned to the Unix epoch, with allowed lateness. No I/O.

A window ``[start, start + size)`` closes when the model's watermark (the largest event time
seen so far, in log order) reaches ``start + size + lateness``. A new size (the model's spec
changed) applies from the end of the window holding the watermark: a bridging window runs from
there to the next multiple of the new size, where windows of the new size begin, so windows
never overlap and leave no gap (`resize`). An event is *late* when the
watermark *before it* already closed its window: it is counted (returned, for the
``vigil_late_events_total`` metric) and never silently dropped or added to a closed window.

Because "the watermark before an event" is a running maximum over the log order, the windows
that close and what they hold depend only on the order of the events, never on how they were
split into batches or records: a replay from a checkpoint gives the same windows. Each
window's state is a `WindowState` (drift; each event_id once) and a `QualityState`
(schema checks), both mergeable.

>>> from shared.stats.reference import profile
>>> from shared.stats.baseline import Baseline
>>> base = Baseline.from_profile(profile({"x": [float(i) for i in range(100)]}))
>>> cfg = WindowConfig(60, 0, WindowLayout.of(base, 100), QualityLayout())
>>> w = Windows()
>>> def batch(ts): return columnar([{"event_id": f"e{t}", "timestamp": t, "features": {"x": 1.0},
...                                 "prediction": 1} for t in ts], cfg)[0]
>>> w.add("m", cfg, batch([1, 30, 59])).closed
[]
>>> added = w.add("m", cfg, batch([61, 2]))  # 61 closes [0, 60): the 2 after it is late
>>> [(c.start, c.state.n) for c in added.closed], added.late
([(0, 3)], 1)
>>> [(c.start, c.state.n) for c in w.add("m", cfg, batch([125])).closed]
[(60, 1)]
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from shared.events import event_time, event_times, floats, latency_error
from shared.stats.baseline import Baseline
from shared.stats.canary import VariantCounts
from shared.stats.fairness import GroupCounts
from shared.stats.sample import hash_ids
from shared.stats.window import WindowLayout, WindowState
from services.drift.labels import VARIANT_CODE, VARIANTS, canonical
from services.drift.quality import QualityLayout, QualityState, statuses
from services.drift.records import EXTRAS, DictEvents, TypedEvents, features_read, record_times


@dataclass(frozen=True)
class WindowConfig:
    """A model's windowing: size and lateness (seconds), and what each window counts."""

    size: int
    lateness: int
    layout: WindowLayout
    quality: QualityLayout
    fairness: tuple[str, ...] = ()  # segment attributes whose positive-prediction rates are compared
    positive: Any = 1  # the positive class (fairness)


@dataclass
class Batch:
    """Columnar events of one model, in log order."""

    keys: np.ndarray  # uint64 hash of event_id
    ts: np.ndarray  # event time, epoch seconds (float)
    columns: dict[str, Any]  # feature -> values (numeric: float with NaN; categorical: list)
    prediction: Any
    confidence: np.ndarray
    quality: np.ndarray  # int8 (schema features, m)
    features: list[Mapping[str, Any]]
    versions: list[str]
    raw_prediction: list[Any] = field(default_factory=list)
    variant: np.ndarray | None = None  # int8 code of VARIANTS (0: primary)
    error: np.ndarray | None = None  # bool: the model call failed
    latency: np.ndarray | None = None  # ms, NaN when not given
    request_keys: np.ndarray | None = None  # uint64 hash of request_id, 0 when none
    segments: list[Any] | None = None  # segment map or None, per event
    codes: np.ndarray | None = None  # prediction codes (the model's class table) or values

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, idx: np.ndarray) -> Batch:
        def pick(col: Any) -> Any:
            return None if col is None else col[idx] if isinstance(col, np.ndarray) else [col[i] for i in idx]
        return Batch(self.keys[idx], self.ts[idx], {k: pick(v) for k, v in self.columns.items()},
                     pick(self.prediction), self.confidence[idx], self.quality[:, idx], pick(self.features),
                     pick(self.versions), pick(self.raw_prediction), pick(self.variant), pick(self.error),
                     pick(self.latency), pick(self.request_keys), pick(self.segments), pick(self.codes))


def checked_event(e: Any) -> float | str:
    """An event's time when it can be counted, else why not: the structural checks the worker
    needs; ingest validates fully, this guards against third-party producers."""
    if not isinstance(e, dict):
        return f"event must be a JSON object, got {type(e).__name__}"
    if not isinstance(e.get("event_id"), str) or not e["event_id"]:
        return "event_id: must be a non-empty string"
    if not isinstance(e.get("features"), dict):
        return "features: must be an object of name -> value"
    if "prediction" not in e:
        return "prediction: required"
    if not EXTRAS.isdisjoint(e):  # one set operation for the events that carry none of them
        if not isinstance(v := e.get("variant", "primary"), str) or v not in VARIANT_CODE:
            return f"variant={e.get('variant')!r}: must be one of {', '.join(VARIANT_CODE)}"
        if (err := latency_error(e.get("latency_ms"))) is not None:
            return err
        if e.get("segment") is not None and not isinstance(e["segment"], dict):
            return "segment: must be an object of name -> string"
    try:
        return event_time(e.get("timestamp"))
    except (ValueError, TypeError) as exc:
        return str(exc)


def check_event(e: Any) -> str | None:
    """Why an event cannot be counted (None when it can): `checked_event` without the time."""
    r = checked_event(e)
    return r if isinstance(r, str) else None


def countable(events: Sequence[Any], model_id: str | None = None) -> list[float] | None:
    """Every event's time when all of `events` pass `check_event` (and, given `model_id`, name
    it), checked a field at a time over the whole record instead of event by event; None when
    any does not (the caller then checks each, for its error). The rules are `checked_event`'s,
    written once more for whole columns (`records.record_times`): tests/unit/test_drift_columnar.py
    holds the two equal."""
    if not events or set(map(type, events)) != {dict}:
        return None
    try:
        ids = [e["event_id"] for e in events]
        features = [e["features"] for e in events]
        for e in events:
            e["prediction"]
    except KeyError:
        return None
    if set(map(type, ids)) != {str} or not all(ids) or set(map(type, features)) != {dict}:
        return None
    return record_times(DictEvents(events), model_id)


def columnar(events: Sequence[Mapping[str, Any]] | TypedEvents, cfg: WindowConfig, checked: bool = False,
             ts: Sequence[float] | None = None) -> tuple[Batch, list[tuple[int, str]]]:
    """Valid events -> a `Batch` (log order kept); invalid ones -> (index, error). `checked`:
    the caller has already passed every event through `check_event` (`ts`: and parsed their
    times); `TypedEvents` are checked by their decoder. A field at a time over all events (a
    list or array per field, never a dict per event), with the numeric features of the
    reference and the schema read in one pass."""
    errors: list[tuple[int, str]] = []
    if isinstance(events, TypedEvents):
        ev = events
    elif checked:
        ev = DictEvents(events)
    else:
        good = []
        for i, e in enumerate(events):
            if (err := check_event(e)) is None:
                good.append(e)
            else:
                errors.append((i, err))
        ev = DictEvents(good)
    lay, n = cfg.layout, len(ev)
    wanted = features_read(lay, cfg.quality)
    x = ev.matrix(wanted)
    read = {} if x is None else dict(zip(wanted, x))
    cols: dict[str, Any] = {name: read[name] if name in read else floats(ev.feature(name)) for name in lay.numeric}
    cols.update({name: ev.feature(name) for name, _ in lay.categorical})
    preds = ev.field("prediction")
    pred = None if lay.prediction_kind is None else floats(preds) if lay.prediction_kind == "numeric" else preds
    variant, error, latency = np.zeros(n, dtype=np.int8), np.zeros(n, dtype=bool), np.full(n, np.nan)
    rkeys, segments = np.zeros(n, dtype=np.uint64), [None] * n
    if ev.has_extras():  # canary, shadow, fairness (ingest writes variant and error)
        variants = ev.field("variant", "primary")
        if variants.count("primary") != n:
            variant[:] = [VARIANT_CODE[v] for v in variants]
        error[:] = list(map(operator.is_, ev.field("error"), repeat(True)))
        latency = floats(ev.field("latency_ms"))
        segments = ev.field("segment")
        rids = ev.field("request_id")
        at = [i for i, r in enumerate(rids) if type(r) is str and r] if rids.count(None) != n else []
        if at:
            rkeys[at] = hash_ids([rids[i] for i in at])
    versions = ev.field("model_version", "unknown")
    if set(map(type, versions)) != {str}:
        versions = list(map(str, versions))
    times = event_times(ev.field("timestamp")) if ts is None else ts
    feats = ev.features
    batch = Batch(hash_ids(ev.field("event_id")), np.array(times, dtype=float), cols, pred, floats(ev.confidences()),
                  statuses(cfg.quality, feats, read), feats, versions, preds, variant, error, latency, rkeys,
                  segments)
    return batch, errors


class RawSample:
    """The `k` events with the smallest keys, kept raw (features, prediction, confidence): what a
    model without a registered reference needs to turn its first full window into one.
    Mergeable and order-free like `BottomK`; used only until the model has a reference."""

    def __init__(self, k: int):
        self.k = int(k)
        self.rows: dict[int, list] = {}

    def update(self, keys: np.ndarray, batch: Batch) -> RawSample:
        cut = max(self.rows) if len(self.rows) >= self.k else None
        for i, key in enumerate(keys.tolist()):
            if (cut is None or key < cut) and key not in self.rows:
                self.rows[key] = [dict(batch.features[i]), batch.raw_prediction[i], _num(batch.confidence[i])]
        if len(self.rows) > self.k:
            self.rows = dict(sorted(self.rows.items())[: self.k])
        return self

    def columns(self, names: Sequence[str] | None = None) -> dict[str, list]:
        """Column -> values (None where absent), in key order: feature columns, prediction, confidence."""
        rows = [r for _, r in sorted(self.rows.items())]
        names = sorted({n for f, _, _ in rows for n in f}) if names is None else list(names)
        cols: dict[str, list] = {n: [f.get(n) for f, _, _ in rows] for n in names}
        cols["prediction"] = [p for _, p, _ in rows]
        if any(c is not None for _, _, c in rows):
            cols["confidence"] = [c for _, _, c in rows]
        return cols

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "rows": [[str(k), r] for k, r in sorted(self.rows.items())]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RawSample:
        out = cls(d["k"])
        out.rows = {int(k): r for k, r in d["rows"]}
        return out


def _num(x: float) -> float | None:
    return None if x != x else float(x)


@dataclass
class OpenWindow:
    state: WindowState
    quality: QualityState
    versions: dict[str, int] = field(default_factory=dict)
    raw: RawSample | None = None  # only while the model has no reference
    end: int | None = None  # None: a checkpoint from before sizes could change (start + the size)
    variants: VariantCounts = field(default_factory=VariantCounts)  # canary and shadow against primary
    groups: GroupCounts = field(default_factory=GroupCounts)  # positive-prediction rates per segment group

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.to_dict(), "quality": self.quality.to_dict(), "versions": self.versions,
                "raw": None if self.raw is None else self.raw.to_dict(), "end": self.end,
                "variants": self.variants.to_dict(), "groups": self.groups.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OpenWindow:
        return cls(WindowState.from_dict(d["state"]), QualityState.from_dict(d["quality"]), dict(d["versions"]),
                   None if d.get("raw") is None else RawSample.from_dict(d["raw"]), d.get("end"),
                   VariantCounts.from_dict(d["variants"]) if d.get("variants") else VariantCounts(),
                   GroupCounts.from_dict(d["groups"]) if d.get("groups") else GroupCounts())

    def count(self, part: Batch, cfg: WindowConfig) -> None:
        """Count fresh events of this window (each event_id once): drift, quality, variants, groups."""
        self.state.update(part.keys, part.columns, part.prediction, part.confidence)
        self.quality.update(part.quality, part.features)
        if self.raw is not None:
            self.raw.update(part.keys, part)
        for v, c in Counter(part.versions).items():
            self.versions[v] = self.versions.get(v, 0) + c
        if part.variant is None:
            return
        for code in np.unique(part.variant).tolist():
            at = np.flatnonzero(part.variant == code)
            paired = part.codes is not None  # shadow pairs need the predictions' codes
            self.variants.update(VARIANTS[code], part.keys[at], part.error[at], part.latency[at],
                                 part.request_keys[at] if paired else None, part.codes[at] if paired else None)
        if cfg.fairness and part.segments is not None:
            primary = np.flatnonzero(part.variant == 0)
            positive = canonical(cfg.positive)
            pred_pos = np.array([canonical(part.raw_prediction[i]) == positive for i in primary.tolist()], dtype=bool)
            for attribute in cfg.fairness:
                values = [None if not isinstance(s := part.segments[i], dict) or s.get(attribute) is None
                          else str(s[attribute]) for i in primary.tolist()]
                self.groups.update(attribute, values, pred_pos)


@dataclass
class ClosedWindow:
    model_id: str
    start: int
    end: int
    state: WindowState
    quality: QualityState
    versions: dict[str, int]
    base: Baseline | None = None  # the first-window reference, when the model has no registered one
    variants: VariantCounts = field(default_factory=VariantCounts)
    groups: GroupCounts = field(default_factory=GroupCounts)

    @property
    def model_version(self) -> str:
        """The version with the most events (ties: the largest name)."""
        return max(self.versions.items(), key=lambda kv: (kv[1], kv[0]))[0] if self.versions else "unknown"


@dataclass
class Added:
    closed: list[ClosedWindow]
    late: int
    starts: np.ndarray | None = None  # each event's window start and end
    ends: np.ndarray | None = None
    on_time: np.ndarray | None = None  # bool: counted in an open window (not late)


@dataclass
class ModelWindows:
    watermark: float = -math.inf
    open: dict[int, OpenWindow] = field(default_factory=dict)
    first_event: float | None = None  # event time of the model's first event, in log order
    reference: dict[str, Any] | None = None  # profile of the first full window (no registered reference)
    # (from, size): windows of `size` aligned to `from`, for event times from there to the next
    # epoch's; the first also covers everything before. Empty until the first batch.
    epochs: list[tuple[int, int]] = field(default_factory=list)
    _base: Baseline | None = field(default=None, repr=False)

    @property
    def base(self) -> Baseline | None:
        if self._base is None and self.reference is not None:
            self._base = Baseline.from_profile(self.reference["columns"], task=self.reference["task"])
        return self._base

    def to_dict(self) -> dict[str, Any]:
        return {"watermark": None if self.watermark == -math.inf else self.watermark,
                "open": {str(s): w.to_dict() for s, w in self.open.items()},
                "first_event": self.first_event, "reference": self.reference,
                "epochs": [list(e) for e in self.epochs]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelWindows:
        wm = -math.inf if d["watermark"] is None else float(d["watermark"])
        return cls(wm, {int(s): OpenWindow.from_dict(w) for s, w in d["open"].items()},
                   d.get("first_event"), d.get("reference"), [(int(f), int(z)) for f, z in d.get("epochs") or []])

    def resize(self, size: int) -> None:
        """Windows of `size` from now on. The window holding the watermark keeps its end B; a
        bridging window runs from B to S, the first multiple of `size` at or after B, and
        windows of `size` start at S. Epochs no event could still fall in are forgotten.

        >>> mw = ModelWindows(watermark=70.0, epochs=[(0, 60)])
        >>> mw.resize(45); mw.epochs
        [(0, 60), (120, 15), (135, 45)]
        >>> _assign(np.array([10.0, 119.0, 120.0, 134.0, 135.0, 181.0]), mw.epochs)
        (array([  0,  60, 120, 120, 135, 180]), array([ 60, 120, 135, 135, 180, 225]))
        """
        if self.epochs and self.epochs[-1][1] == size:
            return
        if not self.epochs or self.watermark == -math.inf:
            self.epochs = [(0, size)]
            return
        i = int(_epoch_of(np.array([self.watermark]), self.epochs)[0])
        f, z = self.epochs[i]
        b = f + (math.floor((self.watermark - f) / z) + 1) * z  # end of the watermark's window
        s = -(-b // size) * size
        self.epochs = self.epochs[:i + 1] + ([(b, s - b)] if s > b else []) + [(s, size)]

    def forget_epochs(self, lateness: int) -> None:
        """Drop leading epochs every event of which would now be late, and with no open window."""
        while len(self.epochs) > 1 and self.epochs[1][0] + lateness <= self.watermark \
                and not any(s < self.epochs[1][0] for s in self.open):
            self.epochs.pop(0)


def _epoch_of(ts: np.ndarray, epochs: list[tuple[int, int]]) -> np.ndarray:
    """Each event time's epoch (index into `epochs`): the last that begins at or before it; the first for earlier times."""
    return np.searchsorted(np.array([f for f, _ in epochs[1:]], dtype=float), ts, side="right")


def window_of(t: float, epochs: list[tuple[int, int]]) -> tuple[int, int]:
    """The (start, end) of the window holding event time `t`."""
    s, e = _assign(np.array([t], dtype=float), epochs)
    return int(s[0]), int(e[0])


def _assign(ts: np.ndarray, epochs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Each event time's window: (starts, ends)."""
    which = _epoch_of(ts, epochs)
    f = np.array([e[0] for e in epochs], dtype=np.int64)[which]
    z = np.array([e[1] for e in epochs], dtype=np.int64)[which]
    starts = f + (np.floor((ts - f) / z)).astype(np.int64) * z
    return starts, starts + z


class Windows:
    """Every model's open windows; `add` counts a batch and returns the windows it closed.

    A model whose `WindowConfig` has no reference (an empty layout) keeps a `RawSample` of each
    window until its first *full* window (one that starts at or after the model's first event)
    closes: that window's sample (exact up to `reference_sample` events) is profiled into the
    model's reference, the windows open at that moment are rebuilt from their samples (exact
    while they hold at most `reference_sample` events), and later windows are counted normally.
    Call `effective(model_id, cfg)` for the configuration to build batches with.
    """

    def __init__(self, reference_sample: int = 10_000) -> None:
        self.models: dict[str, ModelWindows] = {}
        self.reference_sample = reference_sample

    def effective(self, model_id: str, cfg: WindowConfig, task: str | None = None) -> WindowConfig:
        """`cfg`, with the first-window reference's layout when the model has no registered one."""
        mw = self.models.get(model_id)
        if _has_reference(cfg.layout) or mw is None or mw.base is None:
            return cfg
        return WindowConfig(cfg.size, cfg.lateness, WindowLayout.of(mw.base, cfg.layout.sample_size), cfg.quality,
                            cfg.fairness, cfg.positive)

    def add(self, model_id: str, cfg: WindowConfig, batch: Batch, task: str | None = None) -> Added:
        mw = self.models.setdefault(model_id, ModelWindows())
        if not len(batch):
            return Added([], 0)
        if mw.first_event is None:
            mw.first_event = float(batch.ts[0])
        cfg = self.effective(model_id, cfg)
        bootstrap = not _has_reference(cfg.layout)
        size, lateness = cfg.size, cfg.lateness
        mw.resize(size)
        before = np.maximum.accumulate(np.concatenate([[mw.watermark], batch.ts]))[:-1]
        starts, ends = _assign(batch.ts, mw.epochs)
        late = ends + lateness <= before
        on_time = np.flatnonzero(~late)
        for start in np.unique(starts[on_time]).tolist():
            idx = on_time[starts[on_time] == start]
            w = mw.open.get(start)
            if w is None:
                w = mw.open[start] = OpenWindow(WindowState(cfg.layout), QualityState(cfg.quality),
                                                raw=RawSample(self.reference_sample) if bootstrap else None,
                                                end=int(ends[idx[0]]))
            keep = _fresh(w.state.seen, batch.keys[idx])
            if keep.size == 0:
                continue
            w.count(batch if keep.size == len(batch) else batch.take(idx[keep]), cfg)
        mw.watermark = max(mw.watermark, float(batch.ts.max()))
        closed = []
        for s, w in sorted(mw.open.items()):  # windows do not overlap: by start is by end
            e = w.end if w.end is not None else s + size
            if e + lateness > mw.watermark:
                break
            del mw.open[s]
            if w.raw is not None and mw.reference is None and s >= mw.first_event:
                self._adopt(mw, w.raw, cfg, task)
                w.raw = None
                closed.append(ClosedWindow(model_id, s, e, w.state, w.quality, w.versions,  # quality only
                                           variants=w.variants, groups=w.groups))
                continue
            closed.append(ClosedWindow(model_id, s, e, w.state, w.quality, w.versions,
                                       mw.base if w.raw is None and mw.reference is not None else None,
                                       w.variants, w.groups))
        mw.forget_epochs(lateness)
        return Added(closed, int(late.sum()), starts, ends, ~late)

    def _adopt(self, mw: ModelWindows, raw: RawSample, cfg: WindowConfig, task: str | None) -> None:
        """Make a closed full window's sample the model's reference; rebuild the open windows."""
        from shared.stats.reference import profile
        declared = dict(zip(cfg.quality.names, cfg.quality.types))
        cols = raw.columns(cfg.quality.names or None)
        prof = profile(cols, self.reference_sample, seed=0, declared=declared)
        mw.reference = {"task": task, "columns": {n: c.model_dump(mode="json") for n, c in prof.items()}}
        mw._base = None
        layout = WindowLayout.of(mw.base, cfg.layout.sample_size)
        for w in mw.open.values():
            if w.raw is None:
                continue
            rows = sorted(w.raw.rows.items())
            events = [{"event_id": "x", "timestamp": 0, "features": f, "prediction": p, "confidence": c}
                      for _, (f, p, c) in rows]
            b = columnar(events, WindowConfig(cfg.size, cfg.lateness, layout, QualityLayout()))[0] if events else None
            w.state = WindowState(layout)
            if b is not None:
                w.state.update(np.array([k for k, _ in rows], dtype=np.uint64), b.columns, b.prediction, b.confidence)
            w.raw = None

    def to_dict(self) -> dict[str, Any]:
        return {m: mw.to_dict() for m, mw in self.models.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Windows:
        w = cls()
        w.models = {m: ModelWindows.from_dict(v) for m, v in d.items()}
        return w


def _has_reference(layout: WindowLayout) -> bool:
    return bool(layout.numeric or layout.categorical or layout.prediction_kind)


def _fresh(seen: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each key not in `seen` (sorted), in batch order."""
    uniq, first = np.unique(keys, return_index=True)
    if seen.size:
        pos = np.minimum(np.searchsorted(seen, uniq), seen.size - 1)
        first = first[seen[pos] != uniq]
    return np.sort(first)
