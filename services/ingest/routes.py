"""POST /v1/predictions | /v1/labels | /v1/reviews: validate, deduplicate, publish, then 202."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from shared import kafka
from shared.events import EVENT_LISTS, IDEMPOTENCY_FIELD, IngestResult
from shared.metrics import EVENTS_DUPLICATE, EVENTS_INGESTED, EVENTS_REJECTED, PUBLISH_SECONDS
from shared.redis import PUBLISH, bucket_key

from .deps import RETRY_AFTER_SECONDS, AppSettings, Authorized, Conns, Unavailable, log
from .validation import BodyError, as_models, parse_events

router = APIRouter(prefix="/v1", tags=["events"], dependencies=[Authorized])

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/{model}"},
                                                      {"type": "array", "items": {"$ref": "#/components/schemas/{model}"}}]}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    },
    "responses": {
        "202": {"description": "accepted: every record acknowledged by the broker"},
        "400": {"description": "the body is not JSON"},
        "413": {"description": "body or event count over the limit"},
        "415": {"description": "unsupported content type"},
        "422": {"description": "invalid records: index, field and reason of each; nothing published"},
        "503": {"description": "broker or Redis unavailable; retry after Retry-After seconds"},
    },
}


def _openapi(model: str) -> dict:
    """The request/response documentation of one event route, for `model`'s schema."""
    return json.loads(json.dumps(_BODY_DOC).replace("{model}", model))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing with 413 as soon as it exceeds `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, detail=f"body of {declared} bytes: limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, detail=f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def ingest(kind: str, request: Request, conns: Conns, settings: AppSettings):
    body = await read_body(request, settings.max_body_bytes)
    try:
        events, errors, raw = parse_events(kind, body, request.headers.get("content-type"))
    except BodyError as exc:
        EVENTS_REJECTED.labels(kind, "unreadable_body").inc()
        raise HTTPException(exc.status, detail=exc.reason) from None
    if errors:
        bad = len({e["index"] for e in errors})
        EVENTS_REJECTED.labels(kind, "invalid").inc(bad)
        return JSONResponse(status_code=422, content={"detail": {
            "message": f"{bad} invalid record(s); nothing was published", "errors": errors[:1000],
            "error_count": len(errors)}})
    if len(events) > settings.max_events_per_request:
        EVENTS_REJECTED.labels(kind, "too_many_events").inc()
        raise HTTPException(413, detail=f"{len(events)} events: limit is {settings.max_events_per_request} per request")

    # Duplicates inside the request, then against what was already acknowledged.
    field = IDEMPOTENCY_FIELD[kind]
    buckets: dict[str, dict[str, object]] = {}
    for e in events:
        bucket = bucket_key(kind, e.model_id, e.timestamp.date().isoformat())
        buckets.setdefault(bucket, {}).setdefault(getattr(e, field), e)
    try:
        token, states = await conns.idempotency.claim({b: list(ids) for b, ids in buckets.items()})
    except Exception as exc:  # noqa: BLE001
        return _unavailable(kind, f"redis: {type(exc).__name__}")
    fresh = [e for b, ids in buckets.items() for e, s in zip(ids.values(), states[b]) if s == PUBLISH]
    duplicates = len(events) - len(fresh)

    if fresh:
        records = to_records(kind, fresh, raw if len(fresh) == len(events) else None, settings)
        started = time.perf_counter()
        try:
            await conns.publish(kafka.TOPICS[kind], records)
        except Unavailable as exc:
            return _unavailable(kind, str(exc))  # the claims were never confirmed: a retry publishes
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        try:
            await conns.idempotency.confirm(token)
        except Exception:  # noqa: BLE001 - published already; a retry would only add a copy
            log.warning("could not confirm idempotency token for %d events", len(fresh))
        counts: dict[str, int] = {}
        for e in fresh:
            counts[e.model_id] = counts.get(e.model_id, 0) + 1
        for model_id, n in counts.items():
            EVENTS_INGESTED.labels(kind, model_id).inc(n)
    if duplicates:
        EVENTS_DUPLICATE.labels(kind).inc(duplicates)
    return JSONResponse(status_code=202, content=IngestResult(accepted=len(fresh), duplicates=duplicates).model_dump())


def to_records(kind: str, events: list, raw: bytes | None, settings) -> list[tuple[bytes, bytes]]:
    """Kafka records of up to `batch_events` events of one model each.

    When the request is already one such record — one model, no duplicates, small enough —
    the validated array is published as it was sent, without re-encoding (the common case of
    a model server posting its batch). Otherwise the events are grouped and re-encoded.
    """
    model = events[0].model_id
    if (raw is not None and len(events) <= settings.batch_events and len(raw) <= settings.max_record_bytes
            and all(e.model_id == model for e in events)):
        return [(model.encode(), raw)]
    adapter, events = EVENT_LISTS[kind], as_models(kind, events)  # pydantic encodes: the same bytes as ever
    return list(kafka.pack_records(events, settings.batch_events, settings.max_record_bytes,
                                   encode=lambda chunk: adapter.dump_json(chunk, exclude_none=True),
                                   model_of=lambda e: e.model_id))


def _unavailable(kind: str, why: str) -> JSONResponse:
    EVENTS_REJECTED.labels(kind, "unavailable").inc()
    log.warning("503 for %s: %s", kind, why)
    return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                        content={"detail": f"temporarily unavailable: {why}; nothing was published"})


def _route(kind: str, model: str):
    async def endpoint(request: Request, conns: Conns, settings: AppSettings):
        return await ingest(kind, request, conns, settings)

    endpoint.__name__ = f"post_{kind}"
    router.add_api_route(f"/{kind}", endpoint, methods=["POST"], status_code=202,
                         summary=f"Ingest {kind}", openapi_extra=_openapi(model),
                         response_model=IngestResult)


for _kind, _model in (("predictions", "PredictionEvent"), ("labels", "LabelEvent"), ("reviews", "ReviewEvent")):
    _route(_kind, _model)
