"""Every kind of bad input, for each event kind: a precise error, never a crash."""

from __future__ import annotations

import json

import pytest

from services.ingest.validation import BodyError, parse_events

GOOD = {
    "predictions": {"event_id": "p1", "model_id": "m", "timestamp": "2026-01-01T00:00:00+01:00",
                    "features": {"x": 1.5, "c": "a", "b": True, "n": None}, "prediction": "yes",
                    "probabilities": {"yes": 0.7, "no": 0.3}, "latency_ms": 12.0, "vendor": "v",
                    "segment": {"region": "north"}},
    "labels": {"event_id": "p1", "model_id": "m", "label": "yes", "timestamp": 1767225600},
    "reviews": {"review_id": "r1", "model_id": "m", "reviewer_id": "alice", "ai_prediction": "approve",
                "human_decision": "deny", "timestamp": "2026-01-01T00:00:00Z", "ai_confidence": 0.9},
}
REQUIRED = {
    "predictions": ["event_id", "model_id", "timestamp", "features", "prediction"],
    "labels": ["event_id", "model_id", "label", "timestamp"],
    "reviews": ["review_id", "model_id", "reviewer_id", "ai_prediction", "human_decision", "timestamp"],
}
KINDS = list(GOOD)


def body(*events) -> bytes:
    return json.dumps(list(events)).encode()


def errors_of(kind, *events):
    events_out, errors, _ = parse_events(kind, body(*events), "application/json")
    assert events_out == []
    return errors


@pytest.mark.parametrize("kind", KINDS)
def test_a_good_event_validates_as_object_array_and_ndjson(kind):
    one = json.dumps(GOOD[kind]).encode()
    for raw, ctype in ((one, "application/json"), (b"[" + one + b"]", "application/json; charset=utf-8"),
                       (one + b"\n\n" + one + b"\n", "application/x-ndjson")):
        events, errors, array = parse_events(kind, raw, ctype)
        assert [e["timestamp"] for e in json.loads(array)] == [GOOD[kind]["timestamp"]] * len(events)
        assert errors == []
        assert len(events) in (1, 2)
        assert events[0].timestamp.tzinfo is not None


@pytest.mark.parametrize("kind", KINDS)
def test_each_missing_required_field_is_named_with_its_index(kind):
    for field in REQUIRED[kind]:
        bad = {k: v for k, v in GOOD[kind].items() if k != field}
        errors = errors_of(kind, GOOD[kind], bad)
        assert errors == [{"index": 1, "field": field, "reason": "Field required"}]


@pytest.mark.parametrize("kind,field,value", [
    ("predictions", "features", [1, 2]), ("predictions", "prediction", [1]),
    ("predictions", "confidence", "high"), ("predictions", "error", "no"),
    ("labels", "label", {"a": 1}), ("labels", "timestamp", [2026]),
    ("reviews", "reviewer_id", 7), ("reviews", "review_seconds", "slow"),
])
def test_wrong_type_names_the_field(kind, field, value):
    errors = errors_of(kind, {**GOOD[kind], field: value})
    assert [(e["index"], e["field"]) for e in errors] == [(0, field)]


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_inf_are_refused_in_features_and_numbers(token):
    raw = json.dumps(GOOD["predictions"]).replace('"x": 1.5', '"x": __V__').replace(
        '"latency_ms": 12.0', '"latency_ms": __V__').encode().replace(b"__V__", token)
    events, errors, _ = parse_events("predictions", raw, "application/json")
    assert events == []
    assert {e["field"] for e in errors} == {"features.x", "latency_ms"}
    assert all("finite" in e["reason"] for e in errors)


@pytest.mark.parametrize("kind", KINDS)
def test_timestamp_without_offset_is_refused(kind):
    errors = errors_of(kind, {**GOOD[kind], "timestamp": "2026-01-01T00:00:00"})
    assert errors == [{"index": 0, "field": "timestamp", "reason": "Input should have timezone info"}]


def test_oversize_strings_and_maps_are_refused():
    big_map = {f"f{i}": 1.0 for i in range(1001)}
    errors = errors_of("predictions", {**GOOD["predictions"], "event_id": "e" * 201},
                       {**GOOD["predictions"], "features": big_map},
                       {**GOOD["predictions"], "features": {"x": "v" * 1001}})
    assert [(e["index"], e["field"]) for e in errors] == [(0, "event_id"), (1, "features"), (2, "features.x")]
    assert "at most 200 characters" in errors[0]["reason"]
    assert "at most 1000 items" in errors[1]["reason"]


def test_unknown_variant_and_unknown_fields_are_named():
    errors = errors_of("predictions", {**GOOD["predictions"], "variant": "blue", "colour": "red"})
    assert errors == [{"index": 0, "field": "colour", "reason": "unknown field"},
                      {"index": 0, "field": "variant", "reason": "Input should be 'primary', 'canary' or 'shadow'"}]


def test_probabilities_and_confidence_must_be_in_unit_interval():
    errors = errors_of("predictions", {**GOOD["predictions"], "probabilities": {"yes": 1.2}, "confidence": -0.1})
    assert {e["field"] for e in errors} == {"probabilities.yes", "confidence"}


def test_invalid_model_id_is_refused():
    errors = errors_of("labels", {**GOOD["labels"], "model_id": "has space"})
    assert errors[0]["field"] == "model_id"


@pytest.mark.parametrize("raw,ctype,status", [
    (b"", "application/json", 400),
    (b"   \n", "application/x-ndjson", 400),
    (b'{"a": 1', "application/json", 400),
    (b"hello", "application/json", 400),
    (b'{"event_id": "\xff\xfe"}', "application/json", 400),  # invalid UTF-8
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),  # a JSON bomb of nesting
    (b"{}", "text/plain", 415),
    (b"{}", None, 415),
    (b"<xml/>", "application/xml", 415),
])
def test_unusable_bodies_get_a_clear_status(raw, ctype, status):
    with pytest.raises(BodyError) as info:
        parse_events("predictions", raw, ctype)
    assert info.value.status == status
    assert info.value.reason


def test_ndjson_names_the_bad_line():
    good = json.dumps(GOOD["labels"]).encode()
    errors = parse_events("labels", good + b"\n{not json\n" + good + b'\n{"event_id": 1}\n', "application/x-ndjson").errors
    assert {e["index"] for e in errors} == {1, 3}
    assert any("JSON" in e["reason"] for e in errors if e["index"] == 1)


def test_one_bad_record_among_many_is_reported_alone():
    events = [{**GOOD["labels"], "event_id": f"e{i}"} for i in range(500)]
    events[317] = {**events[317], "label": None}
    errors = errors_of("labels", *events)
    assert [(e["index"], e["field"]) for e in errors] == [(317, "label")]
