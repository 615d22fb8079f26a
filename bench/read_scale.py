"""Reading at scale: history, downsampled history, bulk history, live latency, bytes per point.

Prints one JSON object per line. Needs PostgreSQL and Redis (the same defaults as the tests):

    .venv/bin/python -m bench.read_scale                 # everything
    .venv/bin/python -m bench.read_scale --only bytes    # history|downsample|bulk|live|bytes

Each part is an importable coroutine taking a ``Bench`` (stores + an in-process server).
The side-by-side with a real ``mlflow server`` (``python -m bench --only read_history`` ...)
lives in ``bench/read_workloads.py``, reuses the loaders here (``load_series``,
``load_mlflow_series``, ``live_latencies``, ``measure_bytes``) and is re-exported below as
``WORKLOADS`` so that ``python -m bench`` finds it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgpack
import numpy as np
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from runstream import api, ingest, projector
from runstream.api.native import bulk
from runstream.projector.chunks import CHUNK_COLUMNS, SeriesState, layout
from runstream.projector.migrations import migrate_dsn
from runstream.projector.plan import MetricAppends
from runstream.settings import Settings
from runstream.web import error_middleware

ADMIN = os.environ.get(
    "RUNSTREAM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS = os.environ.get("RUNSTREAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
V1 = "/api/runstream/v1"
CHUNK_POINTS = 1024


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def emit(**fields: Any) -> None:
    print(orjson.dumps(fields).decode(), flush=True)


def ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "median_ms": round(statistics.median(s) * 1000, 2),
        "p99_ms": round(s[min(len(s) - 1, int(len(s) * 0.99))] * 1000, 2),
        "min_ms": round(s[0] * 1000, 2),
        "n": len(s),
    }


async def fresh_database(name: str) -> str:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(ADMIN, name)


def training_curve(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1.0 / np.sqrt(1 + np.arange(n) / 100) + 0.05 * rng.standard_normal(n)


async def load_series(
    conn: asyncpg.Connection,
    run_id: str,
    key: str,
    values: np.ndarray,
    start_ms: int = 1_700_000_000_000,
) -> None:
    """A series laid out exactly as the projector writes it (``chunks.layout``), by COPY."""
    n = len(values)
    steps = np.arange(n, dtype="<i8")
    stamps = (start_ms + steps * 10).astype("<i8")
    series_id = await conn.fetchval(
        "INSERT INTO metric_series (run_id, key) VALUES ($1, $2) RETURNING series_id", run_id, key
    )
    appends = MetricAppends(
        ((run_id, key),), (0, n), steps.tobytes(), stamps.tobytes(), values.astype("<f8").tobytes()
    )
    writes = layout(appends, [SeriesState(series_id)], CHUNK_POINTS)
    await conn.copy_records_to_table(
        "metric_chunks",
        records=[p.record() for p in writes.new_chunks],
        columns=list(CHUNK_COLUMNS),
    )
    s = writes.series[0]
    await conn.execute(
        "UPDATE metric_series SET point_count = $2, chunk_count = $3, tail_count = $4,"
        " latest_step = $5, latest_timestamp = $6, latest_value = $7, min_value = $8,"
        " max_value = $9 WHERE series_id = $1",
        series_id, s.point_count, s.chunk_count, s.tail_count, s.latest_step,
        s.latest_timestamp, s.latest_value, s.min_value, s.max_value,
    )  # fmt: skip


async def insert_run(conn: asyncpg.Connection, run_id: str) -> None:
    await conn.execute(
        "INSERT INTO runs (run_id, experiment_id, status, start_time) VALUES ($1, 0, 'RUNNING', 0)",
        run_id,
    )


async def mlflow_experiment(conn: asyncpg.Connection, name: str) -> int:
    """An experiment row in MLflow's schema (``experiments.experiment_id`` is a serial)."""
    return int(
        await conn.fetchval(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time,"
            " last_update_time) VALUES ($1, 'x', 'active', 0, 0) RETURNING experiment_id",
            name,
        )
    )


async def insert_mlflow_run(conn: asyncpg.Connection, run_id: str, experiment_id: int = 0) -> None:
    """A run row in MLflow's schema (as ``mlflow db upgrade`` creates it)."""
    await conn.execute(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name,"
        " user_id, status, start_time, source_version, lifecycle_stage, artifact_uri,"
        " experiment_id) VALUES ($1, 'r', 'LOCAL', '', '', 'u', 'RUNNING', 0, '',"
        " 'active', 'x', $2)",
        run_id,
        experiment_id,
    )


async def load_mlflow_series(
    conn: asyncpg.Connection,
    run_id: str,
    key: str,
    values: np.ndarray,
    start_ms: int = 1_700_000_000_000,
) -> None:
    """A series as MLflow's SQL store keeps it: one ``metrics`` row per point (COPY) and
    its ``latest_metrics`` row. The same steps and timestamps as ``load_series``."""
    n = len(values)
    steps = np.arange(n)
    stamps = start_ms + steps * 10
    await conn.copy_records_to_table(
        "metrics",
        records=zip(
            [key] * n, values.tolist(), stamps.tolist(), [run_id] * n, steps.tolist(),
            [False] * n, strict=True,
        ),
        columns=["key", "value", "timestamp", "run_uuid", "step", "is_nan"],
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
        " VALUES ($1, $2, $3, $4, false, $5)",
        key, float(values[-1]), int(stamps[-1]), n - 1, run_id,
    )  # fmt: skip


async def mlflow_db_upgrade(database_url: str) -> None:
    """``mlflow db upgrade`` on a PostgreSQL DSN (MLflow's schema, as its server creates it)."""
    mlflow_url = database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    upgrade = await asyncio.create_subprocess_exec(
        str(mlflow_bin), "db", "upgrade", mlflow_url, stdout=DEVNULL, stderr=DEVNULL
    )
    if await asyncio.wait_for(upgrade.wait(), 300):
        raise RuntimeError("mlflow db upgrade failed")


@dataclass
class Bench:
    url: str
    database_url: str
    pool: asyncpg.Pool
    http: aiohttp.ClientSession


@asynccontextmanager
async def bench_server(db_name: str = "rs_bench_read_scale") -> AsyncIterator[Bench]:
    database_url = await fresh_database(db_name)
    await migrate_dsn(database_url)
    settings = Settings(
        database_url=database_url,
        redis_url=REDIS,
        stream_prefix=f"rsbench{uuid.uuid4().hex[:8]}",
        shards=4,
        data_dir=Path("/tmp/rs-bench-read"),
        artifacts_url="/tmp/rs-bench-read/artifacts",
        projector_block_ms=50,
        db_pool_max=20,
    )
    app = web.Application(middlewares=[error_middleware])
    ingest.setup(app, settings)
    api.setup(app, settings)
    projector.setup(app, settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            yield Bench(str(server.make_url("")).rstrip("/"), database_url, pool, http)
    finally:
        await pool.close()
        await server.close()


async def timed(fn: Callable[[], Awaitable[Any]], repeats: int) -> list[float]:
    await fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


# -- parts --------------------------------------------------------------------------------


async def bench_history(b: Bench, repeats: int = 7) -> None:
    """Whole history over HTTP, 10^5 and 10^6 points, JSON and msgpack."""
    run_id = uuid.uuid4().hex
    async with b.pool.acquire() as conn:
        await insert_run(conn, run_id)
        for n in (100_000, 1_000_000):
            await load_series(conn, run_id, f"m{n}", training_curve(n, n))
        await conn.execute("VACUUM ANALYZE metric_chunks")
    for n in (100_000, 1_000_000):
        for fmt, accept in (("json", "application/json"), ("msgpack", "application/msgpack")):
            size = 0

            async def get(n: int = n, accept: str = accept) -> None:
                nonlocal size
                async with b.http.get(
                    f"{b.url}{V1}/runs/{run_id}/history",
                    params={"key": f"m{n}"},
                    headers={"Accept": accept},
                ) as resp:
                    size = len(await resp.read())

            samples = await timed(get, repeats)
            emit(part="history", points=n, format=fmt, bytes=size, **ms(samples))


async def bench_downsample(b: Bench, repeats: int = 30) -> None:
    """1,000-point downsample of a 1,000,000-point series: server-side (the read function on
    the pool) and over HTTP; plus a zoomed window."""
    run_id = uuid.uuid4().hex
    async with b.pool.acquire() as conn:
        await insert_run(conn, run_id)
        await load_series(conn, run_id, "loss", training_curve(1_000_000, 7))
        await conn.execute("VACUUM ANALYZE metric_chunks")
    for label, window in (
        ("whole", bulk.Window(points=1000)),
        ("zoom_10pct", bulk.Window(points=1000, start_step=400_000, end_step=499_999)),
        ("zoom_1pct", bulk.Window(points=1000, start_step=400_000, end_step=409_999)),
    ):

        async def server_side(window: bulk.Window = window) -> None:
            await bulk.read_series(b.pool, [(run_id, "loss")], window)

        params = {"key": "loss", "points": "1000"}
        if window.start_step is not None:
            params |= {"start_step": str(window.start_step), "end_step": str(window.end_step)}

        async def over_http(params: dict[str, str] = params) -> None:
            async with b.http.get(
                f"{b.url}{V1}/runs/{run_id}/history",
                params=params,
                headers={"Accept": "application/msgpack"},
            ) as resp:
                await resp.read()

        emit(part="downsample", series_points=1_000_000, points=1000, window=label,
             where="server", **ms(await timed(server_side, repeats)))  # fmt: skip
        emit(part="downsample", series_points=1_000_000, points=1000, window=label,
             where="http", **ms(await timed(over_http, repeats)))  # fmt: skip


async def bench_bulk(
    b: Bench, repeats: int = 10, runs: int = 50, keys: int = 5, n: int = 10_000
) -> None:
    """Bulk history of 50 runs x 5 keys (10,000 points each): whole, and 500 points each."""
    run_ids = [uuid.uuid4().hex for _ in range(runs)]
    async with b.pool.acquire() as conn:
        for i, run_id in enumerate(run_ids):
            await insert_run(conn, run_id)
            for k in range(keys):
                await load_series(conn, run_id, f"k{k}", training_curve(n, i * keys + k))
        await conn.execute("VACUUM ANALYZE metric_chunks")
    series = [{"run_id": r, "key": f"k{k}"} for r in run_ids for k in range(keys)]
    for points in (None, 500):
        for fmt, accept in (("json", "application/json"), ("msgpack", "application/msgpack")):
            body = {"series": series} | ({"points": points} if points else {})
            size = 0

            async def post(body: dict[str, Any] = body, accept: str = accept) -> None:
                nonlocal size
                async with b.http.post(
                    f"{b.url}{V1}/history/bulk", json=body, headers={"Accept": accept}
                ) as resp:
                    assert resp.status == 200
                    size = len(await resp.read())

            samples = await timed(post, repeats)
            emit(part="bulk", runs=runs, keys=keys, points_per_series=n, downsample=points,
                 format=fmt, bytes=size, **ms(samples))  # fmt: skip


async def bench_live(b: Bench, clients: int = 100, writes: int = 50, gap: float = 0.05) -> None:
    """Latency from ingest's 200 to the event at each of ``clients`` SSE clients."""
    latencies = await live_latencies(b, clients, writes, gap)
    emit(part="live", clients=clients, writes=writes, **ms(latencies))


async def live_latencies(
    b: Bench, clients: int = 100, writes: int = 50, gap: float = 0.05
) -> list[float]:
    """Seconds from ingest's 200 to each SSE client's event, for every (write, client)."""
    run_id = uuid.uuid4().hex
    await _post(b, [{"type": "run_created", "run_id": run_id, "experiment_id": "0", "user_id": "b",
                     "run_name": "live", "start_time": 1, "artifact_uri": "", "tags": []}],
                wait=True)  # fmt: skip
    accepted: dict[int, float] = {}
    latencies: list[float] = []
    ready = 0
    all_ready = asyncio.Event()

    async def client() -> None:
        nonlocal ready
        async with b.http.get(
            f"{b.url}{V1}/live",
            params={"runs": run_id, "keys": "loss"},
            timeout=aiohttp.ClientTimeout(total=None),
        ) as resp:
            seen = 0
            data = b""
            async for raw in resp.content:
                line = raw.rstrip(b"\n")
                if line.startswith(b"event: ready"):
                    ready += 1
                    if ready == clients:
                        all_ready.set()
                elif line.startswith(b"data: ") and b'"steps"' in line:
                    data = line[6:]
                    now = time.perf_counter()
                    for step in orjson.loads(data)["steps"]:
                        latencies.append(now - accepted[step])
                        seen += 1
                    if seen >= writes:
                        return

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.wait_for(all_ready.wait(), 60)
    for step in range(writes):
        values = np.array([step], "<i8")
        event = {"type": "metrics_logged", "run_id": run_id, "series": [{
            "key": "loss", "steps": values.tobytes(), "timestamps": values.tobytes(),
            "values": values.astype("<f8").tobytes()}]}  # fmt: skip
        await _post(
            b,
            [event],
            wait=False,
            on_accept=lambda s=step: accepted.__setitem__(s, time.perf_counter()),
        )
        await asyncio.sleep(gap)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return latencies


async def _post(
    b: Bench, events: list[dict[str, Any]], wait: bool, on_accept: Callable[[], None] | None = None
) -> None:
    async with b.http.post(
        f"{b.url}{V1}/events",
        data=msgpack.packb({"events": events}, use_bin_type=True),
        params={"wait": "1"} if wait else {},
        headers={"Content-Type": "application/msgpack"},
    ) as resp:
        if on_accept is not None:
            on_accept()
        assert resp.status == 200, await resp.text()


# -- bytes per point ----------------------------------------------------------------------


async def bench_bytes(runs: int = 10, keys: int = 10, n: int = 10_000) -> None:
    """On-disk bytes per point of the same 1,000,000 points (see ``measure_bytes``)."""
    emit(part="bytes", **await measure_bytes(runs, keys, n))


async def measure_bytes(
    runs: int = 10,
    keys: int = 10,
    n: int = 10_000,
    names: tuple[str, str] = ("rs_bench_bytes_runstream", "rs_bench_bytes_mlflow"),
    drop: bool = False,
) -> dict[str, Any]:
    """On-disk bytes of ``runs x keys x n`` points: runstream's chunks vs MLflow's
    ``metrics`` + ``latest_metrics`` (schema from ``mlflow db upgrade``), after VACUUM."""
    total = runs * keys * n
    ours = await fresh_database(names[0])
    theirs = await fresh_database(names[1])
    try:
        await migrate_dsn(ours)
        await mlflow_db_upgrade(theirs)
        run_ids = [uuid.uuid4().hex for _ in range(runs)]
        conn = await asyncpg.connect(ours)
        try:
            for i, run_id in enumerate(run_ids):
                await insert_run(conn, run_id)
                for k in range(keys):
                    await load_series(conn, run_id, f"metric_{k}", training_curve(n, i * keys + k))
            await conn.execute("VACUUM ANALYZE")
            ours_bytes = await conn.fetchval(
                "SELECT pg_total_relation_size('metric_chunks')"
                " + pg_total_relation_size('metric_series')"
            )
        finally:
            await conn.close()
        conn = await asyncpg.connect(theirs)
        try:
            await conn.execute(
                "INSERT INTO experiments (experiment_id, name, artifact_location,"
                " lifecycle_stage, creation_time, last_update_time)"
                " VALUES (0, 'Default', 'x', 'active', 0, 0) ON CONFLICT DO NOTHING"
            )
            for run_id in run_ids:
                await insert_mlflow_run(conn, run_id)
            for i, run_id in enumerate(run_ids):
                for k in range(keys):
                    values = training_curve(n, i * keys + k)
                    await load_mlflow_series(conn, run_id, f"metric_{k}", values)
            await conn.execute("VACUUM ANALYZE")
            theirs_bytes = await conn.fetchval(
                "SELECT pg_total_relation_size('metrics')"
                " + pg_total_relation_size('latest_metrics')"
            )
        finally:
            await conn.close()
    finally:
        if drop:
            conn = await asyncpg.connect(ADMIN)
            try:
                for name in names:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
    return {
        "points": total, "series": runs * keys,
        "runstream_bytes": ours_bytes, "runstream_bytes_per_point": round(ours_bytes / total, 2),
        "mlflow_bytes": theirs_bytes, "mlflow_bytes_per_point": round(theirs_bytes / total, 2),
        "ratio": round(ours_bytes / theirs_bytes, 3),
    }  # fmt: skip


PARTS = ("history", "downsample", "bulk", "live", "bytes")


async def main(only: list[str]) -> None:
    if "bytes" in only:
        await bench_bytes()
    served = [p for p in only if p != "bytes"]
    if served:
        async with bench_server() as b:
            for part in served:
                await {
                    "history": bench_history,
                    "downsample": bench_downsample,
                    "bulk": bench_bulk,
                    "live": bench_live,
                }[part](b)


# ``python -m bench`` imports this module for its workloads (they live in read_workloads,
# which imports this module's helpers lazily, so either import order works).
from bench.read_workloads import WORKLOADS as WORKLOADS  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", choices=PARTS)
    args = parser.parse_args()
    asyncio.run(main(args.only or list(PARTS)))
