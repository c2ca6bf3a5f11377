"""The operations endpoints every FastAPI service serves, written once: `/healthz`, `/readyz`,
`/metrics`, and 422 answers that name each bad field and its reason.

The stream workers, which have no web framework, serve the same paths from
`services.stream.ops_server`.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from shared.metrics import exposition


GC_THRESHOLD = (20_000, 20, 20)


def settle_heap() -> None:
    """Once a service has started: move what start-up made (modules, clients) out of the
    collector's sight (`gc.freeze`) and collect young objects less often.

    A service's heap is mostly long-lived. With CPython's defaults (700, 10, 10) the alerts
    service, at 500 findings/s, ran a full collection about once a second, each a pause of
    40-210 ms for every finding then in flight; 10,000 findings at once took 17.6 s to notify,
    13.1 s with this (`python -m bench.alerts --rates 5000 --seconds 2`).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def install(app: FastAPI, readiness: Callable[[Request], Awaitable[dict[str, str]]]) -> None:
    """Add the ops routes and the 422 handler to `app`; `readiness(request)` returns
    {check: "ok" | reason} and /readyz answers 503 unless every check is "ok"."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": {"errors": errors}})

    @app.get("/healthz", tags=["ops"])
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request):
        checks = await readiness(request)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, **checks})

    @app.get("/metrics", tags=["ops"])
    async def metrics():
        body, ctype = exposition()
        return Response(body, media_type=ctype)
