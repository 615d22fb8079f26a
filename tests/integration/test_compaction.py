"""Compaction on a real PostgreSQL, while the in-process projector appends to the same series."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import aiohttp
import asyncpg
import msgpack
import numpy as np

from runstream.projector.chunks import CHUNK_COLUMNS, SeriesState, layout
from runstream.projector.compaction import compact, plan_runs
from runstream.projector.plan import MetricAppends
from runstream.settings import Settings

V1 = "/api/runstream/v1"
SUMMARY = (
    "n, min_step, max_step, first_step, last_step, min_value, max_value, first_value, "
    "last_value, min_value_pos, max_value_pos, min_value_step, max_value_step, min_value_ts, "
    "max_value_ts"
)


async def post(http: aiohttp.ClientSession, url: str, events: list[dict[str, Any]]) -> None:
    async with http.post(
        f"{url}{V1}/events",
        data=msgpack.packb({"events": events}, use_bin_type=True),
        params={"wait": "1"},
        headers={"Content-Type": "application/msgpack"},
    ) as resp:
        assert resp.status == 200, await resp.text()


def columns(steps: np.ndarray, values: np.ndarray) -> tuple[bytes, bytes, bytes]:
    return (
        steps.astype("<i8").tobytes(),
        (steps * 7 + 3).astype("<i8").tobytes(),
        values.astype("<f8").tobytes(),
    )


def test_plan_runs() -> None:
    assert plan_runs([1, 1, 1], 10) == [(0, 3)]
    assert plan_runs([1, 20, 1, 1, 20, 1], 10) == [(2, 4)]
    assert plan_runs([1], 10) == []
    assert plan_runs([], 10) == []
    assert plan_runs([5, 5, 30, 5, 5, 5], 10) == [(0, 2), (3, 6)]


async def test_compaction_keeps_every_point_in_order_during_appends(
    server: str, settings: Settings
) -> None:
    run_id = uuid.uuid4().hex
    rng = np.random.default_rng(5)
    async with aiohttp.ClientSession() as http:
        await post(
            http,
            server,
            [
                {
                    "type": "run_created",
                    "run_id": run_id,
                    "experiment_id": "0",
                    "user_id": "t",
                    "run_name": "c",
                    "start_time": 1,
                    "artifact_uri": "",
                    "tags": [],
                }
            ],
        )
        # 3,000 one-point chunks, as per-point traffic leaves them (duplicate steps, NaN).
        n0 = 3_000
        steps0 = np.arange(n0) // 3
        values0 = np.round(rng.standard_normal(n0), 2)
        values0[::11] = math.nan
        s, t, v = columns(steps0, values0)
        conn = await asyncpg.connect(settings.database_url)
        try:
            series_id = await conn.fetchval(
                "INSERT INTO metric_series (run_id, key) VALUES ($1, 'loss') RETURNING series_id",
                run_id,
            )
            writes = layout(
                MetricAppends(((run_id, "loss"),), (0, n0), s, t, v), [SeriesState(series_id)], 1
            )
            await conn.copy_records_to_table(
                "metric_chunks",
                records=[p.record() for p in writes.new_chunks],
                columns=list(CHUNK_COLUMNS),
            )
            st = writes.series[0]
            await conn.execute(
                "UPDATE metric_series SET point_count = $2, chunk_count = $3, tail_count = $4,"
                " latest_step = $5, latest_timestamp = $6, latest_value = $7 WHERE series_id = $1",
                series_id,
                st.point_count,
                st.chunk_count,
                st.tail_count,
                st.latest_step,
                st.latest_timestamp,
                st.latest_value,
            )
        finally:
            await conn.close()

        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        assert pool is not None
        logged_steps = [steps0]
        logged_values = [values0]

        async def append() -> None:
            for i in range(20):
                st_ = np.arange(50) + 1000 + 50 * i
                va = rng.standard_normal(50)
                logged_steps.append(st_)
                logged_values.append(va)
                sb, tb, vb = columns(st_, va)
                event = {
                    "type": "metrics_logged",
                    "run_id": run_id,
                    "series": [{"key": "loss", "steps": sb, "timestamps": tb, "values": vb}],
                }
                await post(http, server, [event])

        async def compact_often() -> None:
            for _ in range(10):
                await compact(pool, settings.chunk_points)
                await asyncio.sleep(0.01)

        try:
            await asyncio.gather(append(), compact_often())
            await compact(pool, settings.chunk_points)
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    f"SELECT chunk_no, {SUMMARY}, steps, timestamps, vals FROM metric_chunks"
                    " WHERE series_id = $1 ORDER BY chunk_no",
                    series_id,
                )
                again = await compact(pool, settings.chunk_points)
                rows_again = await conn.fetch(
                    "SELECT chunk_no, steps FROM metric_chunks WHERE series_id = $1"
                    " ORDER BY chunk_no",
                    series_id,
                )
        finally:
            await pool.close()

        # Idempotent: a second pass changes nothing.
        assert again.series == 0
        assert [r[0] for r in rows_again] == [r[0] for r in rows]
        # Far fewer chunks, and the only chunk below half full is the tail.
        assert len(rows) <= 5
        assert all(r["n"] >= settings.chunk_points // 2 for r in rows[:-1])
        # Every point, in logged order, through the api.
        all_steps, all_ts, all_values = columns(
            np.concatenate(logged_steps), np.concatenate(logged_values)
        )
        async with http.get(
            f"{server}{V1}/runs/{run_id}/history",
            params={"key": "loss"},
            headers={"Accept": "application/msgpack"},
        ) as resp:
            got = msgpack.unpackb(await resp.read(), raw=False)
        assert got["steps"] == all_steps
        assert got["timestamps"] == all_ts
        assert got["values"] == all_values
        # Summaries as the projector computes them for the same points.
        for r in rows[:-1]:
            pts = MetricAppends(
                ((run_id, "loss"),), (0, r["n"]), r["steps"], r["timestamps"], r["vals"]
            )
            want = layout(
                pts, [SeriesState(series_id, chunk_count=r["chunk_no"], tail_count=10**6)], 10**6
            )
            piece = want.new_chunks[0]
            for name in SUMMARY.split(", "):
                got_v, want_v = r[name], getattr(piece, name)
                assert got_v == want_v or (got_v != got_v and want_v != want_v), name
