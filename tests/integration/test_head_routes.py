"""Every GET route of the server's app answers HEAD: the route table is walked, not listed."""

from __future__ import annotations

import re

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from runstream.server import build_app
from runstream.settings import Settings


def get_paths(app: web.Application) -> list[str]:
    """A concrete path for every resource that has a GET route (placeholders filled)."""
    paths = []
    for resource in app.router.resources():
        if not any(route.method == "GET" for route in resource):
            continue
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        assert isinstance(path, str), info
        paths.append(re.sub(r"\{[^}]+\}", "x", path))
    return paths


def test_every_get_resource_of_the_app_has_a_head_route(settings: Settings) -> None:
    app = build_app(settings)
    missing = [
        resource.canonical
        for resource in app.router.resources()
        if isinstance(resource, web.Resource)
        and {route.method for route in resource} & {"GET"}
        and not {route.method for route in resource} & {"HEAD", "*"}
    ]
    assert missing == []
    assert len(get_paths(app)) > 20  # the walk sees MLflow's, the native and the UI's routes


async def test_every_get_route_answers_head_without_405(settings: Settings) -> None:
    app = build_app(settings)
    paths = get_paths(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        answers = {}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for path in paths:
                async with session.head(server.make_url(path), allow_redirects=False) as response:
                    answers[path] = response.status
                    assert await response.read() == b""
                async with session.get(server.make_url(path), allow_redirects=False) as got:
                    # HEAD answers as GET does, without the body
                    if got.status != 200 or path.endswith("/live"):
                        continue
                assert answers[path] == got.status, path
    finally:
        await server.close()
    assert [path for path, status in answers.items() if status == 405] == []
    assert answers["/health"] == 200


@pytest.mark.parametrize(
    "path", ["/api/2.0/mlflow/experiments/search", "/ajax-api/2.0/mlflow/runs/get"]
)
def test_mlflow_get_routes_are_among_those_walked(settings: Settings, path: str) -> None:
    assert path in get_paths(build_app(settings))


async def status_of(server: TestServer, method: str, path: str, query: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.make_url(path), params=query) as response,
    ):
        return response.status


async def test_head_with_a_query_answers_as_get_on_native_routes(settings: Settings) -> None:
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        path, query = "/api/runstream/v1/experiments/0", {"wait_for": ""}
        assert await status_of(server, "GET", path, query) == 200
        assert await status_of(server, "HEAD", path, query) == 200
    finally:
        await server.close()


async def test_head_with_a_query_answers_as_get_on_mlflow_routes(settings: Settings) -> None:
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        path, query = "/api/2.0/mlflow/experiments/get", {"experiment_id": "0"}
        assert await status_of(server, "GET", path, query) == 200
        assert await status_of(server, "HEAD", path, query) == 200
    finally:
        await server.close()
