"""Alert state in Redis: alerts, findings, silences, actions, model modes, and the publication outbox.

Every change is one optimistic transaction (WATCH, read, compute with the pure
`lifecycle`, MULTI/EXEC), one per poll of the findings topic whatever the number of models:
the findings (also their "seen" marks), the alerts they changed, their actions, the model
modes and one outbox entry holding what must still be published and notified are written all
together or not at all. Each model's alerts carry a version key that every transaction writing
them raises; watching it is watching them, and an in-process cache of each model's open alerts
is trusted only at the version read in the transaction. A crash before EXEC leaves nothing (the finding is read again, its
offset was not committed); after EXEC the outbox entry is there and `drain` publishes it (again,
after a restart: at least once on Kafka; the Dispatcher is idempotent on (alert_id, revision)).
The same finding_id twice changes nothing: its stored copy is checked inside the transaction.

Keys (prefix ``vigil:alerts:``)::

    alert:<id>             JSON alert (lifecycle's dict)
    fp:<fingerprint>       {"alert_id": open alert or null, "generation": n}
    open, open:<model>     sets of open (unresolved) alert ids
    models                 set of the models that have had open alerts (the sweep's list)
    index                  zset alert_id -> epoch of its last change (listing; trimmed after retention)
    finding:<id>           JSON finding, TTL findings_retention_days; also the "seen" mark
    ver:<model>            raised by every transaction that writes the model's alerts (what is WATCHed)
    findings, findings:<model>   zsets finding_id -> window_end epoch (GET /v1/findings)
    silences               hash id -> JSON silence (Alertmanager's shape)
    actions, actions:<model>     lists of JSON actions, newest first, capped
    mode:<model>, mode-history:<model>   model mode and its changes
    outbox                 list of JSON entries still to publish / submit
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

import orjson
from redis.exceptions import WatchError

from services.alerts import lifecycle as lc
from services.alerts.lifecycle import Silence

P = "vigil:alerts:"
MAX_ACTIONS = 10_000  # actions kept per list
MAX_MODE_HISTORY = 100
TX_RETRIES = 100
REGISTRY_TTL = 10.0  # seconds a model's owners and labels are cached


def _k(*parts: str) -> str:
    return P + ":".join(parts)


def _loads(raw):
    return None if raw is None else orjson.loads(raw)


def _epoch(t: str | datetime) -> float:
    return lc.parse_time(t).timestamp()


@dataclass
class Outcome:
    reason: str | list[tuple[str, str, str]]  # the operation's, or per new finding (Change.reason, severity, kind)
    changed: list[dict]
    notify: list[tuple[dict, str]]
    actions: list[dict]


@dataclass
class Step:
    """One model's part of a transaction: `fn(before, silences, values)` gets the model's open
    alerts (alert_id -> alert), the silences and the values of `keys`, and returns None (no
    change) or (after, reason, actions, extra): the alerts to settle, a reason, new actions and
    `extra(pipe)` queuing further writes."""

    model_id: str
    keys: list[str]
    fn: Callable
    full: bool = True  # settle every open alert of the model, not only those the step changed


class _Writes:
    """The writes of one transaction, gathered so each kind is one command (pure-Python reply
    parsing costs per command, not per argument), then queued on the MULTI pipeline."""

    def __init__(self, pipe, cause: str):
        self.pipe, self.cause = pipe, cause
        self.mset: dict[str, bytes] = {}
        self.index: dict[str, float] = {}
        self.sadd: dict[str, list] = defaultdict(list)
        self.srem: dict[str, list] = defaultdict(list)
        self.lpush: dict[str, list] = defaultdict(list)
        self.zadd: dict[str, dict] = defaultdict(dict)
        self.models: dict[str, dict] = {}
        self.alerts: list[dict] = []
        self.actions: list[dict] = []
        self.notify: list[list] = []

    def queue(self) -> None:
        p = self.pipe
        if self.mset:
            p.mset(self.mset)
        if self.index:
            p.zadd(_k("index"), self.index)
        for key, members in self.srem.items():
            p.srem(key, *members)
        for key, members in self.sadd.items():
            p.sadd(key, *members)
        for key, values in self.lpush.items():
            p.lpush(key, *values)
            p.ltrim(key, 0, MAX_ACTIONS - 1)
        for key, scores in self.zadd.items():
            p.zadd(key, scores)
        if self.alerts or self.actions:
            entry = {"id": uuid.uuid4().hex, "cause": self.cause, "models": self.models, "alerts": self.alerts,
                     "actions": self.actions, "notify": self.notify}
            p.rpush(_k("outbox"), orjson.dumps(entry))


class NotFound(KeyError):
    """No alert or silence with that id."""


class Conflict(ValueError):
    """The operation does not apply to the alert's state (e.g. acknowledging a resolved alert)."""


class AlertStore:
    def __init__(self, redis, *, resolve_after: int = 2, retention_days: int = 7,
                 rules: tuple[lc.InhibitRule, ...] = lc.DEFAULT_INHIBIT_RULES):
        self.redis = redis
        self.resolve_after = resolve_after
        self.retention = int(retention_days * 86400)
        self.rules = rules
        self._models: dict[str, tuple[float, dict]] = {}
        self._open: dict[str, tuple[int, dict[str, dict]]] = {}  # model -> (ver, open alerts): a read cache
        self._quiet: dict[str, tuple[tuple, datetime]] = {}  # model -> (what the sweep saw, until when it holds)

    # --- reads ---------------------------------------------------------------------------------

    async def model(self, model_id: str) -> dict:
        """The registry's view the alerts need: owners, labels, risk tier, runbook URL (a model
        label ``runbook_url``). An unknown model has none. Cached REGISTRY_TTL seconds."""
        return (await self.models([model_id]))[model_id]

    async def models(self, model_ids: list[str]) -> dict[str, dict]:
        out, missing = {}, []
        t = time.monotonic()
        for m in model_ids:
            cached = self._models.get(m)
            if cached is not None and t - cached[0] < REGISTRY_TTL:
                out[m] = cached[1]
            else:
                missing.append(m)
        if missing:
            if len(self._models) > 100_000:
                self._models.clear()
            raws = await self.redis.mget([f"vigil:registry:model:{m}" for m in missing])
            for m, raw in zip(missing, raws):
                spec = _loads(raw) or {}
                labels = spec.get("labels") or {}
                out[m] = {"owners": list(spec.get("owners") or []), "labels": dict(labels),
                          "risk_tier": spec.get("risk_tier", "medium"), "runbook_url": labels.get("runbook_url")}
                self._models[m] = (t, out[m])
        return out

    async def alert(self, alert_id: str) -> dict | None:
        return _loads(await self.redis.get(_k("alert", alert_id)))

    async def alerts(self, *, model_id: str | None = None, severity: str | None = None, status: str | None = None,
                     kind: str | None = None, limit: int = 1000) -> list[dict]:
        """Alerts, newest change first. Without a status: every retained alert."""
        if status in (None, "resolved"):
            ids = await self.redis.zrevrange(_k("index"), 0, -1)
        else:
            ids = sorted(await self.redis.smembers(_k("open", model_id) if model_id else _k("open")))
        out = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for raw in await self.redis.mget([_k("alert", x.decode()) for x in chunk]):
                a = _loads(raw)
                if a is None or (model_id and a["model_id"] != model_id) or (severity and a["severity"] != severity) \
                        or (status and a["status"] != status) or (kind and a["kind"] != kind):
                    continue
                out.append(a)
        out.sort(key=lambda a: (a["last_seen"], a["alert_id"]), reverse=True)
        return out[:limit]

    async def findings(self, *, model_id: str | None = None, kind: str | None = None, since: datetime | None = None,
                       limit: int = 1000) -> list[dict]:
        key = _k("findings", model_id) if model_id else _k("findings")
        low = since.timestamp() if since else "-inf"
        out: list[dict] = []
        offset = 0
        while len(out) < limit:
            ids = await self.redis.zrevrangebyscore(key, "+inf", low, start=offset, num=500)
            if not ids:
                break
            offset += len(ids)
            for raw in await self.redis.mget([_k("finding", x.decode()) for x in ids]):
                f = _loads(raw)
                if f is not None and (not kind or f["kind"] == kind):
                    out.append(f)
        return out[:limit]

    async def actions(self, model_id: str | None = None, limit: int = 1000) -> list[dict]:
        key = _k("actions", model_id) if model_id else _k("actions")
        return [orjson.loads(x) for x in await self.redis.lrange(key, 0, limit - 1)]

    async def silences(self) -> list[Silence]:
        raw = await self.redis.hvals(_k("silences"))
        return sorted((Silence.from_dict(orjson.loads(x)) for x in raw), key=lambda s: (s.starts_at, s.id))

    async def mode(self, model_id: str) -> dict:
        m = _loads(await self.redis.get(_k("mode", model_id)))
        return m or {"mode": "automated", "since": None, "reason": None}

    async def mode_history(self, model_id: str) -> list[dict]:
        return [orjson.loads(x) for x in await self.redis.lrange(_k("mode-history", model_id), 0, -1)]

    async def outbox(self, limit: int = 100) -> list[bytes]:
        return await self.redis.lrange(_k("outbox"), 0, limit - 1)

    async def done(self, entry: bytes) -> None:
        await self.redis.lrem(_k("outbox"), 1, entry)

    async def done_many(self, entries: list[bytes]) -> None:
        """`done` for a batch, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.lrem(_k("outbox"), 1, entry)
            await pipe.execute()

    # --- the transaction -------------------------------------------------------------------------

    async def _run(self, steps: list[Step], now: datetime) -> list[Outcome | None]:
        """Apply steps (at most one per model) in one optimistic transaction: WATCH each model's
        version key, the silences and every key a step reads; read everything in one pipelined
        round trip; run the pure steps; settle silences and inhibitions per model; write it all,
        raising each changed model's version, in one MULTI/EXEC. Every write to a model's alerts
        goes through here, so watching its version is watching its alerts. Retried on conflict."""
        if len({st.model_id for st in steps}) != len(steps):
            raise ValueError("one step per model and transaction")
        if not steps:
            return []
        models = await self.models([st.model_id for st in steps])
        keys = sorted({k for st in steps for k in st.keys})
        for _ in range(TX_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(_k("silences"), *[_k("ver", m) for m in models], *keys)
                    async with self.redis.pipeline(transaction=False) as rp:
                        rp.mget([_k(part, m) for m in models for part in ("ver", "mode")])
                        rp.hvals(_k("silences"))
                        if keys:
                            rp.mget(keys)
                        res = await rp.execute()
                    vers = {m: int(res[0][2 * i] or 0) for i, m in enumerate(models)}
                    modes = {m: _loads(res[0][2 * i + 1]) for i, m in enumerate(models)}
                    silences = [Silence.from_dict(orjson.loads(x)) for x in res[1]]
                    values = dict(zip(keys, res[2])) if keys else {}
                    opened = await self._open_of(vers)
                    results, writes = [], []
                    for st in steps:
                        before = opened[st.model_id]
                        result = st.fn(dict(before), silences, values)
                        if result is None:
                            results.append(None)
                            continue
                        after, reason, actions, extra = result
                        model = models[st.model_id]
                        settled = lc.settle(before, after, model["labels"], silences, now, self.rules, st.full)
                        results.append(Outcome(reason, settled.changed, settled.notify, actions))
                        if not settled.changed and not actions and extra is None:
                            continue
                        writes.append((st.model_id, model, settled, actions, reason, extra))
                    if not writes:
                        await pipe.unwatch()
                        return results
                    pipe.multi()
                    w = _Writes(pipe, "findings" if all(isinstance(x[4], list) for x in writes) else str(writes[0][4]))
                    for model_id, model, settled, actions, reason, extra in writes:
                        self._write(w, model_id, model, settled, actions, now, modes[model_id])
                        w.mset[_k("ver", model_id)] = str(vers[model_id] + 1).encode()  # watched: exact
                        if extra is not None:
                            extra(w)
                    w.queue()
                    await pipe.execute()
                    for model_id, _, settled, _, _, _ in writes:  # the cache follows what was written
                        state = dict(opened[model_id])
                        for a in settled.changed:
                            if a.get("resolved_at"):
                                state.pop(a["alert_id"], None)
                            else:
                                state[a["alert_id"]] = a
                        self._cache_put(model_id, vers[model_id] + 1, state)
                    return results
                except WatchError:
                    continue
        raise RuntimeError(f"models {sorted(models)[:5]}: alert state kept changing; "
                           f"gave up after {TX_RETRIES} attempts")

    def _cache_put(self, model_id: str, ver: int, state: dict[str, dict]) -> None:
        if len(self._open) > 100_000:
            self._open.clear()
        self._open[model_id] = (ver, state)

    async def _open_of(self, vers: dict[str, int]) -> dict[str, dict[str, dict]]:
        """Each model's open alerts (alert_id -> alert) at version `vers[model]`: from the cache
        when it holds that version, else read (and cached under that version: data read after the
        version is at least as new, so a stale pair is only ever reloaded, never trusted)."""
        out, stale = {}, []
        for m, v in vers.items():
            cached = self._open.get(m)
            if cached is not None and cached[0] == v:
                out[m] = cached[1]
            elif v == 0:  # no transaction ever wrote its alerts
                out[m] = {}
            else:
                stale.append(m)
        if stale:
            async with self.redis.pipeline(transaction=False) as rp:
                for m in stale:
                    rp.smembers(_k("open", m))
                ids = {m: sorted(x.decode() for x in r) for m, r in zip(stale, await rp.execute())}
            every = [i for m in stale for i in ids[m]]
            alerts: dict[str, dict] = {}
            for i in range(0, len(every), 1000):
                chunk = every[i:i + 1000]
                alerts.update((aid, orjson.loads(r)) for aid, r in
                              zip(chunk, await self.redis.mget([_k("alert", x) for x in chunk])) if r is not None)
            for m in stale:
                out[m] = {i: alerts[i] for i in ids[m] if i in alerts}
                self._cache_put(m, vers[m], out[m])
        return out

    def _write(self, w: "_Writes", model_id: str, model: dict, settled: lc.Settled, actions: list[dict],
               now: datetime, current_mode: dict | None) -> None:
        ts = now.timestamp()
        # a fingerprint's resolved alerts first (oldest generation first), its open one last
        for a in sorted(settled.changed, key=lambda a: (not a.get("resolved_at"), a["generation"])):
            aid = a["alert_id"]
            w.mset[_k("alert", aid)] = orjson.dumps(a)
            w.index[aid] = ts
            if a.get("resolved_at"):
                w.srem[_k("open")].append(aid)
                w.srem[_k("open", model_id)].append(aid)
                w.mset[_k("fp", a["fingerprint"])] = orjson.dumps({"alert_id": None, "generation": a["generation"] + 1})
            else:
                w.sadd[_k("open")].append(aid)
                w.sadd[_k("open", model_id)].append(aid)
                w.sadd[_k("models")].append(model_id)
                w.mset[_k("fp", a["fingerprint"])] = orjson.dumps({"alert_id": aid, "generation": a["generation"]})
        mode = None
        for x in actions:
            raw = orjson.dumps(x)
            w.lpush[_k("actions")].append(raw)
            w.lpush[_k("actions", model_id)].append(raw)
            reviewing = (current_mode or {}).get("mode") == "human_review"
            if x["type"] == "enable_human_review" and not reviewing and mode is None:
                mode = {"mode": "human_review", "since": lc.iso(now), "reason": x["reason"], "by": "vigil",
                        "alert_id": x["alert_id"]}
                self._set_mode(w.pipe, model_id, mode)
        if settled.changed or actions:
            w.models[model_id] = model
            w.alerts += [lc.public(a) for a in settled.changed]
            w.actions += actions
            w.notify += [[a, reason] for a, reason in settled.notify]

    def _set_mode(self, pipe, model_id: str, mode: dict) -> None:
        raw = orjson.dumps(mode)
        pipe.set(_k("mode", model_id), raw)
        pipe.lpush(_k("mode-history", model_id), raw)
        pipe.ltrim(_k("mode-history", model_id), 0, MAX_MODE_HISTORY - 1)

    # --- writes ----------------------------------------------------------------------------------

    async def process(self, finding: dict, now: datetime | None = None) -> Outcome | None:
        """Apply one finding (a validated Finding as a JSON dict); None when it was seen before."""
        return (await self.process_many([finding], now))[0]

    async def process_batch(self, model_id: str, findings: list[dict], now: datetime | None = None) -> Outcome | None:
        """Apply one model's findings, in order; None when every one was seen before."""
        if any(f["model_id"] != model_id for f in findings):
            raise ValueError(f"process_batch({model_id!r}): every finding must be of this model")
        return (await self.process_many(findings, now))[0] if findings else None

    async def process_many(self, findings: list[dict], now: datetime | None = None) -> list[Outcome | None]:
        """Apply findings (a batch read from the topic), each model's in order, all in one
        transaction; findings seen before are skipped. One Outcome (or None: nothing new) per
        model, in order of first appearance. The state changes of a batch coalesce: an alert
        repeated 50 times in it is stored, published and submitted once, in its final state."""
        now = now or datetime.now(timezone.utc)
        by_model: dict[str, dict[str, dict]] = {}
        for f in findings:
            by_model.setdefault(f["model_id"], {}).setdefault(f["finding_id"], f)
        models = await self.models(list(by_model))
        steps = [self._finding_step(model_id, list(unique.values()), models[model_id]["owners"], now)
                 for model_id, unique in by_model.items()]
        return await self._run(steps, now)

    def _finding_step(self, model_id: str, unique: list[dict], owners: list[str], now: datetime) -> Step:
        fps = {f["finding_id"]: _k("fp", lc.fingerprint(model_id, f["kind"], f.get("feature"), f.get("vendor")))
               for f in unique}
        seen_keys = [_k("finding", f["finding_id"]) for f in unique]  # a finding stored is a finding seen

        def fn(before, silences, values):
            todo = [f for f, k in zip(unique, seen_keys) if values.get(k) is None]
            if not todo:
                return None
            states = {k: (_loads(values.get(k)) or {"alert_id": None, "generation": 0}) for k in set(fps.values())}
            after = dict(before)
            reasons, actions = [], []
            for f in todo:
                state = states[fps[f["finding_id"]]]
                current = after.get(state["alert_id"]) if state["alert_id"] else None
                change = lc.apply_finding(current, f, now=now, generation=state["generation"], owners=owners,
                                          resolve_after=self.resolve_after)
                reasons.append((change.reason, f["severity"], f["kind"]))
                actions.extend(change.actions)
                a = change.alert
                if a is not None:
                    after[a["alert_id"]] = a
                    state["alert_id"] = None if a.get("resolved_at") else a["alert_id"]
                    state["generation"] = a["generation"] + 1 if a.get("resolved_at") else a["generation"]

            def extra(w):
                for f in todo:
                    fid = f["finding_id"]
                    score = _epoch(f["window_end"])
                    w.pipe.set(_k("finding", fid), orjson.dumps(f), ex=self.retention)
                    w.zadd[_k("findings")][fid] = score
                    w.zadd[_k("findings", model_id)][fid] = score
            return after, reasons, actions, extra

        return Step(model_id, [*seen_keys, *sorted(set(fps.values()))], fn, full=False)

    async def acknowledge(self, alert_id: str, by: str, comment: str, now: datetime) -> Outcome:
        a = await self.alert(alert_id)
        if a is None:
            raise NotFound(alert_id)
        if a.get("resolved_at"):
            raise Conflict(f"alert {alert_id} is resolved: nothing to acknowledge")

        def fn(before, silences, values):
            cur = before.get(alert_id)
            if cur is None:
                raise Conflict(f"alert {alert_id} is resolved: nothing to acknowledge")
            return {**before, alert_id: lc.acknowledge(cur, by, comment, now)}, "acknowledged", [], None

        return (await self._run([Step(a["model_id"], [], fn, full=False)], now))[0]

    def _resettle_step(self, model_id: str, now: datetime, resolve_stale: bool) -> Step:
        def fn(before, silences, values):
            after = dict(before)
            if resolve_stale:
                clock = lc.model_clock(before.values())
                for aid, a in before.items():
                    if lc.stale(a, now, self.resolve_after, clock):
                        after[aid] = {**lc.resolve(a, now), "revision": a["revision"] + 1}
            return after, "settled", [], None
        return Step(model_id, [], fn)

    async def resettle(self, model_id: str, now: datetime, resolve_stale: bool = True) -> Outcome | None:
        """Re-evaluate one model's open alerts: silences that began or ended, inhibitions, and
        (``resolve_stale``) alerts whose windows passed without a finding."""
        out = (await self._run([self._resettle_step(model_id, now, resolve_stale)], now))[0]
        return out if out and out.changed else None

    async def resettle_all(self, now: datetime, resolve_stale: bool = True, chunk: int = 200,
                           opened: dict[str, tuple[int, dict[str, dict]]] | None = None) -> int:
        """`resettle` every model whose open alerts would change, found first by a read-only pass
        over the open alerts (`open_by_model`, read here unless given) so a sweep over many quiet
        models writes nothing. A model found quiet is not looked at again until its version, its
        labels or the silences change, a silence begins or ends, or the wall clock reaches the
        first of its alerts' `stale_at`. Returns the models changed."""
        silences = await self.silences()
        opened = opened if opened is not None else await self.open_by_model()
        models = await self.models(list(opened))
        sig = orjson.dumps([s.to_dict() for s in silences])
        boundary = min((t for s in silences for t in (s.starts_at, s.ends_at) if t > now), default=None)
        if len(self._quiet) > 100_000:
            self._quiet.clear()
        due = []
        for n, (model_id, (ver, before)) in enumerate(opened.items()):
            if n % 256 == 255:
                await asyncio.sleep(0)  # a long pass yields, so deliveries and findings are not held up
            labels = models[model_id]["labels"]
            key = (ver, resolve_stale, sig, labels)
            memo = self._quiet.get(model_id)
            if memo is not None and memo[0] == key and now < memo[1]:
                continue
            after, _, _, _ = self._resettle_step(model_id, now, resolve_stale).fn(before, silences, {})
            if lc.settle(before, after, labels, silences, now, self.rules).changed:
                due.append(model_id)
                self._quiet.pop(model_id, None)
            else:
                until = [lc.stale_at(a, self.resolve_after) for a in before.values()] if resolve_stale else []
                self._quiet[model_id] = (key, min([*until, *([boundary] if boundary else [])],
                                                  default=datetime.max.replace(tzinfo=timezone.utc)))
        changed = 0
        for i in range(0, len(due), chunk):
            outs = await self._run([self._resettle_step(m, now, resolve_stale) for m in due[i:i + chunk]], now)
            changed += sum(1 for o in outs if o and o.changed)
        return changed

    async def add_silence(self, silence: Silence) -> None:
        await self.redis.hset(_k("silences"), silence.id, orjson.dumps(silence.to_dict()))

    async def delete_silence(self, silence_id: str, now: datetime) -> dict:
        """Expire a silence (Alertmanager keeps expired silences on record: so does Vigil)."""
        raw = await self.redis.hget(_k("silences"), silence_id)
        if raw is None:
            raise NotFound(silence_id)
        s = Silence.from_dict(orjson.loads(raw))
        if s.ends_at > now:
            s = Silence(s.id, s.matchers, min(s.starts_at, now), now, s.created_by, s.comment)
            await self.redis.hset(_k("silences"), silence_id, orjson.dumps(s.to_dict()))
        return s.to_dict(now)

    async def set_mode(self, model_id: str, mode: str, by: str, reason: str, now: datetime) -> dict:
        value = {"mode": mode, "since": lc.iso(now), "reason": reason, "by": by}
        async with self.redis.pipeline(transaction=True) as pipe:
            self._set_mode(pipe, model_id, value)
            await pipe.execute()
        return value

    async def trim(self, now: datetime) -> None:
        """Forget findings and resolved alerts older than the retention."""
        cutoff = now.timestamp() - self.retention
        keys = [k async for k in self.redis.scan_iter(match=_k("findings") + "*", count=500)]
        for key in keys:
            await self.redis.zremrangebyscore(key, "-inf", cutoff)
        old = await self.redis.zrangebyscore(_k("index"), "-inf", cutoff)
        open_ids = await self.redis.smembers(_k("open"))
        gone = [x for x in old if x not in open_ids]
        if gone:
            await self.redis.zrem(_k("index"), *gone)
            await self.redis.delete(*[_k("alert", x.decode()) for x in gone])

    async def open_by_model(self) -> dict[str, tuple[int, dict[str, dict]]]:
        """Each model that has open alerts: (its version, alert_id -> alert), through the
        per-model cache (only models whose version moved are read)."""
        models = sorted(x.decode() for x in await self.redis.smembers(_k("models")))
        vers = {}
        for i in range(0, len(models), 1000):
            chunk = models[i:i + 1000]
            vers.update((m, int(v or 0)) for m, v in zip(chunk, await self.redis.mget([_k("ver", m) for m in chunk])))
        opened = await self._open_of(vers)
        return {m: (vers[m], opened[m]) for m in vers if opened[m]}

    async def open_alerts(self) -> list[dict]:
        """Every open alert."""
        return [a for _, state in (await self.open_by_model()).values() for a in state.values()]


def active_counts(alerts: Iterable[dict]) -> dict[str, int]:
    """Open alerts that are firing or acknowledged, by severity (vigil_alerts_active).

    >>> active_counts([{"status": "firing", "severity": "high"}, {"status": "silenced", "severity": "high"}])
    {'low': 0, 'medium': 0, 'high': 1, 'critical': 0}
    """
    counts = dict.fromkeys(lc.policy.SEVERITIES, 0)
    for a in alerts:
        if a["status"] in ("firing", "acknowledged"):
            counts[a["severity"]] += 1
    return counts


def new_silence(body: dict, now: datetime) -> Silence:
    """A silence from an API body (Alertmanager's shape); raises ValueError naming the field."""
    if not isinstance(body, dict):
        raise ValueError("body: must be a JSON object")
    matchers = body.get("matchers")
    if not isinstance(matchers, list) or not matchers:
        raise ValueError("matchers: must be a non-empty list of {name, value, isRegex, isEqual}")
    ms = []
    for i, m in enumerate(matchers):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not isinstance(m.get("value"), str):
            raise ValueError(f"matchers.{i}: must have a string name and a string value")
        for flag in ("isRegex", "isEqual"):
            if flag in m and not isinstance(m[flag], bool):
                raise ValueError(f"matchers.{i}.{flag}={m[flag]!r}: must be true or false")
        try:
            ms.append(lc.Matcher.from_dict(m))
        except ValueError as exc:
            raise ValueError(f"matchers.{i}.{str(exc).removeprefix('matcher.')}") from None
    try:
        starts = lc.parse_time(body["startsAt"]) if body.get("startsAt") else now
    except (TypeError, ValueError):
        raise ValueError(f"startsAt={body.get('startsAt')!r}: must be an RFC 3339 time") from None
    if not body.get("endsAt"):
        raise ValueError("endsAt: required (an RFC 3339 time after startsAt)")
    try:
        ends = lc.parse_time(body["endsAt"])
    except (TypeError, ValueError):
        raise ValueError(f"endsAt={body.get('endsAt')!r}: must be an RFC 3339 time") from None
    if ends <= starts:
        raise ValueError(f"endsAt={body['endsAt']!r}: must be after startsAt")
    created_by = body.get("createdBy")
    if not isinstance(created_by, str) or not created_by.strip():
        raise ValueError("createdBy: required (who silences)")
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        raise ValueError("comment: must be a string")
    sid = body.get("id")  # given: updates that silence (Alertmanager's way)
    if sid is not None and (not isinstance(sid, str) or not 1 <= len(sid) <= 200):
        raise ValueError(f"id={sid!r}: must be a string of 1 to 200 characters")
    return Silence(sid or uuid.uuid4().hex, tuple(ms), starts, ends, created_by.strip()[:200],
                   comment[:2000])
