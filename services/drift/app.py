"""The drift worker: `vigil.predictions` and `vigil.labels` -> windows -> findings on `vigil.findings`.
Moves data only.

Checkpoints, restores, fencing, the findings outbox and dead letters are `services.stream`'s
(shared with the oversight worker); this module holds what is drift's: the per-partition
`DriftState` (the `Windows` of the predictions and each model's `LabelJoin`), the registry
reads, and the evaluations: a drift window when it closes (`services.drift.evaluate`), its
performance window once its labels are in (`services.drift.performance`), and the online
detectors on the labelled errors as labels join.

Records must be keyed by model_id (ingest and `shared.emitter` do so): then all of a model's
events are in one partition, per-partition state is per-model state, and each window is
evaluated by exactly one worker. An event whose model_id is not its record's key goes to
`vigil.deadletter`, as do records that are not JSON, invalid events, and unknown models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from shared import kafka
from shared import metrics as m
from shared.events import ModelSpec, ReferenceColumn
from shared.history import History
from shared.settings import Settings
from shared.stats.baseline import Baseline
from services import stream
from services.models_feed import ModelsFeed
from services.drift.labels import check_label
from services.drift.records import EventDecoder, TypedEvents
from services.drift.state import Applied, DriftState, window_config
from services.drift.windows import WindowConfig, checked_event, countable

TOPIC = kafka.TOPICS["predictions"]
LABELS = kafka.TOPICS["labels"]
REGISTRY_TTL = 10.0  # seconds a model's spec and reference are cached
TYPED_PATIENCE = 8  # refused records in a row after which a model's typed decoding is tried once in 64
GAUGES = {"psi": m.FEATURE_PSI, "ks_statistic": m.FEATURE_KS, "js_divergence": m.PREDICTION_JS,
          "performance": m.MODEL_PERFORMANCE, "fairness": m.FAIRNESS_GAP,
          "performance_baseline": m.MODEL_PERFORMANCE_BASELINE, "performance_projected": m.MODEL_PERFORMANCE_PROJECTED,
          "performance_min_acceptable": m.MODEL_PERFORMANCE_MIN}


@dataclass
class Model:
    spec: ModelSpec
    base: Baseline | None
    cfg: WindowConfig
    loaded: float
    source: tuple  # what it was built from: ("feed", version) or ("redis", spec bytes, reference bytes)
    decoder: EventDecoder | None = None  # its records decoded typed, when it qualifies
    refusals: int = 0  # records in a row its decoder refused (past TYPED_PATIENCE: tried now and then)


class Registry:
    """Model specs and reference profiles: from the `vigil.models` feed as soon as it has them
    (a change applies to the next batch), else from the Redis keys ingest writes (cached
    REGISTRY_TTL seconds)."""

    def __init__(self, redis, sample_size: int, feed: ModelsFeed | None = None):
        self.redis, self.sample_size, self.feed = redis, sample_size, feed
        self.models: dict[str, Model | None] = {}

    async def get(self, model_id: str) -> Model | None:
        cached = self.models.get(model_id)
        known = self.feed.model(model_id) if self.feed is not None else None
        if known is not None:
            source = ("feed", self.feed.versions.get(model_id))
            if cached is None or cached.source != source:
                cached = self._build(model_id, *known, source)
            return cached
        if cached is not None and time.monotonic() - cached.loaded < REGISTRY_TTL:
            return cached
        spec_raw, ref_raw = await self.redis.mget([f"vigil:registry:model:{model_id}",
                                                   f"vigil:registry:reference-columns:{model_id}"])
        if spec_raw is None and ref_raw is None:
            return cached  # keep what was known (None: unknown model)
        source = ("redis", spec_raw, ref_raw)
        if cached is not None and cached.source == source:
            cached.loaded = time.monotonic()
            return cached
        return self._build(model_id, spec_raw and kafka.loads(spec_raw), ref_raw and kafka.loads(ref_raw), source)

    def _build(self, model_id: str, spec_json: dict | None, ref_json: dict | None, source: tuple) -> Model:
        spec = ModelSpec.model_validate(spec_json) if spec_json else ModelSpec()
        base = None
        if ref_json:
            cols = {n: ReferenceColumn.model_validate(c) for n, c in ref_json.items()}
            base = Baseline.from_profile(cols, task=spec.task)
        cfg = window_config(spec, base, self.sample_size)
        model = Model(spec, base, cfg, time.monotonic(), source, EventDecoder.of(cfg))
        self.models[model_id] = model
        return model


class DriftWorker(stream.StreamWorker):
    service = "drift"
    topics = (TOPIC, LABELS)

    def __init__(self, settings: Settings, group: str | None = None, checkpoint_seconds: float | None = None,
                 window_sample: int | None = None):
        super().__init__(settings, group or settings.drift_group,
                         settings.drift_checkpoint_seconds if checkpoint_seconds is None else checkpoint_seconds)
        self.window_sample = window_sample or 12_000

    def new_state(self) -> DriftState:
        return DriftState()

    def load_state(self, data) -> DriftState:
        return DriftState.from_dict(data)

    def dump_state(self, state: DriftState) -> dict:
        return state.to_dict()

    async def setup(self) -> None:
        self.feed = ModelsFeed()
        self.feed.start(self.settings.kafka_bootstrap)
        self.registry = Registry(self.redis, self.window_sample, self.feed)
        self.history = History(self.redis, "drift", self.settings.findings_retention_days * 86400)

    async def teardown(self) -> None:
        await self.feed.stop()

    async def _by_model(self, records, check, check_all=None) -> dict[str, tuple[list[dict], list]]:
        """A batch's valid events per model (record key) with what `check(event, model_id, model)`
        returned for each (an error str sends the event to the dead letters instead); bad records
        to the dead letters. `check_all(events, model_id)`: the values of a whole record at once
        when all its events pass (None: check each)."""
        by_model: dict[str, tuple[list[dict], list]] = {}
        for r, model_id, events in self.keyed(records):
            model = await self.registry.get(model_id) if model_id else None
            if model is None:
                self.dead(r, "unknown_model", f"record key {model_id!r}: no model registered with this id "
                                              "(records must be keyed by model_id)")
                continue
            good, values = by_model.setdefault(model_id, ([], []))
            if check_all is not None and (all_values := check_all(events, model_id)) is not None:
                good.extend(events)
                values.extend(all_values)
                continue
            for i, e in enumerate(events):
                if type(v := check(e, model_id, model)) is str:
                    self.dead(r, "invalid", f"event {i}: {v}", kafka.dumps(e))
                else:
                    good.append(e)
                    values.append(v)
        return by_model

    async def handle(self, part: stream.Part, topic: str, records) -> list[dict]:
        """Count a partition's records (predictions into windows and the join, labels into the
        join); return the findings that became due."""
        state: DriftState = part.state
        found: list[dict] = []
        if topic == LABELS:
            for model_id, (events, ts) in (await self._by_model(records, _check_label)).items():
                self.events += len(events)
                model = await self.registry.get(model_id)
                found.extend(await self._apply(state.labels(model_id, model, events, self.settings, ts)))
            return found
        typed, rest = await self._typed(records)
        for model_id, (model, events) in typed.items():
            found.extend(await self._apply(state.predictions(model_id, model, events, self.settings, events.ts)))
        for model_id, (events, ts) in (await self._by_model(rest, _check_prediction, countable)).items():
            model = await self.registry.get(model_id)
            found.extend(await self._apply(state.predictions(model_id, model, events, self.settings, ts)))
        return found

    async def _typed(self, records) -> tuple[dict[str, tuple[Model, TypedEvents]], list]:
        """Prediction records decoded typed (`services.drift.records`) per model, for the models
        whose decoder takes every one of their records in this batch; the other records, in log
        order, for `_by_model` (which decodes, checks each event and dead-letters)."""
        typed: dict[str, tuple[Model, list[TypedEvents]]] = {}
        refused: set[str | None] = set()
        keys = [r.key.decode(errors="replace") if r.key else None for r in records]
        for r, model_id in zip(records, keys):
            if model_id in refused:
                continue
            model = await self.registry.get(model_id) if model_id else None
            got = None
            if model is not None and model.decoder is not None:
                if model.refusals < TYPED_PATIENCE or model.refusals % 64 == 0:  # a producer that never qualifies
                    got = model.decoder.decode(r.value, model_id)              # is not decoded twice a record
                model.refusals = 0 if got is not None else model.refusals + 1
            if got is None or (model_id in typed and typed[model_id][0] is not model):
                refused.add(model_id)
                continue
            typed.setdefault(model_id, (model, []))[1].append(got)
        return ({m: (model, TypedEvents.join(parts)) for m, (model, parts) in typed.items() if m not in refused},
                [r for r, m in zip(records, keys) if m in refused])

    async def _apply(self, out: Applied) -> list[dict]:
        """Move an application's counts to the metrics and its gauges also to the per-window
        history (`shared.history`: a replay rewrites the same entries); its findings as JSON."""
        self.events += out.events
        model_id = out.model_id
        if out.late:
            m.LATE_EVENTS.labels(model_id=model_id).inc(out.late)
        for name, counter in (("matched", m.LABELS_MATCHED), ("late", m.LABELS_LATE),
                              ("unmatched", m.LABELS_UNMATCHED)):
            if (n := getattr(out.joined, name)):
                counter.labels(model_id=model_id).inc(n)
        for gauge, labels, value in out.gauges:
            GAUGES[gauge].labels(**labels).set(value)
        if out.gauges:
            try:
                await self.history.write(model_id, [(start, *g) for start, g in zip(out.gauge_starts, out.gauges)])
            except RedisError as exc:  # the history is the report's view; the stream must not stop for it
                self.log.warning("history of %s not written: %s", model_id, exc)
        for w, exc in out.skipped:
            self.log.warning("window %s@%s not evaluated: %s", model_id, w, exc)
        m.LABELS_PENDING.labels(model_id=model_id).set(out.pending)
        return [f.model_dump(mode="json") for f in out.findings]


def _check_prediction(e, model_id: str, model: Model) -> str | float:
    """The event's time, or why it cannot be counted."""
    t = checked_event(e)
    if type(t) is float and e.get("model_id") != model_id:
        return f"model_id={e.get('model_id')!r}: must equal the record key {model_id!r}"
    return t


def _check_label(e, model_id: str, model: Model) -> str | float:
    return check_label(e, model_id, numeric=model.spec.task == "regression")


def serve(settings: Settings) -> None:
    stream.serve(DriftWorker, settings, settings.drift_port, "drift")
