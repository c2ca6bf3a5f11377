"""The ingest fast path (msgspec) against the contract's pydantic models, on random bodies.

Whatever the fast path accepts, pydantic accepts, with the same values: the same records
encoded byte for byte, the same idempotency keys and days. Whatever it refuses goes to
pydantic, so the accepted set and the 422 errors (index, field, reason) are pydantic's by
construction; checked here too, through `parse_events`, against pydantic alone.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.events import EVENT_LISTS, IDEMPOTENCY_FIELD
from services.ingest import fast
from services.ingest.validation import as_models, collapse_errors, parse_events

TEXT = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs", "Cc")), max_size=6)
ID = st.one_of(st.sampled_from(["e1", "m.v-2_x", "a\n", "\n", "", " ", "x" * 201, "ä", "a b", "a\x7f"]), TEXT)
NUMBER = st.one_of(st.integers(-3, 3), st.floats(-2, 2, allow_nan=False), st.sampled_from([0, 1, 0.0, 1.0, 1.5, -0.0,
                                                                                          10**20, 2**64, 1e300]))
ODD = st.one_of(st.none(), st.booleans(), st.sampled_from(["1", "0.5", "", "true", "nan", "1e400"]), st.just([]),
                st.just({}))
VALUE = st.one_of(NUMBER, ODD, TEXT)
TIMESTAMP = st.one_of(st.sampled_from([
    "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00", "2026-01-01T23:30:00-05:00", "2026-01-01T00:00:00.123456Z",
    "2026-01-01T00:00:00.1234567Z", "2026-01-01T00:00:00", "2026-01-01 00:00:00Z", "2026-01-01t00:00:00z",
    "2026-01-01T00:00:60Z", "2026-02-30T00:00:00Z", "2026-01-01T00:00Z", "2026-01-01", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59+14:00", "2026-01-01T00:00:00+24:00", "yesterday"]), st.integers(0, 2_000_000_000),
    st.floats(0, 2e9), st.none(),
    st.builds(lambda y, mo, d, h, mi, sec, frac, off: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{sec:02d}{frac}{off}",
              st.sampled_from([1, 1970, 2000, 2024, 2100, 9999]), st.integers(0, 13), st.integers(0, 32),
              st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
              st.sampled_from(["", ".5", ".123456", ".1234567", ".000000001", ",5"]),
              st.sampled_from(["Z", "z", "+00:00", "-00:00", "+14:00", "-23:59", "+24:00", "+05:61", "+0530", ""])))
LABEL = st.one_of(st.booleans(), st.integers(-5, 5), st.floats(-1, 1, allow_nan=False), st.sampled_from(["yes", ""]),
                  st.none(), st.just([1]))


def fields(draw, valid: dict, odd: dict) -> dict:
    """An event: each field its valid value, or (sometimes) an odd one, or (rarely) left out; an unknown field sometimes."""
    e = {}
    for k, good in valid.items():
        roll = draw(st.integers(0, 24))
        if roll == 0 and k in odd:
            e[k] = draw(odd[k])
        elif roll != 1:
            e[k] = draw(good)
    if draw(st.integers(0, 30)) == 0:
        e["unexpected"] = 1
    return e


@st.composite
def prediction(draw) -> dict:
    feature = st.one_of(NUMBER, st.booleans(), st.none(), TEXT, st.sampled_from(["x" * 1001, []]))
    valid = {"event_id": st.sampled_from(["e1", "e2", "e3"]), "model_id": st.sampled_from(["m1", "m.2"]),
             "timestamp": st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T23:30:00-05:00"]),
             "features": st.dictionaries(st.sampled_from(["f1", "f2", "cat"]), st.one_of(NUMBER, st.booleans(), st.none(), TEXT),
                                         max_size=3),
             "prediction": LABEL.filter(lambda v: v not in (None, "", [1])),
             "model_version": st.sampled_from(["v1", "unknown"]),
             "probabilities": st.one_of(st.none(), st.dictionaries(st.sampled_from(["a", "b"]), st.floats(0, 1), max_size=2)),
             "confidence": st.one_of(st.none(), st.floats(0, 1)), "latency_ms": st.one_of(st.none(), st.floats(0, 1e4)),
             "variant": st.sampled_from(["primary", "canary", "shadow"]), "request_id": st.one_of(st.none(), st.just("r1")),
             "vendor": st.one_of(st.none(), st.just("acme")), "error": st.booleans(),
             "segment": st.one_of(st.none(), st.dictionaries(st.sampled_from(["g"]), st.sampled_from(["a", "b"])))}
    odd = {"event_id": ID, "model_id": ID, "timestamp": TIMESTAMP, "prediction": LABEL,
           "features": st.one_of(st.dictionaries(st.one_of(TEXT, st.just("")), feature, max_size=3), ODD),
           "model_version": st.one_of(ID, ODD), "probabilities": st.dictionaries(TEXT, VALUE, max_size=2),
           "confidence": VALUE, "latency_ms": VALUE, "variant": st.one_of(TEXT, ODD, st.just("Primary")),
           "request_id": st.one_of(ID, ODD), "vendor": st.one_of(ID, ODD), "error": VALUE,
           "segment": st.one_of(st.dictionaries(TEXT, VALUE, max_size=2), ODD)}
    return fields(draw, valid, odd)


@st.composite
def label(draw) -> dict:
    valid = {"event_id": st.sampled_from(["e1", "e2"]), "model_id": st.just("m1"), "label": LABEL.filter(lambda v: v not in (None, "", [1])),
             "timestamp": st.just("2026-01-01T00:00:00Z")}
    return fields(draw, valid, {"event_id": ID, "model_id": ID, "label": LABEL, "timestamp": TIMESTAMP})


@st.composite
def review(draw) -> dict:
    valid = {"review_id": st.sampled_from(["r1", "r2"]), "model_id": st.just("m1"), "reviewer_id": st.just("ann"),
             "ai_prediction": st.just(1), "human_decision": st.sampled_from([0, 1]),
             "timestamp": st.just("2026-01-01T00:00:00Z"), "case_id": st.one_of(st.none(), st.just("c1")),
             "ai_confidence": st.one_of(st.none(), st.floats(0, 1)), "human_initial_decision": st.one_of(st.none(), LABEL),
             "review_seconds": st.one_of(st.none(), st.floats(0, 600))}
    odd = {"review_id": ID, "reviewer_id": ID, "model_id": ID, "ai_prediction": LABEL, "human_decision": LABEL,
           "timestamp": TIMESTAMP, "case_id": st.one_of(ID, ODD), "ai_confidence": VALUE, "human_initial_decision": VALUE,
           "review_seconds": VALUE}
    return fields(draw, valid, odd)


KINDS = {"predictions": prediction(), "labels": label(), "reviews": review()}
bodies = st.sampled_from(list(KINDS)).flatmap(lambda k: st.tuples(st.just(k), st.lists(KINDS[k], min_size=1, max_size=4),
                                                                 st.booleans()))


def encode(events, ascii_only: bool) -> bytes:
    """JSON as clients send it: escaped to ASCII (Python's json) or UTF-8 as is (orjson, most others)."""
    return json.dumps(events, ensure_ascii=ascii_only).encode()


def pydantic_verdict(kind: str, raw: bytes):
    try:
        return EVENT_LISTS[kind].validate_json(raw), None
    except ValidationError as exc:
        return None, collapse_errors(exc.errors(include_url=False))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_what_the_fast_path_accepts_pydantic_accepts_with_the_same_values(case):
    kind, events, ascii_only = case
    raw = encode(events, ascii_only)
    quick = fast.decode(kind, raw)
    models, errors = pydantic_verdict(kind, raw)
    if quick is None:
        return
    assert models is not None, (events, errors)  # accepted here, refused by the contract
    adapter, field = EVENT_LISTS[kind], IDEMPOTENCY_FIELD[kind]
    assert adapter.dump_json(as_models(kind, quick), exclude_none=True) == adapter.dump_json(models, exclude_none=True)
    assert [(getattr(q, field), q.model_id, q.timestamp, q.timestamp.date()) for q in quick] == \
        [(getattr(m, field), m.model_id, m.timestamp, m.timestamp.date()) for m in models]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies, st.sampled_from(["application/json", "application/x-ndjson"]))
def test_parse_events_accepts_and_rejects_exactly_what_pydantic_does_with_the_same_errors(case, ctype):
    kind, events, ascii_only = case
    raw = encode(events, ascii_only) if ctype == "application/json" else b"\n".join(encode(e, ascii_only) for e in events)
    parsed = parse_events(kind, raw, ctype)
    models, errors = pydantic_verdict(kind, encode(events, ascii_only))
    assert (parsed.errors == []) == (models is not None)
    if models is None:
        assert parsed.errors == errors
    else:
        adapter = EVENT_LISTS[kind]
        assert adapter.dump_json(as_models(kind, parsed.events), exclude_none=True) == adapter.dump_json(models, exclude_none=True)


def test_the_fast_path_takes_the_common_body_and_leaves_the_rest_to_pydantic():
    good = [{"event_id": "e1", "model_id": "m1", "timestamp": "2026-01-01T00:00:00Z", "features": {"x": 1.5, "c": "a"},
             "prediction": 1}]
    assert fast.decode("predictions", json.dumps(good).encode()) is not None
    for odd in ({"timestamp": 1_767_225_600}, {"confidence": "0.5"}, {"event_id": "e1\n"}):
        body = json.dumps([{**good[0], **odd}]).encode()
        assert fast.decode("predictions", body) is None
        assert pydantic_verdict("predictions", body)[0] is not None or odd == {"event_id": "e1\n"}


@settings(max_examples=800, deadline=None)
@given(TIMESTAMP, st.sampled_from(["labels", "reviews"]))
def test_a_timestamp_the_fast_path_reads_is_the_instant_pydantic_reads(ts, kind):
    event = ({"event_id": "e", "model_id": "m", "label": 1, "timestamp": ts} if kind == "labels" else
             {"review_id": "r", "model_id": "m", "reviewer_id": "ann", "ai_prediction": 1, "human_decision": 0,
              "timestamp": ts})
    raw = json.dumps([event]).encode()
    quick, (models, _) = fast.decode(kind, raw), pydantic_verdict(kind, raw)
    if quick is not None:
        assert models is not None and quick[0].timestamp == models[0].timestamp, ts
        assert quick[0].timestamp.utcoffset() == models[0].timestamp.utcoffset()
