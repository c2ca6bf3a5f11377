"""The drift worker under faults, on Apache Kafka and Tansu: kill -9 mid-window and restart; two
workers, one killed. Findings must equal an uninterrupted run's (computed with the pure pieces
on the same records). No other drift worker runs in this module: the findings read back come
from the workers started here.
"""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest

from shared.kafka import TOPICS
from tests.integration.drift_support import (checkpoint_offsets, expected_findings, group, labels_of, partition_of,
                                             produce, register, start_worker, wait_for, window_events)
from tests.support import FAULT_BROKERS, events_of, free_port, model_id, read_records


def _assigned(log_path) -> set[int] | None:
    """The partitions a worker's log says it holds now (its last assignment)."""
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if "drift worker holds partitions" in ln]
    return None if not lines else set(orjson.loads(lines[-1].rsplit("holds partitions ", 1)[1]))


ACCURACY = [0.9, 0.9, 0.9, 0.9, 0.8, 0.9, 0.78, 0.76, 0.9]  # per window, with labels


def _labelled_scenario(m: str, rng) -> tuple[list[dict], list[dict]]:
    """Windows of 600 predictions with labels 20 s later: accuracy falls in windows 4, 6, 7
    (degradation, concept drift, trend), f03 drifts from window 6; a last window moves the clocks on."""
    events, labels = [], []
    for w, acc in enumerate(ACCURACY):
        evs = window_events(m, w, 600, rng, shift={"f03": 1.0} if w >= 6 else None)
        events += evs
        labels += labels_of(evs, acc, rng)
    tick = window_events(m, len(ACCURACY) + 2, 5, rng)
    return events + tick, labels + labels_of(tick, 1.0, rng, delay=200)


def _run_kill_test(broker, redis_url, tmp_path, workers: int, models: int, with_labels: bool = False) -> None:
    rng = np.random.default_rng(3)
    ms = [model_id("kill") for _ in range(models)]
    all_events, all_labels = {}, {}
    for m in ms:
        if with_labels:
            register(redis_url, m, rng, label_wait_seconds=60, baseline_metrics={"accuracy": 0.9})
            all_events[m], all_labels[m] = _labelled_scenario(m, rng)
            continue
        register(redis_url, m, rng)
        all_events[m] = [*window_events(m, 0, 1_500, rng), *window_events(m, 1, 1_500, rng, shift={"f03": 1.0}),
                         *window_events(m, 2, 1_500, rng, shift={"f03": 1.0, "f11": -1.0}), *window_events(m, 3, 5, rng)]
        all_labels[m] = []
    expected = {}
    for m in ms:
        expected.update(expected_findings(redis_url, m, all_events[m], labels=all_labels[m]))
    assert expected, "the scenario must produce findings"
    if with_labels:
        kinds = {f["kind"] for f in expected.values()}
        assert {"performance_degradation", "concept_drift", "data_drift"} <= kinds, kinds
    g = group()
    paths = [tmp_path / f"worker{i}.log" for i in range(workers + 1)]
    logs = [open(p, "wb") for p in paths]
    ports = [free_port() for _ in range(workers + 1)]
    procs = [start_worker(broker.address, redis_url, g, ports[i], logs[i]) for i in range(workers)]
    watched = partition_of(ms[0])
    try:
        victim = 0
        if workers == 2:  # wait for a settled split, then kill the worker holding the first model
            def settled():
                a = [_assigned(p) for p in paths[:2]]
                return all(a) and a[0] | a[1] == set(range(8)) and not a[0] & a[1] and a
            victim = 0 if watched in wait_for(settled, 40, "two workers to split the partitions")[0] else 1
        cut = 2_200 if not with_labels else 2_700  # mid-window: window 1 of 3 / window 4 of 9
        first = [e for m in ms for e in all_events[m][:cut]]
        rest = [e for m in ms for e in all_events[m][cut:]]
        labels = [e for m in ms for e in all_labels[m]]
        produce(broker.address, first)
        produce(broker.address, labels[: len(labels) // 4], topic="labels")
        wait_for(lambda: checkpoint_offsets(redis_url, g).get(watched, 0) > 0, 40, "a first checkpoint")
        produce(broker.address, rest[: len(rest) // 3])
        produce(broker.address, labels[len(labels) // 4: len(labels) // 2], topic="labels")
        procs[victim].kill()  # kill -9, mid-window
        procs[victim].wait()
        produce(broker.address, rest[len(rest) // 3:])
        produce(broker.address, labels[len(labels) // 2:], topic="labels")
        if workers == 1:
            procs.append(start_worker(broker.address, redis_url, g, ports[-1], logs[-1]))
        found = events_of(read_records(broker.address, TOPICS["findings"], keys=set(ms), expect=len(expected),
                                       quiet=3.0, timeout=50))
        heir_url = f"http://127.0.0.1:{ports[-1] if workers == 1 else ports[1 - victim]}"
        assert httpx.get(f"{heir_url}/healthz").status_code == 200
        wait_for(lambda: httpx.get(f"{heir_url}/readyz").status_code == 200, 10, "the heir to be ready")
        exposition = httpx.get(f"{heir_url}/metrics").text
        assert f'vigil_feature_psi{{feature="f03",model_id="{ms[0]}"}}' in exposition
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
def test_kill_9_mid_window_then_restart_gives_the_findings_of_an_uninterrupted_run(broker_kind, request, redis_url, tmp_path):
    broker = request.getfixturevalue({"kafka": "apache_kafka", "tansu": "tansu"}[broker_kind])
    _run_kill_test(broker, redis_url, tmp_path, workers=1, models=1)


@pytest.mark.parametrize("broker_kind", FAULT_BROKERS)
def test_two_workers_equal_one_and_the_survivor_takes_over_exactly(broker_kind, request, redis_url, tmp_path):
    broker = request.getfixturevalue({"kafka": "apache_kafka", "tansu": "tansu"}[broker_kind])
    _run_kill_test(broker, redis_url, tmp_path, workers=2, models=4)


def test_kill_9_with_labels_gives_the_performance_findings_of_an_uninterrupted_run(apache_kafka, redis_url, tmp_path):
    """The label join, the performance windows and the online detector under kill -9 and restart."""
    _run_kill_test(apache_kafka, redis_url, tmp_path, workers=1, models=2, with_labels=True)


def test_two_workers_with_labels_equal_one_and_the_survivor_takes_over_exactly(apache_kafka, redis_url, tmp_path):
    _run_kill_test(apache_kafka, redis_url, tmp_path, workers=2, models=4, with_labels=True)


def test_a_restart_onto_a_backlog_of_a_topic_the_checkpoint_never_read_loses_nothing(apache_kafka, redis_url,
                                                                                      tmp_path):
    """The checkpoint holds predictions only (no labels had come); labels pile up while the worker
    is down; the restarted worker must count every one of them (records fetched while a large
    checkpoint loads were once taken for a log that starts later, and dropped)."""
    rng = np.random.default_rng(5)
    m = model_id("backlog")
    register(redis_url, m, rng, label_wait_seconds=60, baseline_metrics={"accuracy": 0.9})
    events, labels = [], []
    for w, acc in enumerate([0.9, 0.8, 0.9, 0.75]):
        evs = window_events(m, w, 15_000, rng)
        events += evs
        labels += labels_of(evs, acc, rng)
    tick = window_events(m, 6, 5, rng)
    events, labels = events + tick, labels + labels_of(tick, 1.0, rng, delay=200)
    expected = expected_findings(redis_url, m, events, labels=labels)
    assert [f["n"] for f in expected.values() if f["kind"] == "performance_degradation"] == [15_000, 15_000]
    g, port = group(), free_port()
    log = open(tmp_path / "worker.log", "wb")
    proc = start_worker(apache_kafka.address, redis_url, g, port, log)
    try:
        produce(apache_kafka.address, events, batch=1_000)
        wait_for(lambda: checkpoint_offsets(redis_url, g).get(partition_of(m), 0) >= len(events) // 1_000, 60,
                 "the predictions to be checkpointed")
        proc.kill()
        proc.wait()
        produce(apache_kafka.address, labels, batch=1_000, topic="labels")
        proc = start_worker(apache_kafka.address, redis_url, g, port, log)
        found = events_of(read_records(apache_kafka.address, TOPICS["findings"], keys={m}, expect=len(expected),
                                       quiet=3.0, timeout=60))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert {f["finding_id"]: f for f in found} == expected
