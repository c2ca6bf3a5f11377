"""The alerts service: `vigil.findings` -> alert lifecycle in Redis -> `vigil.alerts`, `vigil.actions`
and the Dispatcher's notifications; the alerts HTTP API and the operator page. Moves data only.

One loop consumes findings (consumer group `alerts_group`, offsets committed after the
findings are applied: at least once, and the finding_id check in the store's transaction makes
a second delivery change nothing). Each applied finding leaves an outbox entry in Redis in the
same transaction; `drain` publishes its alert states (key fingerprint) and actions (key
model_id) with acks=all, hands its notifications to the Dispatcher (durable and idempotent on
(alert_id, revision)), and only then removes the entry — so a crash anywhere loses nothing and
a restart repeats at most the publication.

A sweep every `sweep_seconds` resolves alerts whose windows passed without a finding,
re-applies silences that began or ended, sets `vigil_alerts_active`, and trims old findings.

`vigil_detection_latency_seconds` here: from the finding's `window_end` (the window's close)
to its alert state being acknowledged by the broker on `vigil.alerts`, for findings that
opened, repeated or escalated an alert. For a live stream that is the whole detection delay
(window close -> evaluation -> finding -> alert); a replayed history shows its age instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, Callable

from fastapi import FastAPI
from pydantic import ValidationError

import shared
from shared import kafka
from shared import metrics as m
from shared.events import Finding
from shared.settings import Settings, get_settings

from services.alerts import lifecycle as lc
from services import ops
from services.stream import raw_text
from services.alerts.store import AlertStore, active_counts

log = logging.getLogger("vigil.alerts")
TOPIC = kafka.TOPICS["findings"]
SWEEP_SECONDS = 5.0
COMMIT_SECONDS = 0.5  # offsets applied are committed this often (a replay of the rest is a no-op)
TRIM_SECONDS = 3600.0
# the broker answers a fetch once it has 64 KiB or after 20 ms, not as soon as one finding is
# there: a busy stream comes in fewer, larger fetches (less work for the broker and for us),
# a quiet one at most 20 ms later
FETCH_WAIT_MS, FETCH_MIN_BYTES = 20, 64 * 1024


def _error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'finding'}: {e['msg']}" for e in exc.errors()[:10])
    return f"not JSON: {exc}"


class AlertsService:
    """The consumer, the outbox drain, the sweep and the Dispatcher of one alerts process."""

    def __init__(self, settings: Settings, dispatcher_factory: Callable[..., Any] | None = None,
                 sweep_seconds: float = SWEEP_SECONDS, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.dispatcher_factory = dispatcher_factory
        self.sweep_seconds = sweep_seconds
        self.clock = clock
        self.ready = False
        self.processed = 0
        self._stop = asyncio.Event()
        self._kick = asyncio.Event()
        self._drain_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from shared.redis import connect
        s = self.settings
        self.redis = connect(s.redis_url, s.redis_timeout_seconds)
        self.store = AlertStore(self.redis, resolve_after=s.resolve_after_windows,
                                retention_days=s.findings_retention_days)
        if self.dispatcher_factory is None:
            from services.alerts.dispatch import Dispatcher
            from services.alerts.routing import Routing
            self.dispatcher = Dispatcher(self.redis, s, Routing.load(s))
        else:
            self.dispatcher = self.dispatcher_factory(self.redis, s)
        await kafka.ensure_topics(s.kafka_bootstrap, s.topic_partitions, s.replication_factor, timeout=30)
        self.producer = await kafka.start_producer(s.kafka_bootstrap, s.kafka_idempotence)
        self.consumer = AIOKafkaConsumer(
            TOPIC, bootstrap_servers=s.kafka_bootstrap, group_id=s.alerts_group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=10_000, heartbeat_interval_ms=2_000,
            max_poll_interval_ms=300_000, fetch_max_wait_ms=FETCH_WAIT_MS, fetch_min_bytes=FETCH_MIN_BYTES)
        await self.consumer.start()
        self._tasks = [asyncio.create_task(self._guard(self.consume, "consumer")),
                       asyncio.create_task(self._guard(self.drain_loop, "outbox")),
                       asyncio.create_task(self._guard(self.sweep_loop, "sweep")),
                       asyncio.create_task(self._guard(self.dispatcher.run, "dispatcher"))]
        ops.settle_heap()

    async def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        try:
            await asyncio.wait_for(self.dispatcher.stop(), 10)
        except Exception:  # noqa: BLE001 - stopping anyway
            log.exception("dispatcher did not stop cleanly")
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for closer in (self.consumer.stop, self.producer.stop, self.redis.aclose):
            try:
                await asyncio.wait_for(closer(), 10)
            except Exception:  # noqa: BLE001
                log.warning("%s did not stop cleanly", getattr(closer, "__qualname__", closer))

    async def _guard(self, fn, name: str) -> None:
        """Run a loop forever: an unexpected error is logged and the loop starts again."""
        while not self._stop.is_set():
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis or the broker away: retry, never die
                log.exception("alerts %s loop failed; restarting in 1 s", name)
                await asyncio.sleep(1.0)

    def kick(self) -> None:
        """Something was written to the outbox outside the consumer: drain it now."""
        self._kick.set()

    # --- findings -----------------------------------------------------------------------------

    async def consume(self) -> None:
        """Poll, apply, kick the outbox drain (its own task, so publishing and delivering overlap
        the next poll) and commit the offsets applied, at most every COMMIT_SECONDS."""
        offsets: dict = {}
        applied: dict = {}  # topic-partition -> next offset to apply (vigil_consumer_lag)
        last_commit = time.monotonic()
        try:
            while not self._stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=100, max_records=1_000)
                self.ready = True
                if batches:
                    try:
                        await self.handle([r for records in batches.values() for r in records])
                    except Exception:
                        for tp, records in batches.items():  # Redis away: read them again (stored findings are skipped)
                            self.consumer.seek(tp, records[0].offset)
                        raise
                    self.kick()
                    offsets.update({tp: records[-1].offset + 1 for tp, records in batches.items()})
                    applied.update(offsets)
                kafka.report_lag(self.consumer, "alerts", (TOPIC,), applied)
                if offsets and time.monotonic() - last_commit >= COMMIT_SECONDS:
                    await self.consumer.commit(offsets)
                    offsets, last_commit = {}, time.monotonic()
        finally:
            if offsets:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.consumer.commit(offsets), 5)

    async def handle(self, records) -> None:
        """Decode and validate a batch of records, then apply their findings in one transaction."""
        found: list[dict] = []
        for r in records:
            try:
                value = kafka.loads(r.value)
                parsed = [Finding.model_validate(f).model_dump(mode="json")
                          for f in (value if isinstance(value, list) else [value])]
            except Exception as exc:  # noqa: BLE001 - bad input goes to the dead letters, never stops us
                await self._deadletter(r, "invalid" if isinstance(exc, ValidationError) else "not_json", _error(exc))
                continue
            found.extend(parsed)
        for out in await self.store.process_many(found, self.now()):
            for reason, severity, kind in (out.reason if out is not None else []):
                if reason == "new":
                    m.ALERTS_FIRED.labels(severity=severity, kind=kind).inc()
        self.processed += len(found)

    async def _deadletter(self, r, reason: str, error: str) -> None:
        m.DEADLETTERS.labels(service="alerts", reason=reason).inc()
        value = {"source_topic": r.topic, "partition": r.partition, "offset": r.offset, "error": error,
                 "raw": raw_text(r.value)}
        await self.producer.send_and_wait(kafka.TOPICS["deadletter"], kafka.dumps(value), key=r.key)
        log.warning("finding at %s[%d]@%d sent to the dead letters: %s", r.topic, r.partition, r.offset, error)

    # --- the outbox ---------------------------------------------------------------------------

    async def drain(self) -> int:
        """Publish and submit every outbox entry, oldest first; returns how many were done."""
        done = 0
        async with self._drain_lock:
            while True:
                entries = await self.store.outbox(200)
                if not entries:
                    return done
                parsed = [kafka.loads(raw) for raw in entries]
                futures = []
                for e in parsed:
                    for a in e["alerts"]:
                        futures.append(await self.producer.send(kafka.TOPICS["alerts"], kafka.dumps(a),
                                                                key=a["fingerprint"].encode()))
                    for x in e["actions"]:
                        futures.append(await self.producer.send(kafka.TOPICS["actions"], kafka.dumps(x),
                                                                key=x["model_id"].encode()))
                # every notify of the batch in one round trip, in order, while the broker acknowledges
                await self.dispatcher.submit_many([(lc.public(a), e["models"][a["model_id"]])
                                                   for e in parsed for a, _reason in e["notify"]])
                await asyncio.gather(*futures)
                published = self.clock()
                for raw, e in zip(entries, parsed):
                    if e.get("cause") == "findings":
                        for a in e["alerts"]:
                            if a["status"] != "resolved":
                                m.DETECTION_LATENCY.observe(max(0.0, published - lc.parse_time(
                                    a["latest"]["window_end"]).timestamp()))
                await self.store.done_many(entries)  # published and submitted: done
                done += len(entries)

    async def drain_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._kick.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            self._kick.clear()
            await self.drain()

    # --- the sweep ----------------------------------------------------------------------------

    async def resettle_all(self, now: datetime | None = None, resolve_stale: bool = True,
                           opened: dict[str, tuple[int, dict[str, dict]]] | None = None) -> int:
        changed = await self.store.resettle_all(now or self.now(), resolve_stale, opened=opened)
        if changed:
            self.kick()
        return changed

    async def sweep(self) -> None:
        opened = await self.store.open_by_model()
        for sev, n in active_counts(a for _, state in opened.values() for a in state.values()).items():
            m.ALERTS_ACTIVE.labels(severity=sev).set(n)
        await self.resettle_all(self.now(), opened=opened)

    async def sweep_loop(self) -> None:
        last_trim = 0.0
        while not self._stop.is_set():
            await self.sweep()
            if time.monotonic() - last_trim > TRIM_SECONDS:
                await self.store.trim(self.now())
                last_trim = time.monotonic()
            try:
                await asyncio.wait_for(self._stop.wait(), self.sweep_seconds)
            except asyncio.TimeoutError:
                pass

    async def readiness(self) -> dict[str, str]:
        checks = {"consumer": "ok" if self.ready else "starting"}
        try:
            await asyncio.wait_for(self.redis.ping(), 2.0)
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"unreachable: {type(exc).__name__}"
        return checks


def create_app(settings: Settings | None = None, *, dispatcher_factory: Callable[..., Any] | None = None,
               sweep_seconds: float = SWEEP_SECONDS) -> FastAPI:
    """The alerts service as a FastAPI app; its lifespan runs the consumer, the outbox drain, the
    sweep and the Dispatcher. `dispatcher_factory(redis, settings)` replaces the Dispatcher
    (tests only)."""
    settings = settings or get_settings()
    if not settings.kafka_bootstrap or not settings.redis_url:
        raise ValueError("alerts needs VIGIL_KAFKA_BOOTSTRAP and VIGIL_REDIS_URL (or run `vigil up`)")
    service = AlertsService(settings, dispatcher_factory, sweep_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="Vigil alerts", version=shared.__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.service = service
    app.state.api_keys = [k.encode() for k in settings.api_key_list()]
    from services.alerts import api
    app.include_router(api.router)
    try:
        from services.alerts import page
        app.include_router(page.router)
    except ImportError:  # the operator page is optional
        log.info("operator page not available")

    ops.install(app, lambda request: service.readiness())

    return app


def serve(settings: Settings | None = None) -> None:
    """Run the alerts service with uvicorn (`vigil serve alerts`). An invalid routing file is
    refused here, before anything starts, with its line and reason."""
    import uvicorn

    settings = settings or get_settings()
    if not settings.kafka_bootstrap or not settings.redis_url:
        raise SystemExit("vigil serve alerts: VIGIL_KAFKA_BOOTSTRAP and VIGIL_REDIS_URL must be set")
    from services.alerts.routing import Routing, RoutingError
    try:
        Routing.load(settings)
    except RoutingError as exc:
        raise SystemExit(f"vigil serve alerts: invalid routing file: {exc}") from None
    uvicorn.run(create_app(settings), host=settings.host, port=settings.alerts_port,
                log_level=settings.log_level.lower(), access_log=False)


if __name__ == "__main__":  # `python -m services.alerts.app`, until `vigil serve alerts` is wired
    logging.basicConfig(level=get_settings().log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve()
