"""Model registry, reference upload and vendor SLAs.

Redis holds the current value (for GET); every change is also published to the compacted
`vigil.models` topic, which the stream services read whole at start and then follow
(services/models_feed.py). Records there are keyed
by what they describe — `model:<id>`, `reference:<id>`, `reference:<id>:<column>`,
`vendor:<name>` — so compaction keeps the latest of each and never lets a reference
replace its model's spec.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError

from shared import kafka
from shared.events import ModelSpec, ReferenceProfile, VendorSLA
from shared.stats import reference as refstats
from services.oversight.report import combine, markdown

from .deps import AppSettings, Authorized, Conns, Unavailable
from .routes import _unavailable, read_body
from .validation import collapse_errors, media_type

router = APIRouter(prefix="/v1", tags=["registry"], dependencies=[Authorized])
ModelIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
VendorPath = Annotated[str, Path(min_length=1, max_length=200)]


def _key(kind: str, name: str) -> str:
    return f"vigil:registry:{kind}:{name}"


def registry_record(kind: str, name: str, value: Any) -> tuple[bytes, bytes]:
    """A `vigil.models` record: key `<kind>:<name>`, value an envelope with the change."""
    return (f"{kind}:{name}".encode(),
            kafka.dumps({"type": kind, "name": name, "at": datetime.now(timezone.utc).isoformat(), "value": value}))


async def _store(conns: Conns, kind: str, name: str, value: dict,
                 extra: list[tuple[bytes, bytes]] = ()) -> JSONResponse | None:
    """Publish to vigil.models (acks=all), then set in Redis. None on success, else a 503."""
    try:
        await conns.publish(kafka.TOPICS["models"], [*extra, registry_record(kind, name, value)])
        await conns.redis.set(_key(kind, name), kafka.dumps(value))
    except Unavailable as exc:
        return _unavailable(kind, str(exc))
    except Exception as exc:  # noqa: BLE001 - Redis down
        return _unavailable(kind, f"redis: {type(exc).__name__}")
    return None


async def _load(conns: Conns, kind: str, name: str) -> dict | None:
    raw = await conns.redis.get(_key(kind, name))
    return None if raw is None else kafka.loads(raw)


async def _json_body(request: Request, settings) -> Any:
    body = await read_body(request, settings.max_body_bytes)
    if media_type(request.headers.get("content-type")) != "application/json":
        raise HTTPException(415, detail="content-type must be application/json")
    try:
        return kafka.loads(body)
    except Exception as exc:  # noqa: BLE001
        raise HTTPException(400, detail=f"body is not valid JSON: {exc}") from None


def _validate(model, data: Any):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{k: v for k, v in e.items() if k != "index"}
                  for e in collapse_errors(exc.errors(include_url=False), offset_index=False)]
        raise HTTPException(422, detail={"errors": errors}) from None


async def _put(kind: str, name: str, model, request: Request, conns: Conns, settings: AppSettings):
    value = _validate(model, await _json_body(request, settings)).model_dump(mode="json")
    if (failed := await _store(conns, kind, name, value)) is not None:
        return failed
    return value


async def _get(kind: str, name: str, conns: Conns, missing: str):
    value = await _load(conns, kind, name)
    if value is None:
        raise HTTPException(404, detail=missing)
    return value


def _body_doc(schema: str) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema}"}}}}}


@router.put("/models/{model_id}", response_model=ModelSpec, openapi_extra=_body_doc("ModelSpec"))
async def put_model(model_id: ModelIdPath, request: Request, conns: Conns, settings: AppSettings):
    return await _put("model", model_id, ModelSpec, request, conns, settings)


@router.get("/models/{model_id}", response_model=ModelSpec)
async def get_model(model_id: ModelIdPath, conns: Conns):
    return await _get("model", model_id, conns, f"model {model_id!r} is not registered")


@router.put("/vendors/{vendor}/sla", response_model=VendorSLA, openapi_extra=_body_doc("VendorSLA"))
async def put_sla(vendor: VendorPath, request: Request, conns: Conns, settings: AppSettings):
    return await _put("vendor", vendor, VendorSLA, request, conns, settings)


@router.get("/vendors/{vendor}/sla", response_model=VendorSLA)
async def get_sla(vendor: VendorPath, conns: Conns):
    return await _get("vendor", vendor, conns, f"vendor {vendor!r} has no SLA registered")


@router.get("/vendors/{vendor}/report", responses={200: {"content": {"text/markdown": {}}}})
async def get_vendor_report(vendor: VendorPath, conns: Conns, format: str = "json"):
    """The vendor's latest SLA report per model, as the oversight worker stores it (hash
    `vigil:oversight:vendor:<vendor>`, field model_id); `?format=md` renders it as Markdown."""
    if format not in ("json", "md"):
        raise HTTPException(422, detail=f"format={format!r}: must be json or md")
    stored = await conns.redis.hgetall(f"vigil:oversight:vendor:{vendor}")
    if not stored:
        raise HTTPException(404, detail=f"vendor {vendor!r} has no report yet: the oversight worker writes one "
                                        "when a day of its calls and their labels is complete")
    report = combine(vendor, {k.decode() if isinstance(k, bytes) else k: kafka.loads(v) for k, v in stored.items()})
    if format == "md":
        return PlainTextResponse(markdown(report), media_type="text/markdown")
    return report


# --- reference upload ----------------------------------------------------------------------

REFERENCE_TYPES = ("application/json", "text/csv", "application/vnd.apache.parquet")


def read_table(body: bytes, mtype: str) -> dict[str, list]:
    """A reference table (JSON column -> values, CSV, or Parquet) as column -> Python list."""
    if mtype == "application/json":
        try:
            data = kafka.loads(body)
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(400, detail=f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not data:
            raise HTTPException(422, detail={"errors": [{"field": "(body)",
                                "reason": "must be a non-empty object of column -> array of values"}]})
        bad = [c for c, v in data.items() if not isinstance(v, list)]
        if bad:
            raise HTTPException(422, detail={"errors": [{"field": c, "reason": "must be an array of values"} for c in bad]})
        return data
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    try:
        if mtype == "text/csv":
            table = pacsv.read_csv(io.BytesIO(body))
        else:
            table = pq.read_table(io.BytesIO(body))
    except (pa.ArrowInvalid, OSError) as exc:
        raise HTTPException(400, detail=f"cannot read the {mtype} table: {exc}") from None
    return {name: table.column(name).to_pylist() for name in table.column_names}


def check_table(columns: dict[str, list], max_rows: int) -> int:
    lengths = {c: len(v) for c, v in columns.items()}
    rows = max(lengths.values())
    errors = [{"field": c, "reason": f"has {n} values, other columns have {rows}"}
              for c, n in lengths.items() if n != rows]
    if rows == 0:
        errors.append({"field": "(body)", "reason": "the table has no rows"})
    if rows > max_rows:
        raise HTTPException(413, detail=f"{rows} rows: limit is {max_rows}")
    for c, values in columns.items():
        for i, v in enumerate(values):
            if isinstance(v, float) and not np.isfinite(v):
                errors.append({"field": c, "reason": f"row {i}: NaN/inf is not a value (use null)"})
                break
            if v is not None and not isinstance(v, (bool, int, float, str)):
                errors.append({"field": c, "reason": f"row {i}: {type(v).__name__} is not a number, string, bool or null"})
                break
    if errors:
        raise HTTPException(422, detail={"errors": errors})
    return rows


@router.put("/models/{model_id}/reference", response_model=ReferenceProfile,
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "additionalProperties": {"type": "array"}}},
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}}})
async def put_reference(model_id: ModelIdPath, request: Request, conns: Conns, settings: AppSettings):
    mtype = media_type(request.headers.get("content-type"))
    if mtype not in REFERENCE_TYPES:
        raise HTTPException(415, detail=f"content-type {mtype or '(none)'!r}: must be one of {', '.join(REFERENCE_TYPES)}")
    body = await read_body(request, max(settings.max_body_bytes, 256 * 1024 * 1024))
    columns = read_table(body, mtype)
    rows = check_table(columns, settings.reference_max_rows)
    spec = await _load(conns, "model", model_id) or {}
    declared = {name: f.get("type") for name, f in (spec.get("features") or {}).items()}
    digest = refstats.digest(body)
    profiled = refstats.profile(columns, settings.reference_sample, seed=int(digest[:12], 16), declared=declared)
    manifest = ReferenceProfile(model_id=model_id, rows=rows, digest=digest,
                                uploaded_at=datetime.now(timezone.utc), columns=sorted(profiled))
    records = [registry_record("reference", f"{model_id}:{name}", col.model_dump(mode="json"))
               for name, col in profiled.items()]
    value = manifest.model_dump(mode="json")
    if (failed := await _store(conns, "reference", model_id, value, extra=records)) is not None:
        return failed
    await conns.redis.set(_key("reference-columns", model_id),
                          kafka.dumps({n: c.model_dump(mode="json") for n, c in profiled.items()}))
    return value
