"""Emitters that model servers embed: fire-and-forget events to Vigil, never in the way.

Use `KafkaEmitter` when the model server can reach the Kafka cluster (it writes exactly what
ingest writes: JSON arrays of up to `batch_events` events of one model per record, key =
model_id), and `HttpEmitter` when it can only reach the ingest API. Both share one
contract: `prediction()`, `label()`, `review()` and `emit()` return at once and never
raise; a bounded buffer absorbs broker or API outages; when it is full the event is
dropped and counted. Validation (the pydantic models of `shared.events`), serialisation
and delivery run on a background daemon thread; `flush()` waits for it, and pending events
are flushed at interpreter exit.

Do not use an emitter where the caller must know an event was stored (a backfill, a
test); post to the ingest API and read its 202 instead (`vigil replay` does).

>>> em = HttpEmitter("http://127.0.0.1:9", max_buffer=2, linger_seconds=60)
>>> _ = [em.prediction(model_id="m", features={}, prediction=1) for _ in range(3)]
>>> em.stats()["dropped"], em.stats()["buffered"]
(1, 2)
>>> em.close(timeout=0.1); em.stats()["failed"]
2
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from shared.events import EVENT_KINDS, EVENT_LISTS, IDEMPOTENCY_FIELD
from shared.kafka import MAX_REQUEST_BYTES, TOPICS, dumps, pack_records

log = logging.getLogger(__name__)

KINDS = tuple(EVENT_KINDS)  # "predictions", "labels", "reviews"
BACKOFF_FIRST = 0.1  # seconds before the first retry; doubles up to BACKOFF_MAX
BACKOFF_MAX = 5.0
RETRY_AFTER_MAX = 60.0  # a server's Retry-After is honoured up to this
TAKE_BATCHES = 10  # the worker takes up to this many batches per round (pipelining)
LOG_INVALID_FIRST = 10  # log every invalid event up to here, then one in LOG_INVALID_EVERY
LOG_INVALID_EVERY = 1_000
RETRYABLE_STATUS = frozenset({408, 429, 502, 503, 504})


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry `attempt` (0-based): the server's Retry-After when given,
    else exponential with full jitter.

    >>> backoff(0, retry_after=2.5)
    2.5
    >>> 0 <= backoff(10) <= BACKOFF_MAX
    True
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), RETRY_AFTER_MAX)
    return random.uniform(0, min(BACKOFF_FIRST * 2 ** attempt, BACKOFF_MAX))


@dataclass
class Outcome:
    """What one delivery attempt of a batch did. Indices refer to the batch sent."""

    sent: int = 0  # acknowledged (for ingest: accepted + duplicates)
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index, "field: reason")
    retry: list[int] = field(default_factory=list)  # send these again
    retry_after: float | None = None  # 0: at once (what is left after a 422)
    failed: list[int] = field(default_factory=list)  # given up: not retryable
    error: str | None = None
    status: int | None = None  # the HTTP status, when there was one

    def __iadd__(self, other: Outcome) -> Outcome:
        # Wait as the slowest part asks: a Retry-After beats backoff (None) beats at once (0.0).
        waits = [w for retry, w in ((self.retry, self.retry_after), (other.retry, other.retry_after)) if retry]
        if waits:
            numbers = [w for w in waits if w]
            self.retry_after = max(numbers) if numbers else None if None in waits else 0.0
        self.sent += other.sent
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.retry += other.retry
        self.failed += other.failed
        self.error = self.error or other.error
        self.status = self.status or other.status
        return self

    def shifted(self, offset: int) -> Outcome:
        """The same outcome with indices moved by `offset` (a part of a larger batch)."""
        return Outcome(self.sent, self.duplicates, [(i + offset, r) for i, r in self.rejected],
                       [i + offset for i in self.retry], self.retry_after,
                       [i + offset for i in self.failed], self.error, self.status)


def describe(exc: BaseException) -> str:
    """'Type: message', without repeating a type name the message already starts with."""
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None


def _rejections(body: Any, n: int) -> list[tuple[int, str]]:
    """The bad records a 422 lists: Vigil's {"detail": {"errors": [{index, field, reason}]}};
    anything else rejects the whole batch with the body's message."""
    detail = body.get("detail") if isinstance(body, dict) else None
    errors = detail.get("errors") if isinstance(detail, dict) else None
    out: dict[int, list[str]] = defaultdict(list)
    if isinstance(errors, list):
        for err in errors:
            if isinstance(err, dict) and isinstance(err.get("index"), int) and 0 <= err["index"] < n:
                out[err["index"]].append(f"{err.get('field', '?')}: {err.get('reason', '?')}")
    if out:
        return [(i, "; ".join(reasons)) for i, reasons in sorted(out.items())]
    return [(i, f"rejected: {str(detail if detail is not None else body)[:300]}") for i in range(n)]


def encoder(kind: str) -> Callable[[list], bytes]:
    """Validated events of `kind` -> the JSON array ingest writes (None fields left out)."""
    adapter = EVENT_LISTS[kind]
    return lambda events: adapter.dump_json(events, exclude_none=True)


def post_batch(client, url: str, kind: str, events: list[Any],
               headers: Mapping[str, str] | None = None,
               encode: Callable[[list], bytes] = dumps) -> Outcome:
    """POST `events` as one JSON array to the ingest API `{url}/v1/{kind}`, once, and classify
    the answer: 202 sent; 422 the listed records rejected and the rest to be sent again at
    once (ingest publishes nothing of a request with a bad record); 413 halved and posted
    again; 503/429/502/504 and connection errors retryable (Retry-After honoured); any other
    status failed. `client` is an `httpx.Client`; `encode` turns `events` into JSON bytes.
    """
    import httpx

    everything = list(range(len(events)))
    try:
        resp = client.post(f"{url.rstrip('/')}/v1/{kind}", content=encode(list(events)),
                           headers={"content-type": "application/json", **(headers or {})})
    except httpx.TransportError as exc:
        return Outcome(retry=everything, error=describe(exc))
    if resp.status_code in (200, 201, 202):
        try:
            body = resp.json()
            dup = int(body.get("duplicates", 0))
        except (ValueError, AttributeError, TypeError):
            dup = 0
        return Outcome(sent=len(events), duplicates=dup, status=resp.status_code)
    if resp.status_code == 422:
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        rejected = _rejections(body, len(events))
        bad = {i for i, _ in rejected}
        return Outcome(rejected=rejected, retry=[i for i in everything if i not in bad], retry_after=0.0,
                       status=422)
    if resp.status_code == 413 and len(events) > 1:
        mid = len(events) // 2
        out = post_batch(client, url, kind, events[:mid], headers, encode)
        out += post_batch(client, url, kind, events[mid:], headers, encode).shifted(mid)
        return out
    error = f"HTTP {resp.status_code}: {resp.text[:300]}"
    if resp.status_code in RETRYABLE_STATUS:
        return Outcome(retry=everything, retry_after=_retry_after(resp.headers.get("retry-after")),
                       error=error, status=resp.status_code)
    return Outcome(failed=everything, error=error, status=resp.status_code)


class Emitter:
    """The buffering, validation and delivery thread both emitters share. Subclasses say how
    to deliver one validated batch of one kind (`_deliver`) and how to release their
    connection (`_disconnect`)."""

    def __init__(self, *, max_buffer: int = 100_000, batch_events: int = 1_000,
                 linger_seconds: float = 0.2, exit_timeout: float = 10.0,
                 registry=None, client_id: str = "vigil-emitter"):
        if max_buffer < 1 or batch_events < 1:
            raise ValueError(f"max_buffer={max_buffer}, batch_events={batch_events}: must be >= 1")
        self.max_buffer = max_buffer
        self.batch_events = batch_events
        self.linger_seconds = linger_seconds
        self.exit_timeout = exit_timeout
        self.client_id = client_id
        self._start()
        if registry is not None:
            registry.register(_Collector(self))
        atexit.register(self._at_exit)
        _forget_after_fork = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (m := _forget_after_fork()) and m())

    def _start(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._pending = 0  # accepted and not yet sent, invalid or failed (queued + in flight)
        self._counts = dict(sent=0, dropped=0, invalid=0, failed=0)
        self._flushing = 0
        self._closing = False
        self._abort = threading.Event()  # close() ran out of time: give up what is left
        self._thread = threading.Thread(target=self._run, name=f"{self.client_id}-worker", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        """In a forked child (gunicorn --preload): the worker thread and connections did not
        come along. Start afresh with an empty buffer; the parent delivers its own events."""
        if self._closing:
            return
        self._reset_connection()
        self._start()

    # --- the caller's side: never blocks, never raises ---------------------------------------

    def prediction(self, **fields: Any) -> str | None:
        """Queue a PredictionEvent; returns its event_id (a uuid4 when not given)."""
        return self.emit("predictions", fields)

    def label(self, **fields: Any) -> str | None:
        """Queue a LabelEvent (`event_id` is the prediction's: required)."""
        return self.emit("labels", fields)

    def review(self, **fields: Any) -> str | None:
        """Queue a ReviewEvent; returns its review_id (a uuid4 when not given)."""
        return self.emit("reviews", fields)

    def emit(self, kind: str, event: Mapping[str, Any]) -> str | None:
        """Queue one event of `kind` ("predictions", "labels", "reviews") and return its id.

        A missing `timestamp` is now (UTC); a missing event_id (review_id) a uuid4. When the
        buffer holds `max_buffer` undelivered events, the event is dropped and counted.
        The event's maps (features, ...) are not copied: do not change them afterwards.
        """
        try:
            ev = dict(event)
            id_field = IDEMPOTENCY_FIELD.get(kind, "event_id")
            if ev.get(id_field) is None and kind != "labels":
                ev[id_field] = str(uuid.uuid4())
            if ev.get("timestamp") is None:
                ev["timestamp"] = datetime.now(timezone.utc)
            with self._cond:
                if self._closing or self._pending >= self.max_buffer:
                    self._counts["dropped"] += 1
                else:
                    self._pending += 1
                    self._queue.append((kind, ev))
                    if len(self._queue) == 1 or len(self._queue) == self.batch_events:
                        self._cond.notify_all()
            return ev.get(id_field)
        except Exception:  # noqa: BLE001 - the caller's request must not fail because of us
            with self._cond:
                self._counts["invalid"] += 1
            log.warning("emitter: event of kind %r could not be queued", kind, exc_info=True)
            return None

    # --- control ---------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is sent, invalid or failed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._pending and self._thread.is_alive():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                return self._pending == 0
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 10.0) -> None:
        """Flush for up to `timeout` seconds, then stop; what is still undelivered counts as
        failed. Events emitted afterwards are dropped."""
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._abort.set()  # what flush could not deliver in time is given up now
        self._thread.join(max(deadline - time.monotonic(), 0) + 1.0)
        atexit.unregister(self._at_exit)

    def stats(self) -> dict[str, int]:
        """Counters: sent, dropped (buffer full), invalid, failed (given up), buffered."""
        with self._cond:
            return {**self._counts, "buffered": self._pending}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _at_exit(self) -> None:
        self.close(self.exit_timeout)

    # --- the worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._connect_quietly()
            while True:
                batch = self._take()
                if batch is None:
                    break
                self._process(batch)
        finally:
            self._give_up_queued()
            try:
                self._disconnect()
            except Exception:  # noqa: BLE001
                log.debug("emitter: disconnect failed", exc_info=True)
            with self._cond:
                self._cond.notify_all()

    def _take(self) -> list[tuple[str, dict[str, Any]]] | None:
        """Wait for events, linger up to `linger_seconds` for a full batch, and take up to
        TAKE_BATCHES batches. None when closing with nothing left."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self.linger_seconds
            while len(self._queue) < self.batch_events and not (self._flushing or self._closing):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            n = min(len(self._queue), self.batch_events * TAKE_BATCHES)
            return [self._queue.popleft() for _ in range(n)]

    def _process(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        by_kind: dict[str, list[Any]] = defaultdict(list)
        for kind, ev in batch:
            valid = self._validate(kind, ev)
            if valid is not None:
                by_kind[kind].append(valid)
        for kind, events in by_kind.items():
            self._deliver_with_retry(kind, events)

    def _validate(self, kind: str, ev: dict[str, Any]) -> Any | None:
        model = EVENT_KINDS.get(kind)
        try:
            if model is None:
                raise ValueError(f"kind={kind!r}: must be one of {', '.join(KINDS)}")
            return model.model_validate(ev)
        except Exception as exc:  # noqa: BLE001 - a bad event never stops the worker
            reason = _first_error(exc)
        self._resolve(invalid=1)
        n = self._counts["invalid"]
        if n <= LOG_INVALID_FIRST or n % LOG_INVALID_EVERY == 0:
            log.warning("emitter: invalid %s event dropped (%d so far): %s", kind, n, reason)
        return None

    def _deliver_with_retry(self, kind: str, events: list[Any]) -> None:
        attempt = 0
        while events:
            if self._abort.is_set():
                self._resolve(failed=len(events))
                return
            try:
                out = self._deliver(kind, events)
            except Exception as exc:  # noqa: BLE001 - not connected, broker down: retry
                out = Outcome(retry=list(range(len(events))), error=describe(exc))
            if out.rejected:
                self._resolve(invalid=len(out.rejected))
                for i, reason in out.rejected[:3]:
                    log.warning("emitter: %s event rejected by the receiver: %s", kind, reason)
            if out.failed:
                log.error("emitter: %d %s events failed (not retryable): %s", len(out.failed), kind, out.error)
            self._resolve(sent=out.sent, failed=len(out.failed))
            events = [events[i] for i in out.retry]
            if events and out.retry_after != 0.0:
                delay = backoff(attempt, out.retry_after)
                if attempt == 0 or attempt % 10 == 0:
                    log.warning("emitter: delivering %d %s events failed (%s); retrying in %.1fs "
                                "(attempt %d)", len(events), kind, out.error, delay, attempt + 1)
                attempt += 1
                self._abort.wait(delay)

    def _resolve(self, *, sent: int = 0, invalid: int = 0, failed: int = 0) -> None:
        with self._cond:
            self._counts["sent"] += sent
            self._counts["invalid"] += invalid
            self._counts["failed"] += failed
            self._pending -= sent + invalid + failed
            if self._pending == 0 or self._closing:
                self._cond.notify_all()

    def _give_up_queued(self) -> None:
        with self._cond:
            n = len(self._queue)
            self._queue.clear()
        if n:
            self._resolve(failed=n)

    def _connect_quietly(self) -> None:
        try:
            self._connect()
        except Exception as exc:  # noqa: BLE001 - retried when the first batch is delivered
            log.warning("emitter: not connected yet (%s); events are buffered", describe(exc))

    # --- what subclasses provide --------------------------------------------------------------

    def _connect(self) -> None:
        """Open the connection now (called at start, so the producer exists before exit)."""

    def _deliver(self, kind: str, events: list[Any]) -> Outcome:
        """Deliver validated events (pydantic models of `kind`) once; say what happened."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        pass

    def _reset_connection(self) -> None:
        """Forget (do not close) a connection inherited from the parent process."""


def _model_of(event: Any) -> str:
    return event.model_id


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors()
        e = errs[0]
        where = ".".join(str(p) for p in e["loc"]) or "event"
        more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
        return f"{where}: {e['msg']}{more}"
    return str(exc)


class KafkaEmitter(Emitter):
    """Writes events straight to Vigil's input topics with kafka-python, acks=all, idempotent
    where the broker grants it (`idempotence`: "auto", "on" or "off"), in ingest's record
    format. Use it in a model server that can reach the cluster.

    `bootstrap` defaults to VIGIL_KAFKA_BOOTSTRAP.
    """

    def __init__(self, bootstrap: str | None = None, *, max_buffer: int = 100_000,
                 batch_events: int = 1_000, linger_seconds: float = 0.2,
                 idempotence: str = "auto", client_id: str = "vigil-emitter",
                 max_record_bytes: int = 900_000, exit_timeout: float = 10.0,
                 connect_timeout: float = 5.0, registry=None,
                 producer_config: Mapping[str, Any] | None = None):
        if bootstrap is None:
            from shared.settings import get_settings

            bootstrap = get_settings().kafka_bootstrap
        if not bootstrap:
            raise ValueError("KafkaEmitter: bootstrap is unset (pass it or set VIGIL_KAFKA_BOOTSTRAP)")
        if idempotence not in ("auto", "on", "off"):
            raise ValueError(f"idempotence={idempotence!r}: must be one of auto, on, off")
        self.bootstrap = bootstrap
        self.idempotence = idempotence
        self.idempotent: bool | None = None  # known once connected
        self.max_record_bytes = max_record_bytes
        self.connect_timeout = connect_timeout
        self._extra_config = dict(producer_config or {})
        self._producer = None
        super().__init__(max_buffer=max_buffer, batch_events=batch_events,
                         linger_seconds=linger_seconds, exit_timeout=exit_timeout,
                         registry=registry, client_id=client_id)

    def _producer_for(self, idempotent: bool):
        from kafka import KafkaProducer

        config = dict(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=5,
            batch_size=MAX_REQUEST_BYTES,  # one of our records per produce batch, at least
            max_request_size=MAX_REQUEST_BYTES,
            request_timeout_ms=10_000,
            delivery_timeout_ms=30_000,
            max_block_ms=int(self.connect_timeout * 1000),
            bootstrap_timeout_ms=int(self.connect_timeout * 1000),
            retry_backoff_ms=100,
        )
        config.update(self._extra_config)
        return KafkaProducer(**config)

    def _connect(self) -> None:
        if self._producer is not None:
            return
        producer = None
        idempotent = self.idempotence != "off"
        if idempotent:
            producer = self._producer_for(True)
            granted = self._wait_for_producer_id(producer)
            if not granted:
                producer.close(timeout=1)
                if granted is None:
                    raise ConnectionError("no producer id from the broker yet")
                if self.idempotence == "on":
                    raise ConnectionError("the broker refused an idempotent producer (idempotence='on')")
                log.info("emitter: broker does not grant idempotent producers; using acks=all only")
                idempotent, producer = False, None
        self._producer = producer or self._producer_for(False)
        self.idempotent = idempotent
        # kafka-python closes its producer at exit with 1 s to spare; exit handlers run last
        # registered first, so ours moves behind it to flush the buffer before that.
        atexit.unregister(self._at_exit)
        atexit.register(self._at_exit)

    def _wait_for_producer_id(self, producer) -> bool | None:
        """True: granted; False: refused (InitProducerId failed); None: no answer yet."""
        tm = producer._transaction_manager  # kafka-python 3.0; no public accessor
        deadline = time.monotonic() + self.connect_timeout
        while time.monotonic() < deadline and not self._abort.is_set():
            if tm.has_producer_id():
                return True
            if tm.has_fatal_error():
                return False
            time.sleep(0.02)
        return None

    def _deliver(self, kind: str, events: list[Any]) -> Outcome:
        from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

        self._connect()
        producer = self._producer
        topic, encode = TOPICS[kind], encoder(kind)
        by_model: dict[str, list[int]] = defaultdict(list)
        for i, ev in enumerate(events):
            by_model[ev.model_id].append(i)
        sends: list[tuple[list[int], list]] = []  # (event indices, their records' futures)
        out = Outcome()
        for indices in by_model.values():
            for j in range(0, len(indices), self.batch_events):
                chunk = indices[j:j + self.batch_events]
                try:
                    records = pack_records([events[i] for i in chunk], self.batch_events, self.max_record_bytes,
                                           encode=encode, model_of=_model_of)
                    futures = [producer.send(topic, key=k, value=v) for k, v in records]
                except Exception as exc:  # noqa: BLE001 - metadata unavailable, buffer full
                    out.retry += chunk
                    out.error = describe(exc)
                    continue
                sends.append((chunk, futures))
        while not all(f.is_done for _, futures in sends for f in futures):
            if self._abort.is_set():
                break
            try:
                producer.flush(timeout=0.5)
            except KafkaTimeoutError:
                pass
        for chunk, futures in sends:
            errors = [f.exception for f in futures if not f.succeeded()]
            if not errors:
                out.sent += len(chunk)
                continue
            exc = errors[0] or TimeoutError("not acknowledged before close")
            out.error = describe(exc)
            if isinstance(exc, MessageSizeTooLargeError):
                out.failed += chunk
            else:
                out.retry += chunk
        if out.retry and producer._transaction_manager is not None \
                and producer._transaction_manager.has_fatal_error():
            self._disconnect()  # a fresh producer (and idempotence probe) on the next attempt
        return out

    def _disconnect(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=0 if self._abort.is_set() else 5)

    def _reset_connection(self) -> None:
        cleanup = getattr(self._producer, "_cleanup", None)  # kafka-python's exit hook
        if cleanup is not None:  # the producer's threads stayed in the parent
            atexit.unregister(cleanup)
        self._producer = None
        self.idempotent = None


class HttpEmitter(Emitter):
    """Posts batches to the ingest API (`POST {url}/v1/{kind}`, bearer `api_key`). Use it in
    a model server that cannot reach Kafka. 503, 429 and connection errors are retried
    (Retry-After honoured); records a 422 lists count as invalid and are not retried.

    `url` defaults to the ingest URL from settings, `api_key` to VIGIL_API_KEYS's first key.
    """

    def __init__(self, url: str | None = None, *, api_key: str | None = None,
                 max_buffer: int = 100_000, batch_events: int = 1_000,
                 linger_seconds: float = 0.2, timeout: float = 30.0,
                 client_id: str = "vigil-emitter", exit_timeout: float = 10.0, registry=None):
        import httpx

        if url is None or api_key is None:
            from shared.settings import get_settings

            settings = get_settings()
            url = url or settings.service_urls()["ingest"]
            api_key = api_key or next(iter(settings.api_key_list()), None)
        self.url = url.rstrip("/")
        headers = {"user-agent": client_id}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(headers=headers, timeout=timeout)
        super().__init__(max_buffer=max_buffer, batch_events=batch_events,
                         linger_seconds=linger_seconds, exit_timeout=exit_timeout,
                         registry=registry, client_id=client_id)

    def _deliver(self, kind: str, events: list[Any]) -> Outcome:
        """One request per `batch_events` events; once the API is busy, the rest wait too."""
        out, encode = Outcome(), encoder(kind)
        for start in range(0, len(events), self.batch_events):
            part = events[start:start + self.batch_events]
            if out.retry and out.retry_after != 0.0:
                out.retry += range(start, start + len(part))
                continue
            out += post_batch(self._client, self.url, kind, part, encode=encode).shifted(start)
        return out

    def _disconnect(self) -> None:
        self._client.close()

    def _reset_connection(self) -> None:
        import httpx

        self._client = httpx.Client(headers=self._client.headers, timeout=self._client.timeout)


class _Collector:
    """Prometheus view of one emitter's counters (`registry=` of either emitter)."""

    def __init__(self, emitter: Emitter):
        self._emitter = emitter

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self._emitter.stats()
        labels = ["client_id"]
        for name, doc in (("sent", "events acknowledged by the broker or ingest API"),
                          ("dropped", "events dropped because the emitter's buffer was full"),
                          ("invalid", "events that failed validation"),
                          ("failed", "events given up after a non-retryable error or at close")):
            c = CounterMetricFamily(f"vigil_emitter_{name}", doc, labels=labels)
            c.add_metric([self._emitter.client_id], stats[name])
            yield c
        g = GaugeMetricFamily("vigil_emitter_buffered", "events waiting to be delivered", labels=labels)
        g.add_metric([self._emitter.client_id], stats["buffered"])
        yield g


__all__ = ["Emitter", "KafkaEmitter", "HttpEmitter", "Outcome", "post_batch", "encoder", "backoff"]
