"""Malformed records written straight into every input topic by a non-Python client (kcat,
librdkafka, gzip-compressed batches) are dead-lettered, and the workers, real processes on
Apache Kafka, go on with the good records that follow them."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import numpy as np
import orjson
import pytest

from shared.kafka import TOPICS
from tests.integration import alerts_support, oversight_support
from tests.integration.drift_support import group, register, start_worker, wait_for, window_events
from tests.support import events_of, free_port, model_id, read_records

BAD = [b"{not json", b"\xff\xfe\x00 binary", b'"just a string"', b"null", b'[{"event_id": 5}]']


def kcat(bootstrap: str, topic: str, key: str, values: list[bytes], tmp_path) -> None:
    """One record per value, keyed `key`, through librdkafka (gzip, acks=all)."""
    assert all(b"\n" not in v for v in values)
    path = tmp_path / f"{topic}.txt"
    path.write_bytes(b"\n".join(values) + b"\n")
    res = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-k", key, "-z", "gzip",
                          "-X", "acks=all", "-l", str(path)], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()


def metric(port: int, name: str, **labels: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


@pytest.fixture
def kcat_binary() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed: apt-get install kcat (make test-deps does)", pytrace=False)
    return path


def test_kcat_garbage_in_every_input_topic_is_dead_lettered_and_processing_goes_on(kcat_binary, apache_kafka,
                                                                                     redis_url, tmp_path):
    bootstrap, rng = apache_kafka.address, np.random.default_rng(11)
    m_drift, m_review, m_alert = model_id("kcat-d"), model_id("kcat-r"), alerts_support.model_id("kcat-a")
    register(redis_url, m_drift, rng)
    oversight_support.register(redis_url, m_review)
    alerts_support.register(redis_url, m_alert)
    ports = {"drift": free_port(), "oversight": free_port(), "alerts": free_port()}
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ports}
    procs = [start_worker(bootstrap, redis_url, group(), ports["drift"], logs["drift"]),
             oversight_support.start_worker(bootstrap, redis_url, oversight_support.group(), ports["oversight"],
                                            logs["oversight"]),
             alerts_support.start_process(bootstrap, redis_url, ports["alerts"],
                                          alerts_support.start_at_end(bootstrap, f"alerts-kcat-{m_alert}"),
                                          logs["alerts"])]
    try:
        for port in ports.values():
            wait_for(lambda: _ready(port), 90, f"the service on {port} to be ready")
        shifted = window_events(m_drift, 0, 1_000, rng, shift={"f02": 1.0})
        tick = window_events(m_drift, 2, 5, rng)
        labels = [{"event_id": e["event_id"], "model_id": m_drift, "label": 1, "timestamp": e["timestamp"] + 5}
                  for e in shifted[:50]]
        reviews = oversight_support.team_reviews(m_review, rng, days=2, per_day=200)
        kcat(bootstrap, TOPICS["predictions"], m_drift, BAD + [orjson.dumps(shifted[:500]), orjson.dumps(shifted[500:]),
                                                               orjson.dumps(tick)], tmp_path)
        kcat(bootstrap, TOPICS["labels"], m_drift, BAD + [orjson.dumps(labels)], tmp_path)
        kcat(bootstrap, TOPICS["reviews"], m_review, BAD + [orjson.dumps(reviews)], tmp_path)
        kcat(bootstrap, TOPICS["findings"], m_alert, BAD + [orjson.dumps(alerts_support.finding(m_alert, 0))], tmp_path)

        dead = events_of(read_records(bootstrap, TOPICS["deadletter"], keys={m_drift, m_review, m_alert},
                                      expect=4 * len(BAD), quiet=3.0, timeout=90))
        by_topic = {t: [d for d in dead if d["source_topic"] == TOPICS[t]]
                    for t in ("predictions", "labels", "reviews", "findings")}
        assert all(len(v) >= len(BAD) for v in by_topic.values()), {t: len(v) for t, v in by_topic.items()}
        assert any(d["raw"] == "{not json" for d in by_topic["predictions"])
        assert all(d["error"] for d in dead)

        # and the good records behind the garbage were processed
        found = events_of(read_records(bootstrap, TOPICS["findings"], keys={m_drift}, expect=1, timeout=60))
        assert [f["feature"] for f in found if f["kind"] == "data_drift"] == ["f02"]
        wait_for(lambda: metric(ports["oversight"], "vigil_override_rate", model_id=m_review) is not None, 60,
                 "the oversight worker to evaluate the good reviews")
        wait_for(lambda: len(alerts_support.alerts_of(f"http://127.0.0.1:{ports['alerts']}", m_alert)) == 1, 60,
                 "the alerts service to open the good finding's alert")
        assert all(p.poll() is None for p in procs), "a service died on bad input"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs.values():
            f.close()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
