"""Redis helpers: the client, and the idempotency claims that count an event once.

Each request gets a token. Claiming writes, for every event key not yet acknowledged, the
request's token into a hash bucket (one HMGET and one HSET per bucket, in one Lua call), and
confirming after the broker acknowledged writes one key, `vigil:ack:<token>`. So an event is
a duplicate exactly when its key holds a token that was acknowledged. A request that failed or
crashed before its acknowledgement leaves only unacknowledged tokens: its retry claims the
keys again and publishes, and it is never mistaken for a duplicate (downstream counts each
event_id once per window, so an extra copy is harmless; a lost event is not).

Buckets are hashes per kind, model and event-time day; each bucket's TTL is refreshed on every
write, so keys live `ttl_seconds` after the last time their bucket was written.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import redis.asyncio as aioredis

ACK_PREFIX = "vigil:ack:"
# KEYS[1]: bucket. ARGV[1]: token, ARGV[2]: ttl, ARGV[3]: the fields (event keys) joined by
# newlines (ids never hold control characters). Returns a string with one character per
# field: "0" publish (new, or claimed by a request that was never acknowledged), "1" duplicate.
# One string in and one out: the client packs and parses two values, not thousands.
_CLAIM = """
local s, fields, start = ARGV[3], {}, 1
while true do
  local i = string.find(s, "\\n", start, true)
  if not i then fields[#fields + 1] = string.sub(s, start); break end
  fields[#fields + 1] = string.sub(s, start, i - 1)
  start = i + 1
end
local vals = redis.call('HMGET', KEYS[1], unpack(fields))
local out, new, acked = {}, {}, {}
for i = 1, #vals do
  local v = vals[i]
  local dup = false
  if v then
    dup = acked[v]
    if dup == nil then
      dup = redis.call('EXISTS', '""" + ACK_PREFIX + """' .. v) == 1
      acked[v] = dup
    end
  end
  if dup then out[i] = "1" else
    out[i] = "0"
    new[#new + 1] = fields[i]
    new[#new + 1] = ARGV[1]
  end
end
if #new > 0 then redis.call('HSET', KEYS[1], unpack(new)) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return table.concat(out)
"""
PUBLISH, DUPLICATE = "0", "1"
_CHUNK = 2_000  # fields per script call: Lua's unpack() limit, and short Redis pauses


def connect(url: str, timeout: float = 3.0) -> aioredis.Redis:
    return aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                             health_check_interval=30)


def bucket_key(kind: str, model_id: str, day: str) -> str:
    return f"vigil:seen:{kind}:{model_id}:{day}"


class Idempotency:
    """Claims event keys for a request, and confirms them once the broker acknowledged:
    `token, states = await idem.claim({bucket: ids})`, publish, `await idem.confirm(token)`."""

    def __init__(self, client: aioredis.Redis, ttl_seconds: int):
        self.client = client
        self.ttl = ttl_seconds
        self._claim = client.register_script(_CLAIM)

    async def claim(self, buckets: dict[str, Sequence[str]]) -> tuple[str, dict[str, str]]:
        """Claim every field of every bucket for a new token: (token, bucket -> one state
        character per field, PUBLISH or DUPLICATE)."""
        token = uuid.uuid4().hex
        calls = [(b, fields[i:i + _CHUNK]) for b, fields in buckets.items() for i in range(0, len(fields), _CHUNK)]
        async with self.client.pipeline(transaction=False) as pipe:
            for bucket, fields in calls:
                await self._claim(keys=[bucket], args=[token, self.ttl, "\n".join(fields)], client=pipe)
            results = await pipe.execute()
        states: dict[str, str] = dict.fromkeys(buckets, "")
        for (bucket, _), res in zip(calls, results):
            states[bucket] += res.decode() if isinstance(res, bytes) else res
        return token, states

    async def confirm(self, token: str) -> None:
        """The broker acknowledged everything claimed with `token`."""
        await self.client.set(ACK_PREFIX + token, 1, ex=self.ttl)
