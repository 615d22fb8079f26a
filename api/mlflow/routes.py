"""MLflow's tracking REST routes on runstream: the table, and ``setup_mlflow_routes``.

Every route is served under ``/api/2.0/mlflow/`` (clients) and ``/ajax-api/2.0/mlflow/`` (the
UI), as MLflow's server does. To add endpoints (logged models, run inputs/outputs, ...),
append ``Route`` rows to a table and pass it to ``add_mlflow_routes``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from runstream.api.mlflow import (
    artifacts,
    dataset_search,
    experiments,
    inputs,
    metrics,
    model_versions,
    registered_models,
    runs,
)
from runstream.api.mlflow import logged_models as models
from runstream.api.mlflow.handler_io import catch_up
from runstream.api.mlflow.history import OrderedHistories
from runstream.ingest.app import use_ingestor
from runstream.ingest.watermarks import use_watermarks
from runstream.resources import use_stores
from runstream.settings import Settings
from runstream.web import Handler, json_response

API_PREFIX = "/api/2.0/mlflow"
AJAX_PREFIX = "/ajax-api/2.0/mlflow"
"""Where MLflow's UI calls the same routes."""
PREFIXES = (API_PREFIX, AJAX_PREFIX)
SERVER_INFO_PATHS = ("/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info")
PREFIXES_3 = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    """Below the ``/mlflow`` prefix, e.g. ``/runs/create``."""
    handler: Handler
    reads: bool | None = None
    """Whether the handler reads the read tables, and so first catches up with every write
    accepted before it (read-your-writes). None: GETs and searches do, other writes don't."""

    @property
    def catches_up(self) -> bool:
        if self.reads is not None:
            return self.reads
        return self.method == "GET" or self.path.endswith("/search")


TRACKING_ROUTES: tuple[Route, ...] = (
    Route("POST", "/experiments/create", experiments.create_experiment),
    Route("GET", "/experiments/get", experiments.get_experiment),
    Route("GET", "/experiments/get-by-name", experiments.get_experiment_by_name),
    Route("GET", "/experiments/search", experiments.search_experiments),
    Route("POST", "/experiments/search", experiments.search_experiments),
    Route("POST", "/experiments/update", experiments.update_experiment),
    Route("POST", "/experiments/delete", experiments.delete_experiment),
    Route("POST", "/experiments/restore", experiments.restore_experiment),
    Route("POST", "/experiments/set-experiment-tag", experiments.set_experiment_tag),
    Route(
        "POST",
        "/experiments/delete-experiment-tag",
        experiments.delete_experiment_tag,
        reads=True,
    ),
    Route("POST", "/runs/create", runs.create_run),
    Route("GET", "/runs/get", runs.get_run, reads=False),  # catches up on its run's shard
    Route("POST", "/runs/update", runs.update_run),
    Route("POST", "/runs/delete", runs.delete_run),
    Route("POST", "/runs/restore", runs.restore_run),
    Route("POST", "/runs/search", runs.search_runs, reads=False),  # catches up itself, overlapped
    Route("POST", "/runs/set-tag", runs.set_tag),
    Route("POST", "/runs/delete-tag", runs.delete_tag),  # catches up on its run's shard
    Route("POST", "/runs/log-metric", metrics.log_metric),
    Route("POST", "/runs/log-parameter", metrics.log_param),
    Route("POST", "/runs/log-batch", metrics.log_batch),
    Route("GET", "/metrics/get-history", metrics.get_metric_history, reads=False),
    Route(
        "GET",
        "/metrics/get-history-bulk-interval",
        metrics.get_metric_history_bulk_interval,
        reads=False,  # catches up on the shards of its runs, like get-history
    ),
    Route("GET", "/artifacts/list", artifacts.list_artifacts),
    # MLflow 3 logged models and run inputs/outputs (api/mlflow/logged_models.py, mlflow_inputs.py)
    Route("POST", "/runs/log-inputs", inputs.log_inputs),
    Route("POST", "/runs/outputs", inputs.log_outputs),
    Route("POST", "/runs/log-model", inputs.log_model),  # catches up on its run's shard
    Route("POST", "/logged-models", models.create_logged_model),
    Route("POST", "/logged-models/search", models.search_logged_models),
    Route("GET", "/logged-models/{model_id}", models.get_logged_model),
    Route("PATCH", "/logged-models/{model_id}", models.finalize_logged_model),
    Route("DELETE", "/logged-models/{model_id}", models.delete_logged_model),
    Route("PATCH", "/logged-models/{model_id}/tags", models.set_logged_model_tags),
    Route(
        "DELETE",
        "/logged-models/{model_id}/tags/{tag_key}",
        models.delete_logged_model_tag,
        reads=True,
    ),
    Route("POST", "/logged-models/{model_id}/params", models.log_logged_model_params, reads=True),
    Route(
        "GET",
        "/logged-models/{model_id}/artifacts/directories",
        models.list_logged_model_artifacts,
    ),
)

REGISTRY_ROUTES: tuple[Route, ...] = (
    # MLflow's ModelRegistryService, same paths, methods and fields (the auth rules of
    # MLflow's basic-auth app key registered-model permissions by ``name``).
    Route("POST", "/registered-models/create", registered_models.create_registered_model),
    Route("POST", "/registered-models/rename", registered_models.rename_registered_model),
    Route("PATCH", "/registered-models/update", registered_models.update_registered_model),
    Route("DELETE", "/registered-models/delete", registered_models.delete_registered_model),
    Route("GET", "/registered-models/get", registered_models.get_registered_model),
    Route("GET", "/registered-models/search", registered_models.search_registered_models),
    Route(
        "POST",
        "/registered-models/get-latest-versions",
        registered_models.get_latest_versions,
        reads=True,
    ),
    Route("GET", "/registered-models/get-latest-versions", registered_models.get_latest_versions),
    Route("POST", "/registered-models/set-tag", registered_models.set_registered_model_tag),
    Route("DELETE", "/registered-models/delete-tag", registered_models.delete_registered_model_tag),
    Route("POST", "/registered-models/alias", registered_models.set_registered_model_alias),
    Route("DELETE", "/registered-models/alias", registered_models.delete_registered_model_alias),
    Route("GET", "/registered-models/alias", registered_models.get_model_version_by_alias),
    # Creating a version reads the run or logged model it names (and the versions a
    # models:/ source names), so it catches up first.
    Route("POST", "/model-versions/create", model_versions.create_model_version, reads=True),
    Route("PATCH", "/model-versions/update", model_versions.update_model_version),
    Route(
        "POST", "/model-versions/transition-stage", model_versions.transition_model_version_stage
    ),
    Route("DELETE", "/model-versions/delete", model_versions.delete_model_version),
    Route("GET", "/model-versions/get", model_versions.get_model_version),
    Route("GET", "/model-versions/search", model_versions.search_model_versions),
    Route("GET", "/model-versions/get-download-uri", model_versions.get_model_version_download_uri),
    Route("POST", "/model-versions/set-tag", model_versions.set_model_version_tag),
    Route("DELETE", "/model-versions/delete-tag", model_versions.delete_model_version_tag),
)
MODEL_VERSION_ARTIFACT_PATH = "/model-versions/get-artifact"
"""Outside the API prefixes, as MLflow's Flask app serves it (the UI's model page)."""

V3_ROUTES: tuple[Route, ...] = (
    # The datasets runs logged, for the UI's Datasets page (api/mlflow/dataset_search.py).
    Route("POST", "/datasets/search", dataset_search.search_datasets, reads=True),
    Route("GET", "/datasets/search", dataset_search.search_datasets),
    Route("GET", "/datasets/{dataset_id}", dataset_search.get_dataset),
    Route("GET", "/datasets/{dataset_id}/records", dataset_search.get_dataset_records),
    Route(
        "GET", "/datasets/{dataset_id}/experiment-ids", dataset_search.get_dataset_experiment_ids
    ),
)
"""Served under ``PREFIXES_3`` only, as MLflow serves them."""

SERVER_INFO = {
    "store_type": "SqlStore",
    "workspaces_enabled": False,
    "trace_archival_enabled": False,
    "multipart_uploads_enabled": False,
    "multipart_downloads_enabled": False,
    "presigned_upload_run_id_supported": True,
    "presigned_upload_model_id_supported": True,
    # MLflow says True by default; runstream serves no AI gateway, so it says so.
    "features_enabled": {"gateway": False},
}
"""``build_server_info_payload`` of an ``mlflow server`` on a SQL store with local proxied
artifacts (no multipart), except the gateway flag."""

_MLFLOW_ADDED = web.AppKey("mlflow_routes_added", bool)


async def server_info(request: web.Request) -> web.Response:
    return json_response(SERVER_INFO)


def add_mlflow_routes(
    app: web.Application, routes: Iterable[Route], prefixes: Iterable[str] = PREFIXES
) -> None:
    """Each route under both MLflow prefixes; reading routes catch up first."""
    prefixes = tuple(prefixes)
    for route in routes:
        handler = caught_up(route.handler) if route.catches_up else route.handler
        for prefix in prefixes:
            app.router.add_route(route.method, prefix + route.path, handler)


def caught_up(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def catch_up_then_handle(request: web.Request) -> web.StreamResponse:
        await catch_up(request)
        return await handler(request)

    return catch_up_then_handle


def setup_mlflow_routes(app: web.Application, settings: Settings) -> None:
    """Add MLflow's tracking routes and what they use: stores, ``Ingestor``, watermark waiter.

    Idempotent. The ``artifacts/list`` route reads the ``mlflow-artifacts`` store when
    ``api.artifacts.setup_artifact_routes`` has added it.
    """
    if app.get(_MLFLOW_ADDED):
        return
    app[_MLFLOW_ADDED] = True
    use_stores(app, settings)
    use_watermarks(app, settings)
    use_ingestor(app, settings)
    app[metrics.ORDERED_HISTORIES] = OrderedHistories()
    add_mlflow_routes(app, TRACKING_ROUTES)
    add_mlflow_routes(app, REGISTRY_ROUTES)
    app.router.add_get(
        MODEL_VERSION_ARTIFACT_PATH, caught_up(model_versions.get_model_version_artifact)
    )
    add_mlflow_routes(app, V3_ROUTES, PREFIXES_3)
    for path in SERVER_INFO_PATHS:
        app.router.add_get(path, server_info)
