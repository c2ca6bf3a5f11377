"""`vigil_consumer_lag` on a real Apache Kafka: the records between what a consumer applied and
the end of the log its last fetch saw (the gauge the lag alert and the autoscaler read)."""

from __future__ import annotations

import asyncio
import uuid

from shared import kafka
from shared.metrics import REGISTRY


def lag(service: str, topic: str) -> float | None:
    return REGISTRY.get_sample_value("vigil_consumer_lag", {"service": service, "topic": topic})


async def _scenario(bootstrap: str) -> list[float | None]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic, seen = f"vigil.test-lag-{uuid.uuid4().hex[:8]}", []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(300):
            await producer.send(topic, b"x%d" % i, partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        applied: dict = {}
        kafka.report_lag(consumer, "test", (topic,), applied)  # nothing fetched: nothing known
        seen.append(lag("test", topic))
        got = []
        while len(got) < 100:
            got += (await consumer.getmany(tp, timeout_ms=2_000, max_records=100 - len(got))).get(tp, [])
        applied[tp] = got[-1].offset + 1
        kafka.report_lag(consumer, "test", (topic,), applied)
        seen.append(lag("test", topic))
        while applied[tp] < 300:
            for r in (await consumer.getmany(tp, timeout_ms=2_000)).get(tp, []):
                applied[tp] = r.offset + 1
        kafka.report_lag(consumer, "test", (topic,), applied)
        seen.append(lag("test", topic))
    finally:
        await consumer.stop()
    return seen


def test_lag_is_the_log_end_minus_what_was_applied(apache_kafka):
    assert asyncio.run(_scenario(apache_kafka.address)) == [0.0, 200.0, 0.0]
