"""An integer beyond 64 bits, or beyond a float's range, in any field of an input event never
stops a worker: the event is counted or dead-lettered (its raw text exact), and the rest of the
record is counted. The workers' decoder (msgspec) keeps such integers exact, where JSON allows
them; this walks every field of every input topic through the real `handle` of the drift and
oversight workers (their history and registry on the real Redis)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import redis.asyncio as aioredis

from bench.labels import Feed
from shared import kafka
from shared.history import History
from shared.settings import Settings
from services import stream
from services.drift.app import DriftWorker, Registry
from services.oversight.app import OversightWorker
from services.oversight.app import Registry as OversightRegistry
from tests.integration.drift_support import T0, reference, spec

M = "big-ints"
HUGE = (10**30, -(10**30), 10**400)
PREDICTION = {"event_id": "p", "model_id": M, "timestamp": T0 + 1.5, "features": {"f00": 0.1, "f01": -0.2},
              "prediction": 1, "confidence": 0.9, "latency_ms": 12.0, "model_version": "v1", "variant": "primary",
              "error": False, "request_id": "r", "segment": {"g": "a"}, "probabilities": {"0": 0.1, "1": 0.9},
              "vendor": "acme"}
LABEL = {"event_id": "p", "model_id": M, "timestamp": T0 + 2.0, "label": 1}
REVIEW = {"review_id": "v", "reviewer_id": "ann", "model_id": M, "event_id": "p", "timestamp": T0 + 3.0,
          "ai_prediction": 1, "ai_confidence": 0.7, "human_decision": 0, "review_seconds": 30.0}


def paths(event: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for k, v in event.items():
        out.extend(paths(v, (*prefix, k)) if isinstance(v, dict) else [(*prefix, k)])
    return out


def with_value(event: dict, path: tuple, value) -> dict:
    e = {k: dict(v) if isinstance(v, dict) else v for k, v in event.items()}
    at = e
    for k in path[:-1]:
        at = at[k]
    at[path[-1]] = value
    return e


def variants(event: dict, name: str) -> list[dict]:
    """`event` once per field and huge value, each with its own id."""
    out = []
    for j, path in enumerate(paths(event)):
        for h, big in enumerate(HUGE):
            e = with_value(event, path, big)
            if path != (name,):
                e[name] = f"{event[name]}-{j}-{h}"
            out.append(e)
    return out


def records(topic: str, events: list[dict]) -> list:
    """One record per event and one record of them all (duplicates of each: counted once)."""
    values = [*(kafka.dumps([e]) for e in events), kafka.dumps(events)]
    return [SimpleNamespace(topic=topic, key=M.encode(), value=v, offset=i, partition=0) for i, v in enumerate(values)]


def handled(worker: stream.StreamWorker, part: stream.Part, redis_url: str, batches) -> list[tuple[str, list]]:
    """Each (topic, events) through `worker.handle`; its dead letters (reason, raw) per batch."""
    async def run():
        client = aioredis.from_url(redis_url)
        worker.history = History(client, worker.service, 3600)
        out = []
        try:
            for topic, events in batches:
                worker._dead.clear()
                await worker.handle(part, topic, records(topic, events))
                out.append((topic, [(reason, raw) for _, reason, _, raw in worker._dead]))
        finally:
            await client.aclose()
        return out
    return asyncio.run(run())


def exact(dead: list) -> None:
    """Each dead letter decoded (no record lost as "not JSON") and its event's huge integer in it digit for digit."""
    assert dead and all(reason == "invalid" for reason, _ in dead), dead
    assert all(b"1" + b"0" * 30 in raw or b"1" + b"0" * 400 in raw for _, raw in dead), dead


def test_the_drift_worker_counts_or_dead_letters_every_event_with_a_huge_integer(redis_url):
    worker = DriftWorker(Settings(redis_url=redis_url))
    worker.registry = Registry(None, worker.window_sample, Feed(spec(), reference(np.random.default_rng(3), 500), M))
    part = stream.Part(worker.new_state())
    preds = variants(PREDICTION, "event_id")
    (_, dead_preds), (_, dead_labels) = handled(worker, part, redis_url, [(kafka.TOPICS["predictions"], preds),
                                                                     (kafka.TOPICS["labels"], variants(LABEL, "event_id"))])
    exact(dead_preds)
    exact(dead_labels)
    dead_ids = {kafka.decode_record(raw)[0].get("event_id") for _, raw in dead_preds}
    counted = sum(w.state.n for w in part.state.windows.models[M].open.values())
    assert counted == len({e["event_id"] for e in preds} - dead_ids) > 0, (counted, sorted(dead_ids))


def test_the_oversight_worker_counts_or_dead_letters_every_event_with_a_huge_integer(redis_url):
    worker = OversightWorker(Settings(redis_url=redis_url))
    worker.registry = OversightRegistry(aioredis.from_url(redis_url))
    part = stream.Part(worker.new_state())
    batches = [(kafka.TOPICS["reviews"], variants(REVIEW, "review_id")),
               (kafka.TOPICS["predictions"], variants(PREDICTION, "event_id")),
               (kafka.TOPICS["labels"], variants(LABEL, "event_id"))]
    for topic, dead in handled(worker, part, redis_url, batches):
        exact(dead)
    assert part.state.model(M) is not None
