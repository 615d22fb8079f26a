"""The connections that search runs, and what they remember between searches.

Searches get a pool of their own: its sessions carry the planner settings a search wants
(``search.SEARCH_SESSION``) without a transaction and ``SET LOCAL`` around every search (two
round trips), and they cannot take the connections of the point reads, nor more than
``search_pool_max`` at once per process. A search waits for a connection at most as long as
it may run (``statement_timeout``); past that it is refused with 503 and Retry-After.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from runstream.api.mlflow.search import SEARCH_SESSION, ExperimentSizes
from runstream.resources import create_pg_pool
from runstream.schemas.errors import TemporarilyUnavailable
from runstream.settings import Settings


@dataclass(frozen=True, slots=True)
class SearchStore:
    pool: asyncpg.Pool
    sizes: ExperimentSizes
    wait: float | None
    """Longest wait for a connection, in seconds (None: no limit)."""

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A search connection; ``TemporarilyUnavailable`` (503) when every one stays busy
        past ``wait``."""
        try:
            conn = await self.pool.acquire(timeout=self.wait)
        except TimeoutError:
            raise TemporarilyUnavailable(
                f"Every search connection of this process stayed busy for {self.wait:g}s",
                retry_after=1.0,
            ) from None
        try:
            yield conn
        finally:
            await self.pool.release(conn)


SEARCH_STORE = web.AppKey("search_store", SearchStore)


def use_search_store(app: web.Application, settings: Settings) -> None:
    """Make ``app[SEARCH_STORE]`` exist while the app runs (once per app: ``api.app.setup``)."""

    async def search_store_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pg_pool(
            settings, session=SEARCH_SESSION, max_size=settings.search_pool_max
        )
        wait = settings.statement_timeout if settings.statement_timeout > 0 else None
        app[SEARCH_STORE] = SearchStore(pool, ExperimentSizes(), wait)
        try:
            yield
        finally:
            await pool.close()

    app.cleanup_ctx.append(search_store_ctx)
