"""The read routes through the real app on a real PostgreSQL and Redis.

The read tables are this part's input, so the tests write rows straight into them (the
projector fills them in production), metric chunks packed with ``schemas.metrics``.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import msgpack
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from runstream.api import create_app, queries, setup, views
from runstream.schemas import constants as c
from runstream.schemas.metrics import pack_float64, pack_int64
from runstream.settings import Settings

API = "/api/runstream/v1"
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
NAN_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
RUN_A = "a" * 32
RUN_B = "b" * 32
RUN_DELETED = "d" * 32

Client = TestClient[web.Request, web.Application]


async def serve(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async for c_ in serve(settings):
        yield c_


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def insert_series(
    conn: asyncpg.Connection,
    run_id: str,
    key: str,
    steps: Sequence[int],
    timestamps: Sequence[int],
    values: Sequence[float],
    chunk_points: int,
    latest: tuple[int, int, float] | None = None,
) -> None:
    """A series as the projector stores it; chunks are inserted last-first, so order matters."""
    n = len(values)
    latest = latest or (steps[-1], timestamps[-1], values[-1])
    series_id = await conn.fetchval(
        "INSERT INTO metric_series (run_id, key, point_count, chunk_count, tail_count,"
        " latest_step, latest_timestamp, latest_value)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING series_id",
        run_id,
        key,
        n,
        -(-n // chunk_points),
        n % chunk_points or chunk_points,
        *latest,
    )
    starts = list(range(0, n, chunk_points))
    for chunk_no in reversed(range(len(starts))):
        lo = starts[chunk_no]
        s = list(steps[lo : lo + chunk_points])
        t = list(timestamps[lo : lo + chunk_points])
        v = list(values[lo : lo + chunk_points])
        real = [x for x in v if not math.isnan(x)]
        await conn.execute(
            "INSERT INTO metric_chunks (series_id, chunk_no, n, min_step, max_step, first_step,"
            " last_step, min_value, max_value, first_value, last_value, steps, timestamps, vals)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            series_id,
            chunk_no,
            len(v),
            min(s),
            max(s),
            s[0],
            s[-1],
            min(real) if real else None,
            max(real) if real else None,
            v[0],
            v[-1],
            pack_int64(s),
            pack_int64(t),
            pack_float64(v),
        )


STEPS = [INT64_MIN, -1, 0, 1, 2, 2, 2, 3, INT64_MAX, 7]
TIMESTAMPS = [0, INT64_MAX, INT64_MIN, 10, 11, 11, 12, 13, 14, 15]
VALUES = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1.5, 1.5, 5e-324, NAN_PAYLOAD, -2.25]


@pytest.fixture
async def seeded(db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage,"
        " creation_time, last_update_time) VALUES"
        " (1, 'first', 's3://b/1', 'active', 100, 200),"
        " (2, 'gone', 's3://b/2', 'deleted', 300, 400),"
        " (3, 'empty', 's3://b/3', 'active', 500, 500)"
    )
    await db.execute(
        "INSERT INTO experiment_tags VALUES (1, 'team', 'ml'), (1, 'a/b', ''), (2, 'x', 'y')"
    )
    await db.execute(
        "INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, end_time,"
        " lifecycle_stage, artifact_uri) VALUES"
        " ($1, 1, 'older', 'alice', 'FINISHED', 1000, 2000, 'active', 's3://b/1/a/artifacts'),"
        " ($2, 1, 'newer', 'bob', 'RUNNING', 5000, NULL, 'active', ''),"
        " ($3, 1, 'trash', 'bob', 'KILLED', 9000, 9001, 'deleted', 's3://b/1/d/artifacts')",
        RUN_A,
        RUN_B,
        RUN_DELETED,
    )
    await db.execute(
        "INSERT INTO params VALUES ($1, 'lr', '0.01'), ($1, 'layers', '3'), ($2, 'lr', '0.1')",
        RUN_A,
        RUN_B,
    )
    await db.execute(
        "INSERT INTO run_tags VALUES ($1, 'mlflow.runName', 'older'), ($1, 'note', '')", RUN_A
    )
    await insert_series(db, RUN_A, "loss/train step", STEPS, TIMESTAMPS, VALUES, chunk_points=3)
    await insert_series(
        db, RUN_A, "acc", [0, 1], [10, 20], [0.5, 0.75], chunk_points=1024, latest=(1, 20, 0.75)
    )
    # A series row without points yet (created, nothing applied) is not a latest metric.
    await db.execute("INSERT INTO metric_series (run_id, key) VALUES ($1, 'pending')", RUN_B)


def exp_json(eid: int, name: str, stage: str, times: tuple[int, int], tags: Any = None) -> Any:
    out = {
        "experiment_id": str(eid),
        "name": name,
        "artifact_location": f"s3://b/{eid}",
        "lifecycle_stage": stage,
        "last_update_time": times[1],
        "creation_time": times[0],
    }
    if tags:
        out["tags"] = tags
    return out


EXP_1 = exp_json(
    1,
    "first",
    "active",
    (100, 200),
    [
        {"key": "a/b", "value": ""},
        {"key": "team", "value": "ml"},
    ],
)
EXP_2 = exp_json(2, "gone", "deleted", (300, 400), [{"key": "x", "value": "y"}])
EXP_3 = exp_json(3, "empty", "active", (500, 500))

RUN_A_JSON = {
    "info": {
        "run_uuid": RUN_A,
        "experiment_id": "1",
        "run_name": "older",
        "user_id": "alice",
        "status": "FINISHED",
        "start_time": 1000,
        "end_time": 2000,
        "artifact_uri": "s3://b/1/a/artifacts",
        "lifecycle_stage": "active",
        "run_id": RUN_A,
    },
    "data": {
        # Params and metrics in the order they were logged, as MLflow's server lists them.
        "metrics": [
            {"key": "loss/train step", "value": -2.25, "timestamp": 15, "step": 7},
            {"key": "acc", "value": 0.75, "timestamp": 20, "step": 1},
        ],
        "params": [{"key": "lr", "value": "0.01"}, {"key": "layers", "value": "3"}],
        "tags": [{"key": "mlflow.runName", "value": "older"}, {"key": "note", "value": ""}],
    },
    "inputs": {},
    "outputs": {},
}
RUN_B_JSON = {
    "info": {
        "run_uuid": RUN_B,
        "experiment_id": "1",
        "run_name": "newer",
        "user_id": "bob",
        "status": "RUNNING",
        "start_time": 5000,
        "lifecycle_stage": "active",
        "run_id": RUN_B,
    },
    "data": {"params": [{"key": "lr", "value": "0.1"}]},
    "inputs": {},
    "outputs": {},
}


async def get_json(client: Client, path: str, status: int = 200, **kw: Any) -> Any:
    resp = await client.get(path, **kw)
    body = await resp.read()
    assert resp.status == status, body
    assert resp.content_type == "application/json"
    return orjson.loads(body)


@pytest.mark.usefixtures("seeded")
async def test_experiments(client: Client) -> None:
    listed = await get_json(client, f"{API}/experiments")
    default = listed["experiments"][0]
    assert default["experiment_id"] == "0"
    assert default["name"] == "Default"
    assert listed["experiments"][1:] == [EXP_1, EXP_3]
    assert "next_page_token" not in listed

    every = await get_json(client, f"{API}/experiments?view_type=ALL&max_results=2")
    assert [e["experiment_id"] for e in every["experiments"]] == ["0", "1"]
    rest = await get_json(
        client, f"{API}/experiments?view_type=all&page_token={every['next_page_token']}"
    )
    assert rest == {"experiments": [EXP_2, EXP_3]}
    deleted = await get_json(client, f"{API}/experiments?view_type=DELETED_ONLY")
    assert deleted == {"experiments": [EXP_2]}

    assert await get_json(client, f"{API}/experiments/1") == {"experiment": EXP_1}
    assert await get_json(client, f"{API}/experiments/2") == {"experiment": EXP_2}


@pytest.mark.usefixtures("seeded")
async def test_runs(client: Client) -> None:
    assert await get_json(client, f"{API}/runs/{RUN_A}") == {"run": RUN_A_JSON}
    assert await get_json(client, f"{API}/runs/{RUN_B}") == {"run": RUN_B_JSON}
    listed = await get_json(client, f"{API}/experiments/1/runs")
    assert listed == {"runs": [RUN_B_JSON, RUN_A_JSON]}
    every = await get_json(client, f"{API}/experiments/1/runs?view_type=ALL&max_results=1")
    assert [r["info"]["run_id"] for r in every["runs"]] == [RUN_DELETED]
    assert every["next_page_token"] == "1"
    assert await get_json(client, f"{API}/experiments/3/runs") == {"runs": []}


async def test_latest_non_finite_metric_is_mlflow_string(
    client: Client, db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO runs (run_id, experiment_id, status, start_time) VALUES ($1, 0, 'RUNNING', 1)",
        RUN_A,
    )
    for key, value in (("n", math.nan), ("p", math.inf), ("m", -math.inf), ("z", -0.0)):
        await insert_series(db, RUN_A, key, [INT64_MAX], [INT64_MIN], [value], chunk_points=8)
    resp = await client.get(f"{API}/runs/{RUN_A}")
    text = (await resp.read()).decode()
    assert '"value":-0.0' in text
    metrics = orjson.loads(text)["run"]["data"]["metrics"]
    assert metrics == [
        {"key": "n", "value": "NaN", "timestamp": INT64_MIN, "step": INT64_MAX},
        {"key": "p", "value": "Infinity", "timestamp": INT64_MIN, "step": INT64_MAX},
        {"key": "m", "value": "-Infinity", "timestamp": INT64_MIN, "step": INT64_MAX},
        {"key": "z", "value": -0.0, "timestamp": INT64_MIN, "step": INT64_MAX},
    ]


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(
    ("path", "status", "code", "message"),
    [
        ("/experiments/99", 404, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=99 exists"),
        ("/experiments/0099", 404, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=99 exists"),
        (
            f"/experiments/{2**63}",
            404,
            "RESOURCE_DOES_NOT_EXIST",
            f"No Experiment with id={2**63} exists",
        ),
        ("/experiments/99/runs", 404, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=99 exists"),
        (
            "/experiments/abc",
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid experiment ID 'abc'. Experiment ID must be a valid integer.",
        ),
        ("/runs/nope", 404, "RESOURCE_DOES_NOT_EXIST", "Run with id=nope not found"),
        ("/runs/nope/history?key=x", 404, "RESOURCE_DOES_NOT_EXIST", "Run with id=nope not found"),
        (
            f"/runs/{RUN_A}/history",
            400,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'key'.",
        ),
        ("/experiments?max_results=0", 400, "INVALID_PARAMETER_VALUE", None),
        ("/experiments?view_type=SOME", 400, "INVALID_PARAMETER_VALUE", None),
        ("/experiments?wait_for=garbage", 400, "INVALID_PARAMETER_VALUE", None),
    ],
)
async def test_errors(
    client: Client, path: str, status: int, code: str, message: str | None
) -> None:
    body = await get_json(client, API + path, status=status)
    assert body["error_code"] == code
    if message is not None:
        assert body["message"] == message


@pytest.mark.usefixtures("seeded")
async def test_history_json(client: Client) -> None:
    body = await get_json(client, f"{API}/runs/{RUN_A}/history", params={"key": "loss/train step"})
    assert body["key"] == "loss/train step"
    assert body["steps"] == STEPS
    assert body["timestamps"] == TIMESTAMPS
    expected = ["NaN", "Infinity", "-Infinity", -0.0, 0.0, 1.5, 1.5, 5e-324, "NaN", -2.25]
    assert body["values"] == expected
    assert math.copysign(1.0, body["values"][3]) == -1.0
    assert math.copysign(1.0, body["values"][4]) == 1.0


@pytest.mark.usefixtures("seeded")
async def test_history_msgpack_is_bit_exact(client: Client) -> None:
    resp = await client.get(
        f"{API}/runs/{RUN_A}/history",
        params={"key": "loss/train step"},
        headers={"Accept": "application/msgpack"},
    )
    assert resp.status == 200
    assert resp.content_type == "application/msgpack"
    assert msgpack.unpackb(await resp.read()) == {
        "key": "loss/train step",
        "steps": pack_int64(STEPS),
        "timestamps": pack_int64(TIMESTAMPS),
        "values": pack_float64(VALUES),
    }


@pytest.mark.usefixtures("seeded")
async def test_history_of_a_key_without_points_is_empty(client: Client) -> None:
    for key in ("never-logged", "pending"):
        run = RUN_B if key == "pending" else RUN_A
        body = await get_json(client, f"{API}/runs/{run}/history", params={"key": key})
        assert body == {"key": key, "steps": [], "timestamps": [], "values": []}


async def test_health(client: Client) -> None:
    assert await get_json(client, "/health") == {"status": "ok"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_health_names_the_store_that_fails(settings: Settings) -> None:
    broken = settings.replace(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    async for client in serve(broken):
        body = await get_json(client, "/health", status=503)
        assert body["status"] == "unavailable"
        assert list(body["failed"]) == ["redis"]


async def publish_watermark(redis_url: str, prefix: str, shard: int, entry: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        await client.set(c.watermark_key(prefix, shard), entry)
        await client.publish(c.watermark_channel(prefix), f"{shard} {entry}")
    finally:
        await client.aclose()


@pytest.mark.usefixtures("seeded")
async def test_wait_for_waits_for_the_watermark(client: Client, settings: Settings) -> None:
    assert settings.redis_url
    token = "1:1700000000000-3,3:1700000000005-0"
    query = client.get(f"{API}/experiments/1", params={"wait_for": token})
    header = client.get(f"{API}/runs/{RUN_A}", headers={"X-Runstream-Wait-For": token})
    waiting = [asyncio.ensure_future(query), asyncio.ensure_future(header)]
    await publish_watermark(settings.redis_url, settings.stream_prefix, 1, "1700000000000-3")
    # The entry on shard 3 is still unapplied (an older one is), so both reads keep waiting.
    await publish_watermark(settings.redis_url, settings.stream_prefix, 3, "1700000000004-9")
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in waiting)
    await publish_watermark(settings.redis_url, settings.stream_prefix, 3, "1700000000005-0")
    async with asyncio.timeout(5):
        responses = await asyncio.gather(*waiting)
    assert [r.status for r in responses] == [200, 200]
    assert (await responses[0].json())["experiment"] == EXP_1
    assert (await responses[1].json())["run"] == RUN_A_JSON


@pytest.mark.usefixtures("seeded")
async def test_wait_for_times_out_with_503(settings: Settings) -> None:
    async for client in serve(settings.replace(read_your_writes_timeout=0.3)):
        resp = await client.get(
            f"{API}/runs/{RUN_A}/history", params={"key": "acc", "wait_for": "2:99-0"}
        )
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error_code"] == "TEMPORARILY_UNAVAILABLE"


@pytest.mark.usefixtures("seeded")
async def test_experiment_queries_by_name_and_id(db: asyncpg.Connection) -> None:
    by_name = await queries.experiment_by_name(db, "first")
    assert by_name is not None
    assert views.experiment_row_to_json(by_name) == EXP_1
    by_id = await queries.experiment_by_id(db, 2)
    assert by_id is not None
    assert views.experiment_row_to_json(by_id) == EXP_2
    assert await queries.experiment_by_name(db, "missing") is None


def test_setup_is_idempotent(settings: Settings) -> None:
    app = create_app(settings)
    routes = len(app.router.routes())
    setup(app, settings)
    assert len(app.router.routes()) == routes


@pytest.mark.usefixtures("seeded")
async def test_search_runs_waits_for_writes_accepted_before_it(
    client: Client, settings: Settings
) -> None:
    """runs/search catches up by itself (overlapped with its query, not before it): an entry
    in a shard's stream but not applied yet holds the search until its watermark passes it."""
    assert settings.redis_url
    redis = aioredis.from_url(settings.redis_url)
    try:
        await redis.set(c.tail_key(settings.stream_prefix, 0), "1700000000000-1")
    finally:
        await redis.aclose()
    search = asyncio.ensure_future(
        client.post("/api/2.0/mlflow/runs/search", json={"experiment_ids": ["1"]})
    )
    await asyncio.sleep(0.3)
    assert not search.done()
    await publish_watermark(settings.redis_url, settings.stream_prefix, 0, "1700000000000-1")
    async with asyncio.timeout(5):
        resp = await search
    assert resp.status == 200
    assert RUN_A in [run["info"]["run_id"] for run in (await resp.json())["runs"]]
