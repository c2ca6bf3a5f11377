"""The oversight worker's per-partition state: event-time buckets per model, per topic watermarks,
dedup, the vendor label join, and which evaluations are due. No I/O, no clock.

Buckets are epoch-aligned, `step` seconds (an hour by default; it must divide a day). Each of
the three topics has its own watermark per model: the running maximum of event time in log
order. An event is *late* — counted for ``vigil_late_events_total``, never added — when its
topic's watermark before it already reached its bucket's end + `lateness`. So what a bucket
holds depends only on each topic's log order, never on how the topics interleave or how the
logs were cut into batches, and an evaluation fires only once every topic it reads has closed
the buckets it reads:

- reviews at hour H (over ``[H - days, H)``): the reviews watermark passed H + lateness;
- coverage at hour H: the reviews *and* predictions watermarks did;
- a vendor's day D (prediction time, period ``(D - period_days, D]``): the predictions
  watermark passed D's end + lateness and the labels watermark passed the end of the hour
  holding ``D's end + label_wait`` + lateness (labels later than that do not count for D).

Dedup: reviews (by review_id) and vendor calls (by event_id) are counted once per bucket: the
bucket keeps the hashes it counted while it is open and drops them when it closes (no copy can
be added after that: it would be late). Coverage and the label join are sets of hashes, so a
duplicate is idempotent there.

Bounds (*Vigil's choice*):
- coverage keeps, per hour, a bottom-k sample (`COVERAGE_K`) of the low-confidence
  predictions' hashes and of the reviewed cases' hashes; the period's coverage is read on the
  bottom-k of their union (a coordinated sample: exact below k, ~2 % error above);
- the label join keeps, per vendor and day, the calls with the `JOIN_K` smallest hashes (an
  order-free bottom-k: exact below it, a uniform sample above) until the day's labels are
  in; labels that arrive before their call wait in a buffer (at most `LABEL_BUFFER`, the
  smallest hashes kept) until the predictions watermark closes their hour — a call counted
  later would precede its label in event time and be late, so nothing that could still match
  is dropped (labels are assumed not to precede their call by more than `lateness`). The
  buffer holds about an hour of label time while the labels topic runs ahead of predictions;
  only if it overflows (a replay feeding labels far ahead) can labels that would have matched
  be lost. Latency and uptime count every call, in a sketch and counters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.events import MAX_TIME, confidence, event_time, event_times, latency_error
from shared.stats.oversight import KeySample, ReviewCounts
from shared.stats.sample import from_text, hash_ids, to_text
from shared.stats.vendor import VendorDay

DAY = 86_400
COVERAGE_K = 512
JOIN_K = 20_000
LABEL_BUFFER = 50_000  # ~45 bytes each in a checkpoint
HISTORY = 30  # vendor period evaluations kept for the report's trend
TOPIC_KINDS = ("reviews", "predictions", "labels")


@dataclass(frozen=True)
class Config:
    step: int = 3600
    days: int = 7
    lateness: int = 300
    low_confidence: float = 0.75

    def __post_init__(self) -> None:
        if self.step <= 0 or DAY % self.step:
            raise ValueError(f"oversight_eval_seconds={self.step}: must divide a day (86400)")


# --- parsing -----------------------------------------------------------------------------------

def _id(e: dict, name: str) -> str | None:
    v = e.get(name)
    return None if isinstance(v, str) and v else f"{name}: must be a non-empty string"


_NUM = (int, float)


def checked(kind: str, e: Any) -> float | str:
    """An event's time (epoch seconds) when it can be counted, else why not (a str naming the field).

    >>> checked("labels", {"event_id": "e", "label": 1, "timestamp": "2026-01-01T00:00:00Z"})
    1767225600.0
    >>> checked("reviews", {"review_id": "r", "reviewer_id": "", "timestamp": 0})
    'reviewer_id: must be a non-empty string'
    """
    if type(e) is not dict:
        return f"event must be a JSON object, got {type(e).__name__}"
    if kind == "reviews":
        a, b = e.get("review_id"), e.get("reviewer_id")
        if type(a) is not str or not a or type(b) is not str or not b:
            return _id(e, "review_id") or _id(e, "reviewer_id") or "review_id: must be a non-empty string"
        if e.get("ai_prediction") is None:
            return "ai_prediction: required"
        if e.get("human_decision") is None:
            return "human_decision: required"
        c = e.get("ai_confidence")
        if c is not None and type(c) not in _NUM:
            return f"ai_confidence={c!r}: must be a number in [0, 1]"
    else:
        a = e.get("event_id")
        if type(a) is not str or not a:
            return "event_id: must be a non-empty string"
        if kind == "labels":
            if e.get("label") is None:
                return "label: required"
        else:
            if (err := latency_error(e.get("latency_ms"))) is not None:
                return err
            v = e.get("vendor")
            if v is not None and (type(v) is not str or not v):
                return f"vendor={v!r}: must be a non-empty string"
    t = e.get("timestamp")
    if type(t) is not float:
        try:
            t = event_time(t)
        except (ValueError, TypeError) as exc:
            return str(exc)
    if not 0.0 <= t < MAX_TIME:
        return f"timestamp={e.get('timestamp')!r}: must be between 1970 and 9999"
    return t


def check(kind: str, e: Any) -> str | None:
    """Why an event cannot be counted (None when it can): the fields the worker needs."""
    r = checked(kind, e)
    return r if isinstance(r, str) else None


def validate(kind: str, events: Sequence[Any], model_id: str | None = None
             ) -> tuple[list[dict], np.ndarray, list[tuple[int, str]]]:
    """(the countable events, their times, [(index, error)] of the others); with `model_id`
    (the record's key) an event of another model is an error too."""
    good, ts, bad = [], [], []
    for i, e in enumerate(events):
        r = checked(kind, e)
        if type(r) is not str and model_id is not None and e.get("model_id") != model_id:
            r = f"model_id={e.get('model_id')!r}: must equal the record key {model_id!r}"
        if type(r) is str:
            bad.append((i, r))
        else:
            good.append(e)
            ts.append(r)
    return good, np.array(ts, dtype=float), bad


# --- state -------------------------------------------------------------------------------------

def _fresh(seen: np.ndarray | None, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the first occurrence of each key not in `seen`, in batch order; the new seen)."""
    uniq, first = np.unique(keys, return_index=True)
    if seen is not None and seen.size:
        pos = np.searchsorted(seen, uniq)
        new = seen[np.minimum(pos, seen.size - 1)] != uniq
        uniq, first, pos = uniq[new], first[new], pos[new]
        return np.sort(first), np.insert(seen, pos, uniq)
    return np.sort(first), uniq


@dataclass
class VendorState:
    days: dict[int, VendorDay] = field(default_factory=dict)  # day start -> counters
    join: dict[int, dict[int, list]] = field(default_factory=dict)  # open day start -> key -> [prediction, label, t_label]
    done: int | None = None  # end of the last finalized day
    history: list[dict] = field(default_factory=list)  # [{end, status, ...}] the last HISTORY evaluations

    def to_dict(self) -> dict[str, Any]:
        return {"days": {str(d): v.to_dict() for d, v in self.days.items()},
                "join": {str(d): [[str(k), *v] for k, v in j.items()] for d, j in self.join.items()},
                "done": self.done, "history": self.history}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VendorState:
        return cls({int(k): VendorDay.from_dict(v) for k, v in d["days"].items()},
                   {int(k): {int(r[0]): list(r[1:]) for r in j} for k, j in d["join"].items()},
                   d["done"], list(d["history"]))


@dataclass
class ModelState:
    wm: dict[str, float] = field(default_factory=dict)  # topic kind -> watermark
    reviews: dict[int, ReviewCounts] = field(default_factory=dict)
    seen: dict[str, dict[int, np.ndarray]] = field(default_factory=lambda: {"reviews": {}, "predictions": {}})
    low: dict[int, KeySample] = field(default_factory=dict)  # prediction hour -> low-confidence hashes
    reviewed: dict[int, KeySample] = field(default_factory=dict)  # review hour -> reviewed cases' hashes
    vendors: dict[str, VendorState] = field(default_factory=dict)
    join_index: dict[int, tuple[str, int]] = field(default_factory=dict)  # call hash -> (vendor, day)
    labels: dict[int, list] = field(default_factory=dict)  # label buffer: hash -> [t_label, label]
    reviews_done: int | None = None  # last hour evaluated
    coverage_done: int | None = None
    first_day: int | None = None  # first vendor day seen
    first_review: float | None = None  # event time of the first review counted: days before it are partial

    def watermark(self, kind: str) -> float:
        return self.wm.get(kind, -math.inf)

    def to_dict(self) -> dict[str, Any]:
        return {"wm": self.wm, "reviews": {str(s): c.to_dict() for s, c in self.reviews.items()},
                "seen": {k: {str(s): to_text(a, np.uint64) for s, a in v.items()} for k, v in self.seen.items()},
                "low": {str(s): to_text(c.keys, np.uint64) for s, c in self.low.items()},
                "reviewed": {str(s): to_text(c.keys, np.uint64) for s, c in self.reviewed.items()},
                "vendors": {v: s.to_dict() for v, s in self.vendors.items()},
                "labels": [[str(k), *v] for k, v in self.labels.items()],
                "done": [self.reviews_done, self.coverage_done, self.first_day, self.first_review]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelState:
        def sample(s: str) -> KeySample:
            out = KeySample(COVERAGE_K)
            out.keys = from_text(s, np.uint64)
            return out
        st = cls(dict(d["wm"]), {int(s): ReviewCounts.from_dict(c) for s, c in d["reviews"].items()},
                 {k: {int(s): from_text(a, np.uint64) for s, a in v.items()} for k, v in d["seen"].items()},
                 {int(s): sample(c) for s, c in d["low"].items()},
                 {int(s): sample(c) for s, c in d["reviewed"].items()},
                 {v: VendorState.from_dict(s) for v, s in d["vendors"].items()},
                 {}, {int(r[0]): list(r[1:]) for r in d["labels"]}, *d["done"])
        for vendor, vs in st.vendors.items():
            for day, j in vs.join.items():
                for k in j:
                    st.join_index[k] = (vendor, day)
        return st


@dataclass
class Late:
    late: int = 0
    added: int = 0


def _late(ms: ModelState, kind: str, ts: np.ndarray, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """(bucket starts, on-time mask) of a batch; advances the topic's watermark."""
    before = np.maximum.accumulate(np.concatenate([[ms.watermark(kind)], ts]))[:-1]
    starts = (np.floor(ts / cfg.step) * cfg.step).astype(np.int64)
    on_time = starts + cfg.step + cfg.lateness > before
    ms.wm[kind] = max(ms.watermark(kind), float(ts.max()))
    return starts, on_time


def _dedup(ms: ModelState, kind: str, keys: np.ndarray, starts: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Of the on-time positions `idx`, those not counted before in their bucket (first copy only)."""
    seen = ms.seen[kind]
    keep = []
    for s in np.unique(starts[idx]).tolist():
        at = idx[starts[idx] == s]
        first, seen[s] = _fresh(seen.get(s), keys[at])
        keep.append(at[first])
    return np.sort(np.concatenate(keep)) if keep else idx[:0]


def _close_seen(ms: ModelState, kind: str, cfg: Config) -> None:
    wm = ms.watermark(kind)
    for s in [s for s in ms.seen[kind] if s + cfg.step + cfg.lateness <= wm]:
        del ms.seen[kind][s]


def add_reviews(ms: ModelState, events: Sequence[Mapping[str, Any]], cfg: Config,
                ts: np.ndarray | None = None) -> Late:
    """Count a batch of valid review events of one model (log order)."""
    if not events:
        return Late()
    keys = hash_ids([e["review_id"] for e in events])
    if ts is None:
        ts = np.array(event_times([e["timestamp"] for e in events]), dtype=float)
    starts, on_time = _late(ms, "reviews", ts, cfg)
    idx = _dedup(ms, "reviews", keys, starts, np.flatnonzero(on_time))
    if idx.size:
        first = float(ts[idx].min())
        ms.first_review = first if ms.first_review is None else min(ms.first_review, first)
    for s in np.unique(starts[idx]).tolist():
        at = idx[starts[idx] == s].tolist()
        evs = [events[i] for i in at]
        ai = [e["ai_prediction"] for e in evs]
        final = [e["human_decision"] for e in evs]
        init = [e.get("human_initial_decision") for e in evs]
        disagree = [None if i is None else i != a for i, a in zip(init, ai)]
        switched = [bool(d) and f == a for d, f, a in zip(disagree, final, ai)]
        ms.reviews.setdefault(s, ReviewCounts()).update(
            [e["reviewer_id"] for e in evs], ts[at], [f != a for f, a in zip(final, ai)],
            disagree if any(d is not None for d in disagree) else None, switched)
        cases = [e["case_id"] for e in evs if isinstance(e.get("case_id"), str)
                 and (e.get("ai_confidence") is None or e["ai_confidence"] < cfg.low_confidence)]
        if cases:
            ms.reviewed.setdefault(s, KeySample(COVERAGE_K)).update(hash_ids(cases))
    _close_seen(ms, "reviews", cfg)
    return Late(int((~on_time).sum()), len(idx))


def add_predictions(ms: ModelState, events: Sequence[Mapping[str, Any]], cfg: Config,
                    ts: np.ndarray | None = None) -> Late:
    """Count a batch of valid prediction events of one model (log order): low-confidence hashes
    for coverage; vendor calls for latency, uptime and the label join."""
    if not events:
        return Late()
    keys = hash_ids([e["event_id"] for e in events])
    if ts is None:
        ts = np.array(event_times([e["timestamp"] for e in events]), dtype=float)
    starts, on_time = _late(ms, "predictions", ts, cfg)
    ok = np.flatnonzero(on_time)
    conf = np.array([np.nan if (c := confidence(events[i])) is None else c for i in ok.tolist()], dtype=float)
    low = ok[conf < cfg.low_confidence]
    for s in np.unique(starts[low]).tolist():
        ms.low.setdefault(s, KeySample(COVERAGE_K)).update(keys[low[starts[low] == s]])
    vend = np.array([i for i in ok.tolist() if events[i].get("vendor") is not None], dtype=np.int64)
    if vend.size:
        vend = _dedup(ms, "predictions", keys, starts, vend)
        day = (np.floor(ts / DAY) * DAY).astype(np.int64)
        names = [events[i]["vendor"] for i in vend.tolist()]
        for v in sorted(set(names)):
            at = vend[np.array([n == v for n in names])]
            vs = ms.vendors.setdefault(v, VendorState())
            for d in np.unique(day[at]).tolist():
                sel = at[day[at] == d].tolist()
                ms.first_day = d if ms.first_day is None else min(ms.first_day, d)
                vs.days.setdefault(d, VendorDay()).add_calls([events[i].get("latency_ms") for i in sel],
                                                              [events[i].get("error") is True for i in sel])
                _join_calls(ms, v, vs, d, keys[sel], [events[i].get("prediction") for i in sel])
    _close_seen(ms, "predictions", cfg)
    _purge_labels(ms, cfg)
    return Late(int((~on_time).sum()), len(ok))


def _join_calls(ms: ModelState, vendor: str, vs: VendorState, day: int, keys: np.ndarray, preds: list) -> None:
    j = vs.join.setdefault(day, {})
    for k, p in zip(keys.tolist(), preds):
        if k in j:
            continue
        if len(j) >= JOIN_K:
            top = max(j)
            if k > top:
                continue
            del j[top]
            ms.join_index.pop(top, None)
        lab = ms.labels.pop(k, None)
        j[k] = [p, None, None] if lab is None else [p, lab[1], lab[0]]
        ms.join_index[k] = (vendor, day)


def _purge_labels(ms: ModelState, cfg: Config) -> None:
    """Drop buffered labels whose hour the predictions watermark has closed: a call counted from
    now on precedes them in event time only if it is late."""
    if not ms.labels:
        return
    cut = ms.watermark("predictions") - cfg.lateness - cfg.step  # hour start + step + lateness <= wm
    drop = [k for k, (t, _) in ms.labels.items() if math.floor(t / cfg.step) * cfg.step <= cut]
    for k in drop:
        del ms.labels[k]


def add_labels(ms: ModelState, events: Sequence[Mapping[str, Any]], cfg: Config,
               ts: np.ndarray | None = None) -> Late:
    """Join a batch of valid label events of one model (log order) with the vendor calls; the
    first label of a call wins."""
    if not events:
        return Late()
    keys = hash_ids([e["event_id"] for e in events])
    if ts is None:
        ts = np.array(event_times([e["timestamp"] for e in events]), dtype=float)
    _, on_time = _late(ms, "labels", ts, cfg)
    ok = np.flatnonzero(on_time).tolist()
    for i in ok:
        k = int(keys[i])
        where = ms.join_index.get(k)
        if where is not None:
            row = ms.vendors[where[0]].join[where[1]][k]
            if row[1] is None:
                row[1], row[2] = events[i]["label"], float(ts[i])
        elif k not in ms.labels:
            ms.labels[k] = [float(ts[i]), events[i]["label"]]
    if len(ms.labels) > LABEL_BUFFER:
        for k in sorted(ms.labels)[LABEL_BUFFER:]:
            del ms.labels[k]
    _purge_labels(ms, cfg)
    return Late(len(events) - len(ok), len(ok))


# --- due evaluations ---------------------------------------------------------------------------

@dataclass
class ReviewsDue:
    end: int  # hour H: the period is [H - days, H)


@dataclass
class CoverageDue:
    end: int


@dataclass
class VendorDue:
    vendor: str
    end: int  # day end; the period is (end - period_days, end]


def due_reviews(ms: ModelState, cfg: Config) -> list[int]:
    """Hours H whose review evaluation is due now, in order; marks them done (`prune` afterwards).
    Hours whose period holds no reviews are skipped."""
    if not ms.reviews:
        return []
    last = math.floor((ms.watermark("reviews") - cfg.lateness) / cfg.step) * cfg.step
    h = min(ms.reviews) + cfg.step if ms.reviews_done is None else ms.reviews_done + cfg.step
    return _hours(ms.reviews, h, last, cfg, lambda done: setattr(ms, "reviews_done", done))


def _hours(buckets: Mapping[int, Any], h: int, last: int, cfg: Config, mark: Callable[[int], None]) -> list[int]:
    """Hours h..last (step) whose period holds a bucket, and mark the last one decided. Every
    bucket before `last` is closed, so which hours qualify never depends on what arrives later;
    empty stretches are jumped over only up to closed buckets."""
    out, h0 = [], h
    starts = np.array(sorted(buckets), dtype=np.int64)
    while h <= last:
        lo = np.searchsorted(starts, h - cfg.days * DAY)
        hi = np.searchsorted(starts, h)
        if hi > lo:
            out.append(h)
            h += cfg.step
        elif hi < len(starts) and int(starts[hi]) + cfg.step <= last:
            h = max(h + cfg.step, int(starts[hi]) + cfg.step)
        else:  # every hour up to `last` has an empty period
            h = last + cfg.step
    if h > h0:
        mark(h - cfg.step)
    return out


def due_coverage(ms: ModelState, cfg: Config) -> list[int]:
    """Hours H whose coverage evaluation is due (reviews and predictions watermarks both past)."""
    if not ms.low:
        return []
    wm = min(ms.watermark("reviews"), ms.watermark("predictions"))
    if not math.isfinite(wm):
        return []
    last = math.floor((wm - cfg.lateness) / cfg.step) * cfg.step
    h = min(ms.low) + cfg.step if ms.coverage_done is None else ms.coverage_done + cfg.step
    return _hours(ms.low, h, last, cfg, lambda done: setattr(ms, "coverage_done", done))


def coverage_samples(ms: ModelState, end: int, cfg: Config) -> tuple[KeySample, KeySample]:
    """The period's bottom-k samples of low-confidence and of reviewed hashes (one merge each)."""
    out = []
    for buckets in (ms.low, ms.reviewed):
        sample = KeySample(COVERAGE_K)
        parts = [c.keys for s, c in buckets.items() if end - cfg.days * DAY <= s < end]
        if parts:
            sample.keys = np.unique(np.concatenate(parts))[:COVERAGE_K]
        out.append(sample)
    return out[0], out[1]


def due_vendor_days(ms: ModelState, cfg: Config, label_wait: int,
                    positive: Any, period_of: Callable[[str], int]) -> list[VendorDue]:
    """Finalize every vendor day whose calls and labels are all in (joined pairs -> counters) and
    return the period evaluations due, in order (`period_of(vendor)`: the SLA's period_days)."""
    if ms.first_day is None:
        return []
    pred_ok = ms.watermark("predictions") - cfg.lateness
    lab_ok = ms.watermark("labels") - cfg.lateness
    out: list[VendorDue] = []
    for vendor in sorted(ms.vendors):
        vs = ms.vendors[vendor]
        if vs.done is not None:
            end = vs.done + DAY
        elif vs.days or vs.join:
            end = min([*vs.days, *vs.join]) + DAY
        else:
            continue
        while end <= pred_ok and math.floor((end + label_wait) / cfg.step) * cfg.step + cfg.step <= lab_ok:
            day = end - DAY
            j = vs.join.pop(day, None)
            if j:
                cutoff = end + label_wait
                pairs = [(p, y) for p, y, t in j.values() if y is not None and t <= cutoff]
                vs.days.setdefault(day, VendorDay()).add_labelled([p for p, _ in pairs], [y for _, y in pairs], positive)
                for k in j:
                    ms.join_index.pop(k, None)
            vs.done = end
            if any(end - period_of(vendor) * DAY <= d < end for d in vs.days):
                out.append(VendorDue(vendor, end))
            later = [d for d in [*vs.days, *vs.join] if d >= end]
            if not later:
                break
            nxt = end + DAY
            if not any(nxt - period_of(vendor) * DAY <= d < nxt for d in vs.days) and min(later) + DAY <= pred_ok:
                nxt = max(nxt, min(later) + DAY)  # the periods in between are empty and their days closed
            end = nxt
    return out


def prune(ms: ModelState, cfg: Config, period_of: Callable[[str], int]) -> None:
    """Drop what no later evaluation reads; call after evaluating what was due."""
    if ms.reviews_done is not None:
        for s in [s for s in ms.reviews if s < ms.reviews_done + cfg.step - cfg.days * DAY]:
            del ms.reviews[s]
    if ms.coverage_done is not None:
        keep = ms.coverage_done + cfg.step - cfg.days * DAY
        for d in (ms.low, ms.reviewed):
            for s in [s for s in d if s < keep]:
                del d[s]
    for vendor, vs in ms.vendors.items():
        if vs.done is not None:
            keep = vs.done + DAY - period_of(vendor) * DAY
            for d in [d for d in vs.days if d < keep]:
                del vs.days[d]


def vendor_days(ms: ModelState, vendor: str, end: int, period_days: int) -> list[VendorDay]:
    vs = ms.vendors[vendor]
    return [v for d, v in sorted(vs.days.items()) if end - period_days * DAY <= d < end]


class State:
    """A partition's state: model id -> `ModelState`."""

    def __init__(self) -> None:
        self.models: dict[str, ModelState] = {}

    def model(self, model_id: str) -> ModelState:
        return self.models.setdefault(model_id, ModelState())

    def to_dict(self) -> dict[str, Any]:
        return {m: s.to_dict() for m, s in self.models.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> State:
        out = cls()
        out.models = {m: ModelState.from_dict(s) for m, s in (d or {}).items()}
        return out
