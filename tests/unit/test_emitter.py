"""The emitters never block or raise in the caller's path; HTTP delivery against a local server.

No broker here: the Kafka emitter points at a closed port. The HTTP emitter talks to a small
scripted HTTP server on loopback, which answers as the ingest API does (202, 422 with
per-record errors, 503 with Retry-After).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.emitter import HttpEmitter, KafkaEmitter
from tests.support import free_port


def closed_bootstrap() -> str:
    return f"127.0.0.1:{free_port()}"  # bound and released: nothing listens there


def pred(i: int = 0, **kw) -> dict:
    return {"model_id": "m", "features": {"x": float(i)}, "prediction": i % 2, **kw}


class Ingest:
    """A loopback HTTP server answering POSTs from a script of (status, headers, body) or a
    function of the request's events; it records every request (path, headers, events, time)."""

    def __init__(self, script=None):
        self.script = list(script or [])
        self.requests: list[tuple[str, dict, list, float]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                events = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.requests.append((self.path, dict(self.headers), events, time.monotonic()))
                answer = outer.script.pop(0) if outer.script else (202, {}, None)
                status, headers, body = answer(events) if callable(answer) else answer
                if body is None:
                    body = {"accepted": len(events), "duplicates": 0}
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Ingest:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [e for _, _, events, _ in self.requests for e in events]


def test_emitting_ten_times_the_buffer_with_the_broker_down_never_blocks_and_counts_the_overflow():
    em = KafkaEmitter(closed_bootstrap(), max_buffer=1_000, connect_timeout=1.0, client_id="down")
    try:
        slowest, started = 0.0, time.perf_counter()
        for i in range(10_000):
            t = time.perf_counter()
            em.prediction(**pred(i))
            slowest = max(slowest, time.perf_counter() - t)
        total = time.perf_counter() - started
        assert total < 5.0 and slowest < 0.5, (total, slowest)
        assert em.stats() == {"sent": 0, "dropped": 9_000, "invalid": 0, "failed": 0, "buffered": 1_000}
        time.sleep(1.5)  # the worker has tried (and failed) to connect meanwhile
        assert em.stats()["buffered"] == 1_000 and em.stats()["sent"] == 0
        assert em.flush(timeout=0.5) is False
    finally:
        t = time.perf_counter()
        em.close(timeout=1.0)
        closing = time.perf_counter() - t
    assert closing < 6.0
    assert em.stats() == {"sent": 0, "dropped": 9_000, "invalid": 0, "failed": 1_000, "buffered": 0}
    assert em.prediction(**pred()) is not None and em.stats()["dropped"] == 9_001  # after close: dropped


def test_invalid_events_are_counted_never_raised():
    em = KafkaEmitter(closed_bootstrap(), max_buffer=100, connect_timeout=0.5, client_id="invalid")
    naive = datetime(2026, 1, 1)  # no offset: the contract rejects it
    try:
        em.prediction(model_id="has space", features={}, prediction=1)
        em.prediction(model_id="m", features={}, prediction=1, timestamp=naive)
        em.prediction(model_id="m", features={}, prediction=1, colour="red")
        em.prediction(model_id="m", features={"x": float("nan")}, prediction=1)
        em.label(model_id="m", label=1)  # a label names its prediction's event_id
        em.emit("clicks", {"model_id": "m"})
        em.emit("predictions", None)  # not a mapping at all
        assert em.flush(timeout=10) is True
        assert em.stats() == {"sent": 0, "dropped": 0, "invalid": 7, "failed": 0, "buffered": 0}
    finally:
        em.close(timeout=0.5)


def test_kafka_emitter_refuses_a_bad_configuration_at_construction():
    with pytest.raises(ValueError, match="idempotence='maybe'"):
        KafkaEmitter("127.0.0.1:1", idempotence="maybe")
    with pytest.raises(ValueError, match="max_buffer=0"):
        KafkaEmitter("127.0.0.1:1", max_buffer=0)


def test_http_emitter_fills_in_ids_and_timestamps_and_batches_per_kind():
    with Ingest() as ingest:
        em = HttpEmitter(ingest.url, api_key="k1", batch_events=100, linger_seconds=0.05)
        before = datetime.now(timezone.utc)
        ids = [em.prediction(**pred(i)) for i in range(250)]
        given = em.prediction(**pred(1, event_id="mine", timestamp=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))))
        em.label(event_id=ids[0], model_id="m", label=1, timestamp=1767225600)
        em.review(model_id="m", reviewer_id="r", ai_prediction=1, human_decision=0)
        assert em.flush(timeout=30)
        em.close()
    assert given == "mine" and len(set(ids)) == 250 and all(uuid.UUID(i).version == 4 for i in ids)
    assert em.stats() == {"sent": 253, "dropped": 0, "invalid": 0, "failed": 0, "buffered": 0}
    by_path: dict[str, list[dict]] = {}
    for path, headers, events, _ in ingest.requests:
        assert headers["authorization"] == "Bearer k1"
        assert len(events) <= 100
        by_path.setdefault(path, []).extend(events)
    assert sorted(by_path) == ["/v1/labels", "/v1/predictions", "/v1/reviews"]
    preds = {e["event_id"]: e for e in by_path["/v1/predictions"]}
    assert set(preds) == set(ids) | {"mine"}
    assert preds["mine"]["timestamp"] == "2026-01-01T12:00:00+02:00"
    stamped = datetime.fromisoformat(preds[ids[0]]["timestamp"])
    assert stamped.tzinfo is not None and before <= stamped <= datetime.now(timezone.utc)
    assert by_path["/v1/labels"][0]["event_id"] == ids[0]
    assert by_path["/v1/labels"][0]["timestamp"] == "2026-01-01T00:00:00Z"
    assert uuid.UUID(by_path["/v1/reviews"][0]["review_id"]).version == 4


def test_http_emitter_retries_503_after_retry_after_seconds():
    busy = (503, {"Retry-After": "1"}, {"detail": "temporarily unavailable"})
    with Ingest([busy, busy]) as ingest:
        em = HttpEmitter(ingest.url, linger_seconds=0.01)
        for i in range(10):
            em.prediction(**pred(i))
        assert em.flush(timeout=30)
        em.close()
    assert em.stats()["sent"] == 10 and em.stats()["failed"] == 0
    times = [t for _, _, _, t in ingest.requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 0.9  # Retry-After honoured
    assert [len(events) for _, _, events, _ in ingest.requests] == [10, 10, 10]


def test_http_emitter_counts_what_a_422_lists_and_sends_the_rest_once():
    def reject_odd_x(events):
        bad = [{"index": i, "field": "features.x", "reason": "out of range"}
               for i, e in enumerate(events) if e["features"]["x"] % 2]
        return (422, {}, {"detail": {"errors": bad}}) if bad else (202, {}, None)

    with Ingest([reject_odd_x, reject_odd_x]) as ingest:
        em = HttpEmitter(ingest.url, linger_seconds=0.01)
        for i in range(10):
            em.prediction(**pred(i))
        assert em.flush(timeout=30)
        em.close()
    assert em.stats() == {"sent": 5, "dropped": 0, "invalid": 5, "failed": 0, "buffered": 0}
    assert [len(events) for _, _, events, _ in ingest.requests] == [10, 5]
    assert sorted(e["features"]["x"] for e in ingest.requests[1][2]) == [0, 2, 4, 6, 8]


def test_http_emitter_gives_up_on_401_without_retrying():
    with Ingest([(401, {}, {"detail": "bad key"})]) as ingest:
        em = HttpEmitter(ingest.url, api_key="wrong", linger_seconds=0.01)
        em.prediction(**pred())
        assert em.flush(timeout=30)
        em.close()
    assert em.stats()["failed"] == 1 and len(ingest.requests) == 1


def test_close_with_the_api_down_returns_in_time_and_counts_the_rest_failed():
    em = HttpEmitter(f"http://127.0.0.1:{free_port()}", max_buffer=50, linger_seconds=0.01)
    for i in range(80):
        em.prediction(**pred(i))
    t = time.monotonic()
    em.close(timeout=1.0)
    assert time.monotonic() - t < 4.0
    assert em.stats() == {"sent": 0, "dropped": 30, "invalid": 0, "failed": 50, "buffered": 0}


def test_counters_are_exposed_on_the_given_prometheus_registry():
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    em = HttpEmitter(f"http://127.0.0.1:{free_port()}", max_buffer=1, linger_seconds=60,
                     registry=registry, client_id="scorer")
    em.prediction(**pred())
    em.prediction(**pred())
    text = generate_latest(registry).decode()
    em.close(timeout=0.2)
    assert 'vigil_emitter_dropped_total{client_id="scorer"} 1.0' in text
    assert 'vigil_emitter_buffered{client_id="scorer"} 1.0' in text


def test_a_forked_child_gets_its_own_worker_and_the_parent_keeps_its_own():
    import os

    with Ingest() as ingest:
        em = HttpEmitter(ingest.url, linger_seconds=0.01)
        em.prediction(**pred(0, event_id="before"))
        assert em.flush(timeout=30)
        pid = os.fork()
        if pid == 0:  # the child: what a gunicorn --preload worker does
            code = 1
            try:
                for i in range(5):
                    em.prediction(**pred(i, event_id=f"child-{i}"))
                ok = em.flush(timeout=20) and em.stats() == {"sent": 5, "dropped": 0, "invalid": 0,
                                                             "failed": 0, "buffered": 0}
                code = 0 if ok else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        em.prediction(**pred(1, event_id="parent-after"))
        assert em.flush(timeout=30)
        em.close()
    assert os.waitstatus_to_exitcode(status) == 0
    ids = [e["event_id"] for e in ingest.events()]
    assert sorted(ids) == sorted(["before", "parent-after"] + [f"child-{i}" for i in range(5)])
