"""The `vigil.models` follower on a real broker, and the drift registry that prefers it over Redis."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import redis.asyncio as aioredis

from shared import kafka
from services.drift.app import Registry
from services.ingest.registry import registry_record
from services.models_feed import ModelsFeed
from tests.integration.drift_support import reference, spec
from tests.support import model_id


async def _publish(bootstrap: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = await kafka.start_producer(bootstrap, "off")
    try:
        for key, value in records:
            await producer.send_and_wait(kafka.TOPICS["models"], value, key=key)
    finally:
        await producer.stop()


async def _until(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_spec_change_on_the_topic_reaches_the_registry_without_waiting_for_the_redis_cache(broker, redis_url):
    m = model_id("feed")
    rng = np.random.default_rng(5)
    ref = reference(rng, rows=500)
    r = aioredis.Redis.from_url(redis_url)
    await r.set(f"vigil:registry:model:{m}", orjson.dumps(spec()))  # what Redis says: risk_tier medium
    await _publish(broker.address, [registry_record("model", m, spec())])
    feed = ModelsFeed()
    feed.start(broker.address)
    try:
        await _until(lambda: feed.caught_up and m in feed.specs)
        registry = Registry(r, 1_000, feed)
        before = await registry.get(m)
        assert before.spec.risk_tier == "medium" and before.base is None

        changed = {**spec(), "risk_tier": "high"}
        columns = [registry_record("reference", f"{m}:{name}", col) for name, col in ref.items()]
        await _publish(broker.address, [registry_record("model", m, changed), *columns,
                                        registry_record("reference", m, {"columns": sorted(ref)})])
        await _until(lambda: m in feed.references)
        after = await registry.get(m)  # Redis still holds the old spec and no reference
        assert after.spec.risk_tier == "high"
        assert after.base is not None and set(after.base.numeric_names) >= {"f00", "f19"}
        assert await registry.get(m) is after  # unchanged version: the built model is reused
    finally:
        await feed.stop()
        await r.aclose()


async def test_a_model_the_feed_does_not_know_is_read_from_redis(broker, redis_url):
    m = model_id("feed-redis")
    r = aioredis.Redis.from_url(redis_url)
    await r.set(f"vigil:registry:model:{m}", orjson.dumps({**spec(), "risk_tier": "low"}))
    feed = ModelsFeed()
    feed.start(broker.address)
    try:
        await _until(lambda: feed.caught_up)
        got = await Registry(r, 1_000, feed).get(m)
        assert got is not None and got.spec.risk_tier == "low" and got.source[0] == "redis"
        assert await Registry(r, 1_000, feed).get(model_id("nobody")) is None
    finally:
        await feed.stop()
        await r.aclose()


def test_records_that_do_not_parse_are_skipped_and_the_feed_goes_on():
    feed = ModelsFeed()
    feed.caught_up = True
    feed.apply(b"model:a", b"{not json")
    feed.apply(b"vendor:v", b'{"type":"vendor","name":"v","value":{"latency_p95_ms":200}}')
    assert feed.model("a") is None and feed.vendors == {"v": {"latency_p95_ms": 200}} and feed.records == 1
