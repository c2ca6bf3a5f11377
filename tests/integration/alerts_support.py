"""Helpers for the alerts integration tests: findings, the registry, a private Redis database,
the real alerts app under uvicorn, and a recording stand-in for the Dispatcher (tests only:
the service runs DELIVERY's `services.alerts.dispatch.Dispatcher`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import redis

from shared import kafka
from shared.runtime import spawn
from shared.settings import Settings
from tests.support import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_DBS = itertools.cycle(range(1, 16))


def private_db(redis_url: str) -> str:
    """A Redis database of the session's server for one test alone, emptied first."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{next(_DBS)}"
    r = redis.Redis.from_url(url)
    r.flushdb()
    r.close()
    return url


def model_id(prefix: str = "am") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def register(redis_url: str, model: str, *, owners=("ana@example.com",), labels=None, risk_tier="medium") -> None:
    r = redis.Redis.from_url(redis_url)
    r.set(f"vigil:registry:model:{model}", orjson.dumps({"owners": list(owners), "labels": labels or {},
                                                         "risk_tier": risk_tier, "window_seconds": 900}))
    r.close()


def finding(model: str, i: int, severity: str = "high", *, kind: str = "data_drift", feature: str | None = "x",
            window_end: datetime | None = None, window: float = 900.0, **extra) -> dict:
    """A contract Finding; by default its window ended just now (so the sweep leaves it open)."""
    end = window_end or datetime.now(timezone.utc)
    return {"finding_id": f"{model}-{kind}-{feature}-{i}", "kind": kind, "model_id": model, "model_version": "v1",
            "feature": feature, "window_start": (end - timedelta(seconds=window)).isoformat(),
            "window_end": end.isoformat(), "n": 1000, "metrics": {"psi": 0.25, "ks_statistic": 0.12},
            "severity": severity, "evidence": {"reference": "registered"}, "recommended_actions": [], **extra}


async def _send(bootstrap: str, records: list[tuple[bytes, bytes]], topic: str) -> None:
    producer = await kafka.start_producer(bootstrap, "off")
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def publish(bootstrap: str, findings: list[dict], topic: str = kafka.TOPICS["findings"]) -> None:
    """Publish findings to `vigil.findings`, one record each, keyed by model_id."""
    asyncio.run(_send(bootstrap, [(f["model_id"].encode(), orjson.dumps(f)) for f in findings], topic))


def publish_raw(bootstrap: str, records: list[tuple[bytes, bytes]], topic: str = kafka.TOPICS["findings"]) -> None:
    asyncio.run(_send(bootstrap, records, topic))


async def _commit_end(bootstrap: str, group: str, topic: str) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await consumer._client._wait_on_metadata(topic))]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.commit({tp: end[tp] for tp in tps})
    finally:
        await consumer.stop()


def start_at_end(bootstrap: str, group: str, topic: str = kafka.TOPICS["findings"]) -> str:
    """Commit `group`'s offsets at the end of `topic`, so a service joining with it skips the
    findings other tests published before (the session's broker is shared)."""
    asyncio.run(_commit_end(bootstrap, group, topic))
    return group


class RecordingDispatcher:
    """A stand-in for `Dispatcher` that records what CORE submits, idempotent on (alert_id,
    revision) as the interface asks. Tests only."""

    instances: list["RecordingDispatcher"] = []

    def __init__(self, redis_client, settings):
        self.submitted: list[tuple[dict, dict]] = []
        self.keys: set[tuple[str, int]] = set()
        self._stop = asyncio.Event()
        RecordingDispatcher.instances.append(self)

    async def submit(self, alert: dict, model: dict) -> None:
        key = (alert["alert_id"], alert["revision"])
        if key in self.keys:
            return
        self.keys.add(key)
        self.submitted.append((alert, model))

    async def submit_many(self, changes: list[tuple[dict, dict]]) -> None:
        for alert, model in changes:
            await self.submit(alert, model)

    async def run(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()

    async def pending(self) -> int:
        return 0

    def of(self, model: str) -> list[dict]:
        return [a for a, _ in self.submitted if a["model_id"] == model]


@contextlib.contextmanager
def running_alerts(bootstrap: str, redis_url: str, *, dispatcher_factory=None, sweep_seconds: float = 0.5,
                   **overrides) -> Iterator[tuple[str, object]]:
    """The real alerts app under uvicorn on a free port, in a thread: yields (URL, app)."""
    import uvicorn

    from services.alerts.app import create_app

    port = free_port()
    group = start_at_end(bootstrap, f"alerts-test-{uuid.uuid4().hex[:8]}")
    settings = Settings(alerts_port=port, kafka_bootstrap=bootstrap, redis_url=redis_url,
                        alerts_group=group, data_dir="/tmp/vigil-test", **overrides)
    app = create_app(settings, dispatcher_factory=dispatcher_factory, sweep_seconds=sweep_seconds)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("alerts service did not start")
        if server.started:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(30)


def start_process(bootstrap: str, redis_url: str, port: int, group: str, log, **env) -> subprocess.Popen:
    """`python -m services.alerts.app` as a real process (what `vigil serve alerts` runs)."""
    full = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": bootstrap, "VIGIL_REDIS_URL": redis_url,
            "VIGIL_ALERTS_PORT": str(port), "VIGIL_ALERTS_GROUP": group, "VIGIL_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in env.items()}}
    return spawn([sys.executable, "-m", "services.alerts.app"], stdout=log, env=full, cwd=ROOT)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (v := predicate()):
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def alerts_of(url: str, model: str, **params) -> list[dict]:
    return httpx.get(f"{url}/v1/alerts", params={"model_id": model, **params}, timeout=10).json()


def processed(app) -> int:
    return app.state.service.processed
