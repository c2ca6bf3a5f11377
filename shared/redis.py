"""Redis helpers: the client, and the idempotency claims that count an event once.

An event's key moves through two states: `pending` (claimed by a request that has not been
acknowledged by the broker yet; short TTL) and `done` (acknowledged; long TTL). A request
that finds `done` reports a duplicate; one that finds `pending` publishes anyway (a crashed
request must never make its retry look like a duplicate; downstream counts each event_id
once per window, so an extra copy is harmless, a lost event is not).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

PENDING_TTL_SECONDS = 120

# KEYS: idempotency keys. ARGV[1]: pending TTL. Returns per key: 0 claimed, 1 done, 2 pending.
_CLAIM = """
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('SET', k, 'p', 'NX', 'EX', ARGV[1]) then
    out[i] = 0
  elseif redis.call('GET', k) == 'd' then
    out[i] = 1
  else
    out[i] = 2
  end
end
return out
"""
# KEYS: claimed keys. ARGV[1]: done TTL.
_CONFIRM = """
for _, k in ipairs(KEYS) do redis.call('SET', k, 'd', 'EX', ARGV[1]) end
return #KEYS
"""
_RELEASE = """
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == 'p' then n = n + redis.call('DEL', k) end
end
return n
"""
CLAIMED, DONE, PENDING = 0, 1, 2
_CHUNK = 5_000  # keys per script call, so one call never blocks Redis for long


def connect(url: str, timeout: float = 3.0) -> aioredis.Redis:
    return aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                             health_check_interval=30)


def dedup_key(kind: str, model_id: str, event_key: str) -> str:
    return f"vigil:seen:{kind}:{model_id}:{event_key}"


class Idempotency:
    """Claims, confirms and releases idempotency keys in Redis, one script call per chunk."""

    def __init__(self, client: aioredis.Redis, ttl_seconds: int):
        self.client = client
        self.ttl = ttl_seconds
        self._claim = client.register_script(_CLAIM)
        self._confirm = client.register_script(_CONFIRM)
        self._release = client.register_script(_RELEASE)

    async def claim(self, keys: Sequence[str]) -> list[int]:
        out: list[int] = []
        for i in range(0, len(keys), _CHUNK):
            out.extend(await self._claim(keys=keys[i:i + _CHUNK], args=[PENDING_TTL_SECONDS]))
        return out

    async def confirm(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), _CHUNK):
            await self._confirm(keys=keys[i:i + _CHUNK], args=[self.ttl])

    async def release(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), _CHUNK):
            await self._release(keys=keys[i:i + _CHUNK])
