"""The drift worker: `vigil.predictions` -> windows -> findings on `vigil.findings`. Moves data only.

Checkpoints, restores, fencing, the findings outbox and dead letters are `services.stream`'s
(shared with the oversight worker); this module holds what is drift's: the per-partition
`Windows`, the registry reads, and the window evaluation.

Records must be keyed by model_id (ingest and `shared.emitter` do so): then all of a model's
events are in one partition, per-partition state is per-model state, and each window is
evaluated by exactly one worker. An event whose model_id is not its record's key goes to
`vigil.deadletter`, as do records that are not JSON, invalid events, and unknown models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shared import kafka
from shared import metrics as m
from shared.events import ModelSpec, ReferenceColumn
from shared.settings import Settings
from shared.stats.baseline import Baseline
from shared.stats.window import WindowLayout
from services import stream
from services.models_feed import ModelsFeed
from services.drift.evaluate import findings as window_findings, gauges
from services.drift.quality import QualityLayout
from services.drift.windows import ClosedWindow, WindowConfig, Windows, check_event, columnar

TOPIC = kafka.TOPICS["predictions"]
REGISTRY_TTL = 10.0  # seconds a model's spec and reference are cached
GAUGES = {"psi": m.FEATURE_PSI, "ks_statistic": m.FEATURE_KS, "js_divergence": m.PREDICTION_JS}


@dataclass
class Model:
    spec: ModelSpec
    base: Baseline | None
    cfg: WindowConfig
    loaded: float
    source: tuple  # what it was built from: ("feed", version) or ("redis", spec bytes, reference bytes)


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
        layout = WindowLayout.of(base, self.sample_size) if base is not None else WindowLayout(sample_size=self.sample_size)
        model = Model(spec, base, WindowConfig(spec.window_seconds, spec.allowed_lateness_seconds, layout,
                                               QualityLayout.of(spec.features)), time.monotonic(), source)
        self.models[model_id] = model
        return model


class DriftWorker(stream.StreamWorker):
    service = "drift"
    topics = (TOPIC,)

    def __init__(self, settings: Settings, group: str | None = None, checkpoint_seconds: float | None = None,
                 window_sample: int | None = None):
        super().__init__(settings, group or settings.drift_group,
                         settings.drift_checkpoint_seconds if checkpoint_seconds is None else checkpoint_seconds)
        self.window_sample = window_sample or 12_000

    def new_state(self) -> Windows:
        return Windows()

    def load_state(self, data) -> Windows:
        return Windows.from_dict(data or {})

    def dump_state(self, state: Windows) -> dict:
        return state.to_dict()

    async def setup(self) -> None:
        self.feed = ModelsFeed()
        self.feed.start(self.settings.kafka_bootstrap)
        self.registry = Registry(self.redis, self.window_sample, self.feed)

    async def teardown(self) -> None:
        await self.feed.stop()

    async def handle(self, part: stream.Part, topic: str, records) -> list[dict]:
        """Count a partition's records into its windows; return the findings of windows that closed."""
        by_model: dict[str, list[dict]] = {}
        for r, model_id, events in self.keyed(records):
            model = await self.registry.get(model_id) if model_id else None
            if model is None:
                self.dead(r, "unknown_model", f"record key {model_id!r}: no model registered with this id "
                                              "(records must be keyed by model_id)")
                continue
            good = by_model.setdefault(model_id, [])
            for i, e in enumerate(events):
                err = check_event(e)
                if err is None and e.get("model_id") != model_id:
                    err = f"model_id={e.get('model_id')!r}: must equal the record key {model_id!r}"
                if err is None:
                    good.append(e)
                else:
                    self.dead(r, "invalid", f"event {i}: {err}", kafka.dumps(e))
        windows: Windows = part.state
        found: list[dict] = []
        for model_id, events in by_model.items():
            model = await self.registry.get(model_id)
            batch, _ = columnar(events, windows.effective(model_id, model.cfg))
            added = windows.add(model_id, model.cfg, batch, task=model.spec.task)
            self.events += len(batch)
            if added.late:
                m.LATE_EVENTS.labels(model_id=model_id).inc(added.late)
            for w in added.closed:
                found.extend(await self._evaluate(w))
        return found

    async def _evaluate(self, w: ClosedWindow) -> list[dict]:
        model = await self.registry.get(w.model_id)
        try:
            found, rows = window_findings(w, w.base or model.base, model.spec,
                                          "first_window" if w.base is not None else "registered")
        except ValueError as exc:  # the reference changed while the window was open
            self.log.warning("window %s@%s not evaluated: %s", w.model_id, w.start, exc)
            return []
        for metric, labels, value in gauges(w.model_id, rows):
            GAUGES[metric].labels(**labels).set(value)
        return [f.model_dump(mode="json") for f in found]


def serve(settings: Settings) -> None:
    stream.serve(DriftWorker, settings, settings.drift_port, "drift")
