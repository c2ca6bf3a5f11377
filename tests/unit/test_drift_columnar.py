"""The drift worker's field-at-a-time decoding equals the event-by-event reading it replaced.

`countable` (a whole record checked a field at a time) must accept exactly the records whose
every event passes `check_event`, and `columnar` (a list per field, the numeric features read in
one pass) must build the same `Batch` as reading each event's dict on its own, for any mix of
valid and odd values: missing features, nulls, booleans, strings, integers beyond a float's
range, unhashable variants, string and epoch timestamps.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import FeatureSpec, event_time
from shared.kafka import decode_record
from shared.stats.baseline import Baseline
from shared.stats.reference import category_key, profile
from shared.stats.sample import hash_ids
from shared.stats.window import WindowLayout
from services.drift.quality import CODES, QualityLayout, QualityState
from services.drift.records import EventDecoder, numeric_matrix
from services.drift.windows import VARIANT_CODE, WindowConfig, check_event, columnar, countable

RNG = np.random.default_rng(0)
REF = Baseline.from_profile(profile({"x": RNG.normal(size=300).tolist(), "z": RNG.normal(size=300).tolist(),
                                     "c": ["a", "b"] * 150, "prediction": [0, 1] * 150}), task="binary_classification")
SCHEMA = {"x": FeatureSpec(min=-3, max=3), "y": FeatureSpec(min=0, max=10),
          "c": FeatureSpec(type="categorical", categories=["a", "b"])}
CFG = WindowConfig(60, 30, WindowLayout.of(REF, 200), QualityLayout.of(SCHEMA))
ABSENT = object()

numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32), st.integers(-5, 15))
odd = st.one_of(st.none(), st.booleans(), st.text(max_size=2), st.integers(-2**70, 2**70), st.just(2**1100), st.lists(st.integers(), max_size=1))
value = st.one_of(numbers, numbers, numbers, odd, st.just(ABSENT))
timestamp = st.one_of(st.floats(1.7e9, 1.8e9), st.integers(1_700_000_000, 1_800_000_000),
                      st.sampled_from(["2023-11-14T22:13:20.250000Z", "2023-11-14T22:13:20+01:00", "2023-11-14T22:13:20",
                                       "yesterday"]), st.just(2**80), st.just(True), st.none())


@st.composite
def event(draw, valid: bool) -> dict:
    """A prediction event; `valid`: one `check_event` accepts (else anything goes)."""
    features = {k: v for k in ("x", "y", "z", "c", "extra") if (v := draw(value)) is not ABSENT}
    if "c" in features and draw(st.booleans()):
        features["c"] = draw(st.sampled_from(["a", "b", "q"]))
    e: dict[str, Any] = {"event_id": draw(st.text(min_size=1, max_size=4)), "model_id": "m",
                         "timestamp": draw(st.floats(1.7e9, 1.8e9) if valid else timestamp), "features": features,
                         "prediction": draw(st.sampled_from([0, 1]))}
    extras = {"variant": st.sampled_from(["primary", "canary", "shadow"]), "error": st.booleans(),
              "latency_ms": st.one_of(st.none(), st.floats(0, 1e4), st.integers(0, 10**6)),
              "request_id": st.one_of(st.text(max_size=3), st.none()),
              "segment": st.one_of(st.none(), st.dictionaries(st.sampled_from(["g"]), st.sampled_from(["u", "v"]))),
              "confidence": st.one_of(st.none(), st.floats(0, 1)), "model_version": st.one_of(st.text(max_size=2), st.integers(0, 3)),
              "probabilities": st.one_of(st.none(), st.dictionaries(st.sampled_from(["0", "1"]), st.floats(0, 1)))}
    for k, s in extras.items():
        if draw(st.integers(0, 3)) == 0:
            e[k] = draw(s)
    if not valid:  # break it, perhaps
        breaks = {"event_id": st.one_of(st.just(""), st.integers(), st.none()), "features": st.one_of(st.none(), st.lists(st.integers())),
                  "variant": st.one_of(st.just("bogus"), st.lists(st.text(), max_size=1), st.booleans()),
                  "latency_ms": st.one_of(st.just(-1), st.text(max_size=1), st.booleans(), st.just(2**80)),
                  "segment": st.one_of(st.text(max_size=1), st.lists(st.integers(), max_size=1)), "model_id": st.just("n")}
        for k, s in breaks.items():
            if draw(st.integers(0, 8)) == 0:
                e[k] = draw(s)
        for k in ("event_id", "features", "prediction", "timestamp"):
            if draw(st.integers(0, 12)) == 0:
                e.pop(k, None)
    return e


def records(valid: bool):
    return st.lists(event(valid), min_size=1, max_size=12)


def read_each(events: list[dict], cfg: WindowConfig) -> dict[str, Any]:
    """What each event says, read from its own dict (no shared pass, no fast path)."""
    def num(v: Any) -> float:
        if type(v) not in (int, float):
            return math.nan
        return float(v) if abs(v) < 2**1000 else (math.inf if v > 0 else -math.inf)

    out: dict[str, Any] = {"keys": hash_ids([e["event_id"] for e in events]).tolist(),
                           "ts": [event_time(e["timestamp"]) for e in events]}
    for name in cfg.layout.numeric:
        out[name] = [num(e["features"].get(name)) for e in events]
    for name, _ in cfg.layout.categorical:
        out[name] = [e["features"].get(name) for e in events]
    conf = []
    for e in events:
        c = e.get("confidence")
        if c is None and isinstance(e.get("probabilities"), dict) and e["probabilities"]:
            c = max(e["probabilities"].values())
        conf.append(num(c))
    out["confidence"] = conf
    out["variant"] = [VARIANT_CODE[e.get("variant", "primary")] for e in events]
    out["error"] = [e.get("error") is True for e in events]
    out["latency"] = [num(e.get("latency_ms")) for e in events]
    out["request_keys"] = [int(hash_ids([r])[0]) if isinstance(r := e.get("request_id"), str) and r else 0 for e in events]
    out["segments"] = [e.get("segment") for e in events]
    out["versions"] = [str(e.get("model_version", "unknown")) for e in events]
    out["quality"] = [[status(e["features"], name, SCHEMA[name]) for e in events] for name in cfg.quality.names]
    return out


def status(features: dict, name: str, spec: FeatureSpec) -> str:
    if name not in features:
        return "missing"
    v = features[name]
    if v is None:
        return "null"
    if spec.type == "categorical":
        return "ok" if category_key(v) in spec.categories else "unseen_category"
    if type(v) not in (int, float):
        return "wrong_type"
    return "out_of_range" if v < spec.min or v > spec.max else "ok"


def as_read(batch) -> dict[str, Any]:
    out = {"keys": batch.keys.tolist(), "ts": batch.ts.tolist(), "confidence": batch.confidence.tolist(),
           "variant": batch.variant.tolist(), "error": batch.error.tolist(), "latency": batch.latency.tolist(),
           "request_keys": batch.request_keys.tolist(), "segments": batch.segments, "versions": batch.versions,
           "quality": [[CODES[c] for c in row] for row in batch.quality.tolist()]}
    for name, col in batch.columns.items():
        out[name] = col.tolist() if isinstance(col, np.ndarray) else col
    return out


def same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(np.array(a[k], dtype=object), np.array(b[k], dtype=object)) or \
            all(x == y or (x != x and y != y) for x, y in zip(a[k], b[k], strict=True)), (k, a[k], b[k])


@settings(max_examples=400, deadline=None)
@given(st.one_of(records(valid=True), records(valid=False)))
def test_a_record_is_countable_whole_exactly_when_each_of_its_events_passes_on_its_own(events):
    each = [check_event(e) is None and e.get("model_id") == "m" for e in events]
    ts = countable(events, "m")
    assert (ts is not None) == all(each), [check_event(e) for e in events]
    if ts is not None:
        assert ts == [event_time(e["timestamp"]) for e in events]


@settings(max_examples=400, deadline=None)
@given(records(valid=True))
def test_the_batch_read_a_field_at_a_time_equals_each_event_read_on_its_own(events):
    events = [e for e in events if check_event(e) is None]
    batch, errors = columnar(events, CFG, checked=True, ts=countable(events))
    assert errors == []
    same(as_read(batch), read_each(events, CFG))
    unchecked, _ = columnar(events, CFG)  # without the caller's times and checks: the same
    same(as_read(unchecked), read_each(events, CFG))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["x", "y", "z"]), value.filter(lambda v: v is not ABSENT)),
                min_size=1, max_size=8))
def test_the_numeric_matrix_is_each_column_read_alone_or_none_when_a_value_is_not_a_number(features):
    names = ["x", "y", "z"]
    x = numeric_matrix(features, names)
    plain = all(n in f and (f[n] is None or (type(f[n]) in (int, float) and abs(f[n]) < 2**1000))
                for f in features for n in names)
    assert (x is not None) == plain
    if x is not None:
        expect = np.array([[math.nan if f[n] is None else float(f[n]) for f in features] for n in names])
        assert x.shape == (3, len(features)) and np.array_equal(x, expect, equal_nan=True)


# --- typed decoding (services.drift.records.EventDecoder) -----------------------------------------

NUM_SCHEMA = {"x": FeatureSpec(min=-3, max=3), "y": FeatureSpec(min=0, max=10)}
NUM_REF = Baseline.from_profile(profile({"x": RNG.normal(size=300).tolist(), "z": RNG.normal(size=300).tolist(),
                                         "prediction": [0, 1] * 150}), task="binary_classification")
NUM_CFG = WindowConfig(60, 30, WindowLayout.of(NUM_REF, 200), QualityLayout.of(NUM_SCHEMA))
DECODER = EventDecoder.of(NUM_CFG)
plain_value = st.one_of(numbers, numbers, st.none(), st.integers(-2**70, 2**70))


@st.composite
def typed_event(draw) -> dict:
    """An ingest-shaped event of NUM_CFG's model, now and then with something the typed decoder
    must refuse (a feature missing, extra, a boolean or a huge integer) or `event`'s oddities."""
    e = draw(event(valid=draw(st.integers(0, 15)) > 0))
    if isinstance(e.get("features"), dict) and draw(st.integers(0, 15)) > 0:
        e["features"] = {k: draw(plain_value) for k in ("x", "y", "z")}
        if draw(st.integers(0, 20)) == 0:
            e["features"][draw(st.sampled_from(["x", "y", "z", "extra"]))] = draw(odd)
        if draw(st.integers(0, 25)) == 0:
            e["features"].pop(draw(st.sampled_from(["x", "y", "z"])))
    if draw(st.integers(0, 10)) > 0:
        e["confidence"] = draw(st.floats(0, 1))
    return e


def plain(events: list[dict]) -> bool:
    """What the typed decoder must take: records the dict way counts whole, whose every event
    has a confidence and exactly the features x, y, z, each a number (in a float's range) or null."""
    return countable(events, "m") is not None and all(
        e.get("confidence") is not None and e["features"].keys() == {"x", "y", "z"}
        and all(v is None or (type(v) in (int, float) and abs(v) < 2**1000) for v in e["features"].values())
        for e in events)


def counted(batch, cfg) -> tuple:
    q = QualityState(cfg.quality).update(batch.quality, batch.features)
    return q.counts.tolist(), q.unexpected, q.n


@settings(max_examples=500, deadline=None)
@given(st.lists(typed_event(), min_size=1, max_size=10))
def test_a_record_is_decoded_typed_exactly_when_plain_and_then_reads_as_its_dicts(events):
    raw = json.dumps(events).encode()
    got = DECODER.decode(raw, "m")
    dicts = decode_record(raw)
    assert (got is not None) == plain(dicts)
    if got is None:
        return
    ts = countable(dicts, "m")
    assert got.ts == ts
    typed, _ = columnar(got, NUM_CFG)
    slow, _ = columnar(dicts, NUM_CFG, checked=True, ts=ts)
    same(as_read(typed), as_read(slow))
    assert typed.raw_prediction == slow.raw_prediction
    assert counted(typed, NUM_CFG) == counted(slow, NUM_CFG)


def test_the_typed_decoder_reads_a_repeated_feature_as_the_dict_does_and_refuses_other_records():
    raw = (b'[{"event_id":"a","model_id":"m","timestamp":1.7e9,"prediction":1,"confidence":0.9,'
           b'"features":{"x":1,"y":2,"z":3,"x":-1}}]')
    got = DECODER.decode(raw, "m")
    assert got is not None and got.matrix(DECODER.names)[:, 0].tolist() == [-1.0, 2.0, 3.0]
    assert DECODER.decode(raw, "other") is None  # the record key must be every event's model_id
    assert DECODER.decode(raw.replace(b'"x":-1', b'"x":true'), "m") is None
    assert DECODER.decode(raw[1:-1], "m") is None  # one object, not an array: the dict way
    assert DECODER.decode(b"[]", "m") is None and DECODER.decode(b"not json", "m") is None
    assert EventDecoder.of(CFG) is None  # a categorical feature: the dict way


def test_a_model_whose_records_never_qualify_is_not_decoded_twice_a_record_and_comes_back_when_they_do():
    import asyncio
    from types import SimpleNamespace

    import orjson

    from bench.labels import Feed
    from services.drift.app import TYPED_PATIENCE, DriftWorker, Registry
    from shared.settings import Settings
    from tests.integration import drift_support as ds

    worker = DriftWorker(Settings())
    worker.registry = Registry(None, worker.window_sample, Feed(ds.spec(), ds.reference(np.random.default_rng(3), 500), "m"))
    events = ds.window_events("m", 0, 3, np.random.default_rng(4))

    def record(with_confidence: bool):
        evs = [e if with_confidence else {k: v for k, v in e.items() if k != "confidence"} for e in events]
        return SimpleNamespace(key=b"m", value=orjson.dumps(evs))

    async def go():
        tried = []
        model = await worker.registry.get("m")
        decode = model.decoder.decode
        model.decoder.decode = lambda value, mid: tried.append(1) or decode(value, mid)
        seen = [len((await worker._typed([record(False)]))[1]) for _ in range(100)]  # each to the dict way
        tries = len(tried)
        typed_later = [bool((await worker._typed([record(True)]))[0]) for _ in range(64)]
        return seen, tries, typed_later
    seen, tried, typed_later = asyncio.run(go())
    assert seen == [1] * 100 and tried == TYPED_PATIENCE + 1  # the first 8, then at the 64th refusal in a row
    first = typed_later.index(True)
    assert not any(typed_later[:first]) and all(typed_later[first:]) and first < 64
