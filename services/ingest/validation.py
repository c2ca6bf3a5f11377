"""Turn a request body into validated events, or into a list of precise errors.

Pure: bytes in, models or errors out. Each error names the record's index, the field and
the reason, so a client can fix exactly what is wrong.

>>> events, errors, raw = parse_events("labels", b'[{"event_id": "e", "model_id": "m", "label": 1, "timestamp": "2024-01-01T00:00:00"}]', "application/json")
>>> errors
[{'index': 0, 'field': 'timestamp', 'reason': 'Input should have timezone info'}]
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

import msgspec
from pydantic import BaseModel, ValidationError

from shared.events import EVENT_KINDS, EVENT_LISTS

from . import fast

JSON_TYPES = {"application/json"}
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl",
                "application/x-jsonlines", "application/jsonlines"}


class BodyError(ValueError):
    """The body as a whole cannot be read (not JSON, wrong type, empty): HTTP 400/415."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Parsed(NamedTuple):
    events: list[Any]  # validated events (the fast path's structs or the models); empty when there are errors
    errors: list[dict]  # [{index, field, reason}]
    raw: bytes  # the body as one JSON array of the same events, exactly as sent


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_events(kind: str, body: bytes, content_type: str | None) -> Parsed:
    """Validate a body of one event object, a JSON array, or NDJSON.

    Returns (events, errors); a non-empty `errors` means nothing may be published.
    Raises BodyError when the body itself is unusable.
    """
    mtype = media_type(content_type)
    if mtype not in JSON_TYPES and mtype not in NDJSON_TYPES:
        raise BodyError(415, f"content-type {mtype or '(none)'!r}: must be application/json "
                             "or application/x-ndjson")
    if not body.strip():
        raise BodyError(400, "body is empty: send one event object, a JSON array, or NDJSON")
    if mtype in NDJSON_TYPES:
        return _parse_ndjson(kind, body)
    stripped = body.lstrip()
    if stripped[:1] == b"{":
        wrapped = b"[" + body + b"]"
    elif stripped[:1] == b"[":
        wrapped = body
    else:
        raise BodyError(400, "body is not JSON: expected an event object or an array of events")
    try:
        return Parsed(_validate(kind, wrapped), [], wrapped)
    except ValidationError as exc:
        _raise_if_unparsable(exc)
        return Parsed([], collapse_errors(exc.errors(include_url=False)), wrapped)


def _validate(kind: str, wrapped: bytes) -> list:
    """The events of a JSON array: the fast path's when it takes them, else pydantic's models
    (raising its ValidationError)."""
    events = fast.decode(kind, wrapped)
    return EVENT_LISTS[kind].validate_json(wrapped) if events is None else events


def as_models(kind: str, events: list) -> list:
    """Events as the pydantic models (those of the fast path converted; the same values)."""
    if not events or isinstance(events[0], BaseModel):
        return events
    return EVENT_LISTS[kind].validate_python([msgspec.structs.asdict(e) for e in events])


def _parse_ndjson(kind: str, body: bytes) -> Parsed:
    lines = [ln for ln in body.splitlines() if ln.strip()]
    wrapped = b"[" + b",".join(lines) + b"]"
    try:
        return Parsed(_validate(kind, wrapped), [], wrapped)
    except ValidationError as exc:
        if not any(e["type"] == "json_invalid" for e in exc.errors()):
            return Parsed([], collapse_errors(exc.errors(include_url=False)), wrapped)
    # Some line is not JSON: validate line by line so each error names its line.
    model = EVENT_KINDS[kind]
    errors: list[dict] = []
    for i, line in enumerate(lines):
        try:
            model.model_validate_json(line)
        except ValidationError as exc:
            for err in collapse_errors(exc.errors(include_url=False), offset_index=False):
                errors.append({**err, "index": i})
    return Parsed([], errors, wrapped)


def _raise_if_unparsable(exc: ValidationError) -> None:
    for e in exc.errors(include_url=False):
        if e["type"] == "json_invalid":
            raise BodyError(400, f"body is not valid JSON: {e['msg']}")


# Union branches (e.g. a feature value: bool | number | string | null) each add an error with
# the branch's name appended to the location; a person wants one error per field.
_TYPE_MISMATCH = {"bool_type", "float_type", "int_type", "string_type", "none_required",
                  "float_parsing", "int_parsing", "bool_parsing", "int_from_float", "dict_type",
                  "model_type", "list_type"}


_BRANCH_TAGS = {"bool", "int", "float", "str", "none", "constrained-str", "constrained-int",
                "constrained-float"}


def collapse_errors(raw: list[dict], offset_index: bool = True) -> list[dict]:
    """Pydantic errors -> [{index, field, reason}], one per bad field, most specific reason."""
    locs = [tuple(e["loc"]) for e in raw]
    # A location is a union branch when several errors differ only in a trailing branch tag.
    branch_parents = {loc[:-1] for loc in locs if loc and loc[-1] in _BRANCH_TAGS}
    branch_parents = {p for p in branch_parents
                      if sum(1 for loc in locs if loc[:-1] == p and loc[-1] in _BRANCH_TAGS) > 1}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for e, loc in zip(raw, locs):
        if loc and loc[:-1] in branch_parents and loc[-1] in _BRANCH_TAGS:
            loc = loc[:-1]
        if offset_index and loc and isinstance(loc[0], int):
            index, path = loc[0], loc[1:]
        else:
            index, path = (None if offset_index else 0), loc
        groups[(index, ".".join(map(str, path)))].append(e)
    out = []
    for (index, field), errs in groups.items():
        specific = [e for e in errs if e["type"] not in _TYPE_MISMATCH]
        if errs[0]["type"] == "extra_forbidden":
            reason = "unknown field"
        elif specific:
            reason = specific[0]["msg"]
        elif len(errs) > 1:
            reason = "wrong type: should be " + " or ".join(
                sorted({e["msg"].removeprefix("Input should be ") for e in errs}))
        else:
            reason = errs[0]["msg"]
        out.append({"index": index, "field": field or "(record)", "reason": reason})
    return sorted(out, key=lambda d: (-1 if d["index"] is None else d["index"], d["field"]))
