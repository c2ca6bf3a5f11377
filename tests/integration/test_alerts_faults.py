"""The alerts service as a real process (`python -m services.alerts.app`, what `vigil serve alerts`
runs) on Apache Kafka and Redis, killed with SIGKILL while a notification is pending because
Slack answers 500, restarted: the notification arrives once Slack is back, exactly once."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import redis

from tests.integration.alerts_support import (alerts_of, finding, model_id, private_db, publish, register,
                                              start_at_end, start_process, wait_for)
from tests.receivers import SlackReceiver
from tests.support import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except Exception:  # noqa: BLE001
            proc.kill()
            proc.wait(10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_killed_with_notifications_pending_then_restarted_delivers_them_exactly_once(apache_kafka, redis_url, tmp_path):
    bootstrap, db = apache_kafka.address, private_db(redis_url)
    models = [model_id(), model_id()]
    for m in models:
        register(db, m, labels={"runbook_url": "https://runbooks.example.com/drift"})
    group = start_at_end(bootstrap, f"alerts-faults-{uuid.uuid4().hex[:8]}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    r = redis.Redis.from_url(db)
    with SlackReceiver() as slack, open(tmp_path / "alerts.log", "wb") as log:
        env = dict(VIGIL_SLACK_WEBHOOK_URL=slack.url, VIGIL_GROUP_WAIT_SECONDS=0.2, VIGIL_GROUP_INTERVAL_SECONDS=0.5,
                   VIGIL_REPEAT_INTERVAL_SECONDS=3600)
        slack.fail_for(3600)  # Slack is down
        proc = start_process(bootstrap, db, port, group, log, **env)
        try:
            wait_for(lambda: _ready(url), 60, "the alerts service ready")
            now = datetime.now(timezone.utc)
            publish(bootstrap, [finding(m, 1, "high", window_end=now - timedelta(seconds=5)) for m in models])
            wait_for(lambda: len(slack.requests) >= 2, 60, "failed attempts at Slack")
            assert slack.accepted == []
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            pending = r.hlen("vigil:notify:outbox")
            assert pending == 2, f"expected both notifications pending after the kill, found {pending}"
            attempts = len(slack.requests)
            slack.fail_for(0)  # Slack is back, while the service is down
            proc = start_process(bootstrap, db, port, group, log, **env)
            wait_for(lambda: _ready(url), 60, "the restarted alerts service ready")
            got = slack.wait_for(2, timeout=120)
            time.sleep(5.0)  # anything sent twice would arrive by now
            assert len(slack.accepted) == 2 and slack.errors == []
            texts = [str(x.body) for x in slack.accepted]
            for m in models:
                assert sum(m in t for t in texts) == 1, (m, texts)
            assert r.hlen("vigil:notify:outbox") == 0
            assert len(slack.requests) > attempts
            # the alerts themselves survived: one per model, firing, occurrences 1
            for m in models:
                (a,) = alerts_of(url, m)
                assert a["status"] == "firing" and a["occurrences"] == 1
            metrics = httpx.get(f"{url}/metrics").text
            assert 'vigil_notifications_total{channel="slack"' in metrics
            assert got
        finally:
            _stop(proc)
            r.close()


def test_an_invalid_routing_file_is_refused_at_start_with_its_line(apache_kafka, redis_url, tmp_path):
    bad = tmp_path / "routing.yaml"
    bad.write_text("route:\n  receiver: nowhere\nreceivers:\n  - name: slack\n    type: slack\n    url: http://x/\n")
    with open(tmp_path / "alerts.log", "wb") as log:
        proc = start_process(apache_kafka.address, private_db(redis_url), free_port(), "g", log,
                             VIGIL_ROUTING_FILE=bad)
        assert proc.wait(60) != 0
    out = (tmp_path / "alerts.log").read_text()
    assert "invalid routing file" in out and f"{bad}:" in out, out


def test_redis_restarted_under_the_running_service_keeps_alerts_and_the_outbox(apache_kafka, tmp_path):
    """Redis (append-only, as `vigil up` runs it) is killed with SIGKILL and restarted while a
    notification waits in the outbox for Slack: the alert and the notification survive, the
    service reconnects by itself, and Slack gets the notification exactly once."""
    from shared import runtime
    bootstrap = apache_kafka.address
    store = runtime.start_redis(tmp_path / "redis")
    db = store.address
    m = model_id()
    register(db, m)
    group = start_at_end(bootstrap, f"alerts-redis-{uuid.uuid4().hex[:8]}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with SlackReceiver() as slack, open(tmp_path / "alerts.log", "wb") as log:
        env = dict(VIGIL_SLACK_WEBHOOK_URL=slack.url, VIGIL_GROUP_WAIT_SECONDS=0.2, VIGIL_GROUP_INTERVAL_SECONDS=0.5,
                   VIGIL_REPEAT_INTERVAL_SECONDS=3600)
        slack.fail_for(3600)  # Slack is down: the notification stays in the outbox
        proc = start_process(bootstrap, db, port, group, log, **env)
        try:
            wait_for(lambda: _ready(url), 60, "the alerts service ready")
            publish(bootstrap, [finding(m, 1, "high", window_end=datetime.now(timezone.utc) - timedelta(seconds=5))])
            wait_for(lambda: len(slack.requests) >= 1, 60, "a failed attempt at Slack")
            r = redis.Redis.from_url(db)
            assert r.hlen("vigil:notify:outbox") == 1
            r.close()
            time.sleep(1.5)  # appendfsync everysec: what Redis acknowledged a second ago is on disk
            store.restart(kill=True)
            slack.fail_for(0)  # Slack is back
            got = slack.wait_for(1, timeout=120)
            time.sleep(3.0)  # a second copy would arrive by now
            assert got and len(slack.accepted) == 1 and slack.errors == [] and m in str(slack.accepted[0].body)
            wait_for(lambda: _ready(url), 30, "the service ready again")
            (a,) = alerts_of(url, m)
            assert a["status"] == "firing" and a["occurrences"] == 1
            assert proc.poll() is None, "the alerts service died with Redis"
        finally:
            _stop(proc)
            store.stop()
