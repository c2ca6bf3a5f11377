"""Stream-state checkpoints in Redis: a partition's state and the offset it reflects, written together.

One key per (consumer group, topic, partition) holds one blob: ``{"offset": next offset to
read, "state": ..., "pending": [...]}``. A `save` of several partitions is one MULTI/EXEC, so
a crash leaves either every partition's previous checkpoint or every new one, and a
partition's state always matches the offset it resumes from. State is per input partition:
when partitions move between workers, the new owner loads exactly the state of the offsets it
seeks to. ``pending`` is an outbox: output (findings) derived from the state, saved before it
is published and re-published after a restore (consumers dedup by id).

Used by the drift and oversight services. No clock; the Redis client is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

PREFIX = "vigil:checkpoint:"


@dataclass
class Checkpoint:
    offset: int  # the next offset to read
    state: Any = None  # JSON-able
    pending: list[Any] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"version": 1, "offset": self.offset, "state": self.state, "pending": self.pending},
                            option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Checkpoint:
        d = orjson.loads(raw)
        if d.get("version") != 1:
            raise ValueError(f"checkpoint version={d.get('version')!r}: must be 1")
        return cls(int(d["offset"]), d.get("state"), list(d.get("pending") or []))


def key(group: str, topic: str, partition: int) -> str:
    return f"{PREFIX}{group}:{topic}:{partition}"


class CheckpointStore:
    """`await store.save(group, topic, {partition: Checkpoint})`; `await store.load(group, topic, partitions)`."""

    def __init__(self, redis):
        self.redis = redis

    async def save(self, group: str, topic: str, checkpoints: Mapping[int, Checkpoint]) -> None:
        """Write every partition's checkpoint in one atomic transaction."""
        if not checkpoints:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for p, cp in checkpoints.items():
                pipe.set(key(group, topic, p), cp.to_bytes())
            await pipe.execute()

    async def load(self, group: str, topic: str, partitions: Iterable[int]) -> dict[int, Checkpoint | None]:
        parts = list(partitions)
        if not parts:
            return {}
        raws = await self.redis.mget([key(group, topic, p) for p in parts])
        return {p: None if raw is None else Checkpoint.from_bytes(raw) for p, raw in zip(parts, raws)}

    async def clear(self, group: str, topic: str, partitions: Iterable[int]) -> None:
        parts = list(partitions)
        if parts:
            await self.redis.delete(*[key(group, topic, p) for p in parts])
