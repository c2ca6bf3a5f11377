"""Event-time tumbling windows per model, aligned to the Unix epoch, with allowed lateness. No I/O.

A window ``[start, start + size)`` closes when the model's watermark (the largest event time
seen so far, in log order) reaches ``start + size + lateness``. An event is *late* when the
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from shared.stats.sample import hash_ids
from shared.stats.window import WindowLayout, WindowState
from services.drift.quality import QualityLayout, QualityState, statuses


@dataclass(frozen=True)
class WindowConfig:
    """A model's windowing: size and lateness (seconds), and what each window counts."""

    size: int
    lateness: int
    layout: WindowLayout
    quality: QualityLayout


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

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, idx: np.ndarray) -> Batch:
        def pick(col: Any) -> Any:
            return col[idx] if isinstance(col, np.ndarray) else [col[i] for i in idx]
        return Batch(self.keys[idx], self.ts[idx], {k: pick(v) for k, v in self.columns.items()},
                     None if self.prediction is None else pick(self.prediction), self.confidence[idx],
                     self.quality[:, idx], pick(self.features), pick(self.versions))


def _timestamp(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        t = float(v)
    elif isinstance(v, str):
        d = datetime.fromisoformat(v)
        if d.tzinfo is None:
            raise ValueError(f"timestamp={v!r}: must carry a UTC offset")
        t = d.timestamp()
    else:
        raise ValueError(f"timestamp={v!r}: must be RFC 3339 with offset or epoch seconds")
    if not math.isfinite(t):
        raise ValueError(f"timestamp={v!r}: must be finite")
    return t


def _floats(values: list) -> np.ndarray:
    """Numbers as floats; null, strings and other types as NaN."""
    if set(map(type, values)) <= {float, int, type(None)}:
        return np.array(values, dtype=float)
    return np.array([v if type(v) in (int, float) else np.nan for v in values], dtype=float)


def check_event(e: Any) -> str | None:
    """Why an event cannot be counted (None when it can): the structural checks the worker
    needs; ingest validates fully, this guards against third-party producers."""
    if not isinstance(e, dict):
        return f"event must be a JSON object, got {type(e).__name__}"
    if not isinstance(e.get("event_id"), str) or not e["event_id"]:
        return "event_id: must be a non-empty string"
    if not isinstance(e.get("features"), dict):
        return "features: must be an object of name -> value"
    if "prediction" not in e:
        return "prediction: required"
    try:
        _timestamp(e.get("timestamp"))
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def columnar(events: Sequence[Mapping[str, Any]], cfg: WindowConfig) -> tuple[Batch, list[tuple[int, str]]]:
    """Valid events -> a `Batch` (log order kept); invalid ones -> (index, error)."""
    good, errors = [], []
    for i, e in enumerate(events):
        err = check_event(e)
        if err is None:
            good.append(e)
        else:
            errors.append((i, err))
    lay = cfg.layout
    feats = [e["features"] for e in good]
    cols: dict[str, Any] = {name: _floats([f.get(name) for f in feats]) for name in lay.numeric}
    cols.update({name: [f.get(name) for f in feats] for name, _ in lay.categorical})
    preds = [e["prediction"] for e in good]
    pred = None if lay.prediction_kind is None else _floats(preds) if lay.prediction_kind == "numeric" else preds
    conf = []
    for e in good:
        c = e.get("confidence")
        if c is None and isinstance(e.get("probabilities"), dict) and e["probabilities"]:
            c = max(e["probabilities"].values())
        conf.append(c)
    batch = Batch(hash_ids([e["event_id"] for e in good]), np.array([_timestamp(e["timestamp"]) for e in good], dtype=float),
                  cols, pred, _floats(conf), statuses(cfg.quality, feats), feats,
                  [str(e.get("model_version", "unknown")) for e in good])
    return batch, errors


@dataclass
class OpenWindow:
    state: WindowState
    quality: QualityState
    versions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.to_dict(), "quality": self.quality.to_dict(), "versions": self.versions}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OpenWindow:
        return cls(WindowState.from_dict(d["state"]), QualityState.from_dict(d["quality"]), dict(d["versions"]))


@dataclass
class ClosedWindow:
    model_id: str
    start: int
    end: int
    state: WindowState
    quality: QualityState
    versions: dict[str, int]

    @property
    def model_version(self) -> str:
        """The version with the most events (ties: the largest name)."""
        return max(self.versions.items(), key=lambda kv: (kv[1], kv[0]))[0] if self.versions else "unknown"


@dataclass
class Added:
    closed: list[ClosedWindow]
    late: int


@dataclass
class ModelWindows:
    watermark: float = -math.inf
    open: dict[int, OpenWindow] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"watermark": None if self.watermark == -math.inf else self.watermark,
                "open": {str(s): w.to_dict() for s, w in self.open.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelWindows:
        wm = -math.inf if d["watermark"] is None else float(d["watermark"])
        return cls(wm, {int(s): OpenWindow.from_dict(w) for s, w in d["open"].items()})


class Windows:
    """Every model's open windows; `add` counts a batch and returns the windows it closed."""

    def __init__(self) -> None:
        self.models: dict[str, ModelWindows] = {}

    def add(self, model_id: str, cfg: WindowConfig, batch: Batch) -> Added:
        mw = self.models.setdefault(model_id, ModelWindows())
        if not len(batch):
            return Added([], 0)
        size, lateness = cfg.size, cfg.lateness
        before = np.maximum.accumulate(np.concatenate([[mw.watermark], batch.ts]))[:-1]
        starts = (np.floor(batch.ts / size) * size).astype(np.int64)
        late = starts + size + lateness <= before
        on_time = np.flatnonzero(~late)
        for start in np.unique(starts[on_time]).tolist():
            idx = on_time[starts[on_time] == start]
            w = mw.open.get(start)
            if w is None:
                w = mw.open[start] = OpenWindow(WindowState(cfg.layout), QualityState(cfg.quality))
            keep = _fresh(w.state.seen, batch.keys[idx])
            if keep.size == 0:
                continue
            part = batch.take(idx[keep])
            w.state.update(part.keys, part.columns, part.prediction, part.confidence)
            w.quality.update(part.quality, part.features)
            for v in part.versions:
                w.versions[v] = w.versions.get(v, 0) + 1
        mw.watermark = max(mw.watermark, float(batch.ts.max()))
        closed = [ClosedWindow(model_id, s, s + size, w.state, w.quality, w.versions)
                  for s, w in sorted(mw.open.items()) if s + size + lateness <= mw.watermark]
        for c in closed:
            del mw.open[c.start]
        return Added(closed, int(late.sum()))

    def to_dict(self) -> dict[str, Any]:
        return {m: mw.to_dict() for m, mw in self.models.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Windows:
        w = cls()
        w.models = {m: ModelWindows.from_dict(v) for m, v in d.items()}
        return w


def _fresh(seen: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each key not in `seen` (sorted), in batch order."""
    uniq, first = np.unique(keys, return_index=True)
    if seen.size:
        pos = np.minimum(np.searchsorted(seen, uniq), seen.size - 1)
        first = first[seen[pos] != uniq]
    return np.sort(first)
