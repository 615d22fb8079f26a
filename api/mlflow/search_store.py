"""The connections that search runs, and what they remember between searches.

Searches get a pool of their own: its sessions carry the planner settings a search wants
(``search.SEARCH_SESSION``) without a transaction and ``SET LOCAL`` around every search (two
round trips), and they cannot take the connections of the point reads, nor more than
``search_pool_max`` at once per process. A search waits for a connection at most as long as
it may run (``statement_timeout``); past that it is refused with 503 and Retry-After.

Each new connection runs one search before it serves any (``warm_up``): the first search on a
fresh connection took 21-36 ms against 3-4 ms for the next, asyncpg learning the types of
the runs' record arrays (a catalog query of its own) and the new backend loading the
catalog entries of every table, index and operator a search plans with.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from runstream.api.mlflow import messages as rq
from runstream.api.mlflow.search import (
    SEARCH_SESSION,
    ExperimentSizes,
    PlanModes,
    search_run_rows,
)
from runstream.resources import create_pg_pool
from runstream.schemas.errors import TemporarilyUnavailable
from runstream.settings import Settings


@dataclass(frozen=True, slots=True)
class SearchStore:
    pool: asyncpg.Pool
    sizes: ExperimentSizes
    modes: PlanModes
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

_WARM_UP = rq.SearchRuns(
    experiment_ids=("-1",),  # no experiment has it: nothing is read
    filter_string="metrics.m > 0 and params.p = '' and tags.t = ''",
    run_view_type="ACTIVE_ONLY",
    max_results=1,
    order_by=("metrics.m DESC",),
    page_token=None,
)


async def warm_up(conn: asyncpg.Connection) -> None:
    """One search of every table a search reads, on a new connection (module doc)."""
    try:
        await search_run_rows(conn, _WARM_UP)
    except asyncpg.UndefinedTableError:
        # An api started before the projector migrated the database: the connection works
        # once it has, and its first search pays the cold cost.
        pass


def use_search_store(app: web.Application, settings: Settings) -> None:
    """Make ``app[SEARCH_STORE]`` exist while the app runs (once per app: ``api.app.setup``)."""

    async def search_store_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pg_pool(
            settings, session=SEARCH_SESSION, max_size=settings.search_pool_max, init=warm_up
        )
        wait = settings.statement_timeout if settings.statement_timeout > 0 else None
        app[SEARCH_STORE] = SearchStore(pool, ExperimentSizes(), PlanModes(), wait)
        try:
            yield
        finally:
            await pool.close()

    app.cleanup_ctx.append(search_store_ctx)
