"""Store connections shared by the services of one process.

``runstream server`` mounts ingest, api and the projector on one aiohttp app; each room calls
``use_stores(app, settings)``, and the pool and the Redis client are made once per app, opened
at start-up and closed at clean-up (one ``cleanup_ctx`` per resource).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from runstream.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
_STORES_ADDED = web.AppKey("stores_added", bool)


async def create_pg_pool(settings: Settings) -> asyncpg.Pool:
    if not settings.database_url:
        raise RuntimeError("settings.database_url is not set (start the embedded stores first)")
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        # Read tables change under us constantly; cached plans of generic queries are fine,
        # but statement caching per connection is kept small to bound memory.
        statement_cache_size=256,
    )
    assert pool is not None
    return pool


def create_redis(settings: Settings) -> aioredis.Redis:
    if not settings.redis_url:
        raise RuntimeError("settings.redis_url is not set (start the embedded stores first)")
    return aioredis.from_url(settings.redis_url, decode_responses=False, health_check_interval=30)


def use_stores(app: web.Application, settings: Settings) -> None:
    """Ensure ``app[PG_POOL]`` and ``app[REDIS]`` exist while the app runs (idempotent)."""
    if app.get(_STORES_ADDED):
        return
    app[_STORES_ADDED] = True
    app[SETTINGS] = settings

    async def pg_pool_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pg_pool(settings)
        app[PG_POOL] = pool
        try:
            yield
        finally:
            await pool.close()

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        client = create_redis(settings)
        app[REDIS] = client
        try:
            yield
        finally:
            await client.aclose()

    app.cleanup_ctx.append(pg_pool_ctx)
    app.cleanup_ctx.append(redis_ctx)
