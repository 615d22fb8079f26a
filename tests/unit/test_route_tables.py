"""Each api subpackage registers its routes from one table: the app serves those and no others."""

from __future__ import annotations

from aiohttp import web

from runstream.api import app as api_app
from runstream.api.artifacts import routes as artifacts
from runstream.api.artifacts.proxy import ArtifactHandlers
from runstream.api.mlflow import routes as mlflow
from runstream.api.native import routes as native
from runstream.api.ui import routes as ui
from runstream.settings import Settings


def served(application: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in application.router.routes()
        if route.resource is not None
    }


def canonical(path: str) -> str:
    # aiohttp's canonical form drops a variable's regex: {path:.+} -> {path}
    return path.replace("{path:.+}", "{path}")


def test_every_route_comes_from_a_table() -> None:
    application = api_app.create_app(Settings())
    expected: set[tuple[str, str]] = set()
    for n in native.ROUTES:
        expected.add((n.method, n.path))
    for m in (*mlflow.TRACKING_ROUTES, *mlflow.REGISTRY_ROUTES):
        expected |= {(m.method, canonical(prefix + m.path)) for prefix in mlflow.PREFIXES}
    for m in mlflow.V3_ROUTES:
        expected |= {(m.method, canonical(prefix + m.path)) for prefix in mlflow.PREFIXES_3}
    expected.add(("GET", mlflow.MODEL_VERSION_ARTIFACT_PATH))
    for path in mlflow.SERVER_INFO_PATHS:
        expected.add(("GET", path))
    handlers = ArtifactHandlers(max_json_bytes=1)
    for a in artifacts.artifact_routes(handlers):
        expected |= {(a.method, canonical(prefix + a.path)) for prefix in artifacts.PREFIXES}
    claimed = set(expected)
    for u in ui.ui_routes(application[ui.UI_BUILD]):
        route = (u.method, canonical(u.path))
        if not any(path == route[1] and method in (u.method, "*") for method, path in claimed):
            expected.add(route)
    # api.app answers HEAD on every GET route (runstream.web.answer_head_on_get).
    any_method = {path for method, path in expected if method == "*"}
    expected |= {("HEAD", path) for method, path in expected if method == "GET"} - {
        ("HEAD", path) for path in any_method
    }
    assert served(application) == expected
