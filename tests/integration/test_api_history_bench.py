"""Timing of the history route on 10^5 and 10^6 points, through the real app over HTTP.

Skipped unless RUNSTREAM_BENCH=1 (it loads ~30 MB into PostgreSQL):

    RUNSTREAM_BENCH=1 .venv/bin/python -m pytest -s tests/integration/test_api_history_bench.py
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import AsyncIterator

import asyncpg
import msgpack
import numpy as np
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from runstream.api import create_app
from runstream.settings import Settings

pytestmark = pytest.mark.skipif(
    os.environ.get("RUNSTREAM_BENCH") != "1", reason="benchmark: set RUNSTREAM_BENCH=1"
)

RUN_ID = "c" * 32
REPEATS = 5


async def load_series(
    conn: asyncpg.Connection, key: str, values: np.ndarray, chunk_points: int
) -> None:
    n = len(values)
    steps = np.arange(n, dtype="<i8")
    timestamps = 1_700_000_000_000 + steps
    series_id = await conn.fetchval(
        "INSERT INTO metric_series (run_id, key, point_count, chunk_count, tail_count,"
        " latest_step, latest_timestamp, latest_value)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING series_id",
        RUN_ID,
        key,
        n,
        -(-n // chunk_points),
        n % chunk_points or chunk_points,
        int(steps[-1]),
        int(timestamps[-1]),
        float(values[-1]),
    )
    records = []
    for chunk_no, lo in enumerate(range(0, n, chunk_points)):
        s, t, v = (a[lo : lo + chunk_points] for a in (steps, timestamps, values))
        real = v[~np.isnan(v)]
        records.append(
            (
                series_id,
                chunk_no,
                len(v),
                int(s.min()),
                int(s.max()),
                int(s[0]),
                int(s[-1]),
                float(real.min()) if real.size else None,
                float(real.max()) if real.size else None,
                float(v[0]),
                float(v[-1]),
                s.tobytes(),
                t.tobytes(),
                v.astype("<f8").tobytes(),
            )
        )
    await conn.copy_records_to_table("metric_chunks", records=records)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    rng = np.random.default_rng(0)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO runs (run_id, experiment_id, status, start_time)"
            " VALUES ($1, 0, 'RUNNING', 0)",
            RUN_ID,
        )
        for n in (100_000, 1_000_000):
            finite = rng.standard_normal(n)
            await load_series(conn, f"finite_{n}", finite, settings.chunk_points)
            with_nan = finite.copy()
            with_nan[::100] = np.nan
            await load_series(conn, f"nan_{n}", with_nan, settings.chunk_points)
    finally:
        await conn.close()
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


@pytest.mark.parametrize("kind", ["finite", "nan"])
@pytest.mark.parametrize("n", [100_000, 1_000_000])
async def test_history_read_time(
    client: TestClient[web.Request, web.Application], n: int, kind: str
) -> None:
    key = f"{kind}_{n}"
    path = f"/api/runstream/v1/runs/{RUN_ID}/history"
    for fmt, accept in (("json", "application/json"), ("msgpack", "application/msgpack")):
        times, size = [], 0
        for _ in range(REPEATS + 1):
            start = time.perf_counter()
            resp = await client.get(path, params={"key": key}, headers={"Accept": accept})
            body = await resp.read()
            times.append((time.perf_counter() - start) * 1000)
            assert resp.status == 200
            size = len(body)
        decoded = orjson.loads(body) if fmt == "json" else msgpack.unpackb(body)
        count = len(decoded["values"]) if fmt == "json" else len(decoded["values"]) // 8
        assert count == n
        print(
            f"\nhistory {key:>13} {fmt:>7}: median {statistics.median(times[1:]):7.1f} ms"
            f" (min {min(times[1:]):.1f}, {REPEATS} runs after 1 warm-up), {size / 1e6:.1f} MB"
        )
