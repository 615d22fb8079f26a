"""Running the projector: in an aiohttp app, as its own process, or until the streams drain.

A ``Projector`` keeps leases on the shards it can get (all of them when it is alone) and runs
one ``ShardConsumer`` task per held shard; shards advance in parallel, so PostgreSQL works on
one shard's transaction while Python plans the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import AsyncIterator, Sequence

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from runstream.projector.compaction import use_compaction
from runstream.projector.consumer import ConsumerStats, ShardConsumer
from runstream.projector.leases import Leases
from runstream.projector.migrations import migrate
from runstream.projector.statistics import SearchStatistics
from runstream.projector.streams import ShardStream, finish_script
from runstream.resources import REDIS, create_pg_pool, create_redis, use_stores
from runstream.settings import Settings

logger = logging.getLogger(__name__)

_TASK = web.AppKey("projector_task", asyncio.Task[None])
PROJECTOR_POOL = web.AppKey("projector_pool", asyncpg.Pool)


def consumer_name(settings: Settings) -> str:
    return settings.consumer_name or f"{socket.gethostname()}:{os.getpid()}"


class Projector:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        shards: Sequence[int] | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.name = consumer_name(settings)
        self.shards = list(range(settings.shards) if shards is None else shards)
        self.leases = Leases(redis, settings.stream_prefix, self.name, settings.lease_ttl_ms)
        self.consumers: dict[int, ShardConsumer] = {}
        self.statistics = SearchStatistics(pool)
        self.finisher = finish_script(redis)
        self._tasks: dict[int, tuple[asyncio.Task[None], asyncio.Event]] = {}

    def stats(self) -> ConsumerStats:
        return ConsumerStats.total(c.stats for c in self.consumers.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Hold leases and consume the held shards until ``stop`` is set."""
        logger.info(
            "projector %s starting on %d shards",
            self.name,
            len(self.shards),
            extra={"action": "projector_start"},
        )
        renew_every = self.settings.lease_ttl_ms / 3000
        try:
            while not stop.is_set():
                await self._refresh()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), renew_every)
        finally:
            for _, shard_stop in self._tasks.values():
                shard_stop.set()
            # Each consumer finishes its current batch (commit, XACK) before it returns.
            await asyncio.gather(*(t for t, _ in self._tasks.values()), return_exceptions=True)
            for shard in list(self._tasks):
                with contextlib.suppress(Exception):
                    await self.leases.release(shard)
            self._tasks.clear()
            await self.finisher.aclose()
            logger.info("projector %s stopped", self.name, extra={"action": "projector_stop"})

    async def _refresh(self) -> None:
        try:
            held = await self.leases.refresh(self.shards)
        except Exception as exc:
            logger.warning(
                "cannot renew shard leases: %s", exc, extra={"action": "projector_backoff"}
            )
            held = {s for s in self._tasks if self.leases.holds(s)}
        for shard, (task, shard_stop) in list(self._tasks.items()):
            if task.done():
                del self._tasks[shard]
                if not task.cancelled() and task.exception() is not None:
                    logger.error(
                        "shard %d consumer crashed",
                        shard,
                        exc_info=task.exception(),
                        extra={"action": "projector_crash"},
                    )
            elif shard not in held:
                shard_stop.set()
        for shard in sorted(held - set(self._tasks)):
            stream = ShardStream(
                self.redis, self.settings.stream_prefix, shard, self.name, self.finisher
            )
            consumer = ShardConsumer(
                self.settings,
                self.pool,
                stream,
                functools.partial(self.leases.holds, shard),
                self.statistics,
            )
            self.consumers[shard] = consumer
            shard_stop = asyncio.Event()
            task = asyncio.create_task(consumer.run(shard_stop), name=f"projector-shard-{shard}")
            self._tasks[shard] = (task, shard_stop)
            logger.info(
                "projector %s consumes shard %d",
                self.name,
                shard,
                extra={"action": "projector_lease"},
            )


async def run_projector(
    settings: Settings, stop: asyncio.Event | None = None, *, run_migrations: bool = True
) -> ConsumerStats:
    """Run a projector with its own store connections until ``stop`` is set."""
    stop = stop or asyncio.Event()
    pool = await create_pg_pool(settings, projector=True)
    redis = create_redis(settings)
    try:
        if run_migrations:
            async with pool.acquire() as conn:
                await migrate(conn)
        projector = Projector(settings, pool, redis)
        await projector.run(stop)
        return projector.stats()
    finally:
        await redis.aclose()
        await pool.close()


async def project_until_idle(
    settings: Settings,
    pool: asyncpg.Pool | None = None,
    redis: aioredis.Redis | None = None,
    *,
    consumer: str | None = None,
) -> ConsumerStats:
    """Apply every entry of every shard until nothing is new or pending; return what was done.

    Takes no leases: for tests and tools, when no other projector consumes the streams.
    Bound it with ``asyncio.timeout`` where it must not wait for ever.
    """
    own_pool = pool is None
    own_redis = redis is None
    pool = pool or await create_pg_pool(settings, projector=True)
    redis = redis or create_redis(settings)
    name = consumer or consumer_name(settings)
    finisher = finish_script(redis)
    consumers = [
        ShardConsumer(settings, pool, ShardStream(redis, settings.stream_prefix, s, name, finisher))
        for s in range(settings.shards)
    ]
    try:
        await asyncio.gather(*(c.drain() for c in consumers))
    finally:
        await finisher.aclose()
        if own_redis:
            await redis.aclose()
        if own_pool:
            await pool.close()
    return ConsumerStats.total(c.stats for c in consumers)


def setup(app: web.Application, settings: Settings) -> None:
    """Run a projector as a background task of ``app`` (with the app's store connections)."""
    use_stores(app, settings)

    async def projector_ctx(app: web.Application) -> AsyncIterator[None]:
        # Its own pool: the request handlers' pool can be exhausted by readers without
        # slowing the projection (and compaction) down.
        pool = await create_pg_pool(settings, projector=True)
        app[PROJECTOR_POOL] = pool
        stop = asyncio.Event()
        projector = Projector(settings, pool, app[REDIS])
        app[_TASK] = asyncio.create_task(projector.run(stop), name="projector")
        try:
            yield
        finally:
            stop.set()
            await app[_TASK]
            await pool.close()

    app.cleanup_ctx.append(projector_ctx)
    use_compaction(app, settings)  # merges small chunks in the background (compaction.py)
