"""Stream-state checkpoints in Redis: a partition's state and the offset it reflects, written together.

One key per (consumer group, topic, partition) holds one blob: ``{"offsets": {topic: next
offset to read}, "state": ..., "pending": [...]}``. A worker reading several co-partitioned
topics (oversight: reviews, predictions, labels) keeps one state per partition *number* under
the joined topic name, with one offset per topic. A `save` of several partitions is one MULTI/EXEC, so
a crash leaves either every partition's previous checkpoint or every new one, and a
partition's state always matches the offset it resumes from. State is per input partition:
when partitions move between workers, the new owner loads exactly the state of the offsets it
seeks to. ``pending`` is an outbox: output (findings) derived from the state, saved before it
is published and re-published after a restore (consumers dedup by id).

Fencing: a worker that claims a partition (`claim`, on assignment) raises the partition's
owner generation (the consumer group generation) and saves only while no newer owner has
claimed it, checked in the same Lua call that writes; so a worker that was paused past its
session timeout and lost its partitions cannot overwrite its successor's checkpoint.

Used by the drift and oversight services. No clock; the Redis client is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

PREFIX = "vigil:checkpoint:"
# KEYS: n blob keys then n owner keys; ARGV[1]: generation, ARGV[2..]: n blobs. Writes all or
# none; returns the 1-based positions claimed by a newer generation (then nothing is written).
_SAVE = """
local n, gen, stale = #KEYS / 2, tonumber(ARGV[1]), {}
for i = 1, n do
  local owner = tonumber(redis.call('GET', KEYS[n + i]) or '-1')
  if owner > gen then stale[#stale + 1] = i end
end
if #stale > 0 then return stale end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[i + 1])
  redis.call('SET', KEYS[n + i], gen)
end
return stale
"""
# KEYS: owner keys; ARGV[1]: generation. Raise each owner generation to ARGV[1] (never lower).
_CLAIM = """
for i = 1, #KEYS do
  local owner = tonumber(redis.call('GET', KEYS[i]) or '-1')
  if owner < tonumber(ARGV[1]) then redis.call('SET', KEYS[i], ARGV[1]) end
end
return #KEYS
"""


@dataclass
class Checkpoint:
    offsets: dict[str, int]  # topic -> the next offset to read
    state: Any = None  # JSON-able
    pending: list[Any] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"version": 2, "offsets": self.offsets, "state": self.state, "pending": self.pending},
                            option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Checkpoint:
        """The checkpoint `to_bytes` wrote.

        >>> Checkpoint.from_bytes(Checkpoint({"t": 3}, {"a": 1}).to_bytes())
        Checkpoint(offsets={'t': 3}, state={'a': 1}, pending=[])
        """
        d = orjson.loads(raw)
        if d.get("version") != 2:
            raise ValueError(f"checkpoint version={d.get('version')!r}: must be 2")
        return cls({str(t): int(o) for t, o in d["offsets"].items()}, d.get("state"), list(d.get("pending") or []))


def key(group: str, topic: str, partition: int) -> str:
    return f"{PREFIX}{group}:{topic}:{partition}"


def owner_key(group: str, topic: str, partition: int) -> str:
    return f"{PREFIX}{group}:{topic}:{partition}:owner"


class CheckpointStore:
    """`await store.save(group, topic, {partition: Checkpoint}, generation)`;
    `await store.load(group, topic, partitions)`; `await store.claim(group, topic, partitions, generation)`."""

    def __init__(self, redis):
        self.redis = redis
        self._save = redis.register_script(_SAVE)
        self._claim = redis.register_script(_CLAIM)

    async def save(self, group: str, topic: str, checkpoints: Mapping[int, Checkpoint | bytes],
                   generation: int = 0) -> list[int]:
        """Write every partition's checkpoint (or its `to_bytes()`) in one atomic call; returns the
        partitions a newer generation owns (then nothing was written: this worker must drop them)."""
        if not checkpoints:
            return []
        parts = list(checkpoints)
        keys = [key(group, topic, p) for p in parts] + [owner_key(group, topic, p) for p in parts]
        raw = [c if isinstance(c, bytes) else c.to_bytes() for c in checkpoints.values()]
        stale = await self._save(keys=keys, args=[generation, *raw])
        return [parts[int(i) - 1] for i in stale]

    async def claim(self, group: str, topic: str, partitions: Iterable[int], generation: int) -> None:
        parts = list(partitions)
        if parts:
            await self._claim(keys=[owner_key(group, topic, p) for p in parts], args=[generation])

    async def load(self, group: str, topic: str, partitions: Iterable[int]) -> dict[int, Checkpoint | None]:
        parts = list(partitions)
        if not parts:
            return {}
        raws = await self.redis.mget([key(group, topic, p) for p in parts])
        return {p: None if raw is None else Checkpoint.from_bytes(raw) for p, raw in zip(parts, raws)}

    async def clear(self, group: str, topic: str, partitions: Iterable[int]) -> None:
        parts = list(partitions)
        if parts:
            await self.redis.delete(*[key(group, topic, p) for p in parts], *[owner_key(group, topic, p) for p in parts])
