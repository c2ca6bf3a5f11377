"""The alerts service on a real Apache Kafka and a real Redis, under a real uvicorn server: findings
published to `vigil.findings` directly, the HTTP API read with httpx, `vigil.alerts` and
`vigil.actions` read back from the broker. The Dispatcher is a recording stand-in here
(`alerts_support.RecordingDispatcher`); delivery to real receivers is in test_alerts_faults.py
and DELIVERY's tests."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from shared import kafka
from shared.events import Action, Alert
from tests.integration.alerts_support import (RecordingDispatcher, alerts_of, finding, model_id, private_db,
                                              processed, publish, publish_raw, register, running_alerts, wait_for)
from tests.support import read_records

pytestmark = [pytest.mark.kafka]


@pytest.fixture
def env(apache_kafka, redis_url):
    """(bootstrap, private redis URL, recorder factory)."""
    db = private_db(redis_url)
    made: list[RecordingDispatcher] = []

    def factory(r, s):
        d = RecordingDispatcher(r, s)
        made.append(d)
        return d

    factory.made = made
    return apache_kafka.address, db, factory


def test_a_thousand_findings_of_one_fingerprint_make_one_alert(env):
    bootstrap, db, factory = env
    m = model_id()
    register(db, m)
    t0 = datetime.now(timezone.utc) - timedelta(minutes=5)
    found = [finding(m, i, "medium" if i < 500 else "high", window_end=t0 + timedelta(milliseconds=i)) for i in range(1000)]
    with running_alerts(bootstrap, db, dispatcher_factory=factory) as (url, app):
        publish(bootstrap, found)
        alerts = wait_for(lambda: [a for a in alerts_of(url, m) if a["occurrences"] == 1000], 120, "1000 occurrences")
        assert len(alerts_of(url, m)) == 1
        a = alerts[0]
        assert a["severity"] == "high" and a["status"] == "firing" and a["owners"] == ["ana@example.com"]
        assert datetime.fromisoformat(a["first_seen"]) == datetime.fromisoformat(found[0]["window_end"])
        assert datetime.fromisoformat(a["last_seen"]) == datetime.fromisoformat(found[-1]["window_end"])
        assert a["latest"]["finding_id"] == found[-1]["finding_id"]
        # one alert id in every state change on the topic, keyed by the fingerprint
        # (state changes of one poll coalesce: fewer than 1,000 states, read until the topic is quiet)
        states = [s for _, v in read_records(bootstrap, kafka.TOPICS["alerts"], {a["fingerprint"]}, quiet=2.0)
                  for s in v]
        assert {s["alert_id"] for s in states} == {a["alert_id"]}
        assert max(s["occurrences"] for s in states) == 1000
        for s in states:  # every state on the topic is a contract Alert
            Alert.model_validate(s)
        # actions once per severity reached, not once per finding
        acts = httpx.get(f"{url}/v1/actions", params={"model_id": m}).json()
        assert sorted(x["type"] for x in acts) == sorted(["notify", "queue_retraining", "notify", "queue_retraining",
                                                          "increase_monitoring_frequency"])
        assert {(x["alert_id"], x["model_id"]) for x in acts} == {(a["alert_id"], m)}
        assert {s["alert_id"] for s in factory.made[0].of(m)} == {a["alert_id"]}
        metrics = httpx.get(f"{url}/metrics").text
        assert 'vigil_alerts_fired_total{kind="data_drift",severity="medium"}' in metrics
        assert "vigil_detection_latency_seconds_count" in metrics


def test_the_same_finding_twice_changes_nothing(env):
    bootstrap, db, factory = env
    m = model_id()
    register(db, m)
    f = finding(m, 1)
    with running_alerts(bootstrap, db, dispatcher_factory=factory) as (url, app):
        publish(bootstrap, [f])
        first = wait_for(lambda: alerts_of(url, m), 60, "the alert")[0]
        before = processed(app)
        publish(bootstrap, [f, f, {**f, "metrics": {"psi": 0.9}}])  # same finding_id: a copy
        wait_for(lambda: processed(app) >= before + 3, 60, "the copies consumed")
        again = alerts_of(url, m)
        assert again == [first]
        assert first["occurrences"] == 1 and first["revision"] == 1
        assert len(factory.made[0].of(m)) == 1
        assert len(httpx.get(f"{url}/v1/findings", params={"model_id": m}).json()) == 1


def test_a_silence_suppresses_notifications_and_the_alert_shows_silenced(env):
    bootstrap, db, factory = env
    m, other = model_id(), model_id()
    register(db, m, labels={"team": "risk"})
    register(db, other, labels={"team": "growth"})
    now = datetime.now(timezone.utc)
    with running_alerts(bootstrap, db, dispatcher_factory=factory) as (url, app):
        body = {"matchers": [{"name": "team", "value": "risk", "isRegex": False, "isEqual": True},
                             {"name": "kind", "value": "data_.*", "isRegex": True}],
                "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
                "createdBy": "ana", "comment": "maintenance"}
        r = httpx.post(f"{url}/v1/silences", json=body)
        assert r.status_code == 200, r.text
        sid = r.json()["silenceID"]
        publish(bootstrap, [finding(m, 1, "critical"), finding(other, 1, "critical")])
        a = wait_for(lambda: alerts_of(url, m), 60, "the silenced alert")[0]
        wait_for(lambda: alerts_of(url, other), 60, "the other alert")
        assert a["status"] == "silenced" and a["silenced_by"] == [sid]
        assert alerts_of(url, m, status="silenced") == [a]
        assert factory.made[0].of(m) == []  # recorded, not notified
        assert len(factory.made[0].of(other)) == 1  # the silence matches only its team
        # the actions and the mode are still recorded: a silence mutes notifications only
        assert httpx.get(f"{url}/v1/models/{m}/mode").json()["mode"] == "human_review"
        listed = httpx.get(f"{url}/v1/silences").json()
        assert [s["id"] for s in listed if s["id"] == sid] and listed[0]["status"]["state"] == "active"
        # expiring the silence lets the alert fire, and notify
        assert httpx.delete(f"{url}/v1/silences/{sid}").status_code == 200
        back = wait_for(lambda: [x for x in alerts_of(url, m) if x["status"] == "firing"], 30, "the alert firing")[0]
        assert back["silenced_by"] == []
        wait_for(lambda: factory.made[0].of(m), 30, "the notification after the silence")
        assert httpx.get(f"{url}/v1/silences/{sid}").json()["status"]["state"] == "expired"


def test_bad_silences_are_refused_naming_the_field(env):
    bootstrap, db, factory = env
    now = datetime.now(timezone.utc).isoformat()
    with running_alerts(bootstrap, db, dispatcher_factory=factory) as (url, app):
        cases = [({"matchers": [], "endsAt": now, "createdBy": "a"}, "matchers"),
                 ({"matchers": [{"name": "kind", "value": "(", "isRegex": True}], "endsAt": "2999-01-01T00:00:00Z",
                   "createdBy": "a"}, "matchers.0.value"),
                 ({"matchers": [{"name": "kind", "value": "x"}], "endsAt": "yesterday", "createdBy": "a"}, "endsAt"),
                 ({"matchers": [{"name": "kind", "value": "x"}], "startsAt": now, "endsAt": "2000-01-01T00:00:00Z",
                   "createdBy": "a"}, "endsAt"),
                 ({"matchers": [{"name": "kind", "value": "x"}], "endsAt": "2999-01-01T00:00:00Z"}, "createdBy")]
        for body, field in cases:
            r = httpx.post(f"{url}/v1/silences", json=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["detail"]["errors"][0]["field"] == field, r.text
        assert httpx.delete(f"{url}/v1/silences/nope").status_code == 404


def test_inhibition_holds_back_the_models_medium_alerts_and_nothing_else(env):
    bootstrap, db, factory = env
    m, other = model_id(), model_id()
    register(db, m)
    register(db, other)
    with running_alerts(bootstrap, db, dispatcher_factory=factory) as (url, app):
        publish(bootstrap, [finding(m, 1, "medium", feature="a"), finding(other, 1, "medium", feature="a")])
        wait_for(lambda: len(factory.made[0].of(m)) == 1, 60, "the medium alert notified")
        publish(bootstrap, [finding(m, 2, "critical", kind="performance_degradation", feature=None),
                            finding(m, 3, "high", feature="b"), finding(m, 4, "medium", feature="c")])
        alerts = wait_for(lambda: (lambda xs: xs if len(xs) == 4 else None)(alerts_of(url, m)), 60, "four alerts")
        by = {(a["severity"], a["feature"]): a for a in alerts}
        crit = by[("critical", None)]
        assert by[("medium", "a")]["status"] == "silenced" and by[("medium", "a")]["inhibited_by"] == [crit["alert_id"]]
        assert by[("medium", "c")]["status"] == "silenced" and by[("medium", "c")]["inhibited_by"] == [crit["alert_id"]]
        assert by[("high", "b")]["status"] == "firing" and by[("high", "b")]["inhibited_by"] == []
        assert crit["status"] == "firing"
        assert alerts_of(url, other)[0]["status"] == "firing"  # another model's medium alert is not held back
        sent = {(a["severity"], a.get("feature")) for a in factory.made[0].of(m)}
        assert sent == {("medium", "a"), ("critical", None), ("high", "b")}  # medium c never notified
        assert len(factory.made[0].of(other)) == 1


def test_acknowledge_records_who_and_when(env):
    bootstrap, db, factory = env
    m = model_id()
    register(db, m)
    with running_alerts(bootstrap, db, dispatcher_factory=factory) as (url, app):
        publish(bootstrap, [finding(m, 1, "high")])
        a = wait_for(lambda: alerts_of(url, m), 60, "the alert")[0]
        r = httpx.post(f"{url}/v1/alerts/{a['alert_id']}/ack", json={"by": "ana", "comment": "looking"})
        assert r.status_code == 200, r.text
        got = httpx.get(f"{url}/v1/alerts/{a['alert_id']}").json()
        assert got["status"] == "acknowledged"
        assert got["acknowledged"]["by"] == "ana" and got["acknowledged"]["comment"] == "looking"
        assert abs(datetime.fromisoformat(got["acknowledged"]["at"]) - datetime.now(timezone.utc)) < timedelta(minutes=1)
        # a repeat keeps it acknowledged and quiet; an escalation fires it again
        publish(bootstrap, [finding(m, 2, "high")])
        wait_for(lambda: alerts_of(url, m)[0]["occurrences"] == 2, 60, "the repeat")
        assert alerts_of(url, m)[0]["status"] == "acknowledged"
        # the dispatcher got the firing alert, then its acknowledgement (so it stops repeating it)
        assert [x["status"] for x in factory.made[0].of(m)] == ["firing", "acknowledged"]
        publish(bootstrap, [finding(m, 3, "critical")])
        wait_for(lambda: alerts_of(url, m)[0]["status"] == "firing", 60, "the escalation firing")
        assert [(x["status"], x["severity"]) for x in factory.made[0].of(m)] == \
            [("firing", "high"), ("acknowledged", "high"), ("firing", "critical")]
        states = [s for _, v in read_records(bootstrap, kafka.TOPICS["alerts"], {a["fingerprint"]}, expect=4) for s in v]
        assert "acknowledged" in [s["status"] for s in states]
        assert httpx.post(f"{url}/v1/alerts/nope/ack", json={"by": "ana"}).status_code == 404
        bad = httpx.post(f"{url}/v1/alerts/{a['alert_id']}/ack", json={"comment": "who?"})
        assert bad.status_code == 422 and bad.json()["detail"]["errors"][0]["field"] == "body.by"


def test_api_keys_guard_the_writes_only(env):
    bootstrap, db, factory = env
    with running_alerts(bootstrap, db, dispatcher_factory=factory, api_keys="k1") as (url, app):
        body = {"mode": "automated", "by": "ana", "reason": "x"}
        assert httpx.post(f"{url}/v1/models/m/mode", json=body).status_code == 401
        assert httpx.post(f"{url}/v1/models/m/mode", json=body, headers={"Authorization": "Bearer k1"}).status_code == 200
        assert httpx.get(f"{url}/v1/models/m/mode").status_code == 200


def test_a_critical_finding_sets_human_review_until_an_operator_clears_it(env):
    bootstrap, db, factory = env
    m = model_id()
    register(db, m, risk_tier="high")
    with running_alerts(bootstrap, db, dispatcher_factory=factory) as (url, app):
        assert httpx.get(f"{url}/v1/models/{m}/mode").json() == {"mode": "automated", "since": None, "reason": None}
        publish(bootstrap, [finding(m, 1, "critical", kind="performance_degradation", feature=None,
                                    metrics={"accuracy": 0.7, "baseline": 0.9, "degradation": 0.2})])
        mode = wait_for(lambda: (lambda x: x if x["mode"] == "human_review" else None)(
            httpx.get(f"{url}/v1/models/{m}/mode").json()), 60, "human review")
        a = alerts_of(url, m)[0]
        assert mode["by"] == "vigil" and a["alert_id"] in mode["reason"] and mode["since"]
        acts = httpx.get(f"{url}/v1/actions", params={"model_id": m}).json()
        assert sorted(x["type"] for x in acts) == ["enable_human_review", "page_oncall", "queue_retraining", "rollback"]
        on_topic = [x for _, v in read_records(bootstrap, kafka.TOPICS["actions"], {m}, expect=4) for x in v]
        assert sorted(x["action_id"] for x in on_topic) == sorted(x["action_id"] for x in acts)
        assert all(Action.model_validate(x).priority == "urgent" for x in on_topic)
        bad = httpx.post(f"{url}/v1/models/{m}/mode", json={"mode": "automated", "by": "ana"})
        assert bad.status_code == 422 and bad.json()["detail"]["errors"][0]["field"] == "body.reason"
        r = httpx.post(f"{url}/v1/models/{m}/mode", json={"mode": "automated", "by": "ana", "reason": "retrained v2"})
        assert r.status_code == 200
        now = httpx.get(f"{url}/v1/models/{m}/mode").json()
        assert now["mode"] == "automated" and now["by"] == "ana" and now["reason"] == "retrained v2"
        history = httpx.get(f"{url}/v1/models/{m}/mode/history").json()
        assert [h["mode"] for h in history] == ["automated", "human_review"]
        # a repeat of the same alert does not switch the model back to human review
        publish(bootstrap, [finding(m, 2, "critical", kind="performance_degradation", feature=None)])
        wait_for(lambda: alerts_of(url, m)[0]["occurrences"] == 2, 60, "the repeat")
        assert httpx.get(f"{url}/v1/models/{m}/mode").json()["mode"] == "automated"


def test_clear_windows_resolve_with_the_same_alert_and_a_new_finding_opens_a_new_one(env):
    bootstrap, db, factory = env
    m = model_id()
    register(db, m)
    t = datetime.now(timezone.utc) - timedelta(minutes=10)
    with running_alerts(bootstrap, db, dispatcher_factory=factory) as (url, app):
        publish(bootstrap, [finding(m, 1, "high", window_end=t)])
        a = wait_for(lambda: alerts_of(url, m), 60, "the alert")[0]
        publish(bootstrap, [finding(m, 2, "low", window_end=t + timedelta(seconds=900))])
        wait_for(lambda: len(alerts_of(url, m)[0]["clear_windows"]) == 1, 60, "one clear window")
        assert alerts_of(url, m)[0]["status"] == "firing"
        publish(bootstrap, [finding(m, 3, "low", window_end=t + timedelta(seconds=1800))])
        r = wait_for(lambda: alerts_of(url, m, status="resolved"), 60, "the resolve")[0]
        assert r["alert_id"] == a["alert_id"] and r["resolved_at"]
        sent = factory.made[0].of(m)
        assert [(x["status"], x["alert_id"]) for x in sent] == [("firing", a["alert_id"]), ("resolved", a["alert_id"])]
        assert alerts_of(url, m, status="firing") == []
        publish(bootstrap, [finding(m, 4, "medium", window_end=t + timedelta(seconds=2700))])
        b = wait_for(lambda: alerts_of(url, m, status="firing"), 60, "a new alert")[0]
        assert b["alert_id"] != a["alert_id"] and b["fingerprint"] == a["fingerprint"] and b["occurrences"] == 1


def test_an_alert_resolves_when_its_windows_pass_without_findings(env):
    bootstrap, db, factory = env
    m = model_id()
    register(db, m)
    with running_alerts(bootstrap, db, dispatcher_factory=factory, resolve_after_windows=2) as (url, app):
        # 1-second windows: two window lengths pass in two seconds
        publish(bootstrap, [finding(m, 1, "high", window=1.0)])
        a = wait_for(lambda: alerts_of(url, m, status="resolved"), 60, "the resolve by the sweep")[0]
        assert a["occurrences"] == 1
        sent = factory.made[0].of(m)
        assert [x["status"] for x in sent] == ["firing", "resolved"]
        assert sent[0]["revision"] < sent[1]["revision"]


def test_findings_are_listed_with_filters(env):
    bootstrap, db, factory = env
    m, other = model_id(), model_id()
    register(db, m)
    t = datetime.now(timezone.utc)
    fs = [finding(m, 1, "medium", window_end=t - timedelta(hours=2)),
          finding(m, 2, "high", kind="prediction_drift", feature=None, window_end=t - timedelta(hours=1)),
          finding(m, 3, "low", window_end=t),
          finding(other, 1, "high", window_end=t)]
    with running_alerts(bootstrap, db, dispatcher_factory=factory) as (url, app):
        publish(bootstrap, fs)
        wait_for(lambda: len(httpx.get(f"{url}/v1/findings", params={"model_id": m}).json()) == 3, 60, "findings")

        def ids(**params):
            return [f["finding_id"] for f in httpx.get(f"{url}/v1/findings", params=params).json()]

        assert ids(model_id=m) == [fs[2]["finding_id"], fs[1]["finding_id"], fs[0]["finding_id"]]  # newest first
        assert ids(model_id=m, kind="data_drift") == [fs[2]["finding_id"], fs[0]["finding_id"]]
        since = (t - timedelta(minutes=90)).isoformat()
        assert ids(model_id=m, since=since) == [fs[2]["finding_id"], fs[1]["finding_id"]]
        assert fs[3]["finding_id"] in ids()
        assert httpx.get(f"{url}/v1/findings", params={"since": "yesterday"}).status_code == 422
        got = httpx.get(f"{url}/v1/findings", params={"model_id": m, "kind": "prediction_drift"}).json()[0]
        assert got["metrics"] == fs[1]["metrics"] and got["evidence"] == fs[1]["evidence"]
        assert httpx.get(f"{url}/v1/alerts", params={"severity": "urgent"}).status_code == 422


def test_bad_findings_go_to_the_dead_letters_and_the_service_keeps_going(env):
    bootstrap, db, factory = env
    m = model_id()
    register(db, m)
    bad_key = model_id("bad").encode()
    with running_alerts(bootstrap, db, dispatcher_factory=factory) as (url, app):
        publish_raw(bootstrap, [(bad_key, b"{not json"), (bad_key, b'{"finding_id": "x", "severity": "dire"}')])
        publish(bootstrap, [finding(m, 1, "high")])
        wait_for(lambda: alerts_of(url, m), 60, "the good finding's alert")
        dead = [x for _, v in read_records(bootstrap, kafka.TOPICS["deadletter"], {bad_key.decode()}, expect=2) for x in v]
        assert len(dead) == 2 and all(d["source_topic"] == kafka.TOPICS["findings"] for d in dead)
        assert dead[0]["error"].startswith("not JSON") and "severity" in dead[1]["error"]
        assert httpx.get(f"{url}/readyz").status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert 'vigil_deadletter_total{reason="invalid",service="alerts"}' in metrics
        assert "vigil_alerts_active" in metrics


def test_a_critical_finding_pages_once_and_the_resolve_reuses_its_dedup_key(apache_kafka, redis_url):
    """The real Dispatcher and a local PagerDuty Events API v2 that validates every event."""
    from tests.receivers import PagerDutyReceiver

    bootstrap, db = apache_kafka.address, private_db(redis_url)
    m = model_id()
    register(db, m)
    t = datetime.now(timezone.utc) - timedelta(minutes=10)
    with PagerDutyReceiver() as pd, running_alerts(
            bootstrap, db, pagerduty_routing_key="R0UTINGKEY0123456789012345678901", pagerduty_url=pd.url,
            group_wait_seconds=0.2, group_interval_seconds=0.5, repeat_interval_seconds=3600) as (url, app):
        publish(bootstrap, [finding(m, 1, "critical", window_end=t)])
        first = pd.wait_for(1, timeout=60)[0].body
        a = alerts_of(url, m)[0]
        assert first["event_action"] == "trigger" and first["dedup_key"] == a["fingerprint"]
        assert first["payload"]["severity"] == "critical"
        # a repeat within repeat_interval: the alert counts it, PagerDuty hears nothing
        before = processed(app)
        publish(bootstrap, [finding(m, 2, "critical", window_end=t + timedelta(seconds=1))])
        wait_for(lambda: alerts_of(url, m)[0]["occurrences"] == 2, 60, "the repeat")
        assert processed(app) > before
        assert type(app.state.service.dispatcher).__name__ == "Dispatcher"  # the real one
        time.sleep(2.0)  # several group intervals
        assert len(pd.requests) == 1
        # two clear windows resolve it: the resolve goes to the same incident
        publish(bootstrap, [finding(m, 3, "low", window_end=t + timedelta(seconds=900)),
                            finding(m, 4, "low", window_end=t + timedelta(seconds=1800))])
        resolve = pd.wait_for(2, timeout=60)[1].body
        assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == first["dedup_key"]
        assert alerts_of(url, m, status="resolved")[0]["alert_id"] == a["alert_id"]
        time.sleep(1.0)
        assert len(pd.requests) == 2 and pd.errors == []


def test_smoke_on_tansu(tansu, redis_url):
    """The same service on the Tansu broker (`vigil up`'s default): a finding makes an alert, its
    copy changes nothing, the state and actions are published."""
    db = private_db(redis_url)
    m = model_id()
    register(db, m)
    f = finding(m, 1, "medium")
    with running_alerts(tansu.address, db, dispatcher_factory=RecordingDispatcher) as (url, app):
        publish(tansu.address, [f, f])
        wait_for(lambda: processed(app) >= 2, 60, "both copies consumed")
        (a,) = wait_for(lambda: alerts_of(url, m), 60, "the alert")
        assert a["occurrences"] == 1 and a["status"] == "firing"
        states = [s for _, v in read_records(tansu.address, kafka.TOPICS["alerts"], {a["fingerprint"]}, expect=1) for s in v]
        assert [s["alert_id"] for s in states] == [a["alert_id"]]
        acts = [x for _, v in read_records(tansu.address, kafka.TOPICS["actions"], {m}, expect=2) for x in v]
        assert sorted(x["type"] for x in acts) == ["notify", "queue_retraining"]
