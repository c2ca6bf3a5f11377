"""The dispatcher: groups alert changes per (receiver, model), times them, and delivers them exactly once.

In the spirit of Alertmanager's dispatcher and notify pipeline, with every piece of state in
Redis so a restart loses nothing:

- `submit(alert, model)` (called by the lifecycle for every change that may notify) routes
  the alert and writes it into one aggregation group per (receiver, model_id), in one Lua
  call: idempotent on (alert_id, revision), durable before it returns.
- A group's first alert waits `group_wait`; then the group is flushed: the alerts that need
  a notification (new, severity changed, resolved after having fired, or firing unchanged
  for `repeat_interval`; `needs_notify` is the pure decision) go out in one notification
  per group (PagerDuty: one event per alert, its dedup_key being the fingerprint). Later
  changes are flushed no sooner than `group_interval` after the previous flush.
- An alert whose new state routes it away from a receiver it fired at (its severity moved)
  leaves that group; PagerDuty then gets a resolve for it (an incident is never left open),
  chat and mail receivers are not told.
- A flush writes its notifications into the outbox and the group's "last notified" state in
  one Lua call (all or nothing). The outbox is a hash of notifications, a list per group
  (a lane: one lane's notifications are delivered in order, so a resolve never overtakes
  its trigger) and a ZSET of the lane heads' next attempt times.
- Delivery: a due lane head is leased (its due time pushed `lease_seconds` ahead), sent,
  then removed from the outbox and marked done (`vigil:notify:done:<id>`, 7 days) in one Lua
  call. Retryable failures (5xx, 429, connection errors) are tried again after exponential
  backoff with full jitter, or after the 429/503 `Retry-After`; other 4xx are permanent
  (logged, kept in `vigil:notify:failed`, counted outcome="failed").

Exactly once, and where it is only at least once: a notification is removed from the outbox
in the same atomic step that marks it done, and never sent once marked. The one gap is a
crash (or a Redis outage) between the receiver's 2xx and that step: the lease then expires
and the notification is sent again. PagerDuty folds such a duplicate into the same incident
(same dedup_key); Slack would show it twice; e-mail carries the notification id as its
Message-ID and the webhook as `notification_id`, so the far side can drop it.

Several dispatchers may share one Redis (leases and a version check per group keep them from
sending a thing twice), but the keys are built inside Lua, so not on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from typing import Any

import httpx
import orjson

from services.alerts.receivers import Notifier, Outcome, build
from services.alerts.routing import Receiver, Routing
from shared.metrics import NOTIFICATIONS

log = logging.getLogger("vigil.alerts.dispatch")

PREFIX = "vigil:notify:"
REVISION_TTL = 7 * 86400  # how long (alert_id, revision) is remembered; alerts change more often than that
DONE_TTL = 7 * 86400
FAILED_KEEP = 1000
HTTP_TIMEOUT = 10.0  # seconds for one request to a receiver
SUBMIT_CHUNK = 500  # submits per round trip

# KEYS: none (built from the prefix: one Redis, not Cluster). ARGV: prefix, alert_id, revision,
# alert JSON, now, model JSON, revision TTL, then per group: key, receiver, group_wait,
# group_interval, repeat_interval. Returns 0 when (alert_id, revision) was already submitted.
_SUBMIT = """
local p, id, rev, alert, now, model, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local rk = p .. 'rev:' .. id
local cur = redis.call('GET', rk)
if cur and tonumber(cur) >= rev then return 0 end
redis.call('SET', rk, rev, 'EX', ttl)
local where = p .. 'where:' .. id
local targets = {}
for i = 8, #ARGV, 5 do targets[ARGV[i]] = true end
for _, gk in ipairs(redis.call('SMEMBERS', where)) do
  if not targets[gk] then
    local g = p .. 'g:' .. gk
    local prev = redis.call('HGET', g .. ':sent', id)
    if prev and string.find(prev, '"status":"firing"', 1, true) then
      -- notified as firing here: the group's next flush tells the receiver it is over for it
      redis.call('HSET', g .. ':alerts', id, alert)
      redis.call('HSET', g .. ':left', id, '1')
      local meta = g .. ':meta'
      local due = math.max(now, tonumber(redis.call('HGET', meta, 'last_flush') or '0')
                                + tonumber(redis.call('HGET', meta, 'group_interval') or '0'))
      local t = redis.call('ZSCORE', p .. 'timers', gk)
      if (not t) or tonumber(t) > due then redis.call('ZADD', p .. 'timers', due, gk) end
    else
      redis.call('HDEL', g .. ':alerts', id)
      redis.call('HDEL', g .. ':sent', id)
      redis.call('HDEL', g .. ':left', id)
      redis.call('SREM', where, gk)
    end
    redis.call('HINCRBY', g .. ':meta', 'ver', 1)
  end
end
for i = 8, #ARGV, 5 do
  local gk = ARGV[i]
  local meta = p .. 'g:' .. gk .. ':meta'
  redis.call('HSET', p .. 'g:' .. gk .. ':alerts', id, alert)
  redis.call('HDEL', p .. 'g:' .. gk .. ':left', id)
  redis.call('SADD', where, gk)
  redis.call('HSET', meta, 'model', model, 'receiver', ARGV[i + 1], 'group_wait', ARGV[i + 2],
             'group_interval', ARGV[i + 3], 'repeat_interval', ARGV[i + 4])
  redis.call('HINCRBY', meta, 'ver', 1)
  local last = tonumber(redis.call('HGET', meta, 'last_flush') or '0')
  local t = redis.call('ZSCORE', p .. 'timers', gk)
  local due
  if last == 0 then
    if t then due = tonumber(t) else due = now + tonumber(ARGV[i + 2]) end
  else
    due = math.max(now, last + tonumber(ARGV[i + 3]))
    if t and tonumber(t) < due then due = tonumber(t) end
  end
  redis.call('ZADD', p .. 'timers', due, gk)
end
return 1
"""

# ARGV: prefix, group key, expected version, now, ops JSON {sent_set: {id: json}, drop: [ids],
# notifications: [[id, json]], timer: number | absent}. 0 = the group changed meanwhile (retry).
_FLUSH = """
local p, gk, ver, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local ops = cjson.decode(ARGV[5])
local meta, alerts, sent = p .. 'g:' .. gk .. ':meta', p .. 'g:' .. gk .. ':alerts', p .. 'g:' .. gk .. ':sent'
if (redis.call('HGET', meta, 'ver') or '0') ~= ver then return 0 end
redis.call('HINCRBY', meta, 'ver', 1)
redis.call('HSET', meta, 'last_flush', ARGV[4])
for id, v in pairs(ops.sent_set) do redis.call('HSET', sent, id, v) end
local left = p .. 'g:' .. gk .. ':left'
for _, id in ipairs(ops.drop) do
  redis.call('HDEL', alerts, id)
  redis.call('HDEL', sent, id)
  redis.call('HDEL', left, id)
  redis.call('SREM', p .. 'where:' .. id, gk)
end
local lane = p .. 'lane:' .. gk
for _, n in ipairs(ops.notifications) do
  redis.call('HSET', p .. 'outbox', n[1], n[2])
  redis.call('RPUSH', lane, n[1])
  if redis.call('LLEN', lane) == 1 then redis.call('ZADD', p .. 'due', now, n[1]) end
end
if redis.call('HLEN', alerts) == 0 then
  redis.call('ZREM', p .. 'timers', gk)
  redis.call('DEL', alerts, sent, meta, left)
else
  redis.call('ZADD', p .. 'timers', ops.timer, gk)
end
return 1
"""

# Lease the due lane heads: ARGV prefix, now, lease until, limit. Returns [id, json, id, json, ...]
# of the notifications now ours; a head already marked done is finished here instead.
_CLAIM = """
local p, now, lease = ARGV[1], ARGV[2], ARGV[3]
local ids = redis.call('ZRANGEBYSCORE', p .. 'due', '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', p .. 'outbox', id)
  if (not raw) or redis.call('EXISTS', p .. 'done:' .. id) == 1 then
    redis.call('ZREM', p .. 'due', id)
    redis.call('HDEL', p .. 'outbox', id)
  else
    redis.call('ZADD', p .. 'due', lease, id)
    out[#out + 1] = id
    out[#out + 1] = raw
  end
end
return out
"""

# Finish a lane head (sent or failed for good): ARGV prefix, id, lane key, now, done TTL.
# Returns 2 when the lane's next notification became due.
_COMPLETE = """
local p, id, lane = ARGV[1], ARGV[2], ARGV[3]
redis.call('SET', p .. 'done:' .. id, '1', 'EX', ARGV[5])
redis.call('HDEL', p .. 'outbox', id)
redis.call('ZREM', p .. 'due', id)
redis.call('LREM', lane, 1, id)
local head = redis.call('LINDEX', lane, 0)
if head then
  redis.call('ZADD', p .. 'due', 'NX', ARGV[4], head)
  return 2
end
return 1
"""


def needs_notify(alert: dict, prev: dict | None, now: float, repeat_interval: float,
                 send_resolved: bool = True) -> str | None:
    """Why this alert goes into the group's next notification, or None (Alertmanager's DedupStage).

    `prev` is what was last notified for it: {"status", "severity", "at"}.

    >>> a = {"status": "firing", "severity": "high"}
    >>> needs_notify(a, None, 100.0, 3600)
    'new'
    >>> needs_notify(a, {"status": "firing", "severity": "high", "at": 50.0}, 100.0, 3600) is None
    True
    >>> needs_notify({**a, "severity": "critical"}, {"status": "firing", "severity": "high", "at": 50.0}, 100.0, 3600)
    'severity_changed'
    >>> needs_notify(a, {"status": "firing", "severity": "high", "at": 50.0}, 3650.0, 3600)
    'repeat'
    >>> needs_notify({"status": "resolved", "severity": "high"}, {"status": "firing", "severity": "high", "at": 0}, 1, 60)
    'resolved'
    >>> needs_notify({"status": "resolved", "severity": "high"}, None, 1, 60) is None  # never fired here
    True
    """
    status = alert.get("status")
    if status == "firing":
        if prev is None or prev.get("status") != "firing":
            return "new"
        if prev.get("severity") != alert.get("severity"):
            return "severity_changed"
        if now - float(prev.get("at", 0)) >= repeat_interval:
            return "repeat"
        return None
    if status == "resolved" and send_resolved and prev is not None and prev.get("status") == "firing":
        return "resolved"
    return None


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempt - 1))] for attempt >= 1.

    >>> rng = random.Random(0)
    >>> all(0 <= backoff(n, 1.0, 60.0, rng) <= min(60.0, 2 ** (n - 1)) for n in range(1, 20))
    True
    """
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(max(0, attempt - 1), 60)))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Dispatcher:
    """Groups, times and delivers notifications; see the module docstring.

    `client`: an httpx.AsyncClient to send with; by default the dispatcher makes its own
    aiohttp session (a dependency already, through faust-streaming), measured several times
    cheaper per request than httpx here. `clock`: seconds since the epoch, injectable (tests
    drive it with `tick()`). Keyword arguments beyond the contract's are for tests and
    benches: `backoff_base` and `backoff_cap` (seconds), `lease_seconds` (how long a
    notification being sent is held before another attempt may take it), `poll_seconds` (the
    longest the loop sleeps), `concurrency` (deliveries at once), `rng`, `prefix` (of every
    Redis key, default "vigil:notify:").
    """

    def __init__(self, redis, settings, routing: Routing, *, client: "httpx.AsyncClient | None" = None,
                 clock=time.time, backoff_base: float = 1.0, backoff_cap: float = 60.0,
                 lease_seconds: float = 30.0, poll_seconds: float = 1.0, concurrency: int = 128,
                 rng: random.Random | None = None, prefix: str = PREFIX):
        self.redis, self.settings, self.routing, self.clock = redis, settings, routing, clock
        self.prefix = prefix
        self._own_client = client is None
        self.client = client  # None: an aiohttp session of our own, made in the running loop
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.lease_seconds, self.poll_seconds = lease_seconds, poll_seconds
        self.rng = rng or random.Random()
        self.concurrency = concurrency
        self._sem = asyncio.Semaphore(concurrency)
        self._notifiers: dict[str, Notifier] = {}
        self._inflight: dict[str, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._finishing: list[tuple[list, asyncio.Future]] = []
        self._submit = redis.register_script(_SUBMIT)
        self._flush = redis.register_script(_FLUSH)
        self._claim = redis.register_script(_CLAIM)
        self._complete = redis.register_script(_COMPLETE)

    def __repr__(self) -> str:
        return f"Dispatcher(routing={self.routing!r})"

    # -- the lifecycle's side ------------------------------------------------------------
    async def submit(self, alert: dict, model: dict) -> None:
        """Route an alert change into its groups; durable in Redis before it returns.

        Idempotent on (alert_id, revision): a revision not above the last one submitted for
        the alert changes nothing. An alert no longer routed to a group leaves it (PagerDuty,
        where it fired, gets its resolve).
        """
        await self.submit_many([(alert, model)])

    async def submit_many(self, changes: list[tuple[dict, dict]]) -> None:
        """`submit` for (alert, model) pairs in one round trip, applied in their order (so one
        alert's states keep theirs)."""
        for i in range(0, len(changes), SUBMIT_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for alert, model in changes[i:i + SUBMIT_CHUNK]:
                model = model or {}
                routes = self.routing.match(alert, model.get("labels") or {})
                args: list[Any] = [self.prefix, alert["alert_id"], int(alert.get("revision", 0)),
                                   orjson.dumps(alert, default=str), self.clock(), orjson.dumps(model, default=str),
                                   REVISION_TTL]
                for receiver, route in routes:
                    args += [self.group_key(receiver, alert["model_id"]), receiver.name, route.group_wait,
                             route.group_interval, route.repeat_interval]
                await self._submit(args=args, client=pipe)
            if any(await pipe.execute()):
                self._wake.set()

    @staticmethod
    def group_key(receiver: Receiver, model_id: str) -> str:
        return f"{receiver.name}/{model_id}"

    async def pending(self) -> int:
        """Notifications in the outbox (waiting, retrying or being sent)."""
        return int(await self.redis.hlen(self.prefix + "outbox"))

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Flush due groups and deliver due notifications until `stop()`."""
        self._stopping = False
        me = asyncio.current_task()
        while not self._stopping:
            if me is not None and me.cancelling():  # a client library swallowed our cancellation
                raise asyncio.CancelledError
            self._wake.clear()
            try:
                await self._pass()
                wait = await self._next_due() - self.clock()
            except Exception:  # Redis away or a bug: keep the service up, try again shortly
                log.exception("dispatch pass failed; retrying")
                wait = self.poll_seconds
            if self._stopping:
                break
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # arrives as the wait ends, and the task would then never stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(wait, self.poll_seconds))):
                    await self._wake.wait()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop; deliveries under way get `timeout` s to finish (else their lease brings them back)."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._inflight.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._own_client and self.client is not None:
            await self.client.close()
            self.client = None
            self._notifiers.clear()

    async def tick(self) -> None:
        """Passes of the loop at the clock's `now` until nothing more is due then (tests, benches).

        Waits for the deliveries it starts; a lane's next notification, due when the one
        before it is done, goes out in the same tick.
        """
        for _ in range(1000):
            await self._pass()
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)
            if await self._next_due() > self.clock():
                return

    async def _pass(self) -> None:
        now = self.clock()
        due = [_s(g) for g in await self.redis.zrangebyscore(self.prefix + "timers", "-inf", now, start=0, num=512)]
        if due:
            await self.flush_many(due, now)
        await self._deliver_due(self.clock())

    async def _next_due(self) -> float:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(self.prefix + "timers", 0, 0, withscores=True)
        pipe.zrange(self.prefix + "due", 0, 0, withscores=True)
        firsts = await pipe.execute()
        return min([float(f[0][1]) for f in firsts if f] or [float("inf")])

    # -- grouping ------------------------------------------------------------------------
    async def flush(self, gk: str, now: float) -> int:
        """Flush one group at `now`: enqueue what needs notifying; returns the notifications made."""
        return await self.flush_many([gk], now)

    async def flush_many(self, groups: list[str], now: float) -> int:
        """Flush groups at `now` (two round trips for all); a group changed meanwhile is planned again."""
        made_total = 0
        for _ in range(20):
            pipe = self.redis.pipeline(transaction=False)
            for gk in groups:
                for part in ("meta", "alerts", "sent", "left"):
                    pipe.hgetall(f"{self.prefix}g:{gk}:{part}")
            raw = await pipe.execute()
            plans = []
            for i, gk in enumerate(groups):
                raw_meta, raw_alerts, raw_sent, raw_left = raw[4 * i: 4 * i + 4]
                meta = {_s(k): _s(v) for k, v in raw_meta.items()}
                alerts = {_s(k): orjson.loads(v) for k, v in raw_alerts.items()}
                for k in raw_left:  # routed elsewhere since it fired here: over, for this receiver
                    if _s(k) in alerts:
                        alerts[_s(k)] = {**alerts[_s(k)], "status": "resolved", "rerouted": True}
                sent = {_s(k): orjson.loads(v) for k, v in raw_sent.items()}
                ops, made = self._plan(gk, meta, alerts, sent, now)
                plans.append((gk, meta.get("ver", "0"), ops, made))
            pipe = self.redis.pipeline(transaction=False)
            for gk, ver, ops, _ in plans:
                await self._flush(args=[self.prefix, gk, ver, now, orjson.dumps(ops)], client=pipe)
            applied = await pipe.execute()
            made_total += sum(made for (_, _, _, made), ok in zip(plans, applied) if ok)
            groups = [gk for (gk, _, _, _), ok in zip(plans, applied) if not ok]
            if not groups:
                return made_total
        log.warning("groups %s kept changing during their flush; trying at the next pass", groups)
        return made_total

    def _plan(self, gk: str, meta: dict, alerts: dict, sent: dict, now: float) -> tuple[dict, int]:
        receiver = self.routing.receivers.get(meta.get("receiver", ""))
        ops: dict[str, Any] = {"sent_set": {}, "drop": [], "notifications": []}
        if receiver is None:  # routing changed across a restart: the group has nowhere to go
            log.warning("group %s: receiver %r is no longer configured; dropped", gk, meta.get("receiver"))
            ops["drop"] = list(alerts)
            return ops, 0
        repeat = float(meta.get("repeat_interval", self.settings.repeat_interval_seconds))
        interval = float(meta.get("group_interval", self.settings.group_interval_seconds))
        model = orjson.loads(meta["model"]) if meta.get("model") else {}
        firing, changed, held = [], [], 0
        for alert_id, alert in sorted(alerts.items(), key=lambda kv: kv[1].get("first_seen") or ""):
            reason = needs_notify(alert, sent.get(alert_id), now, repeat, receiver.send_resolved)
            if alert.get("rerouted") and receiver.type != "pagerduty":
                reason = None  # a chat message "resolved" would mislead: it moved to another route
            status = alert.get("status")
            if status == "firing":
                firing.append(alert)
            elif status == "resolved":
                ops["drop"].append(alert_id)  # notified now, or it never fired here
            else:
                held += 1  # acknowledged: no repeats, but its resolve still goes out (same dedup_key)
            if reason:
                changed.append(alert)
        model_id = gk.split("/", 1)[1]
        if receiver.type == "pagerduty":
            batches = [[a] for a in changed]
        else:
            batches = [firing + [a for a in changed if a.get("status") != "firing"]] if changed else []
        for batch in batches:
            nid = uuid.uuid4().hex
            status = "firing" if any(a.get("status") == "firing" for a in batch) else "resolved"
            note = {"id": nid, "receiver": receiver.name, "type": receiver.type, "group_key": gk,
                    "model_id": model_id, "status": status, "alerts": batch, "model": model,
                    "created_at": now, "attempts": 0}
            ops["notifications"].append([nid, orjson.dumps(note, default=str).decode()])
            for a in batch:
                if a.get("status") == "firing":
                    ops["sent_set"][a["alert_id"]] = orjson.dumps(
                        {"status": "firing", "severity": a["severity"], "at": now}).decode()
        if firing:
            last = [orjson.loads(ops["sent_set"][a["alert_id"]]) if a["alert_id"] in ops["sent_set"]
                    else sent.get(a["alert_id"], {"at": now}) for a in firing]
            ops["timer"] = max(now + interval, min(float(s["at"]) + repeat for s in last))
        else:
            ops["timer"] = now + (repeat if held else interval)
        return ops, len(batches)

    # -- delivery ------------------------------------------------------------------------
    async def _deliver_due(self, now: float) -> None:
        room = 4 * self.concurrency - len(self._inflight)
        if room <= 0:
            return
        got = await self._claim(args=[self.prefix, now, now + self.lease_seconds, room])
        for nid, raw in zip(got[::2], got[1::2]):
            nid = _s(nid)
            if nid in self._inflight:  # still being sent here; its lease was just renewed
                continue
            task = asyncio.create_task(self._deliver(nid, orjson.loads(raw)))
            self._inflight[nid] = task
            task.add_done_callback(lambda _t, nid=nid: self._inflight.pop(nid, None))

    def _notifier(self, name: str) -> Notifier | None:
        if self.client is None:
            import aiohttp

            self.client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=self.concurrency))
        if name not in self._notifiers:
            receiver = self.routing.receivers.get(name)
            if receiver is None:
                return None
            self._notifiers[name] = build(receiver, self.client)
        return self._notifiers[name]

    async def _deliver(self, nid: str, note: dict) -> None:
        async with self._sem:
            lane = f"{self.prefix}lane:{note['group_key']}"
            channel = note["type"]
            notifier = self._notifier(note["receiver"])
            if notifier is None:
                outcome = Outcome(False, f"receiver {note['receiver']!r} is not configured", None)
            else:
                try:
                    outcome = await notifier.send(note)
                except Exception as exc:  # a receiver bug must not stop the others
                    log.exception("receiver %s raised", note["receiver"])
                    outcome = Outcome(True, f"{type(exc).__name__}", None)
            now = self.clock()
            if outcome.ok:
                await self._finish(nid, lane, now)
                NOTIFICATIONS.labels(channel=channel, outcome="sent").inc()
                log.info("notification %s sent to %s (%s, %d alerts)", nid, note["receiver"], channel,
                         len(note["alerts"]))
            elif outcome.retryable:
                note["attempts"] = int(note.get("attempts", 0)) + 1
                note["last_error"] = outcome.error
                delay = (outcome.retry_after if outcome.retry_after is not None
                         else backoff(note["attempts"], self.backoff_base, self.backoff_cap, self.rng))
                delay = min(delay, 3600.0)
                pipe = self.redis.pipeline(transaction=True)
                pipe.hset(self.prefix + "outbox", nid, orjson.dumps(note, default=str))
                pipe.zadd(self.prefix + "due", {nid: now + delay}, xx=True)
                await pipe.execute()
                self._wake.set()  # the loop may be asleep past this due time
                NOTIFICATIONS.labels(channel=channel, outcome="retry").inc()
                log.warning("notification %s to %s failed (attempt %d): %s; retrying in %.2fs",
                            nid, note["receiver"], note["attempts"], outcome.error, delay)
            else:
                record = {"id": nid, "receiver": note["receiver"], "type": channel, "error": outcome.error,
                          "at": now, "alerts": [a.get("alert_id") for a in note["alerts"]]}
                pipe = self.redis.pipeline(transaction=True)
                pipe.lpush(self.prefix + "failed", orjson.dumps(record))
                pipe.ltrim(self.prefix + "failed", 0, FAILED_KEEP - 1)
                await pipe.execute()
                await self._finish(nid, lane, now)
                NOTIFICATIONS.labels(channel=channel, outcome="failed").inc()
                log.error("notification %s to %s failed for good: %s", nid, note["receiver"], outcome.error)

    async def _finish(self, nid: str, lane: str, now: float) -> None:
        """Complete a notification (sent, or failed for good). Deliveries finishing in the same
        turn of the loop share one round trip: the first to arrive waits one turn, then runs
        every COMPLETE gathered meanwhile in one pipeline and hands each its result."""
        waiter = asyncio.get_running_loop().create_future()
        self._finishing.append(([self.prefix, nid, lane, now, DONE_TTL], waiter))
        if len(self._finishing) > 1:
            await waiter  # a leader has the batch
            return
        batch: list[tuple[list, asyncio.Future]] = []
        try:
            await asyncio.sleep(0)
            batch, self._finishing = self._finishing, []
            pipe = self.redis.pipeline(transaction=False)
            for args, _ in batch:
                await self._complete(args=args, client=pipe)
            results = await pipe.execute()
        except BaseException as exc:  # Redis away, or cancelled: every waiter of the batch learns it
            if not batch:
                batch, self._finishing = self._finishing, []
            for _, w in batch:
                if w is not waiter and not w.done():
                    w.set_exception(exc if isinstance(exc, Exception) else RuntimeError("completion cancelled"))
            raise
        if any(r == 2 for r in results):
            self._wake.set()  # a lane's next notification became due
        for _, w in batch:
            if w is not waiter and not w.done():
                w.set_result(None)
