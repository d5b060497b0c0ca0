"""The web interface: server-rendered pages (Jinja2), a stylesheet of our own, SVG drawn by the server.

No JavaScript and nothing fetched from elsewhere: `pip install` ships everything the pages need.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.web.render import STATIC
from service.web.routes import StorageReport, router


def install(app: FastAPI) -> None:
    """Serve the pages and their stylesheet; call after the API routes so none can shadow them."""
    app.state.web_report = StorageReport()
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="web-static")
    app.include_router(router)
