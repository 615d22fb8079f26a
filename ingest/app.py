"""The ingest service: ``setup`` mounts it on an app, ``create_app`` makes one of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from runstream.ingest.app_keys import INGESTOR
from runstream.ingest.ingestor import Ingestor
from runstream.ingest.routes import add_routes
from runstream.ingest.watermarks import use_watermarks
from runstream.resources import PG_POOL, REDIS, use_stores
from runstream.settings import Settings
from runstream.web import error_middleware

_INGESTOR_ADDED = web.AppKey("ingestor_added", bool)


def use_ingestor(app: web.Application, settings: Settings) -> None:
    """Ensure ``app[INGESTOR]`` (and the stores) while the app runs; idempotent, so the api
    room can hand MLflow writes to the same ``Ingestor`` without mounting ingest's routes."""
    if app.get(_INGESTOR_ADDED):
        return
    app[_INGESTOR_ADDED] = True
    use_stores(app, settings)

    async def ingestor_ctx(app: web.Application) -> AsyncIterator[None]:
        app[INGESTOR] = ingestor = Ingestor(app[REDIS], app[PG_POOL], settings)
        try:
            yield
        finally:
            await ingestor.aclose()

    app.cleanup_ctx.append(ingestor_ctx)


def setup(app: web.Application, settings: Settings) -> None:
    use_stores(app, settings)
    use_watermarks(app, settings)
    use_ingestor(app, settings)
    add_routes(app)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    setup(app, settings)
    return app
