"""MLflow's Tracking UI on runstream: its built files, and the endpoints only the UI calls.

The UI is not part of runstream: when the ``mlflow`` package is installed, its prebuilt React
app (``mlflow/server/js/build``) is served from there at ``/`` and ``/static-files/...``, the
paths and cache headers of MLflow's own Flask app (``mlflow/server/__init__.py``), so
opening the tracking URL in a browser shows MLflow's UI. Without ``mlflow``, ``/`` answers a
short page that says how to get it. The package is located with ``importlib.util.find_spec``,
never imported: importing ``mlflow`` costs seconds and hundreds of MB.

The UI also calls routes outside MLflow's protobuf service table. Those the tracking pages need
are served here (``get-artifact``, ``metrics/get-history-bulk``, logged-model artifact files,
``/version``); for the features runstream does not have (traces, prompts,
gateway, ...) the UI gets what MLflow answers for an empty store (see ``EMPTY_ANSWERS``), so its
pages render "nothing here yet" instead of an error banner. See docs/ui.md.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from runstream.api import queries
from runstream.api.artifacts.proxy import ARTIFACT_STORE, send_artifact
from runstream.api.artifacts.store import ArtifactStore, clean_path
from runstream.api.mlflow import logged_model_queries
from runstream.api.mlflow import messages as rq
from runstream.api.mlflow.artifacts import proxied_root
from runstream.api.mlflow.history import history_order, metrics_json
from runstream.api.mlflow.metrics import load_points
from runstream.api.mlflow.routes import AJAX_PREFIX
from runstream.api.reads import run_not_found
from runstream.api.views import JsonDict
from runstream.resources import PG_POOL
from runstream.schemas import constants as c
from runstream.schemas.errors import (
    BadRequest,
    EndpointNotFound,
    FeatureNotImplemented,
    InvalidParameterValue,
    ResourceDoesNotExist,
)
from runstream.web import Handler, json_response

logger = logging.getLogger(__name__)


def runstream_version() -> str:
    try:
        return importlib.metadata.version("runstream")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


STATIC_MAX_AGE = 2419200
"""Seconds (28 days) the hashed bundle files may be cached, as MLflow's server sends them."""

NO_UI_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>runstream</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>runstream {version}</h1>
<p>This is a runstream tracking server. Point MLflow clients at this URL:
<code>export MLFLOW_TRACKING_URI=&lt;this URL&gt;</code></p>
<p>The Tracking UI is MLflow's own; it appears here when the <code>mlflow</code> package is
installed in the server's environment: <code>pip install mlflow</code>, then restart the
server.</p>
</body></html>
"""


@dataclass(frozen=True, slots=True)
class UiBuild:
    """The installed MLflow UI: its build folder and the ``mlflow`` version it belongs to."""

    root: Path
    version: str

    @property
    def index(self) -> Path:
        return self.root / "index.html"


UI_BUILD = web.AppKey[UiBuild | None]("ui_build")
_UI_ADDED = web.AppKey("ui_added", bool)


def find_ui_build() -> UiBuild | None:
    """MLflow's built UI in the installed ``mlflow`` package, or None (not installed, or a
    source checkout without a build)."""
    try:
        spec = importlib.util.find_spec("mlflow")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        root = Path(location) / "server" / "js" / "build"
        if (root / "index.html").is_file():
            try:
                version = importlib.metadata.version("mlflow")
            except importlib.metadata.PackageNotFoundError:
                version = "unknown"
            return UiBuild(root.resolve(), version)
    return None


def static_file(root: Path, relative: str) -> Path | None:
    """``relative`` under ``root`` if it names a file there; None for anything leaving it."""
    if not relative or relative.startswith("/") or "\\" in relative or "\0" in relative:
        return None
    if any(part in ("", ".", "..") for part in relative.split("/")):
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


# -- the app's files ------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    build = request.app[UI_BUILD]
    if build is None:
        return web.Response(
            text=NO_UI_PAGE.format(version=runstream_version()), content_type="text/html"
        )
    # MLflow sends index.html without cache headers; "no-cache" (revalidate with the ETag) makes
    # a browser pick up a new UI as soon as mlflow is upgraded.
    return web.FileResponse(build.index, headers={"Cache-Control": "no-cache"})


async def static(request: web.Request) -> web.StreamResponse:
    build = request.app[UI_BUILD]
    found = None if build is None else static_file(build.root, request.match_info["path"])
    if found is None:
        raise web.HTTPNotFound()
    return web.FileResponse(found, headers={"Cache-Control": f"public, max-age={STATIC_MAX_AGE}"})


async def version(request: web.Request) -> web.Response:
    """The MLflow version whose UI is served (what MLflow's ``/version`` answers)."""
    build = request.app[UI_BUILD]
    return web.Response(text=build.version if build is not None else runstream_version())


# -- artifacts the UI shows -----------------------------------------------------------------------


def artifact_store(request: web.Request) -> ArtifactStore:
    if ARTIFACT_STORE not in request.app:
        raise FeatureNotImplemented("This server does not serve artifacts.")
    return request.app[ARTIFACT_STORE]


def store_path(root_uri: str, relative: str) -> str:
    root = proxied_root(root_uri)
    if root is None:
        raise FeatureNotImplemented(
            f"Artifacts under {root_uri!r} are not served by this server; open them from "
            "their store directly."
        )
    return posixpath.join(root, relative) if relative else root


def _relative_path(raw: str | None, name: str) -> str:
    if not raw:
        raise BadRequest(f'Request must include the "{name}" query parameter.')
    return clean_path(raw)


async def get_artifact(request: web.Request) -> web.StreamResponse:
    """``GET /get-artifact?run_uuid=&path=``: a run artifact, for the artifact browser."""
    run_id = request.query.get("run_id") or request.query.get("run_uuid")
    if not run_id:
        raise InvalidParameterValue("Request must include the 'run_id' query parameter.")
    relative = _relative_path(request.query.get("path"), "path")
    row = await queries.run(request.app[PG_POOL], run_id)
    if row is None:
        raise run_not_found(run_id)
    return await send_artifact(
        request, artifact_store(request), store_path(row["artifact_uri"], relative)
    )


async def get_logged_model_artifact(request: web.Request) -> web.StreamResponse:
    """``GET .../logged-models/{model_id}/artifacts/files?artifact_file_path=``."""
    model_id = request.match_info["model_id"]
    relative = _relative_path(request.query.get("artifact_file_path"), "artifact_file_path")
    row = await logged_model_queries.model(request.app[PG_POOL], model_id)
    if row is None:
        raise ResourceDoesNotExist(f"Logged model with ID '{model_id}' not found.")
    return await send_artifact(
        request, artifact_store(request), store_path(row["artifact_location"], relative)
    )


# -- metric history -------------------------------------------------------------------------------


async def get_metric_history_bulk(request: web.Request) -> web.Response:
    """``GET .../metrics/get-history-bulk?run_id=...&metric_key=``: full histories of runs."""
    run_ids = request.query.getall("run_id", [])
    if not run_ids:
        raise InvalidParameterValue(
            "GetMetricHistoryBulk request must specify at least one run_id."
        )
    if len(run_ids) > c.MAX_RUNS_PER_HISTORY_BULK:
        raise InvalidParameterValue(
            "GetMetricHistoryBulk request cannot specify more than "
            f"{c.MAX_RUNS_PER_HISTORY_BULK} run_ids. "
            f"Received {len(run_ids)} run_ids."
        )
    metric_key = request.query.get("metric_key")
    if metric_key is None:
        raise InvalidParameterValue("GetMetricHistoryBulk request must specify a metric_key.")
    fields = rq.fields_from_query(request.query, ())
    max_results = rq.optional_int(fields, "max_results")
    limit = (
        c.MAX_HISTORY_BULK_RESULTS
        if max_results is None
        else min(max_results, c.MAX_HISTORY_BULK_RESULTS)
    )
    pool = request.app[PG_POOL]
    metrics: list[JsonDict] = []
    for run_id in sorted(set(run_ids)):
        points = await load_points(pool, run_id, metric_key)
        if points is not None:
            metrics += metrics_json(metric_key, history_order(points).take(slice(0, limit)), run_id)
    return json_response({"metrics": metrics})


# -- features runstream does not have -------------------------------------------------------------

TELEMETRY_OFF = {"disable_ui_telemetry": True, "disable_ui_events": [], "ui_rollout_percentage": 0}


async def ui_telemetry(request: web.Request) -> web.Response:
    """Telemetry is off: the UI sends nothing anywhere."""
    if request.method == "POST":
        return json_response({"status": "disabled"})
    return json_response(TELEMETRY_OFF)


async def gateway_proxy(request: web.Request) -> web.Response:
    """MLflow's answer when no AI gateway is configured: an empty gateway."""
    return json_response({"endpoints": []})


EMPTY_ANSWERS: tuple[tuple[str, str, JsonDict], ...] = (
    # Traces: no traces, no trace metrics (the GenAI pages show their empty states).
    ("GET", "/2.0/mlflow/traces", {}),
    ("POST", "/3.0/mlflow/traces/search", {}),
    ("POST", "/3.0/mlflow/traces/metrics", {}),
    # MLflow's assistant (a local coding agent the server runs): none configured.
    (
        "GET",
        "/3.0/mlflow/assistant/config",
        {"providers": {}, "projects": {}, "remote_access_allowed": False},
    ),
    ("POST", "/2.0/mlflow/experiments/search-datasets", {}),
    ("GET", "/3.0/mlflow/assistant/providers", {"providers": [], "resolved": None}),
)
"""(method, path below ``/api`` and ``/ajax-api``, answer) for features runstream lacks."""


def empty_answer(body: JsonDict) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return json_response(body)

    return answer


async def demo_not_served(request: web.Request) -> web.Response:
    """MLflow's "Start Demo" generates GenAI traces, evaluations and prompts; runstream serves
    none of them, so it says so (the UI then opens the experiments list)."""
    raise FeatureNotImplemented(
        "The MLflow demo creates GenAI traces, evaluations and prompts, which runstream does "
        "not serve. Log runs with the mlflow client to see them here."
    )


async def not_found(request: web.Request) -> web.Response:
    raise EndpointNotFound(f"{request.method} {request.path} is not served by runstream.")


# -- wiring ---------------------------------------------------------------------------------------

AJAX = AJAX_PREFIX


def _add(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Add a route unless another part already serves it (its handler wins)."""
    canonical = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)
    for resource in app.router.resources():
        if resource.canonical == canonical and any(
            route.method in (method, "*") for route in resource
        ):
            return
    app.router.add_route(method, path, handler)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler


def ui_routes(build: UiBuild | None) -> list[Route]:
    """Every route of the UI part, in the order added (see ``setup_ui``)."""
    routes = [
        Route("GET", "/", index),
        Route("GET", "/static-files/{path:.+}", static),
        Route("GET", "/version", version),
        Route("GET", "/get-artifact", get_artifact),
        Route("GET", f"{AJAX}/metrics/get-history-bulk", get_metric_history_bulk),
        Route(
            "GET", f"{AJAX}/logged-models/{{model_id}}/artifacts/files", get_logged_model_artifact
        ),
        Route("*", f"{AJAX}/gateway-proxy", gateway_proxy),
        Route("GET", "/ajax-api/3.0/mlflow/ui-telemetry", ui_telemetry),
        Route("POST", "/ajax-api/3.0/mlflow/ui-telemetry", ui_telemetry),
        *(
            Route(method, prefix + path, empty_answer(body))
            for method, path, body in EMPTY_ANSWERS
            for prefix in ("/api", "/ajax-api")
        ),
        *(
            Route("POST", f"/ajax-api/3.0/mlflow/demo/{action}", demo_not_served)
            for action in ("generate", "delete")
        ),
        Route("GET", f"{AJAX}/get-trace-artifact", not_found),
        Route("GET", "/ajax-api/3.0/mlflow/get-trace-artifact", not_found),
    ]
    if build is not None and importlib.util.find_spec("graphql") is not None:
        # Imported only here: graphql-core is optional.
        from runstream.api.ui.graphql import graphql_endpoint

        routes.append(Route("POST", "/graphql", graphql_endpoint))
        routes.append(Route("GET", "/graphql", graphql_endpoint))
    return routes


def setup_ui(app: web.Application) -> None:
    """Serve MLflow's UI (when installed) and the UI-only endpoints. Idempotent.

    Called after the other parts: a route another part already serves keeps its handler."""
    if app.get(_UI_ADDED):
        return
    app[_UI_ADDED] = True
    build = app[UI_BUILD] = find_ui_build()
    for route in ui_routes(build):
        _add(app, route.method, route.path, route.handler)
