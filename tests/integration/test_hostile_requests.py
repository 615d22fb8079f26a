"""Bad input answers 4xx, never 500; bounded work; browser safety (issue 14).

The app ``runstream server`` runs, on a real port, with real PostgreSQL and Redis.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from runstream.api.mlflow.search_store import SEARCH_STORE
from runstream.preflight import warn_if_over_connection_budget
from runstream.projector.migrations import migrate_dsn
from runstream.resources import PG_POOL
from runstream.server import build_app
from runstream.settings import Settings
from tests.conftest import create_database, drop_test_database, with_database

MLFLOW = "/api/2.0/mlflow"
NATIVE = "/api/runstream/v1"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, Any]:
    async with http.request(method, url, **kw) as resp:
        text = await resp.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        return resp.status, body, resp.headers


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a test server for the block; its base URL."""
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    try:
        yield str(test_server.make_url("")).rstrip("/")
    finally:
        await test_server.close()


@pytest.fixture
async def run_id(server: str, http: aiohttp.ClientSession) -> str:
    status, body, _ = await call(http, "POST", f"{server}{MLFLOW}/runs/create", json={})
    assert status == 200, body
    return str(body["run"]["info"]["run_id"])


def token(offset: Any) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def raw_json(text: str) -> dict[str, Any]:
    return {"data": text.encode(), "headers": {"Content-Type": "application/json"}}


async def test_malformed_reads_and_writes_answer_4xx(
    server: str, http: aiohttp.ClientSession, run_id: str
) -> None:
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/runs/search", {"json": {"experiment_ids": ["0"], "page_token": token(2**63)}}),
        ("POST", "/runs/search", {"json": {"experiment_ids": ["0"], "page_token": token(10**30)}}),
        ("POST", "/experiments/search", {"json": {"page_token": token(2**64)}}),
        (
            "POST",
            "/runs/search",
            {
                "json": {
                    "experiment_ids": ["0"],
                    "filter": "attributes.start_time > 9223372036854775808",
                }
            },
        ),
        (
            "POST",
            "/runs/search",
            {"json": {"experiment_ids": ["0"], "filter": "params.p = 'a\x00'"}},
        ),
        (
            "POST",
            "/runs/search",
            raw_json('{"experiment_ids": ["0"], "filter": "params.p = \'\\ud800\'"}'),
        ),
        ("GET", "/experiments/get-by-name?experiment_name=a%00b", {}),
        ("GET", "/experiments/get-by-name?experiment_name=%ED%A0%80", {}),
        ("POST", "/runs/set-tag", raw_json('{"run_id": "RUN", "key": "k", "value": "\\ud800"}')),
        ("GET", "/runs/get?run_id=a%00b", {}),
        ("GET", "/metrics/get-history?run_id=RUN&metric_key=a%00", {}),
        ("POST", "/runs/update", {"json": {"run_id": "RUN", "end_time": 2**63}}),
        ("POST", "/runs/update", raw_json('{"run_id": "RUN", "end_time": 99999999999999999999}')),
        (
            "POST",
            "/runs/log-metric",
            raw_json(
                '{"run_id": "RUN", "key": "m", "value": 1, "timestamp": 1,'
                ' "step": -9223372036854775809}'
            ),
        ),
        ("POST", "/runs/create", {"json": {"user_id": "u" * 257}}),
        ("POST", "/runs/set-tag", {"json": {"run_id": "RUN", "key": "k", "value": "v\x00"}}),
        ("POST", "/experiments/create", {"json": {"name": "n\x00"}}),
        ("POST", "/runs/log-batch", raw_json("[" * 100_000 + "]" * 100_000)),
        ("POST", "/runs/log-batch", raw_json('{"a":' * 100_000 + "1" + "}" * 100_000)),
    ]
    for method, path, kw in cases:
        path = path.replace("RUN", run_id)
        if "data" in kw:
            kw = {**kw, "data": kw["data"].replace(b"RUN", run_id.encode())}
        if "json" in kw:
            kw = {
                "data": json.dumps(kw["json"]).replace("RUN", run_id),
                "headers": {"Content-Type": "application/json"},
            }
        status, body, _ = await call(http, method, f"{server}{MLFLOW}{path}", **kw)
        assert 400 <= status < 500, (path, kw, status, body)
        assert isinstance(body, dict) and body["error_code"], (path, body)


async def test_like_pattern_ending_in_a_backslash_answers_4xx(
    server: str, http: aiohttp.ClientSession, run_id: str
) -> None:
    status, body, _ = await call(
        http,
        "POST",
        f"{server}{MLFLOW}/runs/log-parameter",
        json={"run_id": run_id, "key": "p", "value": "abc"},
    )
    assert status == 200, body
    for pattern in ("a\\", "a%\\", "a\\\\"):
        status, body, _ = await call(
            http,
            "POST",
            f"{server}{MLFLOW}/runs/search",
            json={"experiment_ids": ["0"], "filter": f"params.p LIKE '{pattern}'"},
        )
        assert status < 500, (pattern, status, body)


async def test_native_reads_with_nul_answer_4xx(
    server: str, http: aiohttp.ClientSession, run_id: str
) -> None:
    for path in (
        f"{NATIVE}/runs/{run_id}/metrics/a%00b",
        f"{NATIVE}/runs/a%00b",
        f"{NATIVE}/experiments/a%00b",
    ):
        status, body, _ = await call(http, "GET", server + path)
        assert status < 500, (path, status, body)


async def test_artifact_names_past_the_file_system_limits_answer_400(
    server: str, http: aiohttp.ClientSession
) -> None:
    for path in (
        "a" * 300,
        "/".join(["abcd"] * 1000),
    ):
        status, body, _ = await call(http, "PUT", f"{server}{ARTIFACTS}/0/{path}", data=b"x")
        assert status == 400, (path[:20], status, body)
        status, body, _ = await call(http, "GET", f"{server}{ARTIFACTS}/0/{path}")
        assert status in (400, 404), (path[:20], status, body)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(max_artifact_bytes=1000, max_json_bytes=100_000, max_json_items=2_000)


async def test_artifact_upload_past_the_limit_is_413_and_kept_nowhere(
    server: str, http: aiohttp.ClientSession, settings: Settings
) -> None:
    status, body, _ = await call(http, "PUT", f"{server}{ARTIFACTS}/0/big.bin", data=b"x" * 1001)
    assert status == 413, body

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(5):
            yield b"y" * 400

    status, body, _ = await call(http, "PUT", f"{server}{ARTIFACTS}/0/big2.bin", data=chunks())
    assert status == 413, body
    root = Path(str(settings.artifacts_url))
    assert not [p for p in root.rglob("*") if p.is_file()]  # noqa: ASYNC240 - a test's check
    status, _, _ = await call(http, "PUT", f"{server}{ARTIFACTS}/0/small.bin", data=b"z" * 1000)
    assert status == 200


async def test_json_body_past_the_limit_is_413_before_parsing(
    server: str, http: aiohttp.ClientSession, run_id: str
) -> None:
    metrics = [{"key": "m", "value": 1.0, "timestamp": 1, "step": i} for i in range(3000)]
    status, body, _ = await call(
        http,
        "POST",
        f"{server}{MLFLOW}/runs/log-batch",
        json={"run_id": run_id, "metrics": metrics},
    )
    assert status == 413 and body["error_code"] == "RESOURCE_EXHAUSTED", body


async def test_json_body_with_too_many_items_is_413_before_parsing(
    server: str, http: aiohttp.ClientSession, run_id: str
) -> None:
    """Under the byte limit, over the item limit (2,000 in this module): refused from its
    commas, nothing of it applied; a batch under both limits goes through."""

    def batch(first: int, count: int) -> dict[str, Any]:
        metrics = [
            {"key": "m", "value": float(i), "timestamp": 1, "step": i}
            for i in range(first, first + count)
        ]
        return {"run_id": run_id, "metrics": metrics}

    refused = batch(0, 600)  # 4 commas a metric: 2,400
    assert len(json.dumps(refused)) < 100_000
    status, body, _ = await call(http, "POST", f"{server}{MLFLOW}/runs/log-batch", json=refused)
    assert status == 413 and body["error_code"] == "RESOURCE_EXHAUSTED", body
    assert "more than 2,000 JSON items" in body["message"]
    status, body, _ = await call(
        http, "POST", f"{server}{MLFLOW}/runs/log-batch", json=batch(1_000, 400)
    )
    assert status == 200, body
    status, body, _ = await call(
        http,
        "GET",
        f"{server}{MLFLOW}/metrics/get-history",
        params={"run_id": run_id, "metric_key": "m"},
    )
    assert status == 200, body
    assert [m["step"] for m in body["metrics"]] == list(range(1_000, 1_400))


async def test_native_json_bodies_are_bounded_like_mlflows(
    server: str, http: aiohttp.ClientSession, run_id: str
) -> None:
    """The native routes' JSON (events, experiments/get-or-create) gets the MLflow routes'
    bounds: the byte limit of JSON, not of msgpack, and the item limit; nothing applied."""
    too_many = {"events": [], "pad": [0] * 2_100}
    status, body, _ = await call(http, "POST", f"{server}{NATIVE}/events", json=too_many)
    assert status == 413 and "more than 2,000 JSON items" in body["message"], body
    too_long = {"events": [], "pad": "x" * 100_001}  # past max_json_bytes, under max_body_bytes
    status, body, _ = await call(http, "POST", f"{server}{NATIVE}/events", json=too_long)
    assert status == 413 and body["error_code"] == "RESOURCE_EXHAUSTED", body
    status, body, _ = await call(
        http,
        "POST",
        f"{server}{NATIVE}/experiments/get-or-create",
        json={"name": "e", "pad": [0] * 2_100},
    )
    assert status == 413 and "more than 2,000 JSON items" in body["message"], body
    status, body, _ = await call(
        http, "GET", f"{server}{MLFLOW}/experiments/get-by-name", params={"experiment_name": "e"}
    )
    assert status == 404, body
    status, body, _ = await call(
        http, "GET", f"{server}{MLFLOW}/runs/get", params={"run_id": run_id}
    )
    assert status == 200 and "metrics" not in body["run"]["data"], body


async def test_graphql_and_multipart_json_get_the_json_bounds(
    server: str, http: aiohttp.ClientSession
) -> None:
    """``/graphql`` and the artifact multipart routes read JSON too: past ``max_json_bytes``
    (under ``max_body_bytes``) or the item limit they are refused before parsing, as the
    MLflow routes are."""
    too_long = "x" * 100_001
    too_many = [0] * 2_100
    for url, payload in (
        (f"{server}/graphql", {"query": "{ __typename }", "pad": too_long}),
        (f"{server}/graphql", {"query": "{ __typename }", "pad": too_many}),
        (
            f"{server}/api/2.0/mlflow-artifacts/mpu/create/0/a.bin",
            {"path": "a.bin", "pad": too_long},
        ),
        (
            f"{server}/api/2.0/mlflow-artifacts/mpu/create/0/a.bin",
            {"path": "a.bin", "pad": too_many},
        ),
    ):
        status, body, _ = await call(http, "POST", url, json=payload)
        assert status == 413 and body["error_code"] == "RESOURCE_EXHAUSTED", (url, body)


async def test_the_auth_guard_parses_under_the_routes_bounds(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    """With auth on, the guard reads a write's body to find its run before the route runs:
    it must refuse what the route would refuse, before parsing it."""
    admin = aiohttp.BasicAuth("admin", "admin-password-0123")
    app = build_app(
        settings.replace(auth="basic", admin_username=admin.login, admin_password=admin.password)
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        status, body, _ = await call(
            http, "POST", f"{url}{MLFLOW}/runs/create", json={}, auth=admin
        )
        assert status == 200, body
        run = body["run"]["info"]["run_id"]
        metrics = [{"key": "m", "value": 1.0, "timestamp": 1, "step": i} for i in range(600)]
        for payload in (
            {"run_id": run, "metrics": metrics},  # 2,400 commas: past the item limit
            {"run_id": run, "tags": [{"key": "t", "value": "x" * 100_001}]},  # past the bytes
        ):
            status, body, _ = await call(
                http, "POST", f"{url}{MLFLOW}/runs/log-batch", json=payload, auth=admin
            )
            assert status == 413 and body["error_code"] == "RESOURCE_EXHAUSTED", body
        status, body, _ = await call(
            http,
            "POST",
            f"{url}/api/2.0/mlflow/users/create",
            json={"username": "bob", "password": "bob-password-0123", "pad": [0] * 2_100},
            auth=admin,
        )
        assert status == 413, body
        status, body, _ = await call(
            http, "GET", f"{url}{MLFLOW}/runs/get", params={"run_id": run}, auth=admin
        )
        assert status == 200 and body["run"]["data"].get("metrics") is None, body
        assert body["run"]["data"].get("tags", []) == [] or all(
            t["key"] != "t" for t in body["run"]["data"]["tags"]
        )
    finally:
        await server.close()


async def test_search_filters_are_bounded(server: str, http: aiohttp.ClientSession) -> None:
    many = " AND ".join(f"params.p{i} = 'x'" for i in range(51))
    status, body, _ = await call(
        http,
        "POST",
        f"{server}{MLFLOW}/runs/search",
        json={"experiment_ids": ["0"], "filter": many},
    )
    assert status == 400 and "clauses" in body["message"], body
    fifty = " AND ".join(f"params.p{i} = 'x and y'" for i in range(50))
    status, body, _ = await call(
        http,
        "POST",
        f"{server}{MLFLOW}/runs/search",
        json={"experiment_ids": ["0"], "filter": fifty},
    )
    assert status == 200, body
    long = "params.p = '" + "x" * 5000 + "'"
    status, body, _ = await call(
        http,
        "POST",
        f"{server}{MLFLOW}/runs/search",
        json={"experiment_ids": ["0"], "filter": long},
    )
    assert status == 400 and "characters" in body["message"], body


async def test_stopped_redis_is_503_with_retry_after(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    down = settings.replace(redis_url=f"redis://127.0.0.1:{dead}/0", run_projector=False)
    app = build_app(down, ("ingest", "api"))
    async with serving(app) as url:
        for method, path, kw in (
            ("GET", f"{MLFLOW}/runs/get?run_id={'a' * 32}", {}),
            ("POST", f"{MLFLOW}/runs/create", {"json": {}}),
            ("POST", f"{NATIVE}/experiments/get-or-create", {"json": {"name": "x"}}),
        ):
            status, body, headers = await call(http, method, url + path, **kw)
            assert status == 503, (path, status, body)
            assert headers.get("Retry-After"), path


# -- browser safety -------------------------------------------------------------------------------


async def test_foreign_host_is_refused_but_health_answers(
    server: str, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await call(
        http, "GET", f"{server}{MLFLOW}/experiments/search", headers={"Host": "evil.example"}
    )
    assert status == 403 and "DNS rebinding" in body
    status, _, _ = await call(http, "GET", f"{server}/health", headers={"Host": "evil.example"})
    assert status == 200
    for host in ("localhost:5000", "127.0.0.1", "10.1.2.3:80", "192.168.0.7:5000", "172.20.0.3"):
        status, _, _ = await call(
            http, "GET", f"{server}{MLFLOW}/experiments/get?experiment_id=0", headers={"Host": host}
        )
        assert status == 200, host


async def test_cross_origin_simple_requests_change_nothing(
    server: str, http: aiohttp.ClientSession
) -> None:
    evil = {"Origin": "https://evil.example"}
    for path, data in (
        (f"{NATIVE}/experiments/get-or-create", '{"name": "csrf"}'),
        (f"{NATIVE}/events", '{"events": []}'),
        (f"{MLFLOW}/experiments/create", '{"name": "csrf"}'),
    ):
        status, body, _ = await call(
            http, "POST", server + path, data=data, headers={**evil, "Content-Type": "text/plain"}
        )
        assert status == 403 and body == "Cross-origin request blocked", (path, body)
    # Same origin, but a content type a cross-origin form could send: refused too.
    status, body, _ = await call(
        http,
        "POST",
        f"{server}{NATIVE}/experiments/get-or-create",
        data='{"name": "csrf"}',
        headers={"Content-Type": "text/plain"},
    )
    assert status == 400 and "Content-Type" in body["message"]
    status, body, _ = await call(
        http, "GET", f"{server}{MLFLOW}/experiments/get-by-name?experiment_name=csrf"
    )
    assert status == 404, body
    # The page's own origin (the UI) and localhost pages may write.
    own = server.replace("http://", "")
    status, body, _ = await call(
        http,
        "POST",
        f"{server}{NATIVE}/experiments/get-or-create",
        json={"name": "mine"},
        headers={"Origin": f"http://{own}"},
    )
    assert status == 200, body


async def test_cors_and_security_headers(server: str, http: aiohttp.ClientSession) -> None:
    status, _, headers = await call(
        http,
        "OPTIONS",
        f"{server}{MLFLOW}/runs/search",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    status, _, headers = await call(
        http,
        "GET",
        f"{server}{MLFLOW}/experiments/get?experiment_id=0",
        headers={"Origin": "https://evil.example"},
    )
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "SAMEORIGIN"


async def test_readers_holding_every_api_connection_do_not_stall_the_projector(
    settings: Settings, http: aiohttp.ClientSession, database_url: str
) -> None:
    app = build_app(settings.replace(db_pool_min=1, db_pool_max=2))
    async with serving(app) as url:
        status, body, _ = await call(http, "POST", f"{url}{MLFLOW}/runs/create", json={})
        assert status == 200, body
        run_id = body["run"]["info"]["run_id"]
        pool = app[PG_POOL]
        held = [await pool.acquire() for _ in range(2)]  # every connection of the API pool
        try:
            series = {"key": "m", "steps": [1, 2, 3], "timestamps": [1, 1, 1], "values": [1.0] * 3}
            events = {"events": [{"type": "metrics_logged", "run_id": run_id, "series": [series]}]}
            status, body, _ = await call(
                http,
                "POST",
                f"{url}{NATIVE}/events?wait=1",
                data=msgpack.packb(events),
                headers={"Content-Type": "application/msgpack"},
            )
            assert status == 200, body  # applied by the projector, on its own pool
        finally:
            for conn in held:
                await pool.release(conn)
        conn = await asyncpg.connect(database_url)
        try:
            count = await conn.fetchval(
                "SELECT point_count FROM metric_series WHERE run_id = $1 AND key = 'm'", run_id
            )
        finally:
            await conn.close()
        assert count == 3


async def test_searches_holding_every_search_connection_do_not_stall_point_reads(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    app = build_app(settings.replace(search_pool_max=1))
    async with serving(app) as url:
        status, body, _ = await call(http, "POST", f"{url}{MLFLOW}/runs/create", json={})
        assert status == 200, body
        run_id = body["run"]["info"]["run_id"]
        store = app[SEARCH_STORE]
        searching = await store.pool.acquire()  # the one search connection of the process
        try:
            # The search sessions carry the planner settings, without a SET per search.
            assert await searching.fetchval("SHOW enable_memoize") == "off"
            assert await searching.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
            status, body, _ = await call(
                http, "GET", f"{url}{MLFLOW}/runs/get", params={"run_id": run_id}
            )
            assert status == 200, body
        finally:
            await store.pool.release(searching)
        status, body, _ = await call(
            http, "POST", f"{url}{MLFLOW}/runs/search", json={"experiment_ids": ["0"]}
        )
        assert status == 200, body
        assert [r["info"]["run_id"] for r in body["runs"]] == [run_id]


async def test_a_search_waits_for_a_search_connection_only_as_long_as_it_may_run(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    app = build_app(settings.replace(search_pool_max=1, statement_timeout=0.5))
    async with serving(app) as url:
        store = app[SEARCH_STORE]
        searching = await store.pool.acquire()
        try:
            status, body, headers = await call(
                http, "POST", f"{url}{MLFLOW}/runs/search", json={"experiment_ids": ["0"]}
            )
        finally:
            await store.pool.release(searching)
        assert status == 503, body
        assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert "stayed busy for 0.5s" in body["message"]
        assert headers["Retry-After"] == "1"
        status, body, _ = await call(
            http, "POST", f"{url}{MLFLOW}/runs/search", json={"experiment_ids": ["0"]}
        )
        assert status == 200, body


async def test_an_api_started_before_the_migrations_searches_once_they_ran(
    settings: Settings, http: aiohttp.ClientSession, pg_admin_url: str
) -> None:
    """The search pool warms each new connection with a search; on a database the projector
    has not migrated yet that finds no tables, and must not keep the api from starting."""
    name = f"rs_test_{uuid.uuid4().hex[:16]}"
    await create_database(pg_admin_url, name)  # empty: no template, no migrations
    try:
        empty = settings.replace(database_url=with_database(pg_admin_url, name))
        async with serving(build_app(empty, ("api",))) as url:
            await migrate_dsn(empty.database_url)
            status, body, _ = await call(
                http, "POST", f"{url}{MLFLOW}/runs/search", json={"experiment_ids": ["0"]}
            )
            assert status == 200, body
            assert body == {}
    finally:
        await drop_test_database(pg_admin_url, name)


async def test_pools_larger_than_postgresql_accepts_are_named_at_start_up(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runstream.preflight")
    processes = [("ingest", "api", "projector"), ("ingest", "api")]
    await warn_if_over_connection_budget(settings, processes)
    assert not caplog.records  # 2 x (10 + 4) + 4 fit in PostgreSQL's default 100
    await warn_if_over_connection_budget(settings.replace(db_pool_max=1_000), processes)
    (record,) = caplog.records
    assert "may open 2012 PostgreSQL connections" in record.getMessage()
    assert "RUNSTREAM_DB_POOL_MAX 1000" in record.getMessage()
