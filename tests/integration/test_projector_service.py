"""The running projector: leases, watermarks announced after commit, the aiohttp background
task, a clean stop, and recovery when PostgreSQL drops its connections."""

from __future__ import annotations

import asyncio

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from runstream.projector import run_projector, setup
from runstream.schemas import constants as c
from runstream.schemas import entries
from runstream.schemas import metrics as me
from runstream.schemas.sharding import format_entry_id, parse_entry_id
from runstream.settings import Settings

RUN = "d" * 32


async def add_points(
    redis: aioredis.Redis, settings: Settings, shard: int, step: int, n: int = 10
) -> str:
    series = me.MetricSeries.from_lists(
        "m", list(range(step, step + n)), [0] * n, [float(i) for i in range(n)]
    )
    payload = entries.encode_entry(1, [me.MetricsLogged(RUN, (series,))])
    entry_id = await redis.xadd(c.stream_key(settings.stream_prefix, shard), {"e": payload})
    return format_entry_id(parse_entry_id(entry_id))


async def wait_for_watermark(
    redis: aioredis.Redis, settings: Settings, shard: int, entry_id: str
) -> None:
    key = c.watermark_key(settings.stream_prefix, shard)
    async with asyncio.timeout(20):
        while True:
            mark = await redis.get(key)
            if mark is not None and parse_entry_id(mark) >= parse_entry_id(entry_id):
                return
            await asyncio.sleep(0.02)


async def points(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return int(await conn.fetchval("SELECT coalesce(sum(n), 0) FROM metric_chunks"))
    finally:
        await conn.close()


async def test_projector_leases_applies_and_announces(
    settings: Settings, redis: aioredis.Redis
) -> None:
    settings = settings.replace(consumer_name="proj-1")
    pubsub = redis.pubsub()
    await pubsub.subscribe(c.watermark_channel(settings.stream_prefix))
    stop = asyncio.Event()
    task = asyncio.create_task(run_projector(settings, stop))
    try:
        first = await add_points(redis, settings, 1, 0)
        await wait_for_watermark(redis, settings, 1, first)
        last = ""
        for i in range(1, 5):
            last = await add_points(redis, settings, 1, i * 10)
        await wait_for_watermark(redis, settings, 1, last)
        assert await points(settings) == 50
        for shard in range(settings.shards):
            assert await redis.get(c.lease_key(settings.stream_prefix, shard)) == b"proj-1"
        announced = []
        async with asyncio.timeout(5):
            while f"1 {last}" not in announced:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if msg:
                    announced.append(msg["data"].decode())
        assert announced[0] == f"1 {first}"
        # Applied entries are trimmed from the stream.
        assert await redis.xlen(c.stream_key(settings.stream_prefix, 1)) <= 1
    finally:
        stop.set()
        stats = await asyncio.wait_for(task, 10)
        await pubsub.aclose()
    assert (stats.entries, stats.points) == (5, 50)
    # A clean stop releases the leases, so another projector takes over at once.
    assert await redis.get(c.lease_key(settings.stream_prefix, 1)) is None


async def test_second_projector_waits_for_the_lease(
    settings: Settings, redis: aioredis.Redis
) -> None:
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(run_projector(settings.replace(consumer_name="a"), stop_a))
    lease = c.lease_key(settings.stream_prefix, 2)
    async with asyncio.timeout(10):
        while True:
            if await redis.get(lease) == b"a":
                break
            await asyncio.sleep(0.02)
    b = asyncio.create_task(run_projector(settings.replace(consumer_name="b"), stop_b))
    try:
        await asyncio.sleep(0.3)
        assert await redis.get(lease) == b"a"
        stop_a.set()
        await asyncio.wait_for(a, 10)
        entry = await add_points(redis, settings, 2, 0)
        await wait_for_watermark(redis, settings, 2, entry)
        assert await redis.get(lease) == b"b"
    finally:
        stop_a.set()
        stop_b.set()
        await asyncio.wait_for(asyncio.gather(a, b), 10)
    assert await points(settings) == 10


async def test_setup_runs_the_projector_in_an_app(
    settings: Settings, redis: aioredis.Redis
) -> None:
    app = web.Application()
    setup(app, settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        entry = await add_points(redis, settings, 3, 0)
        await wait_for_watermark(redis, settings, 3, entry)
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)
    assert await points(settings) == 10


async def test_recovers_when_postgres_drops_connections(
    settings: Settings, redis: aioredis.Redis, pg_admin_url: str
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_projector(settings, stop))
    admin = await asyncpg.connect(pg_admin_url)
    try:
        entry = await add_points(redis, settings, 0, 0)
        await wait_for_watermark(redis, settings, 0, entry)
        database = settings.database_url.rsplit("/", 1)[1]  # type: ignore[union-attr]
        for i in range(1, 6):
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            entry = await add_points(redis, settings, 0, i * 10)
        await wait_for_watermark(redis, settings, 0, entry)
        assert await points(settings) == 60
    finally:
        await admin.close()
        stop.set()
        await asyncio.wait_for(task, 10)
