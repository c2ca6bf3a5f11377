"""The alerts HTTP API of the contract: alerts, acknowledgements, silences, actions, findings, model modes,
and the model report (`GET /v1/models/{id}/report`, HTML).

Reads are open (model servers poll `GET /v1/models/{id}/mode`); writes need a bearer API key
when `VIGIL_API_KEYS` is set (ingest's check). Bad input -> 422 with `{"detail": {"errors":
[{"field", "reason"}]}}`, the shape ingest answers.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.alerts import lifecycle as lc
from services.alerts import report
from services.alerts.store import AlertStore, Conflict, NotFound, new_silence
from services.ingest.deps import require_api_key
from shared.events import ModelId, Severity
from shared.history import History

Status = Literal["firing", "acknowledged", "resolved", "silenced"]
Authorized = Depends(require_api_key)


def _service(request: Request):
    return request.app.state.service


def get_store(request: Request) -> AlertStore:
    return request.app.state.service.store


Store = Annotated[AlertStore, Depends(get_store)]


def invalid(field: str, reason: str) -> HTTPException:
    return HTTPException(422, detail={"errors": [{"field": field, "reason": reason}]})


def now() -> datetime:
    return datetime.now(timezone.utc)


class Ack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=2000)


class ModeChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["automated", "human_review"]
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)


router = APIRouter(prefix="/v1", tags=["alerts"])


@router.get("/alerts")
async def list_alerts(store: Store, model_id: ModelId | None = None, severity: Severity | None = None,
                      status: Status | None = None, kind: str | None = Query(None, max_length=100),
                      limit: int = Query(1000, ge=1, le=10_000)) -> list[dict]:
    return [lc.public(a) for a in await store.alerts(model_id=model_id, severity=severity, status=status, kind=kind,
                                                      limit=limit)]


@router.get("/alerts/{alert_id}")
async def get_alert(alert_id: str, store: Store) -> dict:
    a = await store.alert(alert_id)
    if a is None:
        raise HTTPException(404, detail=f"alert {alert_id}: not found")
    return lc.public(a)


@router.post("/alerts/{alert_id}/ack", dependencies=[Authorized])
async def ack(alert_id: str, body: Ack, request: Request) -> dict:
    service = _service(request)
    try:
        out = await service.store.acknowledge(alert_id, body.by, body.comment, now())
    except NotFound:
        raise HTTPException(404, detail=f"alert {alert_id}: not found") from None
    except Conflict as exc:
        raise HTTPException(409, detail=str(exc)) from None
    service.kick()
    a = next((x for x in out.changed if x["alert_id"] == alert_id), None) or await service.store.alert(alert_id)
    return lc.public(a)


@router.get("/silences")
async def list_silences(store: Store) -> list[dict]:
    t = now()
    return [s.to_dict(t) for s in await store.silences()]


@router.post("/silences", dependencies=[Authorized], status_code=200)
async def add_silence(request: Request, body: Annotated[dict, Body()]) -> dict:
    service = _service(request)
    t = now()
    try:
        silence = new_silence(body, t)
    except ValueError as exc:
        field, _, reason = str(exc).partition(": ")
        raise invalid(field.split("=")[0], reason or str(exc)) from None
    await service.store.add_silence(silence)
    await service.resettle_all(t)
    return {"silenceID": silence.id, **silence.to_dict(t)}


@router.get("/silences/{silence_id}")
async def get_silence(silence_id: str, store: Store) -> dict:
    t = now()
    for s in await store.silences():
        if s.id == silence_id:
            return s.to_dict(t)
    raise HTTPException(404, detail=f"silence {silence_id}: not found")


@router.delete("/silences/{silence_id}", dependencies=[Authorized])
async def delete_silence(silence_id: str, request: Request) -> dict:
    service = _service(request)
    t = now()
    try:
        out = await service.store.delete_silence(silence_id, t)
    except NotFound:
        raise HTTPException(404, detail=f"silence {silence_id}: not found") from None
    await service.resettle_all(t)
    return out


@router.get("/actions")
async def list_actions(store: Store, model_id: ModelId | None = None,
                       limit: int = Query(1000, ge=1, le=10_000)) -> list[dict]:
    return await store.actions(model_id, limit)


@router.get("/findings")
async def list_findings(store: Store, model_id: ModelId | None = None, kind: str | None = Query(None, max_length=100),
                        since: AwareDatetime | None = None, limit: int = Query(1000, ge=1, le=10_000)) -> list[dict]:
    """Recent findings (retained `findings_retention_days`), newest window first; `since`
    keeps those whose window ended at or after it."""
    return await store.findings(model_id=model_id, kind=kind, since=since, limit=limit)


@router.get("/models/{model_id}/mode")
async def get_mode(model_id: ModelId, store: Store) -> dict:
    return await store.mode(model_id)


@router.get("/models/{model_id}/mode/history")
async def mode_history(model_id: ModelId, store: Store) -> list[dict]:
    return await store.mode_history(model_id)


@router.post("/models/{model_id}/mode", dependencies=[Authorized])
async def set_mode(model_id: ModelId, body: ModeChange, store: Store) -> dict:
    """An operator sets the mode: ``automated`` clears human review (who and why recorded)."""
    return await store.set_mode(model_id, body.mode, body.by, body.reason, now())


@router.get("/models/{model_id}/report", response_class=HTMLResponse)
async def model_report(model_id: ModelId, request: Request,
                       windows: int = Query(96, ge=1, le=10_000, description="drift windows shown, newest")
                       ) -> HTMLResponse:
    """The model's report as one self-contained HTML page (`services.alerts.report`); 404 for a
    model with no spec and nothing recorded."""
    service = _service(request)
    data = await report_data(service.store, model_id, service.settings.findings_retention_days * 86400, windows)
    if data is None:
        raise HTTPException(404, detail=f"model {model_id}: no spec registered and nothing recorded")
    return HTMLResponse(report.render(data), headers={"Content-Security-Policy": report.CSP,
                                                      "X-Content-Type-Options": "nosniff",
                                                      "Cache-Control": "no-cache"})


OPEN = ("firing", "acknowledged", "silenced")
REPORT_FINDINGS = 10_000  # the model's retained findings read for the report, newest window first
REPORT_ROWS = 20  # oversight and fairness findings listed


async def report_data(store: AlertStore, model_id: str, retention_seconds: float, windows: int) -> dict | None:
    """What the report shows, from Redis: the spec, the drift and oversight histories, the
    model's findings, open alerts, actions and mode; None when there is nothing at all."""
    redis = store.redis
    spec_raw, summary_raw = await redis.mget([f"vigil:registry:model:{model_id}", f"vigil:oversight:model:{model_id}"])
    drift = await History(redis, "drift", retention_seconds).read(model_id, windows)
    rates = await History(redis, "oversight", retention_seconds).read(model_id, 24 * 7)
    findings = await store.findings(model_id=model_id, limit=REPORT_FINDINGS)
    alerts = [a for status in OPEN for a in await store.alerts(model_id=model_id, status=status)]
    if spec_raw is None and summary_raw is None and not (drift or rates or findings or alerts):
        return None
    of = lambda kinds: [f for f in findings if f["kind"] in kinds]  # noqa: E731
    return {
        "model_id": model_id, "generated_at": now(),
        "spec": orjson.loads(spec_raw) if spec_raw else None,
        "mode": await store.mode(model_id),
        "windows": report.windows_of(drift),
        "trend": next(iter(of(("performance_trend",))), None),
        "alerts": [lc.public(a) for a in alerts],
        "actions": await store.actions(model_id, REPORT_ROWS),
        "oversight": {"summary": orjson.loads(summary_raw) if summary_raw else None,
                      "rates": [(w.start, w.get("override_rate")) for w in rates],
                      "findings": of(report.OVERSIGHT_KINDS)[:REPORT_ROWS]},
        "fairness": of(("fairness_violation",))[:REPORT_ROWS],
    }
