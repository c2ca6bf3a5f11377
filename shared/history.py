"""Per-window history of a model's numbers in Redis: what the model report plots over time.

The gauges (`vigil_feature_psi`, `vigil_model_performance`, ...) hold only the latest window,
and findings are published only at medium and above; the report's "drift per feature over
time" needs every window's numbers. A stream worker writes each evaluated window's gauge
values here, keyed by the window's start; the alerts service reads them for
`GET /v1/models/{id}/report`.

Writes are idempotent: a window's entry is a hash of (gauge, labels) -> value, so a replay after
a crash (the same window evaluated again, with the same numbers) rewrites the same fields with
the same values, and a drift window and its performance window, evaluated at different times,
fill different fields of one entry. Memory is bounded: entries older than `retention_seconds`
of window time before the model's newest entry are deleted on each write, and every key
expires `retention_seconds` after its last write (a model that went quiet).

Keys (``<source>``: the writer, ``drift`` or ``oversight``)::

    vigil:history:<source>:<model>           zset str(window start) -> window start (epoch s)
    vigil:history:<source>:<model>:<start>   hash field -> value; field = JSON [gauge, {label: value}]
                                             (the labels without model_id, keys sorted)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

PREFIX = "vigil:history:"
Entry = tuple[int, str, Mapping[str, str], float]  # (window start, gauge, labels, value)


def index_key(source: str, model_id: str) -> str:
    return f"{PREFIX}{source}:{model_id}"


def window_key(source: str, model_id: str, start: int) -> str:
    return f"{PREFIX}{source}:{model_id}:{start}"


def field_of(gauge: str, labels: Mapping[str, str]) -> bytes:
    """A hash field for a gauge and its labels (model_id is the key's, not repeated).

    >>> field_of("psi", {"model_id": "m", "feature": "age"})
    b'["psi",{"feature":"age"}]'
    """
    return orjson.dumps([gauge, {k: str(v) for k, v in labels.items() if k != "model_id"}],
                        option=orjson.OPT_SORT_KEYS)


@dataclass
class Window:
    """One window's numbers: `values[(gauge, ((label, value), ...))] -> value`."""

    start: int
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)

    def get(self, gauge: str, **labels: str) -> float | None:
        return self.values.get((gauge, tuple(sorted(labels.items()))))

    def of(self, gauge: str) -> dict[tuple[tuple[str, str], ...], float]:
        """The values of one gauge: labels -> value."""
        return {lab: v for (g, lab), v in self.values.items() if g == gauge}


def _decode(raw: Mapping[bytes, bytes]) -> dict:
    out = {}
    for f, v in raw.items():
        gauge, labels = orjson.loads(f)
        out[(gauge, tuple(sorted(labels.items())))] = float(v)
    return out


class History:
    """`await History(redis, "drift", 7 * 86400).write(model_id, [(start, gauge, labels, value)])`;
    `await ....read(model_id, limit=96)` -> the newest windows, oldest first."""

    def __init__(self, redis, source: str, retention_seconds: float):
        if retention_seconds <= 0:
            raise ValueError(f"retention_seconds={retention_seconds}: must be > 0")
        self.redis, self.source, self.retention = redis, source, retention_seconds

    async def write(self, model_id: str, entries: Iterable[Entry]) -> None:
        by_start: dict[int, dict[bytes, str]] = {}
        for start, gauge, labels, value in entries:
            by_start.setdefault(int(start), {})[field_of(gauge, labels)] = repr(float(value))
        if not by_start:
            return
        index, ttl = index_key(self.source, model_id), max(1, int(self.retention))
        async with self.redis.pipeline(transaction=True) as pipe:
            for start, values in by_start.items():
                key = window_key(self.source, model_id, start)
                pipe.hset(key, mapping=values)
                pipe.expire(key, ttl)
            pipe.zadd(index, {str(s): s for s in by_start})
            pipe.expire(index, ttl)
            pipe.zrevrange(index, 0, 0, withscores=True)
            newest = (await pipe.execute())[-1]
        await self._trim(model_id, newest[0][1] - self.retention)

    async def _trim(self, model_id: str, cutoff: float) -> None:
        """Delete the entries of windows starting before `cutoff`."""
        index = index_key(self.source, model_id)
        old = await self.redis.zrangebyscore(index, "-inf", f"({cutoff}")
        if not old:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*(window_key(self.source, model_id, int(float(s))) for s in old))
            pipe.zrem(index, *old)
            await pipe.execute()

    async def read(self, model_id: str, limit: int = 96) -> list[Window]:
        """The model's newest `limit` windows, oldest first."""
        index = index_key(self.source, model_id)
        starts = sorted(int(float(s)) for s in await self.redis.zrevrange(index, 0, limit - 1))
        if not starts:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in starts:
                pipe.hgetall(window_key(self.source, model_id, s))
            raws = await pipe.execute()
        return [Window(s, _decode(raw)) for s, raw in zip(starts, raws) if raw]
