"""The asyncpg adapter: apply a ``WritePlan`` and record its entries, in one transaction.

Exactly-once: the batch's entries go into ``event_log`` first (``ON CONFLICT DO NOTHING
RETURNING``); only the entries that were new are planned and applied, so an entry delivered
again (a redelivery after a crash, a claim of another consumer's pending entry) changes
nothing. The event-log rows and the effects commit together or not at all.

An entry whose projection fails (bad data that got past ingest) must not block the others:
the batch is retried entry by entry, each under a savepoint, and the failures are returned
for the consumer to retry or dead-letter. Failures of the stores themselves (connection
lost, out of resources, missing schema) are raised instead: retrying entry by entry cannot
help, and they must not send good entries to the dead letters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from runstream.projector import models_store
from runstream.projector import queries as q
from runstream.projector.chunks import CHUNK_COLUMNS, SeriesState, layout
from runstream.projector.plan import Segment, WritePlan, plan
from runstream.schemas.entries import Entry

logger = logging.getLogger(__name__)

EntryId = tuple[int, int]

_SYSTEMIC_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.PostgresSystemError,
    asyncpg.exceptions.UndefinedTableError,
    asyncpg.exceptions.UndefinedColumnError,
    asyncpg.exceptions.UndefinedFunctionError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.TransactionRollbackError,
)


def is_systemic(exc: BaseException) -> bool:
    """A failure of the stores rather than of the entries being applied."""
    return isinstance(exc, _SYSTEMIC_ERRORS)


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """A decoded stream entry with its position."""

    shard: int
    entry_id: EntryId
    payload: bytes
    entry: Entry


@dataclass(slots=True)
class ApplyResult:
    applied: list[EntryId] = field(default_factory=list)
    """Entries recorded and applied by this call."""
    duplicates: list[EntryId] = field(default_factory=list)
    """Entries already in the event log (applied before): skipped."""
    failed: dict[EntryId, str] = field(default_factory=dict)
    """Entries whose projection failed, with the error; nothing of them was written."""
    points: int = 0


async def record_entries(conn: asyncpg.Connection, entries: Sequence[StreamEntry]) -> set[EntryId]:
    """Insert the entries into the event log; return the ids that were not there yet."""
    if not entries:
        return set()
    rows = await conn.fetch(
        q.RECORD_ENTRIES,
        [e.shard for e in entries],
        [e.entry_id[0] for e in entries],
        [e.entry_id[1] for e in entries],
        [e.entry.at for e in entries],
        [e.payload for e in entries],
    )
    return {(r[0], r[1]) for r in rows}


async def apply_entries(
    conn: asyncpg.Connection, entries: Sequence[StreamEntry], chunk_points: int
) -> ApplyResult:
    """Record and apply ``entries`` (one shard, stream order) in one transaction."""
    try:
        async with conn.transaction():
            return await _record_and_apply(conn, entries, chunk_points)
    except Exception as exc:
        if is_systemic(exc):
            raise
        if len(entries) == 1:
            return ApplyResult(failed={entries[0].entry_id: _describe(exc)})
        logger.warning(
            "batch of %d entries failed (%s); applying them one by one",
            len(entries),
            exc,
            extra={"action": "projector_isolate"},
        )
    result = ApplyResult()
    async with conn.transaction():
        for entry in entries:
            try:
                async with conn.transaction():  # a savepoint per entry
                    one = await _record_and_apply(conn, [entry], chunk_points)
            except Exception as exc:
                if is_systemic(exc):
                    raise
                result.failed[entry.entry_id] = _describe(exc)
                continue
            result.applied += one.applied
            result.duplicates += one.duplicates
            result.points += one.points
    return result


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def _record_and_apply(
    conn: asyncpg.Connection, entries: Sequence[StreamEntry], chunk_points: int
) -> ApplyResult:
    new = await record_entries(conn, entries)
    result = ApplyResult()
    fresh = []
    for e in entries:
        if e.entry_id in new:
            fresh.append(e.entry)
            result.applied.append(e.entry_id)
        else:
            result.duplicates.append(e.entry_id)
    if fresh:
        write_plan = plan(fresh)
        await apply_plan(conn, write_plan, chunk_points)
        result.points = write_plan.point_count
    return result


_EXPERIMENT_LOCKS = 0x65787073  # "exps": advisory-lock namespace of experiments' runs


async def lock_experiments(conn: asyncpg.Connection, write_plan: WritePlan) -> None:
    """Serialise run inserts with experiment delete/restore cascades of the same experiment.

    They sit on different shards, so their transactions run concurrently: under READ COMMITTED
    neither sees the other's uncommitted row, and a run created while its experiment is being
    deleted would stay active here but be deleted by a serial replay. Taking the experiment's
    lock first (in id order, before any row is written, so no deadlock) makes every statement
    after it see the other side committed, as replay does.
    """
    experiment_ids = {
        run.experiment_id for seg in write_plan.segments for run in seg.runs.values()
    } | {seg.cascade.experiment_id for seg in write_plan.segments if seg.cascade is not None}
    for experiment_id in sorted(experiment_ids):
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, $2)", _EXPERIMENT_LOCKS, experiment_id % 2**31
        )


async def apply_plan(conn: asyncpg.Connection, write_plan: WritePlan, chunk_points: int) -> None:
    """Write a plan's rows; the caller owns the transaction."""
    await lock_experiments(conn, write_plan)
    for segment in write_plan.segments:
        await _apply_segment(conn, segment)
    await _apply_metrics(conn, write_plan, chunk_points)


async def _apply_segment(conn: asyncpg.Connection, seg: Segment) -> None:
    if seg.experiments:
        rows = list(seg.experiments.values())
        await conn.execute(
            q.INSERT_EXPERIMENTS,
            [r.experiment_id for r in rows],
            [r.name for r in rows],
            [r.artifact_location for r in rows],
            [r.lifecycle_stage for r in rows],
            [r.creation_time for r in rows],
            [r.last_update_time for r in rows],
            [r.deleted_time for r in rows],
        )
    if seg.experiment_patches:
        patches = list(seg.experiment_patches.values())
        await conn.execute(
            q.PATCH_EXPERIMENTS,
            [p.experiment_id for p in patches],
            [p.name for p in patches],
            [p.last_update_time for p in patches],
            [p.lifecycle_stage for p in patches],
            [p.set_deleted_time for p in patches],
            [p.deleted_time for p in patches],
        )
    if seg.experiment_tags:
        await _tags(conn, seg.experiment_tags, q.UPSERT_EXPERIMENT_TAGS, q.DELETE_EXPERIMENT_TAGS)
    if seg.runs:
        runs = list(seg.runs.values())
        await conn.execute(
            q.INSERT_RUNS,
            [r.run_id for r in runs],
            [r.experiment_id for r in runs],
            [r.name for r in runs],
            [r.user_id for r in runs],
            [r.status for r in runs],
            [r.start_time for r in runs],
            [r.end_time for r in runs],
            [r.lifecycle_stage for r in runs],
            [r.artifact_uri for r in runs],
            [r.deleted_time for r in runs],
        )
        await conn.execute(
            q.BACKFILL_RUN_EXPERIMENT,
            [r.run_id for r in runs],
            [r.experiment_id for r in runs],
        )
    if seg.run_patches:
        run_patches = list(seg.run_patches.values())
        await conn.execute(
            q.PATCH_RUNS,
            [p.run_id for p in run_patches],
            [p.name for p in run_patches],
            [p.status for p in run_patches],
            [p.end_time for p in run_patches],
            [p.lifecycle_stage for p in run_patches],
            [p.set_deleted_time for p in run_patches],
            [p.deleted_time for p in run_patches],
        )
    if seg.run_tags:
        await _tags(conn, seg.run_tags, q.UPSERT_RUN_TAGS, q.DELETE_RUN_TAGS)
    if seg.params:
        keys = list(seg.params)
        await conn.execute(
            q.INSERT_PARAMS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            list(seg.params.values()),
        )
    if not seg.models.is_empty():
        await models_store.apply(conn, seg.models)
    for statement in seg.registry:
        await conn.execute(statement.sql, *statement.args)
    if seg.cascade is not None:
        c = seg.cascade
        await conn.execute(q.CASCADE_RUNS, c.experiment_id, c.lifecycle_stage, c.deleted_time)


async def _tags(
    conn: asyncpg.Connection,
    tags: dict[tuple[int, str], str | None] | dict[tuple[str, str], str | None],
    upsert: str,
    delete: str,
) -> None:
    sets = [(k, v) for k, v in tags.items() if v is not None]
    deletes = [k for k, v in tags.items() if v is None]
    if sets:
        await conn.execute(
            upsert, [k[0] for k, _ in sets], [k[1] for k, _ in sets], [v for _, v in sets]
        )
    if deletes:
        await conn.execute(delete, [k[0] for k in deletes], [k[1] for k in deletes])


async def _apply_metrics(
    conn: asyncpg.Connection, write_plan: WritePlan, chunk_points: int
) -> None:
    appends = write_plan.metrics
    if not appends.series:
        return
    rows = await conn.fetch(
        q.SERIES_STATE, [s[0] for s in appends.series], [s[1] for s in appends.series]
    )
    by_key = {(r["run_id"], r["key"]): r for r in rows}
    states = []
    for key in appends.series:
        r = by_key[key]
        states.append(
            SeriesState(
                series_id=r["series_id"],
                point_count=r["point_count"],
                chunk_count=r["chunk_count"],
                tail_count=r["tail_count"],
                latest_step=r["latest_step"],
                latest_timestamp=r["latest_timestamp"],
                latest_value=r["latest_value"],
                min_value=r["min_value"],
                max_value=r["max_value"],
            )
        )
    writes = layout(appends, states, chunk_points)
    if writes.new_chunks:
        await conn.copy_records_to_table(
            "metric_chunks",
            records=[p.record() for p in writes.new_chunks],
            columns=list(CHUNK_COLUMNS),
        )
    s = writes.series
    series = (
        [x.series_id for x in s],
        [x.point_count for x in s],
        [x.chunk_count for x in s],
        [x.tail_count for x in s],
        [x.latest_step for x in s],
        [x.latest_timestamp for x in s],
        [x.latest_value for x in s],
        [x.min_value for x in s],
        [x.max_value for x in s],
    )
    if not writes.tail_fills:
        await conn.execute(q.UPDATE_SERIES, *series)
        return
    t = writes.tail_fills
    # One round trip for both updates: a batch of a few points (one MLflow call) is mostly
    # round trips (docs/performance.md).
    await conn.execute(
        q.FILL_TAILS_AND_UPDATE_SERIES,
        [p.series_id for p in t],
        [p.chunk_no for p in t],
        [p.n for p in t],
        [p.min_step for p in t],
        [p.max_step for p in t],
        [p.last_step for p in t],
        [p.min_value for p in t],
        [p.max_value for p in t],
        [p.last_value for p in t],
        [p.steps for p in t],
        [p.timestamps for p in t],
        [p.vals for p in t],
        [p.min_value_pos for p in t],
        [p.max_value_pos for p in t],
        [p.min_value_step for p in t],
        [p.max_value_step for p in t],
        [p.min_value_ts for p in t],
        [p.max_value_ts for p in t],
        *series,
    )
