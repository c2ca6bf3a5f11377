"""The oversight worker against a real broker and Redis: rubber-stamping, workload pressure, anchoring,
review coverage, vendor SLAs and the vendor report over HTTP. Every finding is also checked against
the pure pieces run on the same records (an uninterrupted run), and the numbers against NumPy.

kill -9 and restart: test_oversight_faults.py.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import httpx
import numpy as np
import orjson
import pytest
import redis
from hypothesis import given, settings as hsettings, strategies as hst

from shared import metrics as m
from shared.events import ModelSpec
from shared.kafka import TOPICS
from shared.settings import Settings
from services.oversight.app import OversightWorker
from tests.integration import oversight_support as os_
from tests.integration.drift_support import wait_for
from tests.support import events_of, model_id, read_records, running_ingest

STAMPERS = ("rev-0", "rev-3", "rev-5", "rev-8")


@pytest.fixture(scope="module")
def worker(apache_kafka, redis_url):
    """One in-process oversight worker (own consumer group) for the module."""
    settings = Settings(kafka_bootstrap=apache_kafka.address, redis_url=redis_url, oversight_group=os_.group())
    loop = asyncio.new_event_loop()
    w = OversightWorker(settings, checkpoint_seconds=0.5)

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(w.start())
        loop.run_until_complete(w.run())
        loop.run_until_complete(w.stop())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_for(lambda: w.ready or not t.is_alive(), 60, "the oversight worker to start")
    assert t.is_alive(), "the oversight worker died at start"
    yield w
    loop.call_soon_threadsafe(w.request_stop)
    t.join(30)


def findings_of(bootstrap: str, model: str, expect: int | None = None, timeout: float = 60) -> list[dict]:
    found = events_of(read_records(bootstrap, TOPICS["findings"], keys={model}, expect=expect, quiet=2.0,
                                   timeout=timeout))
    by_id: dict[str, dict] = {}
    for f in found:
        assert by_id.setdefault(f["finding_id"], f) == f, "a repeated finding must be identical"
    return list(by_id.values())


def summary(redis_url: str, model: str) -> dict | None:
    r = redis.Redis.from_url(redis_url)
    raw = r.get(f"vigil:oversight:model:{model}")
    r.close()
    return None if raw is None else orjson.loads(raw)


def in_period(events: list[dict], f: dict) -> list[dict]:
    start, end = (datetime.fromisoformat(f[k]).timestamp() for k in ("window_start", "window_end"))
    return [e for e in events if start <= e["timestamp"] < end]


def _by_kind(found: list[dict], kind: str) -> list[dict]:
    return sorted((f for f in found if f["kind"] == kind), key=lambda f: f["window_end"])


def test_four_rubber_stampers_in_a_team_of_ten_are_named_and_rates_match_numpy(worker, apache_kafka, redis_url):
    rng = np.random.default_rng(11)
    mid = model_id("stamp")
    reviews = os_.team_reviews(mid, rng, days=8, per_day=600, stampers=STAMPERS)
    expected = os_.expected_findings({"reviews": reviews})
    assert expected and {f["kind"] for f in expected.values()} == {"reviewer_rubber_stamping"}
    os_.produce(apache_kafka.address, "reviews", reviews)
    found = findings_of(apache_kafka.address, mid, expect=len(expected))
    assert {f["finding_id"]: f for f in found} == expected
    stamping = _by_kind(found, "reviewer_rubber_stamping")
    assert all(set(f["evidence"]["reviewers"]) <= set(STAMPERS) for f in stamping), "only stampers are named"
    judged = [f for f in stamping if f["metrics"]["reviewers_judged"] == 10]
    assert len(judged) > 100 and all(f["evidence"]["reviewers"] == sorted(STAMPERS) for f in judged)
    last = stamping[-1]
    window = in_period(reviews, last)
    who = np.array([e["reviewer_id"] for e in window])
    over = np.array([e["human_decision"] != e["ai_prediction"] for e in window])
    assert last["n"] == len(window) and last["metrics"]["override_rate"] == pytest.approx(over.mean(), abs=1e-12)
    for r, v in last["evidence"]["per_reviewer"].items():
        assert v["reviews"] == (who == r).sum()
        assert v["override_rate"] == pytest.approx(over[who == r].mean(), abs=1e-12)
    assert set(last["evidence"]["per_reviewer"]) == set(os_.TEAM)
    end = datetime.fromisoformat(last["window_end"]).timestamp()
    s = wait_for(lambda: (s := summary(redis_url, mid)) and datetime.fromisoformat(s["window_end"]).timestamp() == end
                 and s, 10, "the review summary in Redis")
    assert s["rubber_stampers"] == sorted(STAMPERS)
    assert m.REGISTRY.get_sample_value("vigil_override_rate", {"model_id": mid}) == pytest.approx(over.mean())
    exposition = m.exposition()[0].decode()
    assert not any(r in exposition for r in os_.TEAM), "reviewer ids must stay out of metric labels"


def test_override_rate_falling_on_high_volume_days_is_workload_pressure_and_uniform_behaviour_is_not(
        worker, apache_kafka, redis_url):
    rng = np.random.default_rng(12)
    volume = [250, 900, 220, 950, 300, 880, 240, 920]
    busy, calm = model_id("busy"), model_id("calm")
    pressured = os_.team_reviews(busy, rng, days=8, per_day=volume,
                                 rates=lambda r, d: 0.03 if volume[d] > 800 else 0.16)
    uniform = os_.team_reviews(calm, rng, days=8, per_day=volume, rates=lambda r, d: 0.12)
    exp_busy, exp_calm = os_.expected_findings({"reviews": pressured}), os_.expected_findings({"reviews": uniform})
    assert exp_calm == {}
    os_.produce(apache_kafka.address, "reviews", pressured + uniform)
    found = findings_of(apache_kafka.address, busy, expect=len(exp_busy))
    assert {f["finding_id"]: f for f in found} == exp_busy
    pressure = _by_kind(found, "workload_pressure")
    assert pressure, "falling override rates on busy days must be flagged"
    f = pressure[-1]
    window = in_period(pressured, f)
    day = np.array([int((e["timestamp"] - datetime.fromisoformat(f["window_start"]).timestamp()) // os_.DAY)
                    for e in window])
    over = np.array([e["human_decision"] != e["ai_prediction"] for e in window])
    n = np.bincount(day, minlength=7)
    o = np.bincount(day, weights=over, minlength=7)
    hi, lo = n >= np.quantile(n, 0.75), n <= np.quantile(n, 0.25)
    assert f["metrics"]["workload_high_rate"] == pytest.approx(o[hi].sum() / n[hi].sum())
    assert f["metrics"]["workload_low_rate"] == pytest.approx(o[lo].sum() / n[lo].sum())
    assert f["metrics"]["workload_ratio"] < 0.5
    wait_for(lambda: summary(redis_url, calm) is not None, 20, "the uniform model's summary")
    assert findings_of(apache_kafka.address, calm, timeout=5) == []


def test_reviewers_anchoring_on_the_ai_are_reported(worker, apache_kafka, redis_url):
    rng = np.random.default_rng(13)
    anchored, independent = model_id("anchor"), model_id("indep")
    a = os_.team_reviews(anchored, rng, days=3, per_day=400, anchoring=0.8)
    b = os_.team_reviews(independent, rng, days=3, per_day=400, anchoring=0.0)
    os_.produce(apache_kafka.address, "reviews", a + b)
    last_hour = os_.T0 + 3 * os_.DAY - 3600  # the last hour whose reviews are closed (lateness 300 s)

    def final(mid):
        s = summary(redis_url, mid)
        return s if s and datetime.fromisoformat(s["window_end"]).timestamp() >= last_hour else None

    for mid, events, switch in ((anchored, a, 0.8), (independent, b, 0.0)):
        s = wait_for(lambda: final(mid), 30, f"{mid}'s summary")
        window = in_period(events, s)
        dis = np.array([e["human_initial_decision"] != e["ai_prediction"] for e in window])
        back = np.array([e["human_decision"] == e["ai_prediction"] for e in window])
        assert s["metrics"]["initial_disagreement_rate"] == pytest.approx(dis.mean())
        assert s["metrics"]["switch_to_ai_rate"] == pytest.approx(back[dis].mean())
        assert abs(s["metrics"]["switch_to_ai_rate"] - switch) < 0.05


def test_low_confidence_predictions_without_review_are_a_coverage_gap(worker, apache_kafka, redis_url):
    rng = np.random.default_rng(14)
    gap, fine = model_id("gap"), model_id("covered")
    out = {}
    for mid, share in ((gap, 0.3), (fine, 0.95)):
        reviews = os_.team_reviews(mid, rng, days=3, per_day=300)
        preds = os_.low_confidence_predictions(mid, reviews, rng, reviewed=share)
        out[mid] = (os_.expected_findings({"reviews": reviews, "predictions": preds}), reviews, preds)
        os_.produce(apache_kafka.address, "predictions", preds)
        os_.produce(apache_kafka.address, "reviews", reviews)
    assert out[fine][0] == {}
    found = findings_of(apache_kafka.address, gap, expect=len(out[gap][0]))
    assert {f["finding_id"]: f for f in found} == out[gap][0]
    cov = _by_kind(found, "review_coverage_gap")
    assert cov and all(abs(f["metrics"]["coverage"] - 0.3) < 0.08 for f in cov)
    assert findings_of(apache_kafka.address, fine, timeout=5) == []


SLA = {"accuracy": 0.935, "latency_p95_ms": 126.0, "latency_p99_ms": 1000.0, "uptime": 0.99, "min_samples": 100,
       "period_days": 7, "tolerance": 0.02}


def test_vendor_latency_p95_at_1_3x_contract_violates_latency_only_persists_and_small_samples_do_not_alarm(
        worker, apache_kafka, redis_url):
    rng = np.random.default_rng(15)
    mid, small_mid = model_id("vend"), model_id("vsmall")
    slow, small = model_id("acme"), model_id("tiny")
    os_.register_sla(redis_url, slow, SLA)
    os_.register_sla(redis_url, small, {**SLA, "latency_p95_ms": 10.0})
    # p95 of a log-normal with median 100 ms and sigma 0.3: 100 e^(1.645 x 0.3) = 163.8 ms = 1.3 x 126
    preds, labels = os_.vendor_calls(mid, slow, rng, range(16), per_day=300, latency_ms=100.0, accuracy=0.94)
    few_p, few_l = os_.vendor_calls(small_mid, small, rng, [0], per_day=50)
    clock_p, clock_l = os_.vendor_calls(small_mid, "clock", rng, [3], per_day=5)  # moves the watermarks on
    expected = os_.expected_findings({"predictions": preds, "labels": labels}, slas={slow: SLA})
    counted = {t: (lambda t=t: m.REGISTRY.get_sample_value("vigil_stream_events_total",
                                                            {"service": "oversight", "topic": TOPICS[t]}) or 0.0)
               for t in ("predictions", "labels")}
    before = {t: c() for t, c in counted.items()}
    os_.produce(apache_kafka.address, "predictions", preds + few_p + clock_p)
    os_.produce(apache_kafka.address, "labels", labels + few_l + clock_l)
    found = findings_of(apache_kafka.address, mid, expect=len(expected))
    for t, n in (("predictions", len(preds + few_p + clock_p)), ("labels", len(labels + few_l + clock_l))):
        wait_for(lambda: counted[t]() - before[t] >= n, 30, f"the worker to count the {t}")  # noqa: B023
    assert {f["finding_id"]: f for f in found} == expected
    violations = _by_kind(found, "vendor_sla_violation")
    assert len(violations) == 15 and all(f["vendor"] == slow and f["model_id"] == mid for f in violations)
    assert all([v["sla"] for v in f["evidence"]["violations"]] == ["latency_p95"] for f in violations)
    f = violations[-1]
    lat = np.array([e["latency_ms"] for e in in_period(preds, f)])
    p95 = np.quantile(lat, 0.95, method="lower")
    assert abs(f["metrics"]["latency_p95_ms"] - p95) <= 0.01 * p95
    assert 1.25 < f["metrics"]["latency_p95_ms"] / SLA["latency_p95_ms"] < 1.35
    v = f["evidence"]["violations"][0]
    assert (v["contracted"], v["limit"]) == (126.0, pytest.approx(1.2 * 126.0))
    persistent = _by_kind(found, "vendor_sla_persistent")
    ends = [datetime.fromisoformat(p["window_end"]).timestamp() for p in persistent]
    assert ends and min(ends) == os_.T0 + 8 * os_.DAY  # the first period with a bad period a week before it
    assert findings_of(apache_kafka.address, small_mid, timeout=5) == []
    r = redis.Redis.from_url(redis_url)
    tiny = orjson.loads(r.hget(f"vigil:oversight:vendor:{small}", small_mid))
    r.close()
    assert tiny["status"] == "insufficient data" and tiny["sample_size"]["labelled"] == 50
    assert m.REGISTRY.get_sample_value("vigil_vendor_sla_compliant", {"vendor": slow, "sla": "latency_p95"}) == 0.0
    assert m.REGISTRY.get_sample_value("vigil_vendor_sla_compliant", {"vendor": slow, "sla": "accuracy"}) == 1.0
    assert m.REGISTRY.get_sample_value("vigil_vendor_latency_ms", {"vendor": slow, "quantile": "0.95"}) > 150

    with running_ingest(apache_kafka.address, redis_url) as url:
        report = httpx.get(f"{url}/v1/vendors/{slow}/report").json()
        md = httpx.get(f"{url}/v1/vendors/{slow}/report", params={"format": "md"})
        missing = httpx.get(f"{url}/v1/vendors/{model_id('nobody')}/report")
    assert report["status"] == "violation" and report["reports"][0]["model_id"] == mid
    rep = report["reports"][0]
    assert rep["period"]["days"] == 7 and rep["sample_size"]["labelled"] == 7 * 300
    assert [v["sla"] for v in rep["violations"]] == ["latency_p95"] and rep["terms"]["accuracy"]["ok"] is True
    assert len(rep["trend"]) == 15 and all(t["status"] == "violation" for t in rep["trend"])
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert f"# Vendor SLA report: {slow}" in md.text and "| latency_p95 |" in md.text and "violation" in md.text
    assert missing.status_code == 404 and "no report yet" in missing.json()["detail"]


def test_the_same_streams_interleaved_or_batched_differently_give_the_same_findings():
    rng = np.random.default_rng(16)
    mid = "interleave"
    reviews = os_.team_reviews(mid, rng, days=8, per_day=300, stampers=STAMPERS[:2])
    preds = os_.low_confidence_predictions(mid, reviews, rng, reviewed=0.4)
    vp, vl = os_.vendor_calls(mid, "v", rng, range(9), per_day=150, latency_ms=100.0)
    streams = {"reviews": reviews, "predictions": sorted(preds + vp, key=lambda e: e["timestamp"]), "labels": vl}
    slas = {"v": SLA}
    a = os_.expected_findings(streams, slas=slas)
    assert {f["kind"] for f in a.values()} >= {"reviewer_rubber_stamping", "review_coverage_gap", "vendor_sla_violation"}
    assert os_.expected_findings(streams, slas=slas, order=["labels", "predictions", "reviews"], batch=137) == a
    assert os_.expected_findings(streams, slas=slas, order=["predictions", "reviews", "labels"], batch=1000) == a
    dup = {k: v + v[: len(v) // 3] for k, v in streams.items()}  # at-least-once: a third delivered twice, late
    assert os_.expected_findings(dup, slas=slas) == a


def test_bad_records_go_to_the_deadletter_topic_and_the_worker_keeps_going(worker, apache_kafka, redis_url):
    from shared.kafka import start_producer

    rng = np.random.default_rng(17)
    mid = model_id("odlq")
    good = os_.team_reviews(mid, rng, days=1, per_day=200)
    stray = {**good[0], "review_id": "stray", "model_id": "someone-else"}
    no_reviewer = {**good[1], "review_id": "anon", "reviewer_id": ""}
    naive = {**good[2], "review_id": "naive", "timestamp": "2026-01-01T00:00:00"}

    async def send_raw():
        producer = await start_producer(apache_kafka.address, "off")
        try:
            for value in (b"{not json", orjson.dumps([stray, no_reviewer]), orjson.dumps(naive)):
                await producer.send_and_wait(TOPICS["reviews"], value, key=mid.encode())
        finally:
            await producer.stop()
    asyncio.run(send_raw())
    clock = {**good[-1], "review_id": "clock", "timestamp": os_.T0 + 2 * os_.DAY}  # closes the day's hours
    os_.produce(apache_kafka.address, "reviews", good + [clock])
    dead = events_of(read_records(apache_kafka.address, TOPICS["deadletter"], keys={mid}, expect=4, timeout=30))
    errors = sorted(d["error"] for d in dead)
    assert len(dead) == 4 and {d["source_topic"] for d in dead} == {TOPICS["reviews"]}, dead
    assert any("not JSON" in e for e in errors) and any("must equal the record key" in e for e in errors)
    assert any("reviewer_id: must be a non-empty string" in e for e in errors)
    assert any("must carry a UTC offset" in e for e in errors)
    s = wait_for(lambda: summary(redis_url, mid), 30, "the worker to go on counting the good reviews")
    end = datetime.fromisoformat(s["window_end"]).timestamp()
    assert s["metrics"]["reviews"] == len([e for e in good if e["timestamp"] < end])


def test_a_vendor_without_an_sla_gets_metrics_and_a_report_but_no_finding():
    from services.oversight import state as st
    from services.oversight.evaluate import vendor_at

    rng = np.random.default_rng(18)
    preds, labels = os_.vendor_calls("m", "free", rng, range(3), per_day=200, latency_ms=100.0)
    assert os_.expected_findings({"predictions": preds, "labels": labels}) == {}
    cfg, ms = st.Config(), st.ModelState()
    st.add_predictions(ms, preds, cfg)
    st.add_labels(ms, labels, cfg)
    due = st.due_vendor_days(ms, cfg, 3600, 1, lambda v: 7)
    assert [d.end for d in due] == [os_.T0 + os_.DAY, os_.T0 + 2 * os_.DAY]
    found, report = vendor_at("m", ms, "free", due[-1].end, ModelSpec(), None)
    lat = np.array([e["latency_ms"] for e in preds if e["timestamp"] < due[-1].end])
    assert found == [] and report["status"] == "no SLA" and report["sample_size"]["labelled"] == 400
    p99 = np.quantile(lat, 0.99, method="lower")
    assert abs(report["metrics"]["latency_p99_ms"] - p99) <= 0.01 * p99


_SMALL = None


def _small_streams():
    global _SMALL
    if _SMALL is None:
        rng = np.random.default_rng(19)
        reviews = os_.team_reviews("prop", rng, days=3, per_day=240, stampers=STAMPERS[:2])
        preds = os_.low_confidence_predictions("prop", reviews, rng, reviewed=0.4)
        vp, vl = os_.vendor_calls("prop", "v", rng, range(4), per_day=60, latency_ms=100.0)
        streams = {"reviews": reviews, "predictions": sorted(preds + vp, key=lambda e: e["timestamp"]), "labels": vl}
        sla = {"v": {**SLA, "min_samples": 50, "period_days": 2}}
        _SMALL = streams, sla, os_.expected_findings(streams, slas=sla, min_reviews=20)
    return _SMALL


@hsettings(max_examples=15, deadline=None)
@given(hst.permutations(["reviews", "predictions", "labels"]), hst.integers(1, 400))
def test_findings_do_not_depend_on_topic_interleaving_or_record_size(order, batch):
    streams, sla, expected = _small_streams()
    assert expected
    assert os_.expected_findings(streams, slas=sla, order=order, batch=batch, min_reviews=20) == expected


def test_a_review_delivered_twice_counts_once_and_a_late_one_is_counted_as_late_not_added():
    from services.oversight import state as st

    cfg, ms = st.Config(), st.ModelState()
    base = {"model_id": "m", "reviewer_id": "a", "ai_prediction": 1, "human_decision": 0}
    first = [{**base, "review_id": f"r{i}", "timestamp": os_.T0 + 60 * i} for i in range(10)]
    assert st.add_reviews(ms, first, cfg).added == 10
    again = st.add_reviews(ms, first[:4] + [{**base, "review_id": "r10", "timestamp": os_.T0 + 3600 + 301}], cfg)
    assert (again.late, ms.reviews[os_.T0].n) == (0, 10)  # copies within the open hour: deduplicated
    late = st.add_reviews(ms, [{**base, "review_id": "r11", "timestamp": os_.T0 + 5}], cfg)  # hour 0 closed
    assert (late.late, late.added, ms.reviews[os_.T0].n) == (1, 0, 10)
    assert st.due_reviews(ms, cfg) == [os_.T0 + 3600]
