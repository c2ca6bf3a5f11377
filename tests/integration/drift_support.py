"""Helpers for the drift integration tests and bench: register a model, produce windows, run workers."""

from __future__ import annotations

import asyncio
import operator
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from types import SimpleNamespace

import numpy as np
import orjson
import redis

from shared import kafka
from shared.emitter import encoder
from shared.events import EVENT_LISTS, ModelSpec
from shared.runtime import spawn
from shared.stats.reference import profile
from services.drift.state import DriftState, window_config
from shared.settings import Settings
from shared.stats.baseline import Baseline

FEATURES = [f"f{j:02d}" for j in range(20)]
T0 = 1_700_000_040  # a multiple of 60: windows start here
WINDOW = 60


def spec(window: int = WINDOW, **extra) -> dict:
    return ModelSpec(window_seconds=window, allowed_lateness_seconds=0, risk_tier="medium",
                     features={f: {"type": "numeric", "min": -10, "max": 10, "max_null_rate": 0.05}
                               for f in FEATURES}, **extra).model_dump(mode="json")


def reference(rng: np.random.Generator, rows: int = 5_000) -> dict:
    cols = {f: rng.normal(size=rows).tolist() for f in FEATURES}
    cols["prediction"] = rng.integers(0, 2, size=rows).tolist()
    cols["confidence"] = rng.uniform(0.5, 1.0, size=rows).tolist()
    return {n: c.model_dump(mode="json") for n, c in profile(cols, 10_000, seed=7).items()}


def register(redis_url: str, model_id: str, rng: np.random.Generator, window: int = WINDOW,
             with_reference: bool = True, **extra) -> None:
    """Write the registry keys ingest writes (`vigil:registry:model:<id>`, `...reference-columns:<id>`);
    `extra`: more ModelSpec fields."""
    r = redis.Redis.from_url(redis_url)
    r.set(f"vigil:registry:model:{model_id}", orjson.dumps(spec(window, **extra)))
    if with_reference:
        r.set(f"vigil:registry:reference-columns:{model_id}", orjson.dumps(reference(rng)))
    r.close()


def window_events(model_id: str, w: int, n: int, rng: np.random.Generator, shift: dict | None = None) -> list[dict]:
    """n events of window w (event time spread inside it), features N(0, 1) (+ shift per feature)."""
    x = rng.normal(size=(len(FEATURES), n))
    for f, d in (shift or {}).items():
        x[FEATURES.index(f)] += d
    ts = T0 + w * WINDOW + np.sort(rng.uniform(0, WINDOW - 1e-3, size=n))
    pred = rng.integers(0, 2, size=n)
    conf = rng.uniform(0.5, 1.0, size=n)
    rows = x.T.round(6).tolist()
    return [{"event_id": f"{model_id}-{w}-{i}", "model_id": model_id, "timestamp": float(ts[i]),
             "features": dict(zip(FEATURES, rows[i])), "prediction": int(pred[i]), "confidence": float(conf[i])}
            for i in range(n)]


def labels_of(events: list[dict], accuracy: float, rng: np.random.Generator, delay: float = 20.0) -> list[dict]:
    """Labels of prediction events, `delay` seconds after each, exactly round(accuracy * n) right."""
    right = np.zeros(len(events), dtype=bool)
    right[rng.permutation(len(events))[: round(accuracy * len(events))]] = True
    return [{"event_id": e["event_id"], "model_id": e["model_id"], "timestamp": e["timestamp"] + delay,
             "label": e["prediction"] if ok else 1 - e["prediction"]} for e, ok in zip(events, right.tolist())]


async def _produce(bootstrap: str, records: Iterable[tuple[bytes, bytes]], topic: str) -> None:
    producer = await kafka.start_producer(bootstrap, "off")
    try:
        futures = [await producer.send(kafka.TOPICS[topic], value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def produce(bootstrap: str, events: list[dict], batch: int = 500, topic: str = "predictions") -> None:
    asyncio.run(_produce(bootstrap, kafka.pack_records(events, batch), topic))


def as_ingested(events: list[dict], batch: int = 500, kind: str = "predictions") -> list[tuple[bytes, bytes]]:
    """The (key, value) records ingest would write for `events`: validated by the contract's
    models and encoded as ingest encodes them (RFC 3339 timestamps, defaults such as
    `"variant": "primary"` written out, None fields left out)."""
    models = EVENT_LISTS[kind].validate_python(events)
    return list(kafka.pack_records(models, batch, encode=encoder(kind), model_of=operator.attrgetter("model_id")))


def produce_records(bootstrap: str, records: Iterable[tuple[bytes, bytes]], topic: str = "predictions") -> None:
    asyncio.run(_produce(bootstrap, records, topic))


def expected_findings(redis_url: str, model_id: str, events: list[dict], batch: int = 500,
                      labels: list[dict] = ()) -> dict[str, dict]:
    """The findings of an uninterrupted run: the worker's pure state (`services.drift.state`) on
    the same records, predictions first, then labels (the findings do not depend on how the two
    topics interleave: tests/unit/test_drift_labels.py)."""
    r = redis.Redis.from_url(redis_url)
    s = ModelSpec.model_validate(orjson.loads(r.get(f"vigil:registry:model:{model_id}")))
    ref = orjson.loads(r.get(f"vigil:registry:reference-columns:{model_id}"))
    r.close()
    base = Baseline.from_profile(ref, task=s.task)
    model = SimpleNamespace(spec=s, base=base, cfg=window_config(s, base, 12_000))
    state, out, settings = DriftState(), {}, Settings()
    for topic, evs in (("predictions", events), ("labels", list(labels))):
        apply = state.predictions if topic == "predictions" else state.labels
        for _, value in kafka.pack_records(evs, batch):
            for f in apply(model_id, model, orjson.loads(value), settings).findings:
                out[f.finding_id] = f.model_dump(mode="json")
    return out


def partition_of(model: str, partitions: int = 8) -> int:
    """The partition a model's records go to (the producer's default partitioner on its key)."""
    from aiokafka.partitioner import DefaultPartitioner
    return DefaultPartitioner()(model.encode(), list(range(partitions)), list(range(partitions)))


def group() -> str:
    return f"drift-test-{uuid.uuid4().hex[:8]}"


def start_worker(bootstrap: str, redis_url: str, group_id: str, port: int, log,
                 checkpoint_seconds: float = 0.5) -> subprocess.Popen:
    env = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": bootstrap, "VIGIL_REDIS_URL": redis_url, "VIGIL_DRIFT_GROUP": group_id,
           "VIGIL_DRIFT_PORT": str(port), "VIGIL_DRIFT_CHECKPOINT_SECONDS": str(checkpoint_seconds),
           "VIGIL_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    return spawn([sys.executable, "-m", "services.cli", "serve", "drift"], stdout=log, env=env,
                 cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def checkpoint_offsets(redis_url: str, group_id: str) -> dict[int, int]:
    r = redis.Redis.from_url(redis_url)
    out = {}
    for k in r.scan_iter(f"vigil:checkpoint:{group_id}:*"):
        if k.endswith(b":owner"):
            continue
        out[int(k.rsplit(b":", 1)[1])] = sum(orjson.loads(r.get(k))["offsets"].values())
    r.close()
    return out


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (v := predicate()):
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def _send_raw(bootstrap: str, records: list[tuple[bytes, bytes]], topic: str) -> None:
    producer = await kafka.start_producer(bootstrap, "off")
    try:
        for key, value in records:
            await producer.send_and_wait(kafka.TOPICS[topic], value, key=key)
    finally:
        await producer.stop()


def _produce_raw(bootstrap: str, records: list[tuple[bytes, bytes]], topic: str = "predictions") -> None:
    asyncio.run(_send_raw(bootstrap, records, topic))
