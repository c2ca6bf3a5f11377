"""Helpers for tests that run real servers: an ingest API on a free port, topic readers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import orjson

from shared.settings import Settings


# The kill -9 and scale-out tests run on Apache Kafka; on Tansu too with VIGIL_FAULT_TESTS_ON_TANSU=1
# (they pass there as well; CI keeps them out to stay within its time budget: Tansu has its smoke suite).
FAULT_BROKERS = ["kafka", "tansu"] if os.environ.get("VIGIL_FAULT_TESTS_ON_TANSU") else ["kafka"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_ingest(bootstrap: str, redis_url: str, **overrides) -> Iterator[str]:
    """The real ingest app under uvicorn on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    from services.ingest.app import create_app

    port = free_port()
    settings = Settings(ingest_port=port, kafka_bootstrap=bootstrap, redis_url=redis_url,
                        data_dir="/tmp/vigil-test", **overrides)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("ingest did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def model_id(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def prediction(model: str, i: int, ts: str = "2026-01-01T00:00:00Z", n_features: int = 5) -> dict:
    return {"event_id": f"{model}-{i}", "model_id": model, "timestamp": ts,
            "features": {f"f{j}": float(i % 97 + j) for j in range(n_features)},
            "prediction": i % 2, "confidence": 0.5 + (i % 50) / 100}


async def _read(bootstrap: str, topic: str, keys: set[bytes] | None, expect: int | None,
                quiet: float, timeout: float) -> list[tuple[bytes, list]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[tuple[bytes, list]] = []
    count = 0
    try:
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    if keys is None or r.key in keys:
                        value = orjson.loads(r.value)
                        value = value if isinstance(value, list) else [value]
                        out.append((r.key, value))
                        count += len(value)
                        last = time.monotonic()
            if expect is not None and count >= expect and time.monotonic() - last > quiet:
                break
            if expect is None and time.monotonic() - last > quiet and out:
                break
            if expect is None and not out and time.monotonic() - last > max(quiet, 3):
                break
    finally:
        await consumer.stop()
    return out


def read_records(bootstrap: str, topic: str, keys: set[str] | None = None, expect: int | None = None,
                 quiet: float = 1.5, timeout: float = 60.0) -> list[tuple[bytes, list]]:
    """Every record of `topic` (optionally only these keys) as (key, [events]).

    Reads from the beginning until `expect` events arrived and then `quiet` seconds passed
    with nothing new (so extra copies would be seen), or until `timeout`. It never trusts the
    broker's end offset: Tansu under-reports it.
    """
    wanted = {k.encode() for k in keys} if keys else None
    return asyncio.run(_read(bootstrap, topic, wanted, expect, quiet, timeout))


def events_of(records: list[tuple[bytes, list]]) -> list[dict]:
    return [e for _, events in records for e in events]
