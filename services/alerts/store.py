"""Alert state in Redis: alerts, findings, silences, actions, model modes, and the publication outbox.

Every change is one optimistic transaction (WATCH, read, compute with the pure
`lifecycle`, MULTI/EXEC): the finding's "seen" mark, the alerts it changed, its actions, the
model mode and an outbox entry holding what must still be published and notified are written
all together or not at all. A crash before EXEC leaves nothing (the finding is read again, its
offset was not committed); after EXEC the outbox entry is there and `drain` publishes it (again,
after a restart: at least once on Kafka; the Dispatcher is idempotent on (alert_id, revision)).
The same finding_id twice changes nothing: the seen mark is checked inside the transaction.

Keys (prefix ``vigil:alerts:``)::

    alert:<id>             JSON alert (lifecycle's dict)
    fp:<fingerprint>       {"alert_id": open alert or null, "generation": n}
    open, open:<model>     sets of open (unresolved) alert ids
    index                  zset alert_id -> epoch of its last change (listing; trimmed after retention)
    seen:<finding_id>      processed mark, TTL findings_retention_days
    finding:<id>           JSON finding, same TTL
    findings, findings:<model>   zsets finding_id -> window_end epoch (GET /v1/findings)
    silences               hash id -> JSON silence (Alertmanager's shape)
    actions, actions:<model>     lists of JSON actions, newest first, capped
    mode:<model>, mode-history:<model>   model mode and its changes
    outbox                 list of JSON entries still to publish / submit
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

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

    # --- reads ---------------------------------------------------------------------------------

    async def model(self, model_id: str) -> dict:
        """The registry's view the alerts need: owners, labels, risk tier, runbook URL (a model
        label ``runbook_url``). An unknown model has none."""
        cached = self._models.get(model_id)
        if cached is not None and time.monotonic() - cached[0] < REGISTRY_TTL:
            return cached[1]
        raw = await self.redis.get(f"vigil:registry:model:{model_id}")
        spec = _loads(raw) or {}
        labels = spec.get("labels") or {}
        model = {"owners": list(spec.get("owners") or []), "labels": dict(labels),
                 "risk_tier": spec.get("risk_tier", "medium"), "runbook_url": labels.get("runbook_url")}
        if len(self._models) > 100_000:
            self._models.clear()
        self._models[model_id] = (time.monotonic(), model)
        return model

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

    async def open_models(self) -> set[str]:
        ids = await self.redis.smembers(_k("open"))
        models = set()
        for raw in await self.redis.mget([_k("alert", x.decode()) for x in ids]) if ids else []:
            if raw is not None:
                models.add(_loads(raw)["model_id"])
        return models

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

    # --- the transaction -------------------------------------------------------------------------

    async def _transact(self, model_id: str, now: datetime, step: Callable, watch: tuple[str, ...] = ()) -> Outcome | None:
        """Run `step(pipe, before, silences) -> (after, reason, actions, extra)` on one model's
        open alerts under WATCH, settle suppressions and write everything in one MULTI/EXEC.
        `step` returns None to write nothing. `extra(pipe)` queues further writes."""
        model = await self.model(model_id)
        for _ in range(TX_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(_k("open", model_id), _k("silences"), *watch)
                    ids = sorted(x.decode() for x in await pipe.smembers(_k("open", model_id)))
                    if ids:
                        await pipe.watch(*[_k("alert", i) for i in ids])
                        raws = await pipe.mget([_k("alert", i) for i in ids])
                    else:
                        raws = []
                    before = {i: orjson.loads(r) for i, r in zip(ids, raws) if r is not None}
                    silences = [Silence.from_dict(orjson.loads(x)) for x in await pipe.hvals(_k("silences"))]
                    result = await step(pipe, dict(before), silences)
                    if result is None:
                        await pipe.unwatch()
                        return None
                    after, reason, actions, extra = result
                    settled = lc.settle(before, after, model["labels"], silences, now, self.rules)
                    current_mode = _loads(await pipe.get(_k("mode", model_id)))
                    pipe.multi()
                    self._write(pipe, model_id, model, settled, actions, now, current_mode, reason)
                    if extra is not None:
                        extra(pipe)
                    await pipe.execute()
                    return Outcome(reason, settled.changed, settled.notify, actions)
                except WatchError:
                    continue
        raise RuntimeError(f"model {model_id}: alert state kept changing; gave up after {TX_RETRIES} attempts")

    def _write(self, pipe, model_id: str, model: dict, settled: lc.Settled, actions: list[dict], now: datetime,
               current_mode: dict | None, reason: str) -> None:
        ts = now.timestamp()
        # a fingerprint's resolved alerts first (oldest generation first), its open one last
        for a in sorted(settled.changed, key=lambda a: (not a.get("resolved_at"), a["generation"])):
            aid = a["alert_id"]
            pipe.set(_k("alert", aid), orjson.dumps(a))
            pipe.zadd(_k("index"), {aid: ts})
            if a.get("resolved_at"):
                pipe.srem(_k("open"), aid)
                pipe.srem(_k("open", model_id), aid)
                pipe.set(_k("fp", a["fingerprint"]), orjson.dumps({"alert_id": None, "generation": a["generation"] + 1}))
            else:
                pipe.sadd(_k("open"), aid)
                pipe.sadd(_k("open", model_id), aid)
                pipe.set(_k("fp", a["fingerprint"]), orjson.dumps({"alert_id": aid, "generation": a["generation"]}))
        mode = None
        for x in actions:
            raw = orjson.dumps(x)
            for key in (_k("actions"), _k("actions", model_id)):
                pipe.lpush(key, raw)
                pipe.ltrim(key, 0, MAX_ACTIONS - 1)
            if x["type"] == "enable_human_review" and (current_mode or {}).get("mode") != "human_review" and mode is None:
                mode = {"mode": "human_review", "since": lc.iso(now), "reason": x["reason"], "by": "vigil",
                        "alert_id": x["alert_id"]}
                self._set_mode(pipe, model_id, mode)
        if settled.changed or actions:
            entry = {"id": uuid.uuid4().hex, "reason": reason if isinstance(reason, str) else "findings", "model_id": model_id, "model": model,
                     "alerts": [lc.public(a) for a in settled.changed], "actions": actions,
                     "notify": [[a, reason] for a, reason in settled.notify]}
            pipe.rpush(_k("outbox"), orjson.dumps(entry))

    def _set_mode(self, pipe, model_id: str, mode: dict) -> None:
        raw = orjson.dumps(mode)
        pipe.set(_k("mode", model_id), raw)
        pipe.lpush(_k("mode-history", model_id), raw)
        pipe.ltrim(_k("mode-history", model_id), 0, MAX_MODE_HISTORY - 1)

    # --- writes ----------------------------------------------------------------------------------

    async def process(self, finding: dict, now: datetime | None = None) -> Outcome | None:
        """Apply one finding (a validated Finding as a JSON dict); None when it was seen before."""
        return await self.process_batch(finding["model_id"], [finding], now)

    async def process_batch(self, model_id: str, findings: list[dict], now: datetime | None = None) -> Outcome | None:
        """Apply a model's findings, in order, in one transaction (a batch read from the topic);
        findings seen before are skipped. None when every one was seen before. The state changes
        of the batch coalesce: an alert repeated 50 times in it is stored, published and
        submitted once, in its final state."""
        now = now or datetime.now(timezone.utc)
        unique = list({f["finding_id"]: f for f in findings}.values())
        if any(f["model_id"] != model_id for f in unique):
            raise ValueError(f"process_batch({model_id!r}): every finding must be of this model")
        fps = {f["finding_id"]: lc.fingerprint(model_id, f["kind"], f.get("feature"), f.get("vendor")) for f in unique}
        seen_keys = [_k("seen", f["finding_id"]) for f in unique]
        fp_keys = sorted({_k("fp", fp) for fp in fps.values()})
        owners = (await self.model(model_id))["owners"]

        async def step(pipe, before, silences):
            seen = await pipe.mget(seen_keys)
            todo = [f for f, was in zip(unique, seen) if was is None]
            if not todo:
                return None
            states = {k: (_loads(v) or {"alert_id": None, "generation": 0})
                      for k, v in zip(fp_keys, await pipe.mget(fp_keys))}
            after = dict(before)
            reasons, actions = [], []
            for f in todo:
                state = states[_k("fp", fps[f["finding_id"]])]
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

            def extra(p):
                for f in todo:
                    fid = f["finding_id"]
                    score = _epoch(f["window_end"])
                    p.set(_k("seen", fid), 1, ex=self.retention)
                    p.set(_k("finding", fid), orjson.dumps(f), ex=self.retention)
                    p.zadd(_k("findings"), {fid: score})
                    p.zadd(_k("findings", model_id), {fid: score})
            return after, reasons, actions, extra

        return await self._transact(model_id, now, step, watch=(*seen_keys, *fp_keys))

    async def acknowledge(self, alert_id: str, by: str, comment: str, now: datetime) -> Outcome:
        a = await self.alert(alert_id)
        if a is None:
            raise NotFound(alert_id)
        if a.get("resolved_at"):
            raise Conflict(f"alert {alert_id} is resolved: nothing to acknowledge")

        async def step(pipe, before, silences):
            cur = before.get(alert_id)
            if cur is None:
                raise Conflict(f"alert {alert_id} is resolved: nothing to acknowledge")
            after = {**before, alert_id: lc.acknowledge(cur, by, comment, now)}
            return after, "acknowledged", [], None

        return await self._transact(a["model_id"], now, step, watch=(_k("alert", alert_id),))

    async def resettle(self, model_id: str, now: datetime, resolve_stale: bool = True) -> Outcome | None:
        """Re-evaluate one model's open alerts: silences that began or ended, inhibitions, and
        (``resolve_stale``) alerts whose windows passed without a finding."""

        async def step(pipe, before, silences):
            after = dict(before)
            if resolve_stale:
                for aid, a in before.items():
                    if lc.stale(a, now, self.resolve_after):
                        after[aid] = {**lc.resolve(a, now), "revision": a["revision"] + 1}
            return after, "settled", [], None

        out = await self._transact(model_id, now, step)
        return out if out and out.changed else None

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

    async def active_counts(self) -> dict[str, int]:
        """Open alerts that are firing or acknowledged, by severity (vigil_alerts_active)."""
        counts = dict.fromkeys(lc.policy.SEVERITIES, 0)
        for a in await self._open_alerts():
            if a["status"] in ("firing", "acknowledged"):
                counts[a["severity"]] += 1
        return counts

    async def _open_alerts(self) -> list[dict]:
        ids = list(await self.redis.smembers(_k("open")))
        out = []
        for i in range(0, len(ids), 500):
            out += [orjson.loads(r) for r in await self.redis.mget([_k("alert", x.decode()) for x in ids[i:i + 500]])
                    if r is not None]
        return out


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
    return Silence(body.get("id") or uuid.uuid4().hex, tuple(ms), starts, ends, created_by.strip()[:200], comment[:2000])
