"""The emitters against a real broker (Apache Kafka and Tansu) and the real ingest API."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shared.emitter import HttpEmitter, KafkaEmitter
from shared.kafka import TOPICS
from tests.support import events_of, model_id, read_records, running_ingest

ROOT = Path(__file__).resolve().parents[2]


def features(i: int) -> dict:
    return {"x": float(i % 97), "c": "ab"[i % 2], "flag": bool(i % 3), "missing": None}


def test_ten_thousand_events_are_on_the_topic_exactly_once_in_ingest_format(broker):
    models = [model_id("em") for _ in range(3)]
    with KafkaEmitter(broker.address, client_id="it-10k") as em:
        ids = [em.prediction(model_id=models[i % 3], features=features(i), prediction=i % 2,
                             confidence=0.5 + (i % 50) / 100, timestamp=1767225600 + i)
               for i in range(10_000)]
        case = em.prediction(model_id=models[0], features={}, prediction=1)
        label = em.label(event_id=ids[0], model_id=models[0], label=1)
        review = em.review(model_id=models[1], case_id=ids[1], reviewer_id="ann", ai_prediction=1, human_decision=0)
        assert em.flush(timeout=120), em.stats()
        assert em.stats() == {"sent": 10_003, "dropped": 0, "invalid": 0, "failed": 0, "buffered": 0}
        if broker.__class__.__name__ == "KafkaProc":
            assert em.idempotent is True

    records = read_records(broker.address, TOPICS["predictions"], keys=set(models), expect=10_001, timeout=120)
    got = events_of(records)
    assert sorted(e["event_id"] for e in got) == sorted(ids + [case])  # every one, once
    assert all(1 <= len(evs) <= 1_000 for _, evs in records)
    assert all(key.decode() == e["model_id"] for key, evs in records for e in evs)
    first = next(e for e in got if e["event_id"] == ids[0])
    assert first["features"] == features(0) and first["timestamp"] == "2026-01-01T00:00:00Z"
    assert first["prediction"] == 0 and first["confidence"] == 0.5

    labels = events_of(read_records(broker.address, TOPICS["labels"], keys={models[0]}, expect=1))
    assert [(e["event_id"], e["label"]) for e in labels] == [(ids[0], 1)] and label == ids[0]
    reviews = events_of(read_records(broker.address, TOPICS["reviews"], keys={models[1]}, expect=1))
    assert [(e["review_id"], e["case_id"]) for e in reviews] == [(review, ids[1])]


EMIT_AND_EXIT = textwrap.dedent("""
    import sys, time
    from shared.emitter import KafkaEmitter
    bootstrap, model, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    em = KafkaEmitter(bootstrap, linger_seconds=30)  # fewer than a batch: nothing goes before exit
    while em.idempotent is None:  # connected: kafka-python's own exit handler is registered now
        time.sleep(0.05)
    for i in range(n):
        em.prediction(event_id=f"{model}-{i}", model_id=model, features={"x": i}, prediction=i % 2)
    print(em.stats()["buffered"], flush=True)
    # no flush(), no close(): the interpreter exits normally
""")


def test_events_pending_at_exit_are_flushed(broker):
    m = model_id("exit")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", EMIT_AND_EXIT, broker.address, m, "900"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["900"]  # all still buffered when the script ended
    assert time.monotonic() - started < 60
    got = events_of(read_records(broker.address, TOPICS["predictions"], keys={m}, expect=900))
    assert sorted(e["event_id"] for e in got) == sorted(f"{m}-{i}" for i in range(900))


def test_a_paused_broker_is_absorbed_by_the_buffer_and_caught_up(broker):
    m = model_id("pause")
    with KafkaEmitter(broker.address, client_id="it-pause", linger_seconds=0.05) as em:
        em.prediction(event_id=f"{m}-warm", model_id=m, features={}, prediction=0)
        assert em.flush(timeout=60)
        broker.pause()
        try:
            t = time.perf_counter()
            for i in range(3_000):
                em.prediction(event_id=f"{m}-{i}", model_id=m, features={"x": i}, prediction=i % 2)
            assert time.perf_counter() - t < 5.0  # the caller never waits for the broker
            time.sleep(3)
            assert em.stats()["buffered"] == 3_000 and em.stats()["sent"] == 1
        finally:
            broker.resume()
        assert em.flush(timeout=120), em.stats()
        assert em.stats()["sent"] == 3_001 and em.stats()["failed"] == 0
    got = events_of(read_records(broker.address, TOPICS["predictions"], keys={m}, expect=3_001))
    assert sorted(e["event_id"] for e in got) == sorted([f"{m}-warm"] + [f"{m}-{i}" for i in range(3_000)])


@pytest.fixture(scope="module")
def ingest(broker, redis_url):
    with running_ingest(broker.address, redis_url) as url:
        yield url


def test_http_emitter_delivers_through_the_ingest_api(ingest, broker):
    m = model_id("http")
    with HttpEmitter(ingest, batch_events=500, client_id="it-http") as em:
        ids = [em.prediction(model_id=m, features=features(i), prediction=i % 2) for i in range(2_000)]
        em.prediction(event_id=ids[0], model_id=m, features={}, prediction=1)  # a duplicate: ingest drops it
        assert em.flush(timeout=120), em.stats()
        assert em.stats() == {"sent": 2_001, "dropped": 0, "invalid": 0, "failed": 0, "buffered": 0}
    got = events_of(read_records(broker.address, TOPICS["predictions"], keys={m}, expect=2_000))
    assert sorted(e["event_id"] for e in got) == sorted(ids)
