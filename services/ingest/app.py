"""The ingest service: `create_app(settings)` builds the FastAPI app; `serve()` runs it."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import shared
from shared import kafka
from shared.events import LabelEvent, ModelSpec, PredictionEvent, ReviewEvent, VendorSLA
from shared.settings import Settings, get_settings

from . import registry, routes
from services import ops
from services.stream import tune_gc

from .deps import Connections, get_connections


def create_app(settings: Settings | None = None, *, kafka_bootstrap: str | None = None,
               redis_url: str | None = None, services: dict[str, str] | None = None) -> FastAPI:
    """The ingest API. Broker and Redis addresses default to the settings'."""
    settings = settings or get_settings()
    bootstrap = kafka_bootstrap or settings.kafka_bootstrap
    redis = redis_url or settings.redis_url
    if not bootstrap or not redis:
        raise ValueError("ingest needs VIGIL_KAFKA_BOOTSTRAP and VIGIL_REDIS_URL (or run `vigil up`)")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.connections = Connections(settings, bootstrap, redis)
        await app.state.connections.start()
        try:
            yield
        finally:
            await app.state.connections.stop()

    app = FastAPI(title="Vigil ingest", version=shared.__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.api_keys = [k.encode() for k in settings.api_key_list()]
    app.include_router(routes.router)
    app.include_router(registry.router)

    ops.install(app, lambda request: get_connections(request).ready())

    @app.get("/v1/info", tags=["ops"])
    async def info():
        return {"version": shared.__version__, "kafka_bootstrap": bootstrap,
                "topics": dict(kafka.TOPICS), "services": services or settings.service_urls()}

    def openapi():
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (PredictionEvent, LabelEvent, ReviewEvent, ModelSpec, VendorSLA):
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                comps.update(js.pop("$defs", {}))
                comps[model.__name__] = js
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


def serve(settings: Settings | None = None) -> None:
    """Run the ingest API with uvicorn (`vigil serve ingest`), in `ingest_workers` processes."""
    import uvicorn

    settings = settings or get_settings()
    common = dict(host=settings.host, port=settings.ingest_port, log_level=settings.log_level.lower(),
                  access_log=False)
    if settings.ingest_workers > 1:  # each worker builds its app from the same VIGIL_* settings
        uvicorn.run("services.ingest.app:served_app", factory=True, workers=settings.ingest_workers, **common)
    else:
        uvicorn.run(served_app(settings), **common)


def served_app(settings: Settings | None = None) -> FastAPI:
    """The app of a `vigil serve ingest` process, its garbage collector tuned as the stream
    workers' (every request decodes ~25,000 objects)."""
    app = create_app(settings)
    tune_gc()
    return app
