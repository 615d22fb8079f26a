"""Planner statistics of the search tables, kept fresh while they grow.

A search right after its runs were written used to run on tables PostgreSQL had never
analyzed: autovacuum looks every minute (``autovacuum_naptime``), and until it has, the planner
takes the tables for nearly empty and nests index scans into each other. Measured on 300 runs
(10 params, 10 metrics each), ``metrics.m0 > 0.5 and params.p0 = '3'`` ordered by
``metrics.m1 DESC``: 137 ms before ``ANALYZE``, 0.8 ms after (docs/performance.md).

So the projector analyzes ``runs``, ``params``, ``run_tags`` and ``metric_series`` itself
whenever the runs it created since the last time reach the count known then (the tables
doubled, or ``MIN_RUNS`` on a new database), inline after the batch's commit and before its
watermark is published: the first read that waits for those writes also gets their
statistics. Doubling bounds the work: an analyze samples at most 30,000 rows per table
(``default_statistics_target`` 100), and there are log2(runs) of them over a deployment's life.
"""

from __future__ import annotations

import logging
import time

import asyncpg

logger = logging.getLogger(__name__)

SEARCH_TABLES = ("runs", "params", "run_tags", "metric_series")
MIN_RUNS = 16
"""Runs created before the first analyze of a database that has none analyzed yet."""


class SearchStatistics:
    """One per projector process, shared by its shard consumers."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.known: int | None = None
        """Runs in ``runs`` at the last analyze (``pg_class.reltuples``), once read."""
        self.created = 0
        self._busy = False

    def due(self) -> bool:
        return not self._busy and (self.known is None or self.created >= max(MIN_RUNS, self.known))

    async def note(self, conn: asyncpg.Connection, runs_created: int) -> None:
        """Count runs a committed batch created; analyze (on ``conn``) when they are due."""
        self.created += runs_created
        if not runs_created or not self.due():
            return
        self._busy = True
        try:
            if self.known is None:
                estimate = await conn.fetchval(
                    "SELECT reltuples FROM pg_class WHERE oid = 'runs'::regclass"
                )
                self.known = max(0, int(estimate or 0))
                if self.created < max(MIN_RUNS, self.known):
                    return
            started = time.perf_counter()
            await conn.execute("ANALYZE " + ", ".join(SEARCH_TABLES))
            self.known += self.created
            self.created = 0
            logger.info(
                "analyzed the search tables at ~%d runs in %.0f ms",
                self.known,
                (time.perf_counter() - started) * 1000,
                extra={"action": "analyze"},
            )
        except asyncpg.PostgresError as exc:  # statistics are an optimization, never a failure
            logger.warning("cannot analyze the search tables: %s", exc)
        finally:
            self._busy = False
