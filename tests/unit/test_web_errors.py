"""Unknown paths and methods: MLflow's (Flask's) pages outside runstream's own routes."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from runstream.web import (
    MLFLOW_404_HTML,
    MLFLOW_405_HTML,
    error_middleware,
    json_response,
    too_many_items,
)


async def ok(request: web.Request) -> web.Response:
    return json_response({})


def make_app() -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/api/2.0/mlflow/experiments/create", ok)
    app.router.add_get("/api/runstream/v1/experiments", ok)
    return app


async def test_unknown_paths_answer_like_mlflow_except_native_ones() -> None:
    async with TestClient(TestServer(make_app())) as client:
        for path in ("/api/2.0/mlflow/nope", "/ajax-api/2.0/mlflow/x", "/nope"):
            resp = await client.get(path)
            assert resp.status == 404
            assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
            assert await resp.text() == MLFLOW_404_HTML
        resp = await client.get("/api/runstream/v1/nope")
        assert resp.status == 404
        assert (await resp.json())["error_code"] == "ENDPOINT_NOT_FOUND"


async def test_wrong_method_answers_405_with_allow() -> None:
    async with TestClient(TestServer(make_app())) as client:
        resp = await client.get("/api/2.0/mlflow/experiments/create")
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert await resp.text() == MLFLOW_405_HTML
        resp = await client.post("/api/runstream/v1/experiments")
        assert resp.status == 404
        assert (await resp.json())["error_code"] == "ENDPOINT_NOT_FOUND"


def test_json_items_are_bounded_by_their_commas() -> None:
    assert not too_many_items(b"[1,2,3]", 2)  # shorter than the limit: not even counted
    assert not too_many_items(b"[" + b"1," * 10 + b"1]", 10)
    assert too_many_items(b"[" + b"1," * 11 + b"1]", 10)
    # Commas in strings count: the bound errs toward refusing, never toward parsing longer.
    assert too_many_items(b'{"note": "' + b"," * 20 + b'"}', 10)
    assert not too_many_items(b"[" * 50 + b"]" * 50, 10)  # depth: the parsers bound it
