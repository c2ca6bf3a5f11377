"""Prediction events read a field at a time: from decoded dicts, or decoded typed. No I/O.

`columnar` (services.drift.windows) builds a window `Batch` from a record's events through one
of two readers with the same methods:

- `DictEvents`: events as the untyped decoder gives them (any producer's JSON);
- `TypedEvents`: a record decoded by its model's `EventDecoder` straight into msgspec structs,
  one field per feature the model reads. The decoder takes a record only when every event has
  the fields the worker needs, every feature of the model's schema and reference is present as
  a number or null and no other feature is (else it returns None and the record goes the dict
  way, which checks each event and dead-letters the bad ones). No per-value type checks and no
  feature dicts remain: this is about half of the cost of decoding and reading such a record
  (`python -m bench.drift`). It applies to models whose schema and reference features are all
  numeric and that have a registered reference (a first-window reference keeps raw features).

The rules a whole record must pass to be counted at once (`record_times`) are written once for
both readers; tests/unit/test_drift_columnar.py holds the typed reading equal to the dict one.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Annotated, Any

import msgspec
import numpy as np

from shared.events import NUMBER_OR_NULL, confidence, event_times, floats
from services.drift.labels import VARIANT_CODE

EXTRAS = frozenset(("variant", "error", "latency_ms", "request_id", "segment"))  # canary, shadow, fairness


def numeric_matrix(features: Sequence[Mapping[str, Any]], names: Sequence[str]) -> np.ndarray | None:
    """The features `names` of every event as floats, shape (len(names), m), null as NaN: one
    pass over the events when each has every one of them as a number or null; None when any
    lacks one or holds something else (the caller then goes a column at a time)."""
    if not names or not features:
        return None
    try:
        rows = list(map(operator.itemgetter(*names), features))
    except KeyError:
        return None
    values = rows if len(names) == 1 else chain.from_iterable(rows)
    if not set(map(type, values)) <= NUMBER_OR_NULL:
        return None
    try:
        x = np.array(rows, dtype=float)
    except OverflowError:  # an integer beyond a float's range
        return None
    return np.ascontiguousarray(x.reshape(len(features), len(names)).T)


def features_read(layout: Any, quality: Any) -> list[str]:
    """The features `columnar` reads as numbers in one pass: the reference's numeric ones and the
    schema's numeric ones (a `WindowLayout` and a `QualityLayout`), sorted."""
    return sorted({*layout.numeric, *(f for f, t in zip(quality.names, quality.types) if t == "numeric")})


class DictEvents:
    """Field reads over event dicts (each passed `check_event`)."""

    def __init__(self, events: Sequence[Mapping[str, Any]]):
        self.events = events
        self.features = [e["features"] for e in events]

    def __len__(self) -> int:
        return len(self.events)

    def field(self, name: str, default: Any = None) -> list:
        return [e.get(name, default) for e in self.events]

    def feature(self, name: str) -> list:
        return [f.get(name) for f in self.features]

    def matrix(self, names: Sequence[str]) -> np.ndarray | None:
        return numeric_matrix(self.features, names)

    def has_extras(self) -> bool:
        return not all(map(EXTRAS.isdisjoint, self.events))

    def confidences(self) -> list:
        conf = self.field("confidence")
        return list(map(confidence, self.events)) if None in conf else conf


def record_times(ev: DictEvents | TypedEvents, model_id: str | None = None) -> list[float] | None:
    """Every event's time when the events (structurally sound: each a dict with a non-empty
    event_id, a features dict and a prediction, or typed) also pass the rest of `check_event`
    as a whole (and, given `model_id`, name it); None when any does not."""
    n = len(ev)
    if model_id is not None and ev.field("model_id").count(model_id) != n:
        return None
    if ev.has_extras():
        variants = ev.field("variant", "primary")
        if set(map(type, variants)) != {str} or not set(variants) <= VARIANT_CODE.keys():
            return None
        lat = ev.field("latency_ms")
        if not set(map(type, lat)) <= NUMBER_OR_NULL or np.any((x := floats(lat)) < 0) or np.isinf(x).any():
            return None
        if not set(map(type, ev.field("segment"))) <= {dict, type(None)}:
            return None
    try:
        return event_times(ev.field("timestamp"))
    except (ValueError, TypeError):
        return None


class EventDecoder:
    """A model's typed decoder of prediction records (see the module's docstring)."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)  # the features read, sorted as `columnar` reads them
        self.attrs = {n: f"f{i}" for i, n in enumerate(self.names)}
        features = msgspec.defstruct("Features", [(a, float | None) for a in self.attrs.values()],
                                     rename={a: n for n, a in self.attrs.items()}, forbid_unknown_fields=True,
                                     gc=False)
        event = msgspec.defstruct("Event", [
            ("event_id", Annotated[str, msgspec.Meta(min_length=1)]), ("model_id", str), ("features", features),
            ("prediction", Any), ("timestamp", Any, None), ("confidence", Any, None),
            ("model_version", Any, "unknown"), ("variant", Any, "primary"), ("error", Any, None),
            ("latency_ms", Any, None), ("request_id", Any, None), ("segment", Any, None)], gc=False)
        self._decoder = msgspec.json.Decoder(list[event])
        self.keys = dict.fromkeys(self.names)  # every typed event's feature names

    @classmethod
    def of(cls, cfg: Any) -> EventDecoder | None:
        """The decoder for a `WindowConfig`, or None when its model does not qualify: a feature
        that is not numeric, or no registered reference."""
        lay, quality = cfg.layout, cfg.quality
        if not (lay.numeric or lay.prediction_kind) or lay.categorical or set(quality.types) - {"numeric"}:
            return None
        names = features_read(lay, quality)  # every schema feature is numeric here
        return cls(names) if names else None

    def decode(self, value: bytes, model_id: str) -> TypedEvents | None:
        """A record's events typed, with their times, when all of them can be counted at once
        and each names `model_id`; None when any cannot (or the record is not a JSON array)."""
        try:
            events = self._decoder.decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        ev = TypedEvents(self, events)
        if not events or None in ev.field("confidence"):  # no confidence: probabilities need the dict
            return None
        ev.ts = record_times(ev, model_id)
        return None if ev.ts is None else ev


class TypedEvents:
    """Events decoded by an `EventDecoder` (one record, or several joined): `DictEvents`' reads."""

    def __init__(self, decoder: EventDecoder, events: list, ts: list[float] | None = None):
        self.decoder, self.events, self.ts = decoder, events, ts

    @classmethod
    def join(cls, parts: Sequence[TypedEvents]) -> TypedEvents:
        if len(parts) == 1:
            return parts[0]
        return cls(parts[0].decoder, [e for p in parts for e in p.events], [t for p in parts for t in p.ts])

    def __len__(self) -> int:
        return len(self.events)

    @property
    def features(self) -> list[Mapping[str, Any]]:
        """Each event's feature names (all of the decoder's, no other), for the schema counts."""
        return [self.decoder.keys] * len(self.events)

    def field(self, name: str, default: Any = None) -> list:  # absent fields hold the struct's defaults
        return list(map(operator.attrgetter(name), self.events))

    def feature(self, name: str) -> list:
        get = operator.attrgetter(self.decoder.attrs[name])
        return [get(e.features) for e in self.events]

    def matrix(self, names: Sequence[str]) -> np.ndarray | None:
        if list(names) != self.decoder.names or not self.events:
            return None
        rows = list(map(msgspec.structs.astuple, [e.features for e in self.events]))  # fields in `names` order
        n, k = len(rows), len(names)
        try:  # floats only: read straight into the array
            x = np.fromiter(chain.from_iterable(rows), dtype=float, count=n * k)
        except TypeError:  # a null among them: NaN
            x = np.array(rows, dtype=float)
        return np.ascontiguousarray(x.reshape(n, k).T)

    def has_extras(self) -> bool:
        return True  # every event carries them (their defaults when absent)

    def confidences(self) -> list:
        return self.field("confidence")  # never None: `EventDecoder.decode` refuses those
