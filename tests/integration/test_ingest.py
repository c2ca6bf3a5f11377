"""The ingest API against a real broker (Apache Kafka and Tansu) and a real Redis."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from shared.kafka import TOPICS
from tests.support import events_of, model_id, prediction, read_records, running_ingest

PUBLISH_BOUND = 2.0  # seconds: the publish timeout used below
SLACK = 3.0  # HTTP, scheduling on a loaded 2-core box


@pytest.fixture(scope="module")
def ingest(broker, redis_url):
    with running_ingest(broker.address, redis_url) as url:
        yield url


def post(url: str, kind: str, payload, ctype="application/json", **kw) -> httpx.Response:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.post(f"{url}/v1/{kind}", content=content, headers={"content-type": ctype, **kw.pop("headers", {})},
                      timeout=30, **kw)


def test_posted_events_are_read_back_from_kafka_exactly_once(ingest, broker):
    a, b = model_id("a"), model_id("b")
    events = [prediction(a if i % 3 else b, i) for i in range(2_500)]
    assert post(ingest, "predictions", events[:2_000]).json() == {"accepted": 2_000, "duplicates": 0}
    ndjson = b"\n".join(json.dumps(e).encode() for e in events[2_000:2_499])
    assert post(ingest, "predictions", ndjson, "application/x-ndjson").status_code == 202
    assert post(ingest, "predictions", events[2_499]).json() == {"accepted": 1, "duplicates": 0}

    records = read_records(broker.address, TOPICS["predictions"], keys={a, b}, expect=2_500)
    got = events_of(records)
    assert sorted(e["event_id"] for e in got) == sorted(e["event_id"] for e in events)
    assert all(len(evs) <= 1_000 for _, evs in records)
    assert all(key.decode() == e["model_id"] for key, evs in records for e in evs)
    first = next(e for e in got if e["event_id"] == events[0]["event_id"])
    assert first["features"] == events[0]["features"] and first["timestamp"] == "2026-01-01T00:00:00Z"


def test_duplicates_are_counted_once_and_not_republished(ingest, broker):
    m = model_id()
    batch = [prediction(m, i) for i in range(300)]
    assert post(ingest, "predictions", batch).json() == {"accepted": 300, "duplicates": 0}
    assert post(ingest, "predictions", batch).json() == {"accepted": 0, "duplicates": 300}
    overlap = batch[250:] + [prediction(m, i) for i in range(300, 350)] + [prediction(m, 300)]
    assert post(ingest, "predictions", overlap).json() == {"accepted": 50, "duplicates": 51}
    ids = [e["event_id"] for e in events_of(read_records(broker.address, TOPICS["predictions"], {m}, expect=350))]
    assert len(ids) == 350 and len(set(ids)) == 350


def test_labels_and_reviews_are_published_to_their_topics(ingest, broker):
    m = model_id()
    labels = [{"event_id": f"{m}-{i}", "model_id": m, "label": i % 2, "timestamp": 1767225600 + i} for i in range(10)]
    reviews = [{"review_id": f"r{i}", "model_id": m, "reviewer_id": "alice", "ai_prediction": 1,
                "human_decision": 0, "timestamp": "2026-01-01T00:00:00Z"} for i in range(10)]
    assert post(ingest, "labels", labels).json()["accepted"] == 10
    assert post(ingest, "reviews", reviews).json()["accepted"] == 10
    assert post(ingest, "reviews", reviews).json()["duplicates"] == 10
    assert len(events_of(read_records(broker.address, TOPICS["labels"], {m}, expect=10))) == 10
    got = events_of(read_records(broker.address, TOPICS["reviews"], {m}, expect=10))
    assert sorted(e["review_id"] for e in got) == sorted(r["review_id"] for r in reviews)


def test_a_batch_with_one_invalid_record_publishes_nothing(ingest, broker):
    m = model_id()
    batch = [prediction(m, i) for i in range(100)]
    batch[42] = {**batch[42], "features": {"x": "y" * 5000}}
    r = post(ingest, "predictions", batch)
    assert r.status_code == 422
    assert r.json()["detail"]["errors"] == [{"index": 42, "field": "features.x",
                                             "reason": "String should have at most 1000 characters"}]
    # The good records of that batch were not claimed either: posting them now publishes them.
    marker = prediction(m, 0)
    assert post(ingest, "predictions", marker).json() == {"accepted": 1, "duplicates": 0}
    got = events_of(read_records(broker.address, TOPICS["predictions"], {m}, expect=1, quiet=3))
    assert [e["event_id"] for e in got] == [marker["event_id"]]


def test_http_errors_are_clear(broker, redis_url):
    with running_ingest(broker.address, redis_url, max_body_bytes=10_000, api_keys="k1,k2") as url:
        auth = {"authorization": "Bearer k2"}
        assert post(url, "labels", {"x": 1}).status_code == 401
        assert post(url, "labels", {"x": 1}, headers={"authorization": "Bearer nope"}).status_code == 401
        big = [prediction(model_id(), i) for i in range(200)]
        r = post(url, "predictions", big, headers=auth)
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        assert post(url, "predictions", b"{}", "text/plain", headers=auth).status_code == 415
        assert post(url, "predictions", b"", headers=auth).status_code == 400
        r = post(url, "predictions", b'{"event_id": 1', headers=auth)
        assert r.status_code == 400 and "JSON" in r.json()["detail"]
        r = httpx.put(f"{url}/v1/models/m1", json={"task": "regression", "colour": "red"}, headers=auth)
        assert r.status_code == 422 and r.json()["detail"]["errors"] == [{"field": "colour", "reason": "unknown field"}]
        r = httpx.put(f"{url}/v1/models/m1", json={"thresholds": {"psi": {"high": 0.1, "medium": 0.2}}}, headers=auth)
        assert r.status_code == 422 and r.json()["detail"]["errors"][0]["field"] == "thresholds"
        assert "thresholds.psi" in r.json()["detail"]["errors"][0]["reason"]
        assert httpx.get(f"{url}/healthz").status_code == 200  # open without a key
        metrics = httpx.get(f"{url}/metrics").text
        assert 'vigil_events_rejected_total{kind="predictions",reason="unreadable_body"}' in metrics


def test_registry_reference_and_info(ingest, broker):
    m = model_id()
    spec = {"task": "binary_classification", "positive_label": 1, "risk_tier": "high",
            "features": {"age": {"type": "numeric", "min": 0, "max": 120}, "region": {"type": "categorical"}}}
    assert httpx.put(f"{ingest}/v1/models/{m}", json=spec).status_code == 200
    assert httpx.get(f"{ingest}/v1/models/{m}").json()["risk_tier"] == "high"
    assert httpx.get(f"{ingest}/v1/models/nope-{m}").status_code == 404
    csv = "age,region,prediction\n" + "\n".join(f"{20 + i % 50},{'north' if i % 3 else 'south'},{i % 2}" for i in range(2000))
    r = httpx.put(f"{ingest}/v1/models/{m}/reference", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 200 and r.json()["rows"] == 2000
    assert r.json()["columns"] == ["age", "prediction", "region"]
    sla = {"accuracy": 0.9, "latency_p95_ms": 300}
    assert httpx.put(f"{ingest}/v1/vendors/acme/sla", json=sla).status_code == 200
    assert httpx.get(f"{ingest}/v1/vendors/acme/sla").json()["latency_p95_ms"] == 300
    records = read_records(broker.address, TOPICS["models"], expect=1, quiet=2,
                           keys={f"model:{m}", f"reference:{m}", f"reference:{m}:age"})
    by_key = {k.decode(): v[0] for k, v in records}
    assert by_key[f"model:{m}"]["value"]["risk_tier"] == "high"
    assert by_key[f"reference:{m}"]["value"]["rows"] == 2000
    age = by_key[f"reference:{m}:age"]["value"]
    assert age["kind"] == "numeric" and len(age["edges"]) == 9 and len(age["sample"]) == 2000
    info = httpx.get(f"{ingest}/v1/info").json()
    assert info["kafka_bootstrap"] == broker.address and info["topics"]["predictions"] == "vigil.predictions"
    assert httpx.get(f"{ingest}/readyz").json() == {"ready": True, "kafka": "ok", "redis": "ok"}


def _timed_post(url, events):
    started = time.monotonic()
    r = post(url, "predictions", events)
    return r, time.monotonic() - started


def test_hung_broker_gives_503_within_the_bound_then_recovers(private_broker, redis_url):
    with running_ingest(private_broker.address, redis_url, publish_timeout_seconds=PUBLISH_BOUND) as url:
        m = model_id()
        assert post(url, "predictions", prediction(m, 0)).status_code == 202
        private_broker.pause()
        try:
            r, took = _timed_post(url, [prediction(m, i) for i in range(1, 50)])
            assert r.status_code == 503 and r.headers["retry-after"].isdigit()
            assert took < PUBLISH_BOUND + SLACK
        finally:
            private_broker.resume()
        deadline = time.monotonic() + 60
        while (r := post(url, "predictions", [prediction(m, i) for i in range(1, 50)])).status_code != 202:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.5)
        assert r.json()["accepted"] == 49  # the 503 released its claims: not "duplicates"


def test_killed_broker_gives_503_within_the_bound(private_broker, redis_url):
    with running_ingest(private_broker.address, redis_url, publish_timeout_seconds=PUBLISH_BOUND) as url:
        m = model_id()
        assert post(url, "predictions", prediction(m, 0)).status_code == 202
        private_broker.kill()
        for i in range(3):  # never a 202 while the broker is gone
            r, took = _timed_post(url, [prediction(m, 100 + i)])
            assert r.status_code == 503 and took < PUBLISH_BOUND + SLACK
        assert httpx.get(f"{url}/readyz").status_code == 503


def test_everything_acknowledged_survives_a_kafka_restart(fresh_kafka, redis_url):
    """kill -9 of Apache Kafka while posting: every event that got a 202 is on the topic after restart."""
    m = model_id()
    acknowledged: list[str] = []
    stop = threading.Event()

    with running_ingest(fresh_kafka.address, redis_url, publish_timeout_seconds=PUBLISH_BOUND) as url:
        def poster():
            i = 0
            while not stop.is_set():
                batch = [prediction(m, i + k) for k in range(200)]
                try:
                    r = post(url, "predictions", batch)
                    if r.status_code == 202:
                        acknowledged.extend(e["event_id"] for e in batch)
                        i += 200
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)

        thread = threading.Thread(target=poster)
        thread.start()
        try:
            time.sleep(3)
            before = len(acknowledged)
            fresh_kafka.kill()
            time.sleep(2)
            fresh_kafka.restart()
            deadline = time.monotonic() + 90
            while len(acknowledged) < before + 1_000 and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            stop.set()
            thread.join(60)
    assert before > 0 and len(acknowledged) >= before + 1_000, "posting did not resume after the restart"
    got = {e["event_id"] for e in events_of(read_records(fresh_kafka.address, TOPICS["predictions"], {m},
                                                          expect=len(acknowledged), quiet=3, timeout=120))}
    missing = set(acknowledged) - got
    assert not missing, f"{len(missing)} acknowledged events lost"
