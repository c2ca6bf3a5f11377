"""The drift worker against a real broker and Redis: detection, no false alarms, exact under kill -9 and scale-out."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import httpx
import numpy as np
import orjson
import pytest

from shared.kafka import TOPICS
from shared.settings import Settings
from services.drift.app import DriftWorker
from tests.integration.drift_support import (T0, WINDOW, checkpoint_offsets, expected_findings, group, produce, register,
                                             start_worker, wait_for, window_events)
from tests.support import events_of, free_port, model_id, read_records

RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


@pytest.fixture(scope="module")
def worker(apache_kafka, redis_url):
    """One in-process drift worker (own consumer group) for the module."""
    settings = Settings(kafka_bootstrap=apache_kafka.address, redis_url=redis_url, drift_group=group())
    loop = asyncio.new_event_loop()
    w = DriftWorker(settings, checkpoint_seconds=0.5)

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(w.start())
        loop.run_until_complete(w.run())
        loop.run_until_complete(w.stop())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_for(lambda: w.ready or not t.is_alive(), 60, "the drift worker to start")
    assert t.is_alive(), "the drift worker died at start"
    yield w
    loop.call_soon_threadsafe(w.request_stop)
    t.join(30)


def findings_of(bootstrap: str, m: str, expect: int | None = None, timeout: float = 40) -> list[dict]:
    return events_of(read_records(bootstrap, TOPICS["findings"], keys={m}, expect=expect, quiet=2.0, timeout=timeout))


def test_a_one_sd_mean_shift_flags_that_feature_only_in_the_first_window_after_it(worker, apache_kafka, redis_url):
    rng = np.random.default_rng(1)
    m = model_id("shift")
    register(redis_url, m, rng)
    events = [*window_events(m, 0, 2_000, rng), *window_events(m, 1, 2_000, rng),
              *window_events(m, 2, 2_000, rng, shift={"f07": 1.0}), *window_events(m, 3, 10, rng)]
    produce(apache_kafka.address, events)
    found = findings_of(apache_kafka.address, m, expect=1)
    drift = [f for f in found if f["kind"] == "data_drift"]
    assert [(f["feature"], datetime.fromisoformat(f["window_start"]).timestamp()) for f in drift] == \
        [("f07", T0 + 2 * WINDOW)]
    assert RANK[drift[0]["severity"]] >= RANK["high"]
    assert drift[0]["metrics"]["psi"] > 0.2 and drift[0]["metrics"]["ks_p_adjusted"] < 0.05
    assert all(f["kind"] == "data_drift" for f in found), found


def test_without_a_reference_the_first_full_window_is_the_reference_and_findings_say_so(worker, apache_kafka, redis_url):
    rng = np.random.default_rng(6)
    m = model_id("noref")
    register(redis_url, m, rng, with_reference=False)
    events = [*window_events(m, 0, 2_000, rng), *window_events(m, 1, 2_000, rng),
              *window_events(m, 2, 2_000, rng, shift={"f13": 1.0}), *window_events(m, 3, 10, rng)]
    produce(apache_kafka.address, events)
    found = findings_of(apache_kafka.address, m, expect=1)
    assert [(f["kind"], f["feature"], f["evidence"]["reference"]) for f in found] == [("data_drift", "f13", "first_window")]
    assert datetime.fromisoformat(found[0]["window_start"]).timestamp() == T0 + 2 * WINDOW


def test_an_undrifted_stream_over_40_windows_raises_nothing_medium_or_above(worker, apache_kafka, redis_url):
    rng = np.random.default_rng(2)
    m = model_id("control")
    register(redis_url, m, rng)
    events = [e for w in range(40) for e in window_events(m, w, 2_000, rng)] + window_events(m, 40, 10, rng)
    produce(apache_kafka.address, events)
    def closed_all() -> bool:
        mws = [p.windows.models.get(m) for p in list(worker.parts.values())]
        return any(mw is not None and mw.watermark >= T0 + 40 * WINDOW and len(mw.open) == 1 for mw in mws)
    wait_for(closed_all, 60, "the worker to close all 40 windows")
    found = findings_of(apache_kafka.address, m, timeout=5)
    assert [f for f in found if RANK[f["severity"]] >= RANK["medium"]] == []


def _partition(model: str, partitions: int = 8) -> int:
    from aiokafka.partitioner import DefaultPartitioner
    return DefaultPartitioner()(model.encode(), list(range(partitions)), list(range(partitions)))


def _assigned(log_path) -> set[int] | None:
    """The partitions a worker's log says it holds now (its last assignment)."""
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if "drift worker holds partitions" in ln]
    return None if not lines else set(orjson.loads(lines[-1].rsplit("holds partitions ", 1)[1]))


def _run_kill_test(broker, redis_url, tmp_path, workers: int, models: int) -> None:
    rng = np.random.default_rng(3)
    ms = [model_id("kill") for _ in range(models)]
    all_events = {}
    for m in ms:
        register(redis_url, m, rng)
        all_events[m] = [*window_events(m, 0, 1_500, rng), *window_events(m, 1, 1_500, rng, shift={"f03": 1.0}),
                         *window_events(m, 2, 1_500, rng, shift={"f03": 1.0, "f11": -1.0}), *window_events(m, 3, 5, rng)]
    expected = {}
    for m in ms:
        expected.update(expected_findings(redis_url, m, all_events[m]))
    assert expected, "the scenario must produce findings"
    g = group()
    paths = [tmp_path / f"worker{i}.log" for i in range(workers + 1)]
    logs = [open(p, "wb") for p in paths]
    ports = [free_port() for _ in range(workers + 1)]
    procs = [start_worker(broker.address, redis_url, g, ports[i], logs[i]) for i in range(workers)]
    watched = _partition(ms[0])
    try:
        victim = 0
        if workers == 2:  # wait for a settled split, then kill the worker holding the first model
            def settled():
                a = [_assigned(p) for p in paths[:2]]
                return all(a) and a[0] | a[1] == set(range(8)) and not a[0] & a[1] and a
            victim = 0 if watched in wait_for(settled, 40, "two workers to split the partitions")[0] else 1
        first = [e for m in ms for e in all_events[m][:2_200]]  # window 0 and half of window 1
        rest = [e for m in ms for e in all_events[m][2_200:]]
        produce(broker.address, first)
        wait_for(lambda: checkpoint_offsets(redis_url, g).get(watched, 0) > 0, 40, "a first checkpoint")
        produce(broker.address, rest[: len(rest) // 3])
        procs[victim].kill()  # kill -9, mid-window
        procs[victim].wait()
        produce(broker.address, rest[len(rest) // 3:])
        if workers == 1:
            procs.append(start_worker(broker.address, redis_url, g, ports[-1], logs[-1]))
        found = events_of(read_records(broker.address, TOPICS["findings"], keys=set(ms), expect=len(expected),
                                       quiet=3.0, timeout=50))
        heir_url = f"http://127.0.0.1:{ports[-1] if workers == 1 else ports[1 - victim]}"
        assert httpx.get(f"{heir_url}/healthz").status_code == 200 and httpx.get(f"{heir_url}/readyz").status_code == 200
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


@pytest.mark.parametrize("broker_kind", ["kafka", "tansu"])
def test_kill_9_mid_window_then_restart_gives_the_findings_of_an_uninterrupted_run(broker_kind, request, redis_url, tmp_path):
    broker = request.getfixturevalue({"kafka": "apache_kafka", "tansu": "tansu"}[broker_kind])
    _run_kill_test(broker, redis_url, tmp_path, workers=1, models=1)


@pytest.mark.parametrize("broker_kind", ["kafka", "tansu"])
def test_two_workers_equal_one_and_the_survivor_takes_over_exactly(broker_kind, request, redis_url, tmp_path):
    broker = request.getfixturevalue({"kafka": "apache_kafka", "tansu": "tansu"}[broker_kind])
    _run_kill_test(broker, redis_url, tmp_path, workers=2, models=4)


def test_bad_records_go_to_the_deadletter_topic_and_the_worker_keeps_going(worker, apache_kafka, redis_url):
    import orjson

    from tests.integration.drift_support import _produce_raw
    rng = np.random.default_rng(4)
    m, unknown = model_id("dlq"), model_id("unknown")
    register(redis_url, m, rng)
    good = window_events(m, 0, 300, rng)
    stray = {**good[0], "event_id": "stray", "model_id": "someone-else"}
    _produce_raw(apache_kafka.address, [(m.encode(), b"{not json"), (unknown.encode(), orjson.dumps(good[:2])),
                                        (m.encode(), orjson.dumps([stray, {"event_id": 5}]))])
    produce(apache_kafka.address, good + window_events(m, 2, 5, rng))
    dead = events_of(read_records(apache_kafka.address, TOPICS["deadletter"], keys={m, unknown}, expect=4, timeout=30))
    errors = sorted(d["error"].split(":")[0] for d in dead)
    assert len(dead) == 4 and {d["source_topic"] for d in dead} == {TOPICS["predictions"]}, dead
    assert any("not JSON" in d["error"] and d["raw"] == "{not json" for d in dead), errors
    assert any("no model registered" in d["error"] for d in dead) and any("record key" in d["error"] for d in dead)

    def counted() -> bool:
        return any(mw.watermark >= T0 + 2 * WINDOW for p in list(worker.parts.values())
                   if (mw := p.windows.models.get(m)) is not None)
    wait_for(counted, 30, "the worker to go on counting the good events")
