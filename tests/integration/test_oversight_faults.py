"""The oversight worker under faults, on Apache Kafka and Tansu: kill -9 mid-stream (reviews,
predictions and labels all in flight) and restart; two workers, one killed. Findings must equal an
uninterrupted run's (the pure pieces on the same records). No other oversight worker runs in this
module: the findings read back come from the workers started here.
"""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest

from shared.kafka import TOPICS
from tests.integration import oversight_support as os_
from tests.integration.drift_support import wait_for
from tests.support import FAULT_BROKERS, events_of, free_port, model_id, read_records

SLA = {"accuracy": 0.9, "latency_p95_ms": 120.0, "latency_p99_ms": 1000.0, "min_samples": 100, "period_days": 3}


def _partition(model: str, partitions: int = 8) -> int:
    from aiokafka.partitioner import DefaultPartitioner
    return DefaultPartitioner()(model.encode(), list(range(partitions)), list(range(partitions)))


def _assigned(log_path) -> set[int] | None:
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if "oversight worker holds partitions" in ln]
    return None if not lines else set(orjson.loads(lines[-1].rsplit("holds partitions ", 1)[1]))


def _scenario(redis_url: str, models: int):
    rng = np.random.default_rng(21)
    streams: dict[str, dict[str, list]] = {}
    vendor = model_id("vendor")
    os_.register_sla(redis_url, vendor, SLA)
    for _ in range(models):
        m = model_id("kill")
        reviews = os_.team_reviews(m, rng, days=5, per_day=400, stampers=("rev-1", "rev-2", "rev-6", "rev-7"))
        low = os_.low_confidence_predictions(m, reviews, rng, reviewed=0.4)
        calls, labels = os_.vendor_calls(m, vendor, rng, range(6), per_day=120, latency_ms=100.0)
        streams[m] = {"reviews": reviews, "predictions": sorted(low + calls, key=lambda e: e["timestamp"]),
                      "labels": labels}
    return streams, vendor


def _run_kill_test(broker, redis_url, tmp_path, workers: int, models: int) -> None:
    streams, vendor = _scenario(redis_url, models)
    expected: dict[str, dict] = {}
    for s in streams.values():
        expected.update(os_.expected_findings(s, slas={vendor: SLA}))
    kinds = {f["kind"] for f in expected.values()}
    assert {"reviewer_rubber_stamping", "review_coverage_gap", "vendor_sla_violation", "vendor_sla_persistent"} <= kinds
    ms = list(streams)
    g = os_.group()
    paths = [tmp_path / f"worker{i}.log" for i in range(workers + 1)]
    logs = [open(p, "wb") for p in paths]
    ports = [free_port() for _ in range(workers + 1)]
    procs = [os_.start_worker(broker.address, redis_url, g, ports[i], logs[i]) for i in range(workers)]
    watched = _partition(ms[0])

    def part(kind: str, lo: float, hi: float) -> list[dict]:
        return [e for m in ms for e in streams[m][kind][int(lo * len(streams[m][kind])):int(hi * len(streams[m][kind]))]]

    try:
        victim = 0
        if workers == 2:  # wait for a settled split, then kill the worker holding the first model
            def settled():
                a = [_assigned(p) for p in paths[:2]]
                return all(a) and a[0] | a[1] == set(range(8)) and not a[0] & a[1] and a
            victim = 0 if watched in wait_for(settled, 40, "two workers to split the partitions")[0] else 1
        for kind in ("reviews", "predictions", "labels"):
            os_.produce(broker.address, kind, part(kind, 0, 0.4))
        wait_for(lambda: sum(os_.checkpoint_offsets(redis_url, g).get(watched, {}).values()) > 0, 40,
                 "a first checkpoint")
        for kind in ("labels", "reviews", "predictions"):
            os_.produce(broker.address, kind, part(kind, 0.4, 0.6))
        procs[victim].kill()  # kill -9, mid-stream
        procs[victim].wait()
        for kind in ("predictions", "labels", "reviews"):
            os_.produce(broker.address, kind, part(kind, 0.6, 1.0))
        if workers == 1:
            procs.append(os_.start_worker(broker.address, redis_url, g, ports[-1], logs[-1]))
        found = events_of(read_records(broker.address, TOPICS["findings"], keys=set(ms), expect=len(expected),
                                       quiet=3.0, timeout=90))
        heir_url = f"http://127.0.0.1:{ports[-1] if workers == 1 else ports[1 - victim]}"
        assert httpx.get(f"{heir_url}/healthz").status_code == 200
        wait_for(lambda: httpx.get(f"{heir_url}/readyz").status_code == 200, 10, "the heir to be ready")
        exposition = httpx.get(f"{heir_url}/metrics").text
        assert f'vigil_override_rate{{model_id="{ms[0]}"}}' in exposition
        assert f'vigil_vendor_sla_compliant{{sla="latency_p95",vendor="{vendor}"}} 0.0' in exposition
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    heir = paths[-1] if workers == 1 else paths[1 - victim]
    assert f"partition {watched} restored from its checkpoint".encode() in heir.read_bytes(), \
        "the restarted worker or the survivor must resume the killed worker's partition from its checkpoint"
    by_id: dict[str, dict] = {}
    for f in found:
        assert by_id.setdefault(f["finding_id"], f) == f, "a repeated finding must be identical"
    assert by_id == expected


@pytest.mark.parametrize("broker_kind", FAULT_BROKERS)
def test_kill_9_mid_stream_then_restart_gives_the_findings_of_an_uninterrupted_run(broker_kind, request, redis_url,
                                                                                   tmp_path):
    broker = request.getfixturevalue({"kafka": "apache_kafka", "tansu": "tansu"}[broker_kind])
    _run_kill_test(broker, redis_url, tmp_path, workers=1, models=1)


@pytest.mark.parametrize("broker_kind", FAULT_BROKERS)
def test_two_workers_equal_one_and_the_survivor_takes_over_exactly(broker_kind, request, redis_url, tmp_path):
    broker = request.getfixturevalue({"kafka": "apache_kafka", "tansu": "tansu"}[broker_kind])
    _run_kill_test(broker, redis_url, tmp_path, workers=2, models=3)
