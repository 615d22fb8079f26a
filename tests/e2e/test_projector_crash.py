"""A projector process killed with SIGKILL in the middle of applying ~300,000 points, then
restarted: every point is in PostgreSQL exactly once, bit for bit, in logged order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import redis.asyncio as aioredis

from runstream.schemas import constants as c
from runstream.schemas.entries import encode_entry
from runstream.schemas.metrics import MetricSeries, MetricsLogged
from runstream.schemas.sharding import shard_of_run
from runstream.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RUNS = 60
KEYS = 4
ENTRIES_PER_RUN = 40
SPECIALS = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324], dtype="<f8")


def projector_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RUNSTREAM_DATABASE_URL": settings.database_url or "",
        "RUNSTREAM_REDIS_URL": settings.redis_url or "",
        "RUNSTREAM_STREAM_PREFIX": settings.stream_prefix,
        "RUNSTREAM_SHARDS": str(settings.shards),
        "RUNSTREAM_LEASE_TTL_MS": "1000",
        "RUNSTREAM_CLAIM_IDLE_MS": "500",
        "RUNSTREAM_PROJECTOR_BATCH": "25",
        "RUNSTREAM_CHUNK_POINTS": "300",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "runstream.projector"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def load(
    redis: aioredis.Redis, settings: Settings, rng: np.random.Generator, expected: dict
) -> int:
    """XADD one round of entries for every run; returns the number of entries."""
    entries = 0
    async with redis.pipeline(transaction=False) as pipe:
        for r in range(RUNS):
            run_id = f"{r:032x}"
            series = []
            for k in range(KEYS):
                n = int(rng.integers(1, 60))
                steps = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True)
                steps[: n // 2] = np.arange(n // 2)  # mostly increasing, duplicates included
                stamps = rng.integers(0, 2**62, n, dtype=np.int64)
                values = rng.standard_normal(n)
                values[rng.random(n) < 0.05] = rng.choice(SPECIALS)
                cols = (steps.astype("<i8"), stamps.astype("<i8"), values.astype("<f8"))
                expected.setdefault((run_id, f"key{k}"), []).append(cols)
                series.append(MetricSeries(f"key{k}", *(col.tobytes() for col in cols)))
            payload = encode_entry(1, [MetricsLogged(run_id, tuple(series))])
            pipe.xadd(c.stream_key(settings.stream_prefix, shard_of_run(run_id, settings.shards)),
                      {"e": payload})  # fmt: skip
            entries += 1
        await pipe.execute()
    return entries


async def count_log(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM event_log"))


async def test_sigkill_mid_batch_then_restart_applies_every_point_once(
    settings: Settings, redis: aioredis.Redis
) -> None:
    rng = np.random.default_rng(7)
    expected: dict[tuple[str, str], list[tuple[np.ndarray, ...]]] = {}
    total_entries = 0
    for _ in range(ENTRIES_PER_RUN):
        total_entries += await load(redis, settings, rng, expected)
    total_points = sum(len(cols[0]) for parts in expected.values() for cols in parts)
    assert total_points >= 200_000

    conn = await asyncpg.connect(settings.database_url)
    try:
        first = projector_process(settings)
        try:
            async with asyncio.timeout(60):
                while True:
                    applied = await count_log(conn)
                    if applied >= total_entries // 10:
                        break
                    await asyncio.sleep(0.005)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        applied_at_kill = await count_log(conn)
        assert 0 < applied_at_kill < total_entries, "the kill should land mid-way"
        # The dead process left entries pending in the group (read, not acknowledged).
        pending = 0
        for shard in range(settings.shards):
            info = await redis.xpending(c.stream_key(settings.stream_prefix, shard), "projector")
            pending += info["pending"]
        assert pending > 0

        # More writes arrive while no projector runs.
        for _ in range(5):
            total_entries += await load(redis, settings, rng, expected)
        total_points = sum(len(cols[0]) for parts in expected.values() for cols in parts)

        second = projector_process(settings)
        try:
            async with asyncio.timeout(120):
                while True:
                    if await count_log(conn) == total_entries:
                        pending = 0
                        for shard in range(settings.shards):
                            key = c.stream_key(settings.stream_prefix, shard)
                            pending += (await redis.xpending(key, "projector"))["pending"]
                        if pending == 0:
                            break
                    assert second.poll() is None, second.stderr.read() if second.stderr else ""
                    await asyncio.sleep(0.05)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0

        assert await conn.fetchval("SELECT coalesce(sum(n), 0) FROM metric_chunks") == total_points
        rows = await conn.fetch(
            "SELECT s.run_id, s.key, s.point_count, s.chunk_count,"
            " array_agg(c.chunk_no ORDER BY c.chunk_no) AS nos,"
            " string_agg(c.steps, ''::bytea ORDER BY c.chunk_no) AS steps,"
            " string_agg(c.timestamps, ''::bytea ORDER BY c.chunk_no) AS stamps,"
            " string_agg(c.vals, ''::bytea ORDER BY c.chunk_no) AS vals"
            " FROM metric_series s JOIN metric_chunks c USING (series_id)"
            " GROUP BY s.series_id"
        )
        assert len(rows) == len(expected) == RUNS * KEYS
        for row in rows:
            parts = expected[(row["run_id"], row["key"])]
            steps, stamps, values = (np.concatenate([p[i] for p in parts]) for i in range(3))
            assert row["point_count"] == len(steps)
            assert row["nos"] == list(range(row["chunk_count"]))
            assert row["steps"] == steps.tobytes()
            assert row["stamps"] == stamps.tobytes()
            assert row["vals"] == values.tobytes()  # bit-exact, NaN and -0.0 included
        assert await conn.fetchval("SELECT count(*) FROM event_log") == total_entries
    finally:
        await conn.close()
