"""Read SQL of the native and MLflow read routes, with bound parameters only.

Each function is one round trip: a run comes back with its params, tags and latest metrics as
arrays of records (sub-selects ordered by key), and a metric history with every chunk of the
series, so no read issues one query per child row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from runstream.api.mlflow.logged_model_queries import RUN_IO_COLUMNS
from runstream.web import Visibility

Executor: TypeAlias = "asyncpg.Pool | asyncpg.Connection"
Row: TypeAlias = asyncpg.Record

_EXPERIMENT = """
SELECT e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage,
       e.creation_time, e.last_update_time,
       ARRAY(SELECT (t.key, t.value) FROM experiment_tags t
             WHERE t.experiment_id = e.experiment_id ORDER BY t.key) AS tags
FROM experiments e
"""

_RUN_COLUMNS = (
    """
SELECT r.run_id, r.experiment_id, r.name, r.user_id, r.status, r.start_time, r.end_time,
       r.lifecycle_stage, r.artifact_uri,
       ARRAY(SELECT (p.key, p.value) FROM params p
             WHERE p.run_id = r.run_id ORDER BY p.seq) AS params,
       ARRAY(SELECT (t.key, t.value) FROM run_tags t
             WHERE t.run_id = r.run_id ORDER BY t.key) AS tags,
       ARRAY(SELECT (m.key, m.latest_value, m.latest_timestamp, m.latest_step)
             FROM metric_series m
             WHERE m.run_id = r.run_id AND m.latest_step IS NOT NULL
             ORDER BY m.series_id) AS metrics,
"""
    + RUN_IO_COLUMNS
)
_RUN = _RUN_COLUMNS + "\nFROM runs r\n"


async def experiment_by_id(db: Executor, experiment_id: int) -> Row | None:
    """Columns of ``experiments`` plus ``tags``: [(key, value)] ordered by key."""
    row: Row | None = await db.fetchrow(_EXPERIMENT + "WHERE e.experiment_id = $1", experiment_id)
    return row


async def experiment_by_name(db: Executor, name: str) -> Row | None:
    row: Row | None = await db.fetchrow(_EXPERIMENT + "WHERE e.name = $1", name)
    return row


async def experiments(
    db: Executor,
    stages: Sequence[str],
    limit: int,
    offset: int = 0,
    visible: Visibility | None = None,
) -> list[Row]:
    """Experiments in the given lifecycle stages, by id; only those ``visible`` allows."""
    where = "WHERE e.lifecycle_stage = ANY($1::text[]) "
    ids: list[int] = []
    if visible is not None:
        ids = sorted(int(i) for i in visible.exceptions if i.isdigit())
        where += f"AND {'NOT ' if visible.default else ''}(e.experiment_id = ANY($4::bigint[])) "
    rows: list[Row] = await db.fetch(
        _EXPERIMENT + where + "ORDER BY e.experiment_id LIMIT $2 OFFSET $3",
        list(stages),
        limit,
        offset,
        *([ids] if visible is not None else []),
    )
    return rows


async def run(db: Executor, run_id: str) -> Row | None:
    """Columns of ``runs`` plus ``params``/``tags`` [(key, value)] and ``metrics``
    [(key, value, timestamp, step)] (latest values), each ordered by key."""
    row: Row | None = await db.fetchrow(_RUN + "WHERE r.run_id = $1", run_id)
    return row


def runs_in_order(run_ids_sql: str) -> str:
    """The runs (as :func:`run` returns them) whose ids ``run_ids_sql`` selects, in its order:
    a search and its page of runs in one round trip and one statement."""
    # ARRAY(subquery) keeps the subquery's ORDER BY, as the arrays of _RUN rely on too.
    return (
        _RUN_COLUMNS
        + f"\nFROM unnest(ARRAY(\n{run_ids_sql}\n)) WITH ORDINALITY AS found(run_id, pos)"
        + "\nJOIN runs r ON r.run_id = found.run_id\nORDER BY found.pos"
    )


async def experiments_by_ids(db: Executor, experiment_ids: Sequence[int]) -> list[Row]:
    """Experiments as :func:`experiment_by_id` returns them, in no particular order."""
    rows: list[Row] = await db.fetch(
        _EXPERIMENT + "WHERE e.experiment_id = ANY($1::bigint[])", list(experiment_ids)
    )
    return rows


async def runs_of_experiment(
    db: Executor, experiment_id: int, stages: Sequence[str], limit: int, offset: int = 0
) -> list[Row]:
    """Runs as :func:`run` returns them, newest start first (MLflow's default order)."""
    rows: list[Row] = await db.fetch(
        _RUN + "WHERE r.experiment_id = $1 AND r.lifecycle_stage = ANY($2::text[])"
        " ORDER BY r.start_time DESC NULLS LAST, r.run_id LIMIT $3 OFFSET $4",
        experiment_id,
        list(stages),
        limit,
        offset,
    )
    return rows


@dataclass(frozen=True, slots=True)
class SeriesChunks:
    """The packed columns of every chunk of one series, in chunk order."""

    steps: list[bytes]
    timestamps: list[bytes]
    values: list[bytes]


async def series_point_count(db: Executor, run_id: str, key: str) -> int | None:
    """Points stored under (run, key); None when there is no such series."""
    count: int | None = await db.fetchval(
        "SELECT point_count FROM metric_series WHERE run_id = $1 AND key = $2", run_id, key
    )
    return count


async def series_chunks(db: Executor, run_id: str, key: str) -> SeriesChunks | None:
    """None when the run does not exist; empty lists when it has no point under ``key``.

    The outer join on ``runs`` tells the two apart in the same round trip.
    """
    rows: list[Any] = await db.fetch(
        """
        SELECT c.steps, c.timestamps, c.vals
        FROM runs r
        LEFT JOIN metric_series s ON s.run_id = r.run_id AND s.key = $2
        LEFT JOIN metric_chunks c ON c.series_id = s.series_id
        WHERE r.run_id = $1
        ORDER BY c.chunk_no
        """,
        run_id,
        key,
    )
    if not rows:
        return None
    chunks = [row for row in rows if row[0] is not None]
    return SeriesChunks(
        steps=[row[0] for row in chunks],
        timestamps=[row[1] for row in chunks],
        values=[row[2] for row in chunks],
    )
