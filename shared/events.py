"""Every object of the contract (../shared/DESIGN.md), defined once as pydantic v2 models.

Input events forbid unknown fields, reject NaN/inf and naive timestamps, and bound every
string and map so one request cannot blow up a worker's memory.

>>> e = PredictionEvent.model_validate({"event_id": "e1", "model_id": "m", "timestamp": 0,
...                                     "features": {"x": 1.5}, "prediction": 1})
>>> e.timestamp.isoformat(), e.variant
('1970-01-01T00:00:00+00:00', 'primary')
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, field_validator

# Bounds on input sizes. Names here, not magic numbers elsewhere.
MAX_ID = 200
MAX_NAME = 200
MAX_STR_VALUE = 1_000
MAX_FEATURES = 1_000
MAX_CLASSES = 1_000
MAX_SEGMENTS = 50

ModelId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=r"^[^\x00-\x1f\x7f]+$")]  # no control characters
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
ShortStr = Annotated[str, Field(max_length=MAX_STR_VALUE)]
_StrictFinite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
# Unions are tried left to right in strict mode: the first branch that fits wins, so a JSON
# true stays a bool, 3 stays a number and "3" stays a string (and validation is faster).
FeatureValue = Annotated[StrictBool | _StrictFinite | Annotated[str, Field(strict=True, max_length=MAX_STR_VALUE)] | None,
                         Field(union_mode="left_to_right")]
# A class label or a number (regression).
Label = Annotated[StrictBool | Annotated[int, Field(strict=True)] | _StrictFinite
                  | Annotated[str, Field(strict=True, min_length=1, max_length=MAX_NAME)],
                  Field(union_mode="left_to_right")]
Variant = Literal["primary", "canary", "shadow"]
Severity = Literal["low", "medium", "high", "critical"]

SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PredictionEvent(_Event):
    event_id: Id
    model_id: ModelId
    model_version: Name = "unknown"
    timestamp: AwareDatetime
    features: Annotated[dict[Name, FeatureValue], Field(max_length=MAX_FEATURES)]
    prediction: Label
    probabilities: Annotated[dict[Name, Unit], Field(max_length=MAX_CLASSES)] | None = None
    confidence: Unit | None = None
    latency_ms: NonNegative | None = None
    variant: Variant = "primary"
    request_id: Id | None = None
    vendor: Name | None = None
    error: StrictBool = False
    segment: Annotated[dict[Name, ShortStr], Field(max_length=MAX_SEGMENTS)] | None = None


class LabelEvent(_Event):
    event_id: Id
    model_id: ModelId
    label: Label
    timestamp: AwareDatetime


class ReviewEvent(_Event):
    review_id: Id
    model_id: ModelId
    case_id: Id | None = None
    reviewer_id: Id
    ai_prediction: Label
    ai_confidence: Unit | None = None
    human_initial_decision: Label | None = None
    human_decision: Label
    timestamp: AwareDatetime
    review_seconds: NonNegative | None = None


EVENT_KINDS: dict[str, type[_Event]] = {
    "predictions": PredictionEvent,
    "labels": LabelEvent,
    "reviews": ReviewEvent,
}
# The field that makes an event unique (its idempotency key), per kind.
IDEMPOTENCY_FIELD = {"predictions": "event_id", "labels": "event_id", "reviews": "review_id"}
EVENT_LISTS: dict[str, TypeAdapter] = {k: TypeAdapter(list[m]) for k, m in EVENT_KINDS.items()}


# --- model registry --------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeatureSpec(_Spec):
    type: Literal["numeric", "categorical", "boolean"] = "numeric"
    min: Finite | None = None
    max: Finite | None = None
    max_null_rate: Unit | None = None
    categories: list[ShortStr] | None = None


class FairnessSpec(_Spec):
    attributes: list[Name] = Field(default_factory=list)
    min_group_size: Annotated[int, Field(ge=1)] = 100


class ModelSpec(_Spec):
    task: Literal["binary_classification", "multiclass_classification", "regression"] = "binary_classification"
    positive_label: Label | None = None
    risk_tier: Literal["low", "medium", "high"] = "medium"
    owners: list[Name] = Field(default_factory=list)
    labels: dict[Name, ShortStr] = Field(default_factory=dict)
    window_seconds: Annotated[int, Field(ge=60, le=7 * 86400)] = 900
    allowed_lateness_seconds: Annotated[int, Field(ge=0, le=86400)] = 300
    label_wait_seconds: Annotated[int, Field(ge=0, le=30 * 86400)] = 3600
    features: dict[Name, FeatureSpec] = Field(default_factory=dict)
    baseline_metrics: dict[Name, Finite] = Field(default_factory=dict)
    min_acceptable: dict[Name, Finite] = Field(default_factory=dict)
    fairness: FairnessSpec | None = None
    thresholds: dict[Name, Any] = Field(default_factory=dict)

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, value: dict[str, Any]) -> dict[str, Any]:
        from shared.policy import validate_thresholds  # policy imports this module

        validate_thresholds(value)  # raises naming the key, the value and the rule
        return value


class VendorSLA(_Spec):
    accuracy: Unit | None = None
    precision: Unit | None = None
    recall: Unit | None = None
    latency_p95_ms: NonNegative | None = None
    latency_p99_ms: NonNegative | None = None
    uptime: Unit | None = None
    min_samples: Annotated[int, Field(ge=1)] = 100
    period_days: Annotated[int, Field(ge=1, le=365)] = 7
    tolerance: Unit = 0.02


class ReferenceColumn(BaseModel):
    """A reference column's profile, fitted once at upload: what the stream services need."""

    name: str
    kind: Literal["numeric", "categorical"]
    n: int
    nulls: int
    edges: list[float] | None = None  # deciles (numeric)
    sample: list[float] | None = None  # up to REFERENCE_SAMPLE values (numeric), for KS
    categories: dict[str, int] | None = None  # category -> count (categorical)


class ReferenceProfile(BaseModel):
    model_id: str
    rows: int
    digest: str  # content hash of the uploaded table: a change is recognisable
    uploaded_at: AwareDatetime
    columns: list[str]


# --- outputs -----------------------------------------------------------------------------


def event_time(v: Any) -> float:
    """An event's `timestamp` as epoch seconds: RFC 3339 with an offset, or epoch seconds (the
    stream workers' fast path over raw JSON; the ingest API validates the same rule).

    >>> event_time("1970-01-01T00:01:00+00:00"), event_time(60)
    (60.0, 60.0)
    >>> event_time("1970-01-01T00:01:00")
    Traceback (most recent call last):
    ...
    ValueError: timestamp='1970-01-01T00:01:00': must carry a UTC offset
    >>> event_time(1e30)
    Traceback (most recent call last):
    ...
    ValueError: timestamp=1e+30: must be in the years 1 to 9999
    """
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        t = as_float(v)
    elif isinstance(v, str):
        d = datetime.fromisoformat(v)
        if d.tzinfo is None:
            raise ValueError(f"timestamp={v!r}: must carry a UTC offset")
        t = d.timestamp()
    else:
        raise ValueError(f"timestamp={v!r}: must be RFC 3339 with offset or epoch seconds")
    if not MIN_TIME <= t < MAX_TIME:
        raise ValueError(f"timestamp={v!r}: must be in the years 1 to 9999")
    return t


MIN_TIME, MAX_TIME = -62_135_596_800.0, 253_402_300_800.0  # 0001-01-01, 10000-01-01: pydantic's datetimes


def event_times(values: list) -> list[float]:
    """`event_time` of each value (raises as it does); epoch seconds in one NumPy pass.

    >>> event_times([60, 1.5]), event_times(["1970-01-01T00:01:00Z", 0])
    ([60.0, 1.5], [60.0, 0.0])
    """
    kinds = set(map(type, values))
    if kinds <= {float, int}:
        try:
            t = np.array(values, dtype=float)
        except OverflowError:  # an integer beyond a float's range: event_time says why not
            t = np.array([math.inf])
        if ((t >= MIN_TIME) & (t < MAX_TIME)).all():
            return t.tolist()
    elif kinds == {str} and (t := utc_times(values)) is not None:
        return t
    return list(map(event_time, values))


_UTC_LEN = 27  # "YYYY-MM-DDTHH:MM:SS.ffffffZ"
_UTC_SEPARATORS = {4: "-", 7: "-", 10: "T", 13: ":", 16: ":", 19: ".", 26: "Z"}
_UTC_DIGITS = [i for i in range(_UTC_LEN) if i not in _UTC_SEPARATORS]
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def utc_times(values: list[str]) -> list[float] | None:
    """`event_time` of timestamps all written as ingest writes them ("YYYY-MM-DDTHH:MM:SS.ffffffZ",
    pydantic's UTC form with microseconds) in one NumPy pass; None when any is written otherwise
    or is no valid time (`event_time` then reads each, and says why). The same floats as
    `datetime.timestamp()`: whole microseconds since the epoch, exact below 2**53, over 10**6.

    >>> utc_times(["1970-01-01T00:01:00.500000Z", "2000-02-29T12:00:00.000001Z"])
    [60.5, 951825600.000001]
    >>> utc_times(["2001-02-29T12:00:00.000001Z"]) is None  # no such day
    True
    """
    if not values or set(map(len, values)) != {_UTC_LEN}:
        return None
    try:
        a = np.frombuffer("".join(values).encode("ascii"), dtype=np.uint8).reshape(len(values), _UTC_LEN)
    except UnicodeEncodeError:
        return None
    for i, c in _UTC_SEPARATORS.items():
        if (a[:, i] != ord(c)).any():
            return None
    d = a[:, _UTC_DIGITS].astype(np.int64) - ord("0")
    if ((d < 0) | (d > 9)).any():
        return None
    num = lambda *cols: sum(d[:, c] * 10 ** (len(cols) - 1 - k) for k, c in enumerate(cols))  # noqa: E731
    year, month, day = num(0, 1, 2, 3), num(4, 5), num(6, 7)
    hour, minute, second, micro = num(8, 9), num(10, 11), num(12, 13), num(14, 15, 16, 17, 18, 19)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    last = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + (leap & (month == 2))
    if not ((year >= 1) & month_ok & (day >= 1) & (day <= last) & (hour < 24) & (minute < 60) & (second < 60)).all():
        return None
    y = year - (month <= 2)  # days since the epoch of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468
    us = ((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000_000) + micro
    if (np.abs(us) >= 2**53).any():  # not exact as a float: datetime's own arithmetic
        return None
    return (us / 1e6).tolist()


def as_float(v: Any) -> float | None:
    """A JSON number as a float (an integer beyond a float's range: ±inf); None for anything
    else (null, bool, string...).

    >>> as_float(3), as_float(-10**400), as_float(True), as_float("1")
    (3.0, -inf, None, None)
    """
    if type(v) is float:
        return v
    if type(v) is not int:
        return None
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def latency_error(v: Any) -> str | None:
    """Why an event's `latency_ms` cannot be counted (None when absent or a finite number >= 0).

    >>> latency_error(12), latency_error(-1), latency_error(10**400)
    (None, 'latency_ms=-1: must be a number >= 0', 'latency_ms=1000...0: must be a number >= 0')
    """
    if v is None or (type(v) in (int, float) and 0 <= as_float(v) < math.inf):
        return None
    text = repr(v)
    return f"latency_ms={text if len(text) <= 24 else text[:4] + '...' + text[-1:]}: must be a number >= 0"


NUMBER_OR_NULL = frozenset((float, int, type(None)))


def floats(values: list) -> np.ndarray:
    """JSON values as a float array: numbers as `as_float`; null, strings and other types as NaN.

    >>> floats([1, None, "x", 2.5, 10**400]).tolist()
    [1.0, nan, nan, 2.5, inf]
    """
    try:
        if set(map(type, values)) <= NUMBER_OR_NULL:
            return np.array(values, dtype=float)
    except OverflowError:
        pass
    return np.array([math.nan if (f := as_float(v)) is None else f for v in values], dtype=float)


def confidence(e: Mapping[str, Any]) -> float | None:
    """A prediction event's confidence: `confidence`, else its highest class probability; None
    when neither is a number.

    >>> confidence({"probabilities": {"a": 0.2, "b": 0.7, "c": "?"}}), confidence({"confidence": "high"})
    (0.7, None)
    """
    c = e.get("confidence")
    if c is None and isinstance(p := e.get("probabilities"), dict) and p:
        c = max((f for v in p.values() if (f := as_float(v)) is not None), default=None)
    return as_float(c)


def finding_id(model_id: str, kind: str, key: str | None, window_start: int) -> str:
    """Deterministic id of a finding: the same window evaluated twice (a replay after a restart)
    gives the same id, so consumers recognise the copy. `key` is the feature, vendor... or None.

    >>> finding_id("m", "data_drift", "x", 0) == finding_id("m", "data_drift", "x", 0)
    True
    >>> finding_id("m", "data_drift", "x", 0) == finding_id("m", "data_drift", "y", 0)
    False
    """
    raw = f"{model_id}\x1f{kind}\x1f{key or ''}\x1f{int(window_start)}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    finding_id: str
    kind: str
    model_id: str
    model_version: str = "unknown"
    feature: str | None = None
    vendor: str | None = None
    window_start: AwareDatetime
    window_end: AwareDatetime
    n: int
    metrics: dict[str, float | None]
    severity: Severity
    evidence: dict[str, Any] = Field(default_factory=dict)
    recommended_actions: list[str] = Field(default_factory=list)


class Action(BaseModel):
    action_id: str
    type: Literal["page_oncall", "enable_human_review", "queue_retraining", "rollback",
                  "increase_monitoring_frequency", "notify"]
    model_id: str
    priority: str
    reason: str
    alert_id: str | None = None
    created_at: AwareDatetime


class Alert(BaseModel):
    alert_id: str
    fingerprint: str
    severity: Severity
    status: Literal["firing", "acknowledged", "resolved", "silenced"]
    title: str
    summary: str
    model_id: str
    kind: str
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    occurrences: int
    findings: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)


class ModelMode(BaseModel):
    mode: Literal["automated", "human_review"]
    since: datetime | None = None
    reason: str | None = None


class IngestResult(BaseModel):
    accepted: int
    duplicates: int
