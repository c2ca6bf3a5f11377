"""A checkpointed Kafka stream worker: the exactness machinery the drift and oversight services share.

A service subclasses `StreamWorker`, names its input `topics` and implements four hooks:
`new_state`, `load_state`, `dump_state` (its per-partition state, JSON-able) and `handle`
(apply one topic-partition's records to that state, return the findings that became due).
Everything else lives here, once:

- Exactness comes from the Redis checkpoint, not from the framework. Per input partition
  *number* the worker keeps its state and, per topic, the next offset to read, and saves them
  in one atomic write (`shared.checkpoint`) every `checkpoint_seconds` (at least
  `SAVE_SPACING` times the last save's duration) and when the partition is revoked. On assignment it loads each partition's
  checkpoint and seeks there (none: the beginning), so a restart or a takeover replays
  exactly what the state does not yet reflect.
- Findings are published to `vigil.findings` as they become due, at least once and
  recognisable by `finding_id`: they are a function of the log, so a crash before the next
  checkpoint replays it and they come again, identical. A finding the broker has not yet
  acknowledged stays in the checkpoint's outbox and is re-published after a restore. (Saving
  before every publish cost a whole state write per window close: with the drift worker's
  label join holding a million predictions, most of its time.)
- Fencing: a worker that lost its partitions (paused past its session timeout) cannot
  overwrite its successor's checkpoints (the consumer-group generation guards each save).
- Bad input goes to `vigil.deadletter` (`dead`), counted in `vigil_deadletter_total`.

Input topics are keyed by model_id and co-partitioned (the same partition count): with the
range assignor a worker holds the same partition numbers of every topic, so one model's
reviews, predictions and labels meet in one state.

The consumer is aiokafka's, with a ConsumerRebalanceListener: Faust gives no hook to seek to
an externally stored offset before the first fetch of a newly assigned partition, and its
table changelogs are what double-counts on Tansu.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from shared import kafka
from shared import metrics as m
from shared.checkpoint import Checkpoint, CheckpointStore
from shared.settings import Settings

MAX_RAW = 256 * 1024  # bytes of a bad record kept in its dead letter (the topic's limit is 1 MiB)
# A periodic checkpoint waits at least this many times the last save's duration, so a large
# state (the drift worker's label join holds 1M pending predictions in ~55 MB) spends at most
# about a tenth of the time saving; exactness does not depend on how often it saves.
SAVE_SPACING = 10


@dataclass
class Part:
    """One partition number across the worker's topics: its state, offsets and findings outbox."""

    state: Any
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset to read
    pending: list[dict] = field(default_factory=list)  # findings saved, not yet published
    dirty: bool = False
    sought: dict[str, int] = field(default_factory=dict)  # topic -> offset last sought back to


def raw_text(value: bytes | None) -> str:
    """Bad bytes as text for a dead letter: UTF-8 when they are, else "base64:..."; cut at MAX_RAW.

    >>> raw_text(b"{bad"), raw_text(b"\\xff")
    ('{bad', 'base64:/w==')
    """
    if value is None:
        return ""
    value = value[:MAX_RAW]
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


class StreamWorker:
    service = "stream"  # the `service` label of vigil_deadletter_total and the log name
    topics: tuple[str, ...] = ()

    def __init__(self, settings: Settings, group: str, checkpoint_seconds: float):
        self.settings, self.group, self.checkpoint_seconds = settings, group, checkpoint_seconds
        self.parts: dict[int, Part] = {}
        self.generation = 0  # the consumer group generation of the current assignment (fencing)
        self.saved: dict[int, dict[str, int]] = {}  # partition -> offsets of its last checkpoint
        self.ready = False
        self.save_seconds = 0.0  # how long the last checkpoint save held the worker up
        self.events = 0  # input events counted (handle() adds what it applies): vigil_stream_events_total
        self.log = logging.getLogger(f"vigil.{self.service}")
        self._dead: list[tuple[Any, str, str, bytes | None]] = []
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # processing, saving and rebalancing never interleave
        self._writing: asyncio.Future | None = None  # the checkpoint write in flight (`_save`)

    @property
    def checkpoint_topic(self) -> str:
        """The name checkpoints are stored under: the topics joined (one topic: its name)."""
        return "+".join(self.topics)

    # --- hooks --------------------------------------------------------------------------------

    def new_state(self) -> Any:
        raise NotImplementedError

    def load_state(self, data: Any) -> Any:
        raise NotImplementedError

    def dump_state(self, state: Any) -> Any:
        raise NotImplementedError

    async def handle(self, part: Part, topic: str, records: list) -> list[dict]:
        """Apply records (one topic-partition, log order) to `part.state`; return due findings."""
        raise NotImplementedError

    async def setup(self) -> None:
        """Open what `handle` needs; `self.redis` and `self.producer` exist by then."""

    async def teardown(self) -> None:
        pass

    def keyed(self, records):
        """Each record as (record, its key as text or None, its events); a record that is not
        JSON goes to the dead letters instead."""
        for r in records:
            try:
                events = kafka.decode_record(r.value)
            except Exception as exc:  # noqa: BLE001
                self.dead(r, "not_json", f"not JSON: {exc}")
                continue
            yield r, (r.key.decode(errors="replace") if r.key else None), events

    def dead(self, record, reason: str, error: str, raw: bytes | None = None) -> None:
        """Send (part of) a record to `vigil.deadletter` once the batch is handled."""
        self._dead.append((record, reason, error, record.value if raw is None else raw))

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor

        from shared.redis import connect
        self.redis = connect(self.settings.redis_url)
        self.store = CheckpointStore(self.redis)
        self.producer = await kafka.start_producer(self.settings.kafka_bootstrap, self.settings.kafka_idempotence)
        await self.setup()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=10_000, heartbeat_interval_ms=2_000,
            max_poll_interval_ms=300_000, max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024,
            partition_assignment_strategy=(RangePartitionAssignor,))
        self.consumer.subscribe(list(self.topics), listener=_Listener(self))
        await self.consumer.start()

    async def stop(self) -> None:
        try:
            async with self._lock:
                await self._save(list(self.parts))
        except Exception:  # noqa: BLE001 - stopping anyway; the last checkpoint stands
            self.log.exception("final checkpoint failed")
        await self.consumer.stop()
        await self.teardown()
        await self.producer.stop()
        await self.redis.aclose()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        last_save = time.monotonic()
        while not self._stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=500, max_records=2_000)
            self.ready = True
            if batches:
                await prefetch()
            for tp, records in batches.items():
                if tp.partition not in self.parts:  # revoked meanwhile
                    continue
                async with self._lock:
                    part = self.parts.get(tp.partition)
                    if part is None:
                        continue
                    start = part.offsets.get(tp.topic, 0)
                    records = [r for r in records if r.offset >= start]
                    if records and records[0].offset > start and not self._gap_ok(tp, part, records[0].offset):
                        continue
                    if records:
                        await self._process(tp, part, records)
            kafka.report_lag(self.consumer, self.service, self.topics,
                             {TopicPartition(t, p): at for p, part in self.parts.items() for t, at in part.offsets.items()})
            if time.monotonic() - last_save >= max(self.checkpoint_seconds, SAVE_SPACING * self.save_seconds):
                async with self._lock:
                    await self._save([p for p, s in self.parts.items() if s.dirty], background=True)
                await self._commit()
                last_save = time.monotonic()

    def _gap_ok(self, tp, part: Part, first: int) -> bool:
        """Records start after the offset the state reflects: fine when the log has no records
        in between (compaction, transaction markers), else seek back rather than skip any."""
        at = part.offsets.get(tp.topic)
        if at is None or part.sought.get(tp.topic) == at:
            return True  # a log that starts later (retention), or the gap is real: fetched again from it
        part.sought[tp.topic] = at
        self.log.warning("%s[%d]: fetched offset %d but the state reflects up to %d; seeking back",
                         tp.topic, tp.partition, first, at)
        self.consumer.seek(tp, at)
        return False

    async def _process(self, tp, part: Part, records) -> None:
        t0, before = time.monotonic(), self.events
        found = await self.handle(part, tp.topic, records)
        m.STREAM_EVENTS.labels(service=self.service, topic=tp.topic).inc(self.events - before)
        part.offsets[tp.topic] = records[-1].offset + 1
        part.dirty = True
        if self._dead:
            dead, self._dead = self._dead, []
            await self._deadletter(tp.partition, dead)
        if found:
            # Published now, without a save first: a crash before the next checkpoint replays the
            # log from the last one, and the findings (a function of the log) come again with the
            # same finding_id. Until the broker acknowledges them they stay in the outbox, which
            # every save carries, so a failed publish is retried after a restore.
            part.pending.extend(found)
            await self._publish(tp.partition)
            # this worker's share of detection latency: from the batch that closed a window to
            # its findings acknowledged by the broker (the alerts service measures on to the alert)
            m.DETECTION_LATENCY.observe(time.monotonic() - t0)

    async def _publish(self, partition: int) -> None:
        part = self.parts.get(partition)
        if part is None or not part.pending:
            return
        futures = [await self.producer.send(kafka.TOPICS["findings"], kafka.dumps(f), key=f["model_id"].encode())
                   for f in part.pending]
        await asyncio.gather(*futures)
        part.pending = []
        part.dirty = True

    async def _deadletter(self, partition: int, dead) -> None:
        futures = []
        for r, reason, error, raw in dead:
            m.DEADLETTERS.labels(service=self.service, reason=reason).inc()
            value = {"source_topic": r.topic, "partition": partition, "offset": r.offset, "error": error,
                     "raw": raw_text(raw)}
            futures.append(await self.producer.send(kafka.TOPICS["deadletter"], kafka.dumps(value), key=r.key))
        await asyncio.gather(*futures)

    # --- checkpoints --------------------------------------------------------------------------

    async def _save(self, partitions: list[int], background: bool = False) -> None:
        """Checkpoint `partitions`: their offsets, state and outbox serialised now (the caller
        holds the lock: between batches), then written to Redis in one atomic call. `background`
        (the periodic save): the write lands while the next batches are handled; each save
        first waits for the write before it, so they land in order, and a failed write is
        raised there. A crash before a write lands restores the one before: a longer replay."""
        t0 = time.monotonic()
        await self._landed()
        offsets = {p: dict(self.parts[p].offsets) for p in partitions if p in self.parts}
        if offsets:
            payload = {p: Checkpoint(offsets[p], self.dump_state(self.parts[p].state), self.parts[p].pending).to_bytes()
                       for p in offsets}
            for p in offsets:
                self.parts[p].dirty = False  # what changes from here on is the next save's
            self._writing = asyncio.ensure_future(self._write(offsets, payload, self.generation))
        retry = [] if background else await self._landed()
        self.save_seconds = time.monotonic() - t0  # the worker's time spent saving (a write in flight is not)
        if retry:
            await self._save(retry)

    async def _landed(self) -> list[int]:
        """Wait for the checkpoint write in flight, if any; the partitions it left to save again."""
        writing, self._writing = self._writing, None
        return [] if writing is None else await writing

    async def _write(self, offsets: dict[int, dict[str, int]], payload: dict[int, bytes], generation: int) -> list[int]:
        try:
            stale = await self.store.save(self.group, self.checkpoint_topic, payload, generation)
        except BaseException:
            for p in offsets:
                if p in self.parts:
                    self.parts[p].dirty = True
            raise
        if stale:  # a newer owner claimed them: this worker was fenced off; nothing was written
            self.log.warning("partitions %s are owned by a newer generation; dropping their state", stale)
            for p in stale:
                self.parts.pop(p, None)
            retry = [p for p in offsets if p in self.parts]
            for p in retry:
                self.parts[p].dirty = True
            return retry
        for p, o in offsets.items():
            if p in self.parts:
                self.saved[p] = o
        return []

    async def _commit(self) -> None:
        """Mirror the checkpointed offsets into the group's Kafka offsets, for lag monitoring only
        (restores read Redis). Best effort, outside the lock and bounded: a commit refused or
        delayed by a rebalance is skipped."""
        offsets = {TopicPartition(t, p): o for p, topics in self.saved.items() if p in self.parts
                   for t, o in topics.items() if o > 0}
        if not offsets:
            return
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), 2.0)
        except Exception as exc:  # noqa: BLE001
            self.log.debug("offset commit skipped: %s", exc)

    async def revoke(self, tps) -> None:
        partitions = sorted({tp.partition for tp in tps})
        async with self._lock:
            await self._save([p for p in partitions if p in self.parts])
            for p in partitions:
                self.parts.pop(p, None)

    async def assign(self, tps) -> None:
        async with self._lock:
            await self._assign(tps)

    async def _assign(self, tps) -> None:
        await self._landed()  # a write of the previous assignment lands first
        self.generation = max(int(getattr(self.consumer._coordinator, "generation", 0) or 0), 0)
        partitions = sorted({tp.partition for tp in tps})
        await self.store.claim(self.group, self.checkpoint_topic, partitions, self.generation)
        loaded = await self.store.load(self.group, self.checkpoint_topic, partitions)
        for p in partitions:
            cp = loaded.get(p)
            if cp is None:
                self.parts[p] = Part(self.new_state())
            else:
                self.parts[p] = Part(self.load_state(cp.state), dict(cp.offsets), list(cp.pending))
                self.log.info("partition %d restored from its checkpoint at offsets %s (%d pending findings)",
                              p, cp.offsets, len(cp.pending))
        # A topic the checkpoint has no offset for (none yet, or a topic added since) starts at
        # its log's beginning, stated as an offset: records fetched before this seek (the fetcher
        # runs while the checkpoint loads) then show as a gap and are sought back to, never
        # taken for a log that starts later.
        fresh = [tp for tp in tps if self.parts[tp.partition].offsets.get(tp.topic) is None]
        begins = {}
        if fresh:
            try:
                begins = await asyncio.wait_for(self.consumer.beginning_offsets(fresh), 10)
            except Exception as exc:  # noqa: BLE001 - fall back to seeking to the beginning
                self.log.warning("beginning offsets of %s not known (%s): seeking to the beginning", fresh, exc)
        for tp in tps:
            part = self.parts[tp.partition]
            if part.offsets.get(tp.topic) is None and tp in begins:
                part.offsets[tp.topic] = int(begins[tp])
            at = part.offsets.get(tp.topic)
            if at is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, at)
        for p in partitions:
            if self.parts[p].pending:
                await self._publish(p)
        self.log.info("%s worker holds partitions %s", self.service, sorted(self.parts))


class _Listener(ConsumerRebalanceListener):
    """aiokafka ConsumerRebalanceListener: checkpoint on revoke, restore and seek on assign."""

    def __init__(self, worker: StreamWorker):
        self.worker = worker

    async def on_partitions_revoked(self, revoked) -> None:
        await self.worker.revoke(list(revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        await self.worker.assign(list(assigned))


async def prefetch(turns: int = 3) -> None:
    """Let the consumer's next fetch go out before a batch's CPU-bound work: aiokafka asks for a
    partition's next records only once its buffer is drained, from a background task that needs
    the event loop to run (it wakes, then its fetch task sends). Without these turns the request
    left only after the batch was handled and the worker then idled for the broker's answer
    (`bench.drift`: the median wait for a fetch of 7 records of 1,000 events went 9.5 -> 5.8 ms)."""
    for _ in range(turns):
        await asyncio.sleep(0)


# --- HTTP: /healthz, /readyz, /metrics ---------------------------------------------------------

async def ops_server(ready: Callable[[], bool], host: str, port: int) -> asyncio.AbstractServer:
    """A minimal HTTP/1.1 server for a worker's health, readiness and Prometheus metrics.

    Hand-written on asyncio so the worker loop owns its process (no web framework in the hot
    path); every response closes the connection.
    """
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
                if not ready():
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


GC_THRESHOLD = (50_000, 20, 20)


def tune_gc() -> None:
    """Fewer collections for a worker whose every fetch makes ~10^5 short-lived dicts (decoded
    events): the youngest generation collected every 50,000 allocations instead of 700, and what
    the start loaded (modules, the models' references) frozen out of every later collection.
    Reference counting frees the events either way; the collector only looks for cycles. On
    `bench.drift`'s path without a broker (6 windows of 30,000 events): 2,695 collections at the
    default threshold against 384, and 86,000-93,000 events/s against 116,000-130,000."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


async def run_worker(worker: StreamWorker, port: int) -> None:
    """Serve the worker's ops endpoints on `port` and run it until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    server = await ops_server(lambda: worker.ready, worker.settings.host, port)
    await worker.start()
    tune_gc()
    try:
        await worker.run()
    finally:
        await worker.stop()
        server.close()


def serve(worker_cls: Callable[[Settings], StreamWorker], settings: Settings, port: int, name: str) -> None:
    """`vigil serve NAME` for a stream worker: needs a broker and Redis."""
    if not settings.kafka_bootstrap or not settings.redis_url:
        raise SystemExit(f"vigil serve {name}: VIGIL_KAFKA_BOOTSTRAP and VIGIL_REDIS_URL must be set")
    asyncio.run(run_worker(worker_cls(settings), port))
