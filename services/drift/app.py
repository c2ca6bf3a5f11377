"""The drift worker: `vigil.predictions` -> windows -> findings on `vigil.findings`. Moves data only.

Exactness comes from the Redis checkpoint, not from the framework: per input partition the
worker keeps its windows and the next offset to read, and saves both in one atomic write
(`shared.checkpoint`) every `checkpoint_seconds`, on every window close, and when the
partition is revoked. On assignment it loads each partition's checkpoint and seeks there
(no checkpoint: the beginning of the partition), so a restart or a takeover replays exactly
what the state does not yet reflect. Findings of a closed window are saved in the
checkpoint's outbox *before* they are published, and re-published after a restore: at least
once, recognisable by `finding_id`.

Records must be keyed by model_id (ingest and `shared.emitter` do so): then all of a model's
events are in one partition, per-partition state is per-model state, and each window is
evaluated by exactly one worker. An event whose model_id is not its record's key goes to
`vigil.deadletter`, as do records that are not JSON, invalid events, and unknown models.

The consumer is aiokafka's, with a ConsumerRebalanceListener: Faust gives no hook to seek to
an externally stored offset before the first fetch of a newly assigned partition, and its
table changelogs are what double-counts on Tansu.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRebalanceListener

from shared import kafka
from shared import metrics as m
from shared.checkpoint import Checkpoint, CheckpointStore
from shared.events import ModelSpec, ReferenceColumn
from shared.settings import Settings
from shared.stats.baseline import Baseline
from shared.stats.window import WindowLayout
from services.drift.evaluate import findings as window_findings, gauges
from services.drift.quality import QualityLayout
from services.drift.windows import ClosedWindow, WindowConfig, Windows, check_event, columnar

log = logging.getLogger("vigil.drift")
TOPIC = kafka.TOPICS["predictions"]
REGISTRY_TTL = 10.0  # seconds a model's spec and reference are cached
GAUGES = {"psi": m.FEATURE_PSI, "ks_statistic": m.FEATURE_KS, "js_divergence": m.PREDICTION_JS}


@dataclass
class Model:
    spec: ModelSpec
    base: Baseline | None
    cfg: WindowConfig
    loaded: float
    ref_raw: bytes | None = None  # the registry value the reference was built from


class Registry:
    """Model specs and reference profiles from the registry keys ingest writes in Redis."""

    def __init__(self, redis, sample_size: int):
        self.redis, self.sample_size = redis, sample_size
        self.models: dict[str, Model | None] = {}

    async def get(self, model_id: str) -> Model | None:
        cached = self.models.get(model_id)
        if cached is not None and time.monotonic() - cached.loaded < REGISTRY_TTL:
            return cached
        spec_raw, ref_raw = await self.redis.mget([f"vigil:registry:model:{model_id}",
                                                   f"vigil:registry:reference-columns:{model_id}"])
        if spec_raw is None and ref_raw is None:
            return cached  # keep what was known (None: unknown model)
        spec = ModelSpec.model_validate(kafka.loads(spec_raw)) if spec_raw else ModelSpec()
        if cached is not None and cached.spec == spec and ref_raw is not None and cached.ref_raw == ref_raw:
            cached.loaded = time.monotonic()
            return cached
        base = None
        if ref_raw is not None:
            cols = {n: ReferenceColumn.model_validate(c) for n, c in kafka.loads(ref_raw).items()}
            base = Baseline.from_profile(cols, task=spec.task)
        layout = WindowLayout.of(base, self.sample_size) if base is not None else WindowLayout(sample_size=self.sample_size)
        model = Model(spec, base, WindowConfig(spec.window_seconds, spec.allowed_lateness_seconds, layout,
                                               QualityLayout.of(spec.features)), time.monotonic(), ref_raw)
        self.models[model_id] = model
        return model


@dataclass
class Partition:
    windows: Windows = field(default_factory=Windows)  # reference_sample: Settings.reference_sample
    offset: int = 0  # next offset to read
    pending: list[dict] = field(default_factory=list)
    dirty: bool = False
    sought: int = -1  # the offset last sought back to (a gap seen twice is real)


MAX_RAW = 256 * 1024  # bytes of a bad record kept in its dead letter (the topic's limit is 1 MiB)


def _raw(value: bytes | None) -> str:
    """The bad bytes as text: UTF-8 when they are, else "base64:..."; cut at MAX_RAW bytes."""
    if value is None:
        return ""
    value = value[:MAX_RAW]
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


class DriftWorker:
    def __init__(self, settings: Settings, group: str | None = None, checkpoint_seconds: float | None = None,
                 window_sample: int | None = None):
        self.settings = settings
        self.group = group or settings.drift_group
        self.checkpoint_seconds = settings.drift_checkpoint_seconds if checkpoint_seconds is None else checkpoint_seconds
        self.window_sample = window_sample or 12_000
        self.parts: dict[int, Partition] = {}
        self.generation = 0  # the consumer group generation of the current assignment (fencing)
        self.saved: dict[int, int] = {}  # partition -> offset of its last checkpoint
        self.ready = False
        self.events = 0
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # processing, saving and rebalancing never interleave

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from shared.redis import connect
        self.redis = connect(self.settings.redis_url)
        self.store = CheckpointStore(self.redis)
        self.registry = Registry(self.redis, self.window_sample)
        self.producer = await kafka.start_producer(self.settings.kafka_bootstrap, self.settings.kafka_idempotence)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=10_000, heartbeat_interval_ms=2_000,
            max_poll_interval_ms=300_000, max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024)
        self.consumer.subscribe([TOPIC], listener=_Listener(self))
        await self.consumer.start()

    async def stop(self) -> None:
        try:
            async with self._lock:
                await self._save(list(self.parts))
        except Exception:  # noqa: BLE001 - stopping anyway; the last checkpoint stands
            log.exception("final checkpoint failed")
        await self.consumer.stop()
        await self.producer.stop()
        await self.redis.aclose()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        last_save = time.monotonic()
        while not self._stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=500, max_records=2_000)
            self.ready = True
            for tp, records in batches.items():
                part = self.parts.get(tp.partition)
                if part is None:  # revoked meanwhile
                    continue
                async with self._lock:
                    if self.parts.get(tp.partition) is not part:
                        continue
                    records = [r for r in records if r.offset >= part.offset]
                    if records and records[0].offset > part.offset and not self._gap_ok(tp, part, records[0].offset):
                        continue
                    if records:
                        await self.process(tp.partition, part, records)
            if time.monotonic() - last_save >= self.checkpoint_seconds:
                async with self._lock:
                    await self._save([p for p, s in self.parts.items() if s.dirty])
                await self._commit()
                last_save = time.monotonic()

    def _gap_ok(self, tp, part: Partition, first: int) -> bool:
        """Records start after the offset the state reflects: fine when the log has no records
        in between (compaction, transaction markers), else seek back rather than skip any."""
        if (part.offset == 0 and not part.windows.models) or part.sought == part.offset:
            return True  # a log that starts later (retention), or the gap is real: fetched again from it
        part.sought = part.offset
        log.warning("partition %d: fetched offset %d but the state reflects up to %d; seeking back",
                    tp.partition, first, part.offset)
        self.consumer.seek(tp, part.offset)
        return False

    # --- processing ---------------------------------------------------------------------------

    async def process(self, partition: int, part: Partition, records) -> None:
        """Count a partition's records; on window close: checkpoint, then publish the findings."""
        by_model: dict[str, list[dict]] = {}
        dead: list[tuple[Any, str, str, bytes]] = []  # (record, reason, error, raw)
        for r in records:
            try:
                events = kafka.decode_record(r.value)
            except Exception as exc:  # noqa: BLE001
                dead.append((r, "not_json", f"not JSON: {exc}", r.value))
                continue
            model_id = r.key.decode(errors="replace") if r.key else None
            model = await self.registry.get(model_id) if model_id else None
            if model is None:
                dead.append((r, "unknown_model", f"record key {model_id!r}: no model registered with this id "
                                                 "(records must be keyed by model_id)", r.value))
                continue
            good = by_model.setdefault(model_id, [])
            for i, e in enumerate(events):
                err = check_event(e)
                if err is None and e.get("model_id") != model_id:
                    err = f"model_id={e.get('model_id')!r}: must equal the record key {model_id!r}"
                if err is None:
                    good.append(e)
                else:
                    dead.append((r, "invalid", f"event {i}: {err}", kafka.dumps(e)))
        closed: list[ClosedWindow] = []
        for model_id, events in by_model.items():
            model = await self.registry.get(model_id)
            batch, _ = columnar(events, part.windows.effective(model_id, model.cfg))
            added = part.windows.add(model_id, model.cfg, batch, task=model.spec.task)
            self.events += len(batch)
            if added.late:
                m.LATE_EVENTS.labels(model_id=model_id).inc(added.late)
            closed.extend(added.closed)
        part.offset = records[-1].offset + 1
        part.dirty = True
        if dead:
            await self._deadletter(partition, dead)
        if closed:
            found = []
            for w in closed:
                found.extend(await self._evaluate(w))
            part.pending.extend(found)
            await self._save([partition])  # state, offset and outbox together, before publishing
            await self._publish(partition)

    async def _evaluate(self, w: ClosedWindow) -> list[dict]:
        model = await self.registry.get(w.model_id)
        try:
            found, rows = window_findings(w, w.base or model.base, model.spec,
                                          "first_window" if w.base is not None else "registered")
        except ValueError as exc:  # the reference changed while the window was open
            log.warning("window %s@%s not evaluated: %s", w.model_id, w.start, exc)
            return []
        for metric, labels, value in gauges(w.model_id, rows):
            GAUGES[metric].labels(**labels).set(value)
        return [f.model_dump(mode="json") for f in found]

    async def _publish(self, partition: int) -> None:
        part = self.parts.get(partition)
        if part is None or not part.pending:
            return
        t0 = time.monotonic()
        futures = [await self.producer.send(kafka.TOPICS["findings"], kafka.dumps(f), key=f["model_id"].encode())
                   for f in part.pending]
        await asyncio.gather(*futures)
        m.DETECTION_LATENCY.observe(time.monotonic() - t0)
        part.pending = []
        part.dirty = True

    async def _deadletter(self, partition: int, dead) -> None:
        futures = []
        for r, reason, error, raw in dead:
            m.DEADLETTERS.labels(service="drift", reason=reason).inc()
            value = {"source_topic": r.topic, "partition": partition, "offset": r.offset, "error": error, "raw": _raw(raw)}
            futures.append(await self.producer.send(kafka.TOPICS["deadletter"], kafka.dumps(value), key=r.key))
        await asyncio.gather(*futures)

    # --- checkpoints --------------------------------------------------------------------------

    async def _save(self, partitions: list[int]) -> None:
        cps = {p: Checkpoint(self.parts[p].offset, self.parts[p].windows.to_dict(), self.parts[p].pending)
               for p in partitions if p in self.parts}
        stale = await self.store.save(self.group, TOPIC, cps, self.generation)
        if stale:  # a newer owner claimed them: this worker was fenced off; nothing was written
            log.warning("partitions %s are owned by a newer generation; dropping their state", stale)
            for p in stale:
                self.parts.pop(p, None)
            return await self._save([p for p in cps if p not in stale])
        for p in cps:
            if p in self.parts:
                self.parts[p].dirty = False
                self.saved[p] = cps[p].offset

    async def _commit(self) -> None:
        """Mirror the checkpointed offsets into the group's Kafka offsets, for lag monitoring only
        (restores read Redis). Best effort, outside the lock and bounded: a commit refused or
        delayed by a rebalance is skipped."""
        from aiokafka import TopicPartition
        offsets = {TopicPartition(TOPIC, p): o for p, o in self.saved.items() if o > 0 and p in self.parts}
        if not offsets:
            return
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), 2.0)
        except Exception as exc:  # noqa: BLE001
            log.debug("offset commit skipped: %s", exc)

    async def revoke(self, partitions: list[int]) -> None:
        async with self._lock:
            await self._save([p for p in partitions if p in self.parts])
            for p in partitions:
                self.parts.pop(p, None)

    async def assign(self, tps) -> None:
        async with self._lock:
            await self._assign(tps)

    async def _assign(self, tps) -> None:
        from aiokafka import TopicPartition

        self.generation = max(int(getattr(self.consumer._coordinator, "generation", 0) or 0), 0)
        await self.store.claim(self.group, TOPIC, [tp.partition for tp in tps], self.generation)
        loaded = await self.store.load(self.group, TOPIC, [tp.partition for tp in tps])
        for tp in tps:
            cp = loaded.get(tp.partition)
            if cp is None:
                self.parts[tp.partition] = Partition()
                await self.consumer.seek_to_beginning(TopicPartition(tp.topic, tp.partition))
                continue
            self.parts[tp.partition] = Partition(Windows.from_dict(cp.state or {}), cp.offset, cp.pending)
            self.consumer.seek(TopicPartition(tp.topic, tp.partition), cp.offset)
            log.info("partition %d restored from its checkpoint at offset %d (%d open windows, %d pending findings)",
                     tp.partition, cp.offset, sum(len(mw.open) for mw in self.parts[tp.partition].windows.models.values()),
                     len(cp.pending))
            if cp.pending:
                await self._publish(tp.partition)
        log.info("drift worker holds partitions %s", sorted(self.parts))


class _Listener(ConsumerRebalanceListener):
    """aiokafka ConsumerRebalanceListener: checkpoint on revoke, restore and seek on assign."""

    def __init__(self, worker: DriftWorker):
        self.worker = worker

    async def on_partitions_revoked(self, revoked) -> None:
        await self.worker.revoke([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned) -> None:
        await self.worker.assign(list(assigned))


# --- HTTP: /healthz, /readyz, /metrics ---------------------------------------------------------

async def _http(worker: DriftWorker, host: str, port: int):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            path = line.split(b" ")[1].decode() if line.count(b" ") >= 2 else "/"
            status, ctype, body = 200, "application/json", b'{"status":"ok"}'
            if path.startswith("/metrics"):
                body, ctype = m.exposition()
            elif path.startswith("/readyz"):
                if not worker.ready:
                    status, body = 503, b'{"status":"starting"}'
            elif not path.startswith("/healthz"):
                status, body = 404, b'{"detail":"not found"}'
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
                         f"connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except Exception:  # noqa: BLE001 - a bad client never hurts the worker
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


async def main(settings: Settings, port: int | None = None) -> None:
    worker = DriftWorker(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    server = await _http(worker, settings.host, settings.drift_port if port is None else port)
    await worker.start()
    try:
        await worker.run()
    finally:
        await worker.stop()
        server.close()


def serve(settings: Settings) -> None:
    if not settings.kafka_bootstrap or not settings.redis_url:
        raise SystemExit("vigil serve drift: VIGIL_KAFKA_BOOTSTRAP and VIGIL_REDIS_URL must be set")
    asyncio.run(main(settings))
