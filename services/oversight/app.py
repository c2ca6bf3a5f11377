"""The oversight worker: `vigil.reviews`, `vigil.predictions`, `vigil.labels` -> findings. Moves data only.

Checkpoints, restores, fencing, the findings outbox and dead letters are `services.stream`'s
(shared with the drift worker). This module holds what is oversight's: decoding, the registry
reads (model spec, vendor SLA), the per-partition `State`, and the evaluation of what became
due, with its side effects: gauges (`vigil_override_rate`, `vigil_vendor_latency_ms`,
`vigil_vendor_sla_compliant`; no reviewer ids in labels) and, in Redis, the latest review
summary per model (`vigil:oversight:model:<model_id>`) and the latest vendor report per model
(hash `vigil:oversight:vendor:<vendor>`, field model_id) that ingest's
`GET /v1/vendors/{vendor}/report` serves. Both are overwritten by a replay with the same value.

Records must be keyed by model_id; an event whose model_id is not its record's key, a record
that is not JSON and an invalid event go to `vigil.deadletter`. A model without a registered
spec is monitored with `ModelSpec()` defaults; a vendor without an SLA still gets its metrics
and report (status "no SLA") but no finding.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from redis.exceptions import RedisError

from shared import kafka
from shared import metrics as m
from shared.events import ModelSpec, VendorSLA
from shared.history import History
from shared.settings import Settings
from shared.stats.vendor import INSUFFICIENT, NO_SLA
from services import stream
from services.oversight import state as st
from services.oversight.evaluate import coverage_at, reviews_at, vendor_at

KINDS = {kafka.TOPICS[k]: k for k in st.TOPIC_KINDS}
ADD = {"reviews": st.add_reviews, "predictions": st.add_predictions, "labels": st.add_labels}
REGISTRY_TTL = 10.0
MODEL_KEY = "vigil:oversight:model:"
VENDOR_KEY = "vigil:oversight:vendor:"


def _period(slas: dict[str, dict | None], vendor: str) -> int:
    return int((slas.get(vendor) or {}).get("period_days", 7))


class Registry:
    """Model specs and vendor SLAs from the keys ingest writes in Redis, cached REGISTRY_TTL seconds."""

    def __init__(self, redis):
        self.redis = redis
        self.cache: dict[str, tuple[float, Any]] = {}

    async def _get(self, key: str, model) -> Any:
        hit = self.cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < REGISTRY_TTL:
            return hit[1]
        raw = await self.redis.get(key)
        value = None
        if raw is not None:
            try:
                value = model.model_validate(kafka.loads(raw))
            except Exception:  # noqa: BLE001 - a bad registry value is as good as none
                value = None
        self.cache[key] = (time.monotonic(), value)
        return value

    async def spec(self, model_id: str) -> ModelSpec:
        return await self._get(f"vigil:registry:model:{model_id}", ModelSpec) or ModelSpec()

    async def sla(self, vendor: str) -> dict | None:
        sla = await self._get(f"vigil:registry:vendor:{vendor}", VendorSLA)
        return None if sla is None else sla.model_dump(mode="json")


class OversightWorker(stream.StreamWorker):
    service = "oversight"
    topics = tuple(kafka.TOPICS[k] for k in st.TOPIC_KINDS)

    def __init__(self, settings: Settings, group: str | None = None, checkpoint_seconds: float | None = None):
        super().__init__(settings, group or settings.oversight_group,
                         settings.oversight_checkpoint_seconds if checkpoint_seconds is None else checkpoint_seconds)
        self.cfg = st.Config(settings.oversight_eval_seconds, settings.oversight_days,
                             settings.oversight_lateness_seconds, settings.oversight_low_confidence)

    def new_state(self) -> st.State:
        return st.State()

    def load_state(self, data) -> st.State:
        return st.State.from_dict(data)

    def dump_state(self, state: st.State) -> dict:
        return state.to_dict()

    async def setup(self) -> None:
        self.registry = Registry(self.redis)
        self.history = History(self.redis, "oversight", self.settings.findings_retention_days * 86400)

    async def handle(self, part: stream.Part, topic: str, records) -> list[dict]:
        kind = KINDS[topic]
        by_model: dict[str, tuple[list[dict], list[np.ndarray]]] = {}
        for r, model_id, events in self.keyed(records):
            if not model_id:
                self.dead(r, "no_key", "record has no key: records must be keyed by model_id")
                continue
            good, ts, bad = st.validate(kind, events, model_id)
            for i, err in bad:
                self.dead(r, "invalid", f"event {i}: {err}", kafka.dumps(events[i]))
            if good:
                chunks = by_model.setdefault(model_id, ([], []))
                chunks[0].extend(good)
                chunks[1].append(ts)
        state: st.State = part.state
        found: list[dict] = []
        for model_id, (events, ts) in by_model.items():
            ms = state.model(model_id)
            added = ADD[kind](ms, events, self.cfg, np.concatenate(ts))
            self.events += len(events)  # every valid event of every topic, late ones too (as drift counts)
            if added.late:
                m.LATE_EVENTS.labels(model_id=model_id).inc(added.late)
            found.extend(await self._due(model_id, ms))
        return found

    async def _due(self, model_id: str, ms: st.ModelState) -> list[dict]:
        found = []
        hours = st.due_reviews(ms, self.cfg)
        cov = st.due_coverage(ms, self.cfg)
        spec = await self.registry.spec(model_id) if hours or cov or ms.first_day is not None else None
        summary, rates = None, []
        for h in hours:
            f, summary = reviews_at(model_id, ms, h, self.cfg, spec, self.settings.oversight_min_reviews)
            found.extend(f)
            if summary["metrics"]["override_rate"] is not None:  # the report's history, keyed by the hour's end
                rates.append((h, "override_rate", {}, summary["metrics"]["override_rate"]))
        for h in cov:
            f, metrics = coverage_at(model_id, ms, h, self.cfg, spec)
            found.extend(f)
            if summary is not None and h == hours[-1]:
                summary["coverage"] = metrics
        if summary is not None:
            if summary["metrics"]["override_rate"] is not None:
                m.OVERRIDE_RATE.labels(model_id=model_id).set(summary["metrics"]["override_rate"])
            await self.redis.set(MODEL_KEY + model_id, kafka.dumps(summary))
        if rates:
            try:
                await self.history.write(model_id, rates)
            except RedisError as exc:  # the history is the report's view; the stream must not stop for it
                self.log.warning("override-rate history of %s not written: %s", model_id, exc)
        slas: dict[str, dict | None] = {}
        if ms.first_day is not None and ms.vendors:
            slas = {v: await self.registry.sla(v) for v in ms.vendors}
            positive = spec.positive_label if spec.positive_label is not None else 1
            dues = st.due_vendor_days(ms, self.cfg, spec.label_wait_seconds, positive, lambda v: _period(slas, v))
            reports: dict[str, dict] = {}
            for d in dues:
                f, reports[d.vendor] = vendor_at(model_id, ms, d.vendor, d.end, spec, slas[d.vendor])
                found.extend(f)
            for vendor, report in reports.items():
                self._vendor_gauges(vendor, report)
                await self.redis.hset(VENDOR_KEY + vendor, model_id, kafka.dumps(report))
        st.prune(ms, self.cfg, lambda v: _period(slas, v))
        return [f.model_dump(mode="json") for f in found]

    @staticmethod
    def _vendor_gauges(vendor: str, report: dict) -> None:
        for q, key in (("0.95", "latency_p95_ms"), ("0.99", "latency_p99_ms")):
            if report["metrics"][key] is not None:
                m.VENDOR_LATENCY.labels(vendor=vendor, quantile=q).set(report["metrics"][key])
        if report["status"] in (INSUFFICIENT, NO_SLA):
            return
        for name, term in report["terms"].items():
            if term["ok"] is not None:
                m.VENDOR_SLA_COMPLIANT.labels(vendor=vendor, sla=name).set(1.0 if term["ok"] else 0.0)


def serve(settings: Settings) -> None:
    stream.serve(OversightWorker, settings, settings.oversight_port, "oversight")


if __name__ == "__main__":  # `python -m services.oversight.app` until `vigil serve oversight` is wired
    import logging

    from shared.settings import get_settings
    s = get_settings()
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(s)
