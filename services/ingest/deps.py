"""What the ingest routes depend on: settings, the broker and Redis connections, the API key check."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from shared import kafka
from shared.redis import Idempotency, connect
from shared.settings import Settings

log = logging.getLogger("vigil.ingest")
RETRY_AFTER_SECONDS = 5


class Unavailable(Exception):
    """The broker or Redis cannot be reached in time: HTTP 503 with Retry-After."""


class Connections:
    """The producer and Redis client of one ingest process. The producer (re)connects in the
    background, so the API starts and answers 503 while the broker is away."""

    def __init__(self, settings: Settings, bootstrap: str, redis_url: str):
        self.settings = settings
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.redis = connect(redis_url, settings.redis_timeout_seconds)
        self.idempotency = Idempotency(self.redis, settings.dedup_ttl_seconds)
        self.producer = None
        self._connecting: asyncio.Task | None = None

    async def start(self) -> None:
        self._connecting = asyncio.create_task(self._connect_loop())
        try:  # give a broker that is up a moment to answer, so the first request succeeds
            await asyncio.wait_for(asyncio.shield(self._connecting), self.settings.publish_timeout_seconds)
        except Exception:  # noqa: BLE001 - a timeout too: it keeps retrying in the background
            log.warning("broker %s not reachable yet; retrying in the background", self.bootstrap)

    async def _connect_loop(self) -> None:
        delay = 0.5
        while self.producer is None:
            try:
                await kafka.ensure_topics(self.bootstrap, self.settings.topic_partitions,
                                          self.settings.replication_factor, timeout=10)
                self.producer = await kafka.start_producer(self.bootstrap, self.settings.kafka_idempotence)
                log.info("producer connected to %s (idempotent=%s)", self.bootstrap,
                         self.producer.vigil_idempotent)
            except Exception as exc:  # noqa: BLE001
                log.warning("connecting to %s failed (%s); retrying in %.1fs", self.bootstrap, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def stop(self) -> None:
        if self._connecting and not self._connecting.done():
            self._connecting.cancel()
        if self.producer is not None:
            try:
                await asyncio.wait_for(self.producer.stop(), 10)
            except Exception:  # noqa: BLE001
                log.warning("producer did not stop cleanly")
        await self.redis.aclose()

    async def publish(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        """Send every record and wait until the broker acknowledged each (acks=all), within
        `publish_timeout_seconds`; raise Unavailable otherwise."""
        if self.producer is None:
            raise Unavailable(f"broker {self.bootstrap} not connected")

        async def send_all():
            futures = [await self.producer.send(topic, value=value, key=key) for key, value in records]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), self.settings.publish_timeout_seconds)
        except asyncio.TimeoutError as exc:
            raise Unavailable(f"broker did not acknowledge within {self.settings.publish_timeout_seconds}s") from exc
        except Exception as exc:  # noqa: BLE001 - any producer error means "not acknowledged"
            raise Unavailable(f"broker refused the records: {type(exc).__name__}: {exc}") from exc

    async def ready(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            if self.producer is None:
                raise Unavailable("not connected")
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 2.0)
            checks["kafka"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["kafka"] = f"unreachable: {type(exc).__name__}"
        try:
            await asyncio.wait_for(self.redis.ping(), 2.0)
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"unreachable: {type(exc).__name__}"
        return checks


def get_connections(request: Request) -> Connections:
    return request.app.state.connections


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def require_api_key(request: Request) -> None:
    """Bearer API keys when VIGIL_API_KEYS is set; compared in constant time, never logged."""
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    given = token.strip().encode()
    ok = False
    for key in keys:  # compare against every key, so timing does not reveal which matched
        ok |= hmac.compare_digest(given, key)
    if scheme.lower() != "bearer" or not ok:
        raise HTTPException(401, detail="missing or invalid API key (Authorization: Bearer <key>)",
                            headers={"WWW-Authenticate": "Bearer"})


Conns = Annotated[Connections, Depends(get_connections)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]
Authorized = Depends(require_api_key)
