"""The api room's app factory: native reads, MLflow's tracking routes and the artifact proxy."""

from __future__ import annotations

from aiohttp import web

from runstream.api.artifacts.routes import setup_artifact_routes
from runstream.api.mlflow.routes import setup_mlflow_routes
from runstream.api.mlflow.search_store import use_search_store
from runstream.api.native.routes import add_routes
from runstream.api.ui.routes import setup_ui
from runstream.ingest.watermarks import use_watermarks
from runstream.resources import use_stores
from runstream.settings import Settings
from runstream.web import answer_head_on_get, error_middleware

_API_ADDED = web.AppKey("api_added", bool)


def setup(app: web.Application, settings: Settings) -> None:
    """Add every api route and the resources they use (idempotent).

    MLflow's write routes append through ``runstream.ingest`` (the api may import ingest), so an
    api process alone serves MLflow clients completely.
    """
    if app.get(_API_ADDED):
        return
    app[_API_ADDED] = True
    use_stores(app, settings)
    use_search_store(app, settings)
    use_watermarks(app, settings)
    add_routes(app)
    setup_mlflow_routes(app, settings)
    setup_artifact_routes(app, settings)
    setup_ui(app)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    setup(app, settings)
    answer_head_on_get(app)
    return app
