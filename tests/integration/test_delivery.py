"""The Dispatcher against a real Redis and real local Slack / PagerDuty / webhook / SMTP receivers.

Timers are shortened (group_wait of a fraction of a second), except the Slack outage, which
lasts the issue's 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.alerts.dispatch import Dispatcher
from services.alerts.routing import Routing
from shared.metrics import NOTIFICATIONS
from shared.redis import connect
from shared.settings import Settings
from tests.receivers import (PagerDutyReceiver, pagerduty_receiver, slack_receiver,  # noqa: F401 (fixtures)
                             smtp_receiver, webhook_receiver)
from tests.support import free_port

pytestmark = pytest.mark.timeout(120)

MODEL = {"owners": ["ana@example.com"], "labels": {"team": "fraud"}, "risk_tier": "high",
         "runbook_url": "https://runbooks.example.com/drift"}


def alert(model_id: str, severity: str = "critical", status: str = "firing", revision: int = 1,
          kind: str = "data_drift", feature: str | None = "amount", occurrences: int = 1) -> dict:
    fingerprint = f"{model_id}:{kind}:{feature or '-'}"
    now = "2026-01-01T00:00:00+00:00"
    return {
        "alert_id": f"al-{fingerprint}", "fingerprint": fingerprint, "severity": severity, "status": status,
        "title": f"{kind} on {feature}", "summary": f"PSI of {feature} is 0.41 (> 0.3)", "model_id": model_id,
        "kind": kind, "first_seen": now, "last_seen": now, "occurrences": occurrences,
        "findings": [f"f-{revision}"], "actions": [], "owners": MODEL["owners"], "revision": revision,
        "latest": {"finding_id": f"f-{revision}", "kind": kind, "model_id": model_id, "feature": feature,
                   "window_start": now, "window_end": now, "n": 5000,
                   "metrics": {"psi": 0.41, "ks_statistic": 0.22, "ks_p_value": 1e-9},
                   "severity": severity, "evidence": {"reference_mean": 10.0, "window_mean": 14.2}},
    }


def model_id() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def dispatcher(redis_url: str, *, prefix: str | None = None, run: bool = True, **settings_kw):
    timers = dict(group_wait_seconds=0.2, group_interval_seconds=0.5, repeat_interval_seconds=3600.0)
    timers.update({k: v for k, v in settings_kw.items() if k.endswith("_seconds")})
    knobs = {k: settings_kw.pop(k) for k in list(settings_kw)
             if k in ("backoff_base", "backoff_cap", "lease_seconds", "poll_seconds")}
    settings = Settings(redis_url=redis_url, **{**settings_kw, **timers})
    redis = connect(redis_url)
    d = Dispatcher(redis, settings, Routing.load(settings), prefix=prefix or f"test:{uuid.uuid4().hex}:",
                   **{"backoff_base": 0.05, "backoff_cap": 0.5, **knobs})
    task = asyncio.create_task(d.run()) if run else None
    try:
        yield d
    finally:
        await d.stop()
        if task:
            await asyncio.wait_for(task, 10)
        await redis.aclose()


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_critical_pages_once_repeat_does_not_and_resolve_keeps_the_dedup_key(redis_url, pagerduty_receiver):
    pd, m = pagerduty_receiver, model_id()
    async with dispatcher(redis_url, pagerduty_routing_key="k" * 32, pagerduty_url=pd.url) as d:
        await d.submit(alert(m), MODEL)
        (first,) = [r.body for r in await pd.await_for(1)]
        for rev in (2, 3, 4):  # repeats within repeat_interval
            await d.submit(alert(m, revision=rev, occurrences=rev), MODEL)
        await asyncio.sleep(1.5)  # three group_intervals
        assert len(pd.accepted) == 1
        await d.submit(alert(m, status="resolved", revision=5, occurrences=4), MODEL)
        events = [r.body for r in await pd.await_for(2)]
        await until(lambda: _zero(d))
    assert pd.errors == []
    assert first["event_action"] == "trigger" and first["payload"]["severity"] == "critical"
    assert first["dedup_key"] == f"{m}:data_drift:amount" and first["routing_key"] == "k" * 32
    assert events[1] == {"routing_key": "k" * 32, "event_action": "resolve", "dedup_key": first["dedup_key"]}


async def _zero(d: Dispatcher) -> bool:
    return await d.pending() == 0


async def test_unchanged_firing_alert_repeats_after_repeat_interval(redis_url, pagerduty_receiver):
    pd, m = pagerduty_receiver, model_id()
    async with dispatcher(redis_url, pagerduty_routing_key="key", pagerduty_url=pd.url,
                          group_interval_seconds=0.3, repeat_interval_seconds=1.0) as d:
        await d.submit(alert(m), MODEL)
        got = await pd.await_for(2, timeout=5)
    assert [r.body["event_action"] for r in got[:2]] == ["trigger", "trigger"]
    assert got[1].time - got[0].time >= 1.0 - 0.05


@pytest.mark.parametrize("muted", ["silenced", "acknowledged"])
async def test_a_notified_alert_that_is_muted_stops_repeating_and_still_resolves(redis_url, pagerduty_receiver, muted):
    pd, m = pagerduty_receiver, model_id()
    async with dispatcher(redis_url, pagerduty_routing_key="key", pagerduty_url=pd.url,
                          group_interval_seconds=0.3, repeat_interval_seconds=1.0) as d:
        await d.submit(alert(m), MODEL)
        await pd.await_for(1, timeout=5)
        await d.submit(alert(m, status=muted, revision=2), MODEL)  # what the lifecycle sends as "muted"
        await asyncio.sleep(2.5)  # two repeat intervals
        assert [r.body["event_action"] for r in pd.accepted] == ["trigger"]
        await d.submit(alert(m, status="resolved", revision=3), MODEL)
        got = await pd.await_for(2, timeout=5)
    assert [r.body["event_action"] for r in got] == ["trigger", "resolve"]


async def test_escalation_notifies_again_within_repeat_interval(redis_url, slack_receiver):
    slack, m = slack_receiver, model_id()
    async with dispatcher(redis_url, slack_webhook_url=slack.url) as d:
        await d.submit(alert(m, severity="medium"), MODEL)
        await slack.await_for(1)
        await d.submit(alert(m, severity="high", revision=2), MODEL)
        got = await slack.await_for(2)
    assert got[0].body["text"].startswith("[MEDIUM]") and got[1].body["text"].startswith("[HIGH]")
    assert slack.errors == []


async def test_same_revision_twice_changes_nothing(redis_url, webhook_receiver):
    hook, m = webhook_receiver, model_id()
    async with dispatcher(redis_url, webhook_url=hook.url, group_wait_seconds=0.3) as d:
        a = alert(m, severity="high", revision=3)
        await d.submit(a, MODEL)
        await d.submit(a, MODEL)
        await d.submit(alert(m, severity="high", status="resolved", revision=2), MODEL)  # older: ignored
        await hook.await_for(1)
        await asyncio.sleep(1.0)
    assert len(hook.requests) == 1
    body = hook.accepted[0].body
    assert body["status"] == "firing" and [x["revision"] for x in body["alerts"]] == [3]
    assert body["groupKey"] == f"webhook/{m}" and hook.errors == []


async def test_group_wait_sends_one_slack_message_per_model(redis_url, slack_receiver):
    slack, m1, m2 = slack_receiver, model_id(), model_id()
    async with dispatcher(redis_url, slack_webhook_url=slack.url, group_wait_seconds=1.0) as d:
        for kind, feature in (("data_drift", "amount"), ("data_drift", "age"), ("prediction_drift", None)):
            await d.submit(alert(m1, "high", kind=kind, feature=feature), MODEL)
        await d.submit(alert(m2, "medium"), MODEL)
        got = await slack.await_for(2)
        await asyncio.sleep(1.0)
    assert len(slack.requests) == 2 and slack.errors == []
    by_model = {m: [r.body for r in got if m in r.body["text"] or m in str(r.body["blocks"])] for m in (m1, m2)}
    big = next(b for b in by_model[m1])
    assert big["text"].startswith(f"[HIGH] {m1}: 3 alert(s) firing")
    assert sum(1 for b in big["blocks"] if b["type"] == "section" and "fields" in b) == 3
    context = next(b for b in big["blocks"] if b["type"] == "context")
    assert any("ana@example.com" in e["text"] for e in context["elements"])
    assert any("https://runbooks.example.com/drift" in e["text"] for e in context["elements"])


@pytest.mark.slow
async def test_slack_down_for_30s_then_up_delivers_exactly_once(redis_url, slack_receiver):
    slack, m = slack_receiver, model_id()
    before = NOTIFICATIONS.labels(channel="slack", outcome="retry")._value.get()
    slack.fail_for(30.0)
    started = time.time()
    async with dispatcher(redis_url, slack_webhook_url=slack.url, backoff_base=0.5, backoff_cap=4.0) as d:
        await d.submit(alert(m, "high"), MODEL)
        await slack.await_for(1, timeout=60)
        await asyncio.sleep(3.0)  # longer than the backoff cap: a second delivery would show
        assert await d.pending() == 0
    assert len(slack.accepted) == 1 and slack.errors == []
    failed = [r for r in slack.requests if r.status == 500]
    assert len(failed) >= 5  # it kept trying through the outage
    assert slack.accepted[0].time >= started + 30.0
    assert NOTIFICATIONS.labels(channel="slack", outcome="retry")._value.get() - before == len(failed)


async def test_pagerduty_429_retry_after_is_honoured(redis_url, pagerduty_receiver):
    pd, m = pagerduty_receiver, model_id()
    pd.script(429, {"Retry-After": "2", "Content-Type": "application/json"}, b'{"status":"throttle event"}')
    async with dispatcher(redis_url, pagerduty_routing_key="key", pagerduty_url=pd.url,
                          backoff_base=0.01, backoff_cap=0.02) as d:
        await d.submit(alert(m), MODEL)
        await pd.await_for(1)
    throttled, delivered = pd.requests[0], pd.accepted[0]
    assert throttled.status == 429 and len(pd.requests) == 2
    assert delivered.time - throttled.time >= 2.0 - 0.05  # not the 0.02 s backoff


async def test_other_4xx_is_a_permanent_failure(redis_url, webhook_receiver):
    hook, m = webhook_receiver, model_id()
    hook.script(404)
    before = NOTIFICATIONS.labels(channel="webhook", outcome="failed")._value.get()
    async with dispatcher(redis_url, webhook_url=hook.url) as d:
        await d.submit(alert(m, "high"), MODEL)
        await hook.await_for(1, accepted=False)
        await until(lambda: _zero(d))
        await asyncio.sleep(0.5)
        failed = await d.redis.lrange(d.prefix + "failed", 0, -1)
    assert len(hook.requests) == 1 and len(failed) == 1
    assert NOTIFICATIONS.labels(channel="webhook", outcome="failed")._value.get() - before == 1


async def test_a_new_dispatcher_delivers_what_a_crashed_one_left_once(redis_url, slack_receiver):
    slack, prefix = slack_receiver, f"test:{uuid.uuid4().hex}:"
    models = [model_id() for _ in range(3)]
    slack.fail_for(3600)
    async with dispatcher(redis_url, prefix=prefix, slack_webhook_url=slack.url, run=False,
                          lease_seconds=1.0) as crashed:
        task = asyncio.create_task(crashed.run())
        for m in models:
            await crashed.submit(alert(m, "high"), MODEL)
        await slack.await_for(3, accepted=False)
        task.cancel()  # the process dies: no stop(), deliveries cut wherever they were
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for t in list(crashed._inflight.values()):
            t.cancel()
        keys = sorted(k.decode() for k in await crashed.redis.keys(prefix + "*"))
        assert await crashed.pending() == 3, (keys, [r.status for r in slack.requests])
    slack.fail_for(0)
    async with dispatcher(redis_url, prefix=prefix, slack_webhook_url=slack.url) as heir:
        await slack.await_for(3, timeout=15)
        await until(lambda: _zero(heir))
        await asyncio.sleep(1.5)  # past the lease: nothing is sent a second time
    texts = sorted(r.body["text"] for r in slack.accepted)
    assert len(texts) == 3 and all(any(m in t for t in texts) for m in models)


async def test_email_arrives_at_the_smtp_server(redis_url, smtp_receiver):
    smtp, m = smtp_receiver, model_id()
    async with dispatcher(redis_url, smtp_url=smtp.url(to="ml-oncall@example.com")) as d:
        await d.submit(alert(m, "high"), MODEL)
        (msg,) = await smtp.await_for(1)
    assert msg["To"] == "ml-oncall@example.com" and msg["From"] == "vigil@example.com"
    assert msg["Subject"].startswith("[HIGH]")
    assert smtp.envelopes[0][1] == ["ml-oncall@example.com"]
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert m in plain and "psi=0.41" in plain and "<table" in html


async def test_secrets_stay_out_of_logs(redis_url, caplog):
    token = "SECRETTOKEN" + uuid.uuid4().hex
    dead = f"http://127.0.0.1:{free_port()}/services/T0/B0/{token}"  # nothing listens: connection refused
    caplog.set_level(logging.DEBUG)
    async with dispatcher(redis_url, slack_webhook_url=dead, pagerduty_routing_key=token,
                          pagerduty_url=f"http://127.0.0.1:{free_port()}/v2/enqueue") as d:
        await d.submit(alert(model_id(), "critical"), MODEL)
        await d.submit(alert(model_id(), "high"), MODEL)
        await asyncio.sleep(1.5)
        assert await d.pending() == 2
        assert token not in repr(d.routing.receivers) and token not in repr(d)
    assert "failed" in caplog.text and token not in caplog.text


async def test_timers_follow_group_wait_group_interval_and_repeat_interval(redis_url, slack_receiver):
    """Alertmanager's timing, on an injected clock: nothing moves but `now`."""
    slack, m = slack_receiver, model_id()
    now = [1000.0]
    settings = Settings(redis_url=redis_url, slack_webhook_url=slack.url, group_wait_seconds=30,
                        group_interval_seconds=300, repeat_interval_seconds=3600)
    redis = connect(redis_url)
    d = Dispatcher(redis, settings, Routing.load(settings), clock=lambda: now[0], prefix=f"test:{uuid.uuid4().hex}:")

    async def at(t: float) -> int:
        now[0] = t
        await d.tick()
        await asyncio.sleep(0.2)  # the receiver records after answering
        return len(slack.accepted)

    try:
        await d.submit(alert(m, "high", kind="data_drift", feature="a"), MODEL)
        assert await at(1029.9) == 0                      # group_wait not over
        await d.submit(alert(m, "medium", kind="data_drift", feature="b"), MODEL)  # joins the waiting group
        assert await at(1030.0) == 1                      # one message, both alerts
        assert slack.accepted[0].body["text"].startswith(f"[HIGH] {m}: 2 alert(s) firing")
        await d.submit(alert(m, "high", kind="data_drift", feature="b", revision=2), MODEL)  # escalated
        assert await at(1100.0) == 1                      # held: group_interval since the last flush
        assert await at(1330.0) == 2                      # 1030 + 300
        assert await at(1630.0) == 2 and await at(4630.0) == 2  # unchanged: no news, repeat not due
        assert await at(4930.0) == 3                      # 1330 + 3600: the repeat (both alerts)
        assert len(slack.accepted[-1].body["blocks"]) == 6
        await d.submit(alert(m, "high", status="resolved", kind="data_drift", feature="a", revision=2), MODEL)
        assert await at(5000.0) == 3 and await at(5230.0) == 4
        last = slack.accepted[-1].body
        assert "resolved" in str(last["blocks"]) and last["text"].startswith(f"[HIGH] {m}: 1 alert(s) firing")
    finally:
        await d.stop()
        await redis.aclose()
    assert slack.errors == []


@given(ops=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["firing", "resolved"]),
                              st.sampled_from(["medium", "high", "critical"]), st.sampled_from([0.0, 0.5, 40.0])),
                    min_size=1, max_size=12))
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_pagerduty_sees_each_incident_open_before_it_closes_and_ends_in_the_last_state(redis_url, ops):
    """Any order of changes to three alerts of one model, PagerDuty routed critical only: per
    dedup_key the events start with a trigger, a resolve only follows a trigger, and the last
    event matches the last state (open while firing critical; resolved, or moved off the
    PagerDuty route by a lower severity, closes it)."""
    asyncio.run(_incidents(redis_url, ops))


async def _incidents(redis_url: str, ops) -> None:
    m, now = model_id(), [1000.0]
    with PagerDutyReceiver() as pd:
        settings = Settings(redis_url=redis_url, pagerduty_routing_key="key", pagerduty_url=pd.url,
                            group_wait_seconds=30, group_interval_seconds=60, repeat_interval_seconds=10**6)
        redis = connect(redis_url)
        d = Dispatcher(redis, settings, Routing.load(settings), clock=lambda: now[0],
                       prefix=f"test:{uuid.uuid4().hex}:")
        revision, last = {}, {}
        try:
            for i, status, severity, dt in ops:
                revision[i] = revision.get(i, 0) + 1
                await d.submit(alert(m, severity, status, revision[i], feature=f"f{i}"), MODEL)
                last[i] = status == "firing" and severity == "critical"
                now[0] += dt
                await d.tick()
            now[0] += 120
            await d.tick()
            assert await d.pending() == 0
        finally:
            await d.stop()
            await redis.aclose()
        await asyncio.sleep(0.1)  # the receiver records after answering
    assert pd.errors == []
    for i, is_open in last.items():
        actions = [e["event_action"] for e in pd.events(f"{m}:data_drift:f{i}")]
        assert all(not (a == b == "resolve") for a, b in zip(actions, actions[1:])), (ops, actions)
        assert not actions or actions[0] == "trigger", (ops, actions)
        if is_open:
            assert actions and actions[-1] == "trigger", (ops, actions)
        else:
            assert not actions or actions[-1] == "resolve", (ops, actions)
