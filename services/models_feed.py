"""Follow the compacted `vigil.models` topic: model specs, reference profiles and vendor SLAs.

Ingest publishes every registry change there (keys `model:<id>`, `reference:<id>:<column>`
then the manifest `reference:<id>`, `vendor:<name>`; see services/ingest/registry.py) and
also writes the current value to Redis. A stream worker reads the topic whole at start and
then follows it, so a changed spec or a new reference reaches it as soon as the record does,
with no polling. The topic has no consumer group: every worker reads all of it.

What the feed has not seen (it is still reading the log at start, or the topic lost a record)
the worker reads from Redis instead — never "unknown model" only because the log is slow.

>>> feed = ModelsFeed()
>>> feed.caught_up = True  # as after reading the log up to its end
>>> feed.apply(b"model:m", b'{"type":"model","name":"m","value":{"risk_tier":"high"}}')
>>> feed.apply(b"reference:m:x", b'{"type":"reference","name":"m:x","value":{"name":"x","kind":"numeric","n":3,"nulls":0}}')
>>> feed.references.get("m") is None  # the manifest makes a reference complete
True
>>> feed.apply(b"reference:m", b'{"type":"reference","name":"m","value":{"columns":["x"]}}')
>>> feed.specs["m"]["risk_tier"], sorted(feed.references["m"]), feed.versions["m"]
('high', ['x'], 2)
>>> feed.apply(b"model:m", None)  # a tombstone: deleted
>>> "m" in feed.specs
False
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shared import kafka

log = logging.getLogger("vigil.models")


class ModelsFeed:
    """The registry as the log tells it: `specs`, `references` (model -> column -> profile JSON),
    `vendors`; `versions[model_id]` rises whenever the model's spec or reference changes."""

    def __init__(self) -> None:
        self.specs: dict[str, dict] = {}
        self.references: dict[str, dict[str, dict]] = {}
        self.vendors: dict[str, dict] = {}
        self.versions: dict[str, int] = {}
        self._columns: dict[str, dict[str, dict]] = {}  # model -> column -> profile, before the manifest
        self._task: asyncio.Task | None = None
        self.records = 0
        self.caught_up = False  # read up to the end the log had at start

    def _bump(self, model_id: str) -> None:
        self.versions[model_id] = self.versions.get(model_id, 0) + 1

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one `vigil.models` record; a record that does not parse is skipped with a warning."""
        kind, _, name = (key or b"").decode(errors="replace").partition(":")
        try:
            body = None if value is None else kafka.loads(value).get("value")
        except Exception as exc:  # noqa: BLE001 - a bad record never stops the feed
            log.warning("vigil.models record %r skipped: %s", key, exc)
            return
        self.records += 1
        if kind == "model":
            self.specs.pop(name, None) if body is None else self.specs.__setitem__(name, body)
            self._bump(name)
        elif kind == "vendor":
            self.vendors.pop(name, None) if body is None else self.vendors.__setitem__(name, body)
        elif kind == "reference" and ":" in name:  # one column's profile
            model_id, _, column = name.partition(":")
            cols = self._columns.setdefault(model_id, {})
            cols.pop(column, None) if body is None else cols.__setitem__(column, body)
        elif kind == "reference":  # the manifest: the upload is complete
            if body is None:
                self.references.pop(name, None)
            else:
                cols = self._columns.get(name, {})
                self.references[name] = {c: cols[c] for c in body.get("columns", []) if c in cols}
            self._bump(name)

    async def follow(self, bootstrap: str) -> None:
        """Read `vigil.models` from the beginning, then keep following it (until cancelled)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = kafka.TOPICS["models"]
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or {0}
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            while True:
                for records in (await consumer.getmany(timeout_ms=1_000)).values():
                    for r in records:
                        self.apply(r.key, r.value)
                if not self.caught_up:
                    self.caught_up = all([await consumer.position(tp) >= end[tp] for tp in tps])
        finally:
            await consumer.stop()

    def start(self, bootstrap: str) -> None:
        self._task = asyncio.create_task(self._run(bootstrap))

    async def _run(self, bootstrap: str) -> None:
        while True:  # a broker outage restarts the follower; Redis covers the gap
            try:
                await self.follow(bootstrap)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("following vigil.models failed (%s); retrying in 2 s", exc)
                await asyncio.sleep(2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    def model(self, model_id: str) -> tuple[Any, Any] | None:
        """(spec JSON or None, reference columns JSON or None); None until the feed has read the
        log up to where it ended at start, and for a model the feed knows nothing of."""
        if not self.caught_up:
            return None
        spec, ref = self.specs.get(model_id), self.references.get(model_id)
        return None if spec is None and ref is None else (spec, ref)
