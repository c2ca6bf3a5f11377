"""The operator page of the alerts service: `/` and its static files, no build step, no CDN.

The page is plain HTML, CSS and JavaScript under ``static/``; it reads and writes only the
alerts HTTP API of the contract (``/v1/alerts``, ``/v1/silences``, ``/v1/models/{id}/mode``)
and polls it every 2 s, so it works offline and behind any proxy that passes those paths.

CORE's app includes it with one line: ``app.include_router(page.router)``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).with_name("static")
# Only these files are served: no directory listing, no path from the request reaches the disk.
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# The page is ours alone: no scripts, styles or connections from anywhere else.
HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["page"], include_in_schema=False)


def _files() -> dict[str, Path]:
    return {p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in MEDIA_TYPES}


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type=MEDIA_TYPES[".html"], headers=HEADERS)


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    path = _files().get(name)
    if path is None:
        raise HTTPException(status_code=404, detail=f"static/{name}: no such file")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)
