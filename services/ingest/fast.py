"""The ingest fast path: a whole JSON array of events decoded and validated in one msgspec call.

The pydantic models of `shared.events` stay the API's schema, its OpenAPI and its verdict: a body
this path accepts, pydantic accepts with the same values (tests/unit/test_ingest_fast.py checks
it with hypothesis over valid and invalid events), and a body it refuses for any reason goes to
pydantic, whose errors are the 422 body. Refusing more than pydantic costs only time; accepting
more would break the contract, so each constraint here is pydantic's or stricter:

- ids and names: the same lengths and patterns (a body with a backslash escape or a DEL byte,
  which is how a control character gets into a string, goes to pydantic);
- numbers: JSON numbers only (pydantic's lax mode also takes numeric strings: those go to it);
- timestamps: RFC 3339 strings with an offset (pydantic also takes epoch seconds: those go to it),
  at most 6 fractional digits;
- unknown fields refused, as `extra="forbid"`.

Measured (`python -m bench.ingest`, 1,000-event bodies of 20 features): see the README's Speed.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from shared.events import MAX_CLASSES, MAX_FEATURES, MAX_ID, MAX_NAME, MAX_SEGMENTS, MAX_STR_VALUE

# Checked after decoding, once per distinct model id of the body (a pattern here costs a regex
# call per event: 0.5 µs).
ModelId = str
_MODEL_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
# No control characters: guaranteed for every string of a body without a backslash (JSON has no
# raw control characters in strings; an escape is how one gets in) and without a DEL byte.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]
Time = Annotated[datetime, msgspec.Meta(tz=True)]
FeatureValue = bool | float | Annotated[str, msgspec.Meta(max_length=MAX_STR_VALUE)] | None
Label = bool | int | float | Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]


class _Event(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """gc=False: decoded JSON holds no cycles, and untracked structs spare the collector a
    thousand objects a request."""


class PredictionEvent(_Event):
    event_id: Id
    model_id: ModelId
    timestamp: Time
    features: Annotated[dict[Name, FeatureValue], msgspec.Meta(max_length=MAX_FEATURES)]
    prediction: Label
    model_version: Name = "unknown"
    probabilities: Annotated[dict[Name, Unit], msgspec.Meta(max_length=MAX_CLASSES)] | None = None
    confidence: Unit | None = None
    latency_ms: NonNegative | None = None
    variant: Literal["primary", "canary", "shadow"] = "primary"
    request_id: Id | None = None
    vendor: Name | None = None
    error: bool = False
    segment: Annotated[dict[Name, Annotated[str, msgspec.Meta(max_length=MAX_STR_VALUE)]],
                       msgspec.Meta(max_length=MAX_SEGMENTS)] | None = None


class LabelEvent(_Event):
    event_id: Id
    model_id: ModelId
    label: Label
    timestamp: Time


class ReviewEvent(_Event):
    review_id: Id
    model_id: ModelId
    reviewer_id: Id
    ai_prediction: Label
    human_decision: Label
    timestamp: Time
    case_id: Id | None = None
    ai_confidence: Unit | None = None
    human_initial_decision: Label | None = None
    review_seconds: NonNegative | None = None


DECODERS = {kind: msgspec.json.Decoder(list[model]) for kind, model in
            (("predictions", PredictionEvent), ("labels", LabelEvent), ("reviews", ReviewEvent))}


# msgspec rounds a time's digits past the microsecond, pydantic truncates them: such bodies go
# to pydantic (one scan of the body: 0.6 µs an event).
_SUB_MICROSECOND = re.compile(rb'"timestamp"\s*:\s*"[^"]*[.,]\d{7}')


def decode(kind: str, body: bytes) -> list | None:
    """The events of a JSON array `body` when every one is valid by this path's rules; None
    when any is not (or the body is not such an array): pydantic then decides."""
    if b"\\" in body or b"\x7f" in body or _SUB_MICROSECOND.search(body):
        return None
    try:
        events = DECODERS[kind].decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if not all(map(_MODEL_ID.fullmatch, {e.model_id for e in events})):
        return None
    return events
