"""Compaction: merge runs of small adjacent chunks of a series into full chunks.

Small chunks come from traffic that logs a point at a time (MLflow ``log_metric``) whenever
the projector starts chunks rather than filling the tail, and from chunks written before
migration 0005 (no extrema). Many small chunks cost a row, an index entry and TOAST overhead
each, and make every history read touch more rows.

A pass per series, in one transaction:

1. ``pg_try_advisory_xact_lock`` on the series: one compactor per series at a time (others
   skip it), whichever projector process they run in.
2. Read the chunk numbers and sizes below the series' tail chunk (``chunk_count - 1``).
   The projector only ever writes the tail chunk and chunks numbered ``>= chunk_count``,
   and ``chunk_count`` never decreases, so compaction and appends touch disjoint rows and
   need no lock on ``metric_series``: the projector's writes are untouched and unblocked.
3. ``plan_runs`` (pure): maximal runs of at least two adjacent chunks each holding fewer than
   ``small_limit`` points. Each run's points, concatenated in chunk order (logged order), are
   laid out again by ``chunks.layout`` (the projector's own code, so summaries and extrema
   are computed the same way) into full chunks numbered from the run's first number, and
   replace the run's rows. Chunk numbers may then have gaps; every reader orders by
   ``chunk_no`` and none assumes they are dense.

Runs hold chunks of fewer than half ``chunk_points`` each, so a merge always lowers the
number of chunks: repeated passes converge and a second pass over a compacted series does
nothing (idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from runstream.projector.chunks import CHUNK_COLUMNS, SeriesState, layout
from runstream.projector.plan import MetricAppends
from runstream.resources import PG_POOL, use_stores
from runstream.settings import Settings

logger = logging.getLogger(__name__)

SMALL_CHUNK_LIMIT = 512
"""Chunks below this many points are compaction candidates (the partial index of 0005)."""
INTERVAL_SECONDS = 30.0
SERIES_PER_PASS = 200
_LOCK_CLASS = 0x636D7074  # "cmpt"

_CANDIDATES = """
SELECT DISTINCT c.series_id
FROM metric_chunks c
JOIN metric_series s ON s.series_id = c.series_id
JOIN LATERAL (
    SELECT p.n FROM metric_chunks p
    WHERE p.series_id = c.series_id AND p.chunk_no < c.chunk_no
    ORDER BY p.chunk_no DESC LIMIT 1
) p ON true
WHERE c.n < 512 AND c.n < $1 AND p.n < $1 AND c.chunk_no < s.chunk_count - 1
LIMIT $2
"""

_LOCK = "SELECT pg_try_advisory_xact_lock($1, ($2 % 2147483647)::integer)"

_BELOW_TAIL = """
SELECT c.chunk_no, c.n
FROM metric_chunks c JOIN metric_series s ON s.series_id = c.series_id
WHERE c.series_id = $1 AND c.chunk_no < s.chunk_count - 1
ORDER BY c.chunk_no
"""

_COLUMNS_OF = """
SELECT steps, timestamps, vals FROM metric_chunks
WHERE series_id = $1 AND chunk_no = ANY($2::integer[])
ORDER BY chunk_no
"""

_DELETE = "DELETE FROM metric_chunks WHERE series_id = $1 AND chunk_no = ANY($2::integer[])"


def small_limit(chunk_points: int) -> int:
    return min(SMALL_CHUNK_LIMIT, max(1, chunk_points // 2))


def plan_runs(sizes: Sequence[int], limit: int) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of maximal runs of >= 2 adjacent sizes below ``limit``."""
    runs = []
    start = None
    for i, n in enumerate([*sizes, limit]):  # one step per chunk, a sentinel closes the last
        if n < limit:
            if start is None:
                start = i
        else:
            if start is not None and i - start >= 2:
                runs.append((start, i))
            start = None
    return runs


@dataclass(slots=True)
class CompactionStats:
    series: int = 0
    chunks_before: int = 0
    chunks_after: int = 0
    points: int = 0


async def compact_series(
    conn: asyncpg.Connection, series_id: int, chunk_points: int
) -> CompactionStats:
    """One transaction: merge the series' runs of small chunks (nothing if another compactor
    holds the series)."""
    stats = CompactionStats()
    limit = small_limit(chunk_points)
    async with conn.transaction():
        if not await conn.fetchval(_LOCK, _LOCK_CLASS, series_id):
            return stats
        rows = await conn.fetch(_BELOW_TAIL, series_id)
        numbers = [r[0] for r in rows]
        runs = plan_runs([r[1] for r in rows], limit)
        for start, end in runs:
            run = numbers[start:end]
            parts = await conn.fetch(_COLUMNS_OF, series_id, run)
            steps = b"".join(p[0] for p in parts)
            appends = MetricAppends(
                series=(("", ""),),
                offsets=(0, len(steps) // 8),
                steps=steps,
                timestamps=b"".join(p[1] for p in parts),
                values=b"".join(p[2] for p in parts),
            )
            # A full "tail" makes layout start new chunks, numbered from the run's first.
            state = SeriesState(series_id, chunk_count=run[0], tail_count=chunk_points)
            merged = layout(appends, [state], chunk_points).new_chunks
            assert len(merged) < len(run) and merged[-1].chunk_no <= run[-1]
            await conn.execute(_DELETE, series_id, run)
            await conn.copy_records_to_table(
                "metric_chunks",
                records=[p.record() for p in merged],
                columns=list(CHUNK_COLUMNS),
            )
            stats.chunks_before += len(run)
            stats.chunks_after += len(merged)
            stats.points += appends.point_count
        stats.series = 1 if runs else 0
    return stats


async def compact(
    pool: asyncpg.Pool, chunk_points: int, limit: int = SERIES_PER_PASS
) -> CompactionStats:
    """One pass over up to ``limit`` candidate series."""
    total = CompactionStats()
    async with pool.acquire() as conn:
        candidates = await conn.fetch(_CANDIDATES, small_limit(chunk_points), limit)
        for row in candidates:
            one = await compact_series(conn, row[0], chunk_points)
            total.series += one.series
            total.chunks_before += one.chunks_before
            total.chunks_after += one.chunks_after
            total.points += one.points
    return total


async def run_compaction(
    pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event, interval: float = INTERVAL_SECONDS
) -> None:
    """Compact every ``interval`` seconds until ``stop`` is set; a pass that finds a full
    page of candidates is followed by another at once."""
    while not stop.is_set():
        wait = interval
        try:
            stats = await compact(pool, settings.chunk_points)
            if stats.series:
                logger.info(
                    "compacted %d series: %d chunks into %d (%d points)",
                    stats.series,
                    stats.chunks_before,
                    stats.chunks_after,
                    stats.points,
                    extra={"action": "compaction"},
                )
            if stats.series >= SERIES_PER_PASS:
                wait = 0.0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("compaction pass failed: %s", exc, extra={"action": "compaction_error"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)


_COMPACTION_ADDED = web.AppKey("compaction_added", bool)


def use_compaction(app: web.Application, settings: Settings) -> None:
    """Run compaction as a background task of ``app`` (idempotent)."""
    if app.get(_COMPACTION_ADDED):
        return
    app[_COMPACTION_ADDED] = True
    use_stores(app, settings)

    async def compaction_ctx(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(run_compaction(app[PG_POOL], settings, stop), name="compaction")
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await task

    app.cleanup_ctx.append(compaction_ctx)
