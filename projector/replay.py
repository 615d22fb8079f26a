"""Rebuild every read table from the event log (``runstream replay``).

The event log is the source of truth (DESIGN.md, invariant 3): replay empties the read tables
(not the log), puts back the Default experiment that migration 0001 creates, and applies the
logged entries again in the order they were accepted, through the same ``plan`` and
``apply_plan`` as the live projector. Everything happens in one transaction, so readers see
the old tables or the rebuilt ones, never a half-built state; a projector that writes
meanwhile waits for the rebuild and then applies its batch on top of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import asyncpg

from runstream.projector import queries as q
from runstream.projector.plan import plan
from runstream.projector.store import apply_plan
from runstream.schemas.entries import Entry, decode_entry
from runstream.settings import Settings

logger = logging.getLogger(__name__)

REPLAY_BATCH = 2_000
"""Entries per plan during a replay: larger than live batches, nothing waits on a watermark."""


@dataclass(frozen=True, slots=True)
class ReplayStats:
    entries: int
    points: int
    seconds: float


async def replay(settings: Settings, *, batch: int = REPLAY_BATCH) -> ReplayStats:
    """Truncate and rebuild the read tables of ``settings.database_url`` from ``event_log``."""
    if not settings.database_url:
        raise RuntimeError("settings.database_url is not set")
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await replay_on(conn, settings.chunk_points, batch=batch)
    finally:
        await conn.close()


async def replay_on(
    conn: asyncpg.Connection, chunk_points: int, *, batch: int = REPLAY_BATCH
) -> ReplayStats:
    started = time.monotonic()
    entries = points = 0
    async with conn.transaction():
        # The Default row carries no event; keep its creation time so a replay is exact.
        default_created = await conn.fetchval(q.DEFAULT_EXPERIMENT_CREATION)
        await conn.execute(q.TRUNCATE_READ_TABLES)
        await conn.execute(q.INSERT_DEFAULT_EXPERIMENT, default_created)
        pending: list[Entry] = []
        async for row in conn.cursor(q.EVENT_LOG_IN_ORDER, prefetch=min(batch, 1000)):
            pending.append(decode_entry(row["payload"]))
            if len(pending) >= batch:
                points += await _apply(conn, pending, chunk_points)
                entries += len(pending)
                pending = []
        if pending:
            points += await _apply(conn, pending, chunk_points)
            entries += len(pending)
    stats = ReplayStats(entries, points, time.monotonic() - started)
    logger.info(
        "replayed %d entries (%d points) in %.1fs",
        stats.entries,
        stats.points,
        stats.seconds,
        extra={"action": "replay"},
    )
    return stats


async def _apply(conn: asyncpg.Connection, entries: list[Entry], chunk_points: int) -> int:
    write_plan = plan(entries)
    await apply_plan(conn, write_plan, chunk_points)
    return write_plan.point_count
