"""The api room's app factory: read routes on the shared stores and watermark waiter."""

from __future__ import annotations

from aiohttp import web

from runstream.api.routes import add_routes
from runstream.ingest.watermarks import use_watermarks
from runstream.resources import use_stores
from runstream.settings import Settings
from runstream.web import error_middleware

_API_ADDED = web.AppKey("api_added", bool)


def setup(app: web.Application, settings: Settings) -> None:
    """Add the api routes and the resources they read (idempotent)."""
    if app.get(_API_ADDED):
        return
    app[_API_ADDED] = True
    use_stores(app, settings)
    use_watermarks(app, settings)
    add_routes(app)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    setup(app, settings)
    return app
