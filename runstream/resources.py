"""Store connections shared by the services of one process.

``runstream server`` mounts ingest, api and the projector on one aiohttp app; each room calls
``use_stores(app, settings)``, and the pool and the Redis client are made once per app, opened
at start-up and closed at clean-up (one ``cleanup_ctx`` per resource).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from runstream.settings import Settings

logger = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
_STORES_ADDED = web.AppKey("stores_added", bool)


async def create_pg_pool(
    settings: Settings,
    *,
    projector: bool = False,
    session: Mapping[str, str] | None = None,
    max_size: int | None = None,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """The pool of the request handlers (``statement_timeout`` bounds every query), or with
    ``projector`` the projector's own: its transactions are not cut short, and readers can
    never take its connections (issue 14: one pool let slow searches starve ingestion).

    ``session``: more settings of every connection (the search pool's planner settings);
    ``max_size`` overrides the settings' pool size; ``init`` runs on each new connection
    (default for the request handlers: ``warm_record_codecs``)."""
    if not settings.database_url:
        raise RuntimeError("settings.database_url is not set (start the embedded stores first)")
    server_settings = dict(session or {})
    if not projector and settings.statement_timeout > 0:
        server_settings["statement_timeout"] = str(int(settings.statement_timeout * 1000))
    if max_size is None:
        max_size = settings.projector_pool_max if projector else settings.db_pool_max
    if init is None and not projector:
        init = warm_record_codecs
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1 if projector else min(settings.db_pool_min, max_size),
        max_size=max_size,
        # Read tables change under us constantly; cached plans of generic queries are fine,
        # but statement caching per connection is kept small to bound memory.
        statement_cache_size=256,
        server_settings=server_settings,
        reset=keep_session,
        init=init,
    )
    assert pool is not None
    return pool


async def warm_record_codecs(conn: asyncpg.Connection) -> None:
    """Have asyncpg learn how to decode arrays of anonymous records before the first read.

    Every run read returns its params, tags and metrics as such arrays, and asyncpg learns
    their codec with a catalog query of its own, once per connection: the first ``get_run``
    on a new connection took 15-17 ms against 4 ms after this (0.8 ms for the next ones). It
    reads no table, so it works before the database is migrated.
    """
    await conn.fetch("SELECT ARRAY(SELECT ('', 0.0::float8))")


async def keep_session(conn: asyncpg.Connection) -> None:
    """A released connection keeps its session: no ``RESET ALL; UNLISTEN *; ...`` round trip.

    asyncpg sends that reset query on every release (a round trip on the critical path of each
    read, measured ~0.1 ms here). runstream never changes session state on a pooled connection
    (settings go in ``server_settings``, advisory locks are transaction-scoped, there is no
    LISTEN, no cursor outside a transaction), and asyncpg still rolls back a transaction left
    open before it calls this (issue 12).
    """


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


RESUBSCRIBE_DELAY_SECONDS = 0.5


async def listen_forever(
    redis: aioredis.Redis,
    channel: str,
    on_message: Callable[[bytes], None],
    on_subscribed: Callable[[], None],
    what: str,
) -> None:
    """Hand every message of ``channel`` to ``on_message`` until cancelled, resubscribing
    after a pause whenever the connection is lost.

    ``on_subscribed`` runs after each (re)subscription: messages published meanwhile are lost,
    so the listener must look again at what it tracks.
    """
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            on_subscribed()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    on_message(message["data"])
            await asyncio.sleep(RESUBSCRIBE_DELAY_SECONDS)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            logger.warning(
                "%s subscription lost: %s", what, exc, extra={"action": f"{what}_resubscribe"}
            )
            await asyncio.sleep(RESUBSCRIBE_DELAY_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
