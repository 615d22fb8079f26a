"""Every route of MLflow's artifact proxy (``mlflow-artifacts``), in one table, and its setup.

``setup_artifact_routes`` opens the artifact store with the app and adds ``artifact_routes``
under both of MLflow's prefixes (clients and the UI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from runstream.api.artifacts.proxy import ARTIFACT_STORE, ArtifactHandlers
from runstream.api.artifacts.store import open_artifact_store
from runstream.settings import Settings
from runstream.web import Handler

PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    """Below a prefix, e.g. ``/artifacts/{path:.+}``."""
    handler: Handler


def artifact_routes(handlers: ArtifactHandlers) -> tuple[Route, ...]:
    return (
        Route("GET", "/artifacts", handlers.list),
        Route("GET", "/artifacts/{path:.+}", handlers.download),
        Route("PUT", "/artifacts/{path:.+}", handlers.upload),
        Route("DELETE", "/artifacts/{path:.+}", handlers.delete),
        Route("POST", "/mpu/create/{path:.+}", handlers.create_multipart),
        Route("POST", "/mpu/complete/{path:.+}", handlers.complete_multipart),
        Route("POST", "/mpu/abort/{path:.+}", handlers.abort_multipart),
    )


def setup_artifact_routes(app: web.Application, settings: Settings) -> None:
    """Add the ``mlflow-artifacts`` routes and the artifact store (opened with the app)."""

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_artifact_store(settings) as store:
            app[ARTIFACT_STORE] = store
            yield

    app.cleanup_ctx.append(store_ctx)
    handlers = ArtifactHandlers(
        max_json_bytes=settings.max_json_bytes,
        max_upload_bytes=settings.max_artifact_bytes,
        max_json_items=settings.max_json_items,
    )
    routes = artifact_routes(handlers)
    for prefix in PREFIXES:
        for route in routes:
            app.router.add_route(route.method, prefix + route.path, route.handler)
