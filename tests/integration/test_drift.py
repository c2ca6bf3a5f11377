"""The drift worker against a real broker and Redis: detection, no false alarms, first-window reference, dead letters.

kill -9 and scale-out: test_drift_faults.py (its own module, so this module's worker is gone).
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import numpy as np
import pytest

from shared.kafka import TOPICS
from shared.settings import Settings
from services.drift.app import DriftWorker
from tests.integration.drift_support import (T0, WINDOW, group, labels_of, produce, register, wait_for,
                                             window_events)
from tests.support import events_of, model_id, read_records

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
        mws = [p.state.windows.models.get(m) for p in list(worker.parts.values())]
        return any(mw is not None and mw.watermark >= T0 + 40 * WINDOW and len(mw.open) == 1 for mw in mws)
    wait_for(closed_all, 60, "the worker to close all 40 windows")
    found = findings_of(apache_kafka.address, m, timeout=5)
    assert [f for f in found if RANK[f["severity"]] >= RANK["medium"]] == []


def test_bad_records_go_to_the_deadletter_topic_and_the_worker_keeps_going(worker, apache_kafka, redis_url):
    import orjson

    from tests.integration.drift_support import _produce_raw
    rng = np.random.default_rng(4)
    m, unknown = model_id("dlq"), model_id("unknown")
    register(redis_url, m, rng)
    good = window_events(m, 0, 300, rng)
    stray = {**good[0], "event_id": "stray", "model_id": "someone-else"}
    _produce_raw(apache_kafka.address, [(m.encode(), b"{not json"), (unknown.encode(), orjson.dumps(good[:2])),
                                        (m.encode(), orjson.dumps([stray, {"event_id": 5}])),
                                        (m.encode(), b'[{"event_id": "big", "features": {"x": 1%s}}]' % (b"0" * 30))])
    produce(apache_kafka.address, good + window_events(m, 2, 5, rng))
    dead = events_of(read_records(apache_kafka.address, TOPICS["deadletter"], keys={m, unknown}, expect=5, timeout=30))
    errors = sorted(d["error"].split(":")[0] for d in dead)
    assert len(dead) == 5 and {d["source_topic"] for d in dead} == {TOPICS["predictions"]}, dead
    assert any("not JSON" in d["error"] and d["raw"] == "{not json" for d in dead), errors
    assert any("no model registered" in d["error"] for d in dead) and any("record key" in d["error"] for d in dead)
    assert any(d["raw"].endswith('"x":1%s}}' % ("0" * 30)) for d in dead), dead  # an integer beyond 64 bits, echoed exact

    def counted() -> bool:
        return any(mw.watermark >= T0 + 2 * WINDOW for p in list(worker.parts.values())
                   if (mw := p.state.windows.models.get(m)) is not None)
    wait_for(counted, 30, "the worker to go on counting the good events")


def test_labels_early_duplicated_late_unknown_and_bad_are_counted_and_performance_is_judged(worker, apache_kafka,
                                                                                            redis_url):
    """Labels through the worker: some before their predictions, some twice, some for no prediction,
    some after label_wait, and bad records (dead-lettered); the windows' accuracy is judged."""
    import orjson

    from shared import metrics
    from tests.integration.drift_support import _produce_raw
    rng = np.random.default_rng(8)
    m = model_id("labels")
    register(redis_url, m, rng, label_wait_seconds=60, baseline_metrics={"accuracy": 0.9})
    w0, w1, tick = window_events(m, 0, 400, rng), window_events(m, 1, 400, rng), window_events(m, 4, 5, rng)
    l0, l1 = labels_of(w0, 0.9, rng), labels_of(w1, 0.7, rng)
    ghosts = [{**lab, "event_id": f"ghost-{i}"} for i, lab in enumerate(l0[:7])]
    late = [{**lab, "timestamp": lab["timestamp"] + 200} for lab in l1[:3]]  # past window 1's end + label_wait
    produce(apache_kafka.address, l0[:100], topic="labels")  # before their predictions
    produce(apache_kafka.address, w0 + w1)
    produce(apache_kafka.address, l0[100:] + l0[:50] + ghosts + l1[3:] + late, topic="labels")  # 50 twice
    _produce_raw(apache_kafka.address, [(m.encode(), b"{not json"),
                                        (m.encode(), orjson.dumps([{**l0[0], "label": None}, {"event_id": 5}]))],
                 topic="labels")
    produce(apache_kafka.address, tick)
    produce(apache_kafka.address, labels_of(tick, 1.0, rng, delay=30), topic="labels")
    found = findings_of(apache_kafka.address, m, expect=1)
    (perf,) = [f for f in found if f["kind"] == "performance_degradation"]
    assert datetime.fromisoformat(perf["window_start"]).timestamp() == T0 + WINDOW
    right = sum(lab["label"] == e["prediction"] for lab, e in zip(l1[3:], w1[3:]))  # the 3 late ones do not count
    assert perf["metrics"]["accuracy"] == pytest.approx(right / 397)
    assert perf["evidence"]["labelled"] == 397 and perf["severity"] == "critical"

    def value(counter) -> float:
        return metrics.REGISTRY.get_sample_value(f"{counter}_total", {"model_id": m}) or 0.0
    wait_for(lambda: value("vigil_labels_unmatched") == 7, 30, "the ghost labels to count as unmatched")
    wait_for(lambda: value("vigil_labels_matched") == 400 + 397 + 5, 30, "every label in time to count")  # not the copies
    assert value("vigil_labels_late") == 3
    dead = events_of(read_records(apache_kafka.address, TOPICS["deadletter"], keys={m}, expect=3, timeout=30))
    assert {d["source_topic"] for d in dead} == {TOPICS["labels"]} and len(dead) == 3
