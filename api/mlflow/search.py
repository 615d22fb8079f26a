"""``search_runs`` and ``search_experiments`` with MLflow's semantics, as one query each.

Parsing lives in ``search_filter``, SQL building in ``search_sql`` and page tokens in
``pagination``; this module validates the request the way MLflow's SQL store does, runs the
query and makes the next page token. The REST handlers render what these return (runs by
id, experiments from their rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from runstream.api.mlflow import pagination
from runstream.api.mlflow import search_filter as sf
from runstream.api.mlflow import search_sql as sq
from runstream.schemas import constants as c
from runstream.schemas.validation import parse_experiment_id
from runstream.web import Visibility

# A search's best plan depends on its values (an experiment of 1,000 runs wants per-run index
# lookups, one of 100,000 wants hash joins), so never reuse a generic plan of the prepared
# statement; and the tables it reads are index-heavy and cached, so price random reads so.
# Measurements in docs/search.md.
# ``set_config(..., true)`` is ``SET LOCAL``: the settings end with the transaction.
PLANNER_SETTINGS = """
SELECT set_config('plan_cache_mode', 'force_custom_plan', true),
       set_config('random_page_cost', '1.1', true)"""

SORT_RUNS_UP_TO = 2_000
"""Experiments with at most this many runs (in the searched stages) are searched by one sort
when a metric orders them first, not by ``search_sql``'s three-part index walk: planning the
walk costs ~2.5 ms more (3.1 ms against 0.7 ms for ``metrics.m0 > 0.5 and params.p0 = '3'``
by ``metrics.m1 DESC``), more than the whole search of a small experiment, and the sort only
falls behind the walk from ~3,000 runs (docs/search.md)."""

# The planner settings and whether the searched runs are few enough to sort, in the one round
# trip that the settings alone used to take.
_SETTINGS_AND_SMALL = (
    PLANNER_SETTINGS
    + """,
       (SELECT count(*) FROM (SELECT 1 FROM runs r
                              WHERE r.experiment_id = ANY($1::int8[])
                                AND r.lifecycle_stage = ANY($2::text[])
                              LIMIT $3::int8) s) <= $4::int8 AS small
"""
)


async def _fetch(conn: asyncpg.Connection, query: sq.Query) -> list[asyncpg.Record]:
    async with conn.transaction():  # the settings end with it
        await conn.execute(PLANNER_SETTINGS)
        rows: list[asyncpg.Record] = await conn.fetch(query.sql, *query.args)
    return rows


async def _fetch_runs(
    conn: asyncpg.Connection,
    build: Callable[[bool], sq.Query],
    ids: list[int],
    stages: Sequence[str],
) -> list[asyncpg.Record]:
    """``build(walk)``'s rows; ``walk`` is False when the experiments are small enough to
    sort (``SORT_RUNS_UP_TO``)."""
    async with conn.transaction():  # the settings end with it
        row = await conn.fetchrow(
            _SETTINGS_AND_SMALL, ids, list(stages), SORT_RUNS_UP_TO + 1, SORT_RUNS_UP_TO
        )
        query = build(not row["small"])
        rows: list[asyncpg.Record] = await conn.fetch(query.sql, *query.args)
    return rows


async def search_runs(
    conn: asyncpg.Connection,
    *,
    experiment_ids: Sequence[str],
    filter_string: str = "",
    run_view_type: str = "ACTIVE_ONLY",
    max_results: int = c.SEARCH_MAX_RESULTS_DEFAULT,
    order_by: Sequence[str] = (),
    page_token: str | None = None,
) -> tuple[list[str], str | None]:
    """Run ids matching the search, in order, and the token of the next page (or None).

    Raises ``InvalidParameterValue`` with MLflow's message for a bad filter, order_by,
    max_results, page token, view type or experiment id.
    """
    pagination.check_max_results(max_results, allow_null=True)
    stages = sq.view_stages(run_view_type)
    filters = sf.parse_runs_filter(filter_string)
    ordering = sf.parse_runs_order_by(order_by)
    offset = pagination.decode(page_token).offset
    ids = [parse_experiment_id(e) for e in experiment_ids]
    if not ids:
        return [], None
    limit = None if max_results is None else max_results + 1

    def build(walk: bool) -> sq.Query:
        return sq.runs_query(
            experiment_ids=ids,
            stages=stages,
            filters=filters,
            order_by=ordering,
            offset=offset,
            limit=limit,
            walk=walk,
        )

    if sq.walks(ordering, limit):
        found = await _fetch_runs(conn, build, ids, stages)
    else:
        found = await _fetch(conn, build(True))
    rows, token = pagination.page(found, offset, max_results)
    return [r["run_id"] for r in rows], token


async def search_experiments(
    conn: asyncpg.Connection,
    *,
    view_type: str = "ACTIVE_ONLY",
    max_results: int = c.SEARCH_MAX_RESULTS_DEFAULT,
    filter_string: str = "",
    order_by: Sequence[str] = (),
    page_token: str | None = None,
    visible: Visibility | None = None,
) -> tuple[list[asyncpg.Record], str | None]:
    """Experiment rows (columns ``search_sql.EXPERIMENT_COLUMNS``) and the next page token;
    only those ``visible`` allows (auth: what the caller may read)."""
    pagination.check_max_results(max_results)
    stages = sq.view_stages(view_type)
    filters = sf.parse_experiments_filter(filter_string)
    ordering = sf.parse_experiments_order_by(order_by)
    offset = pagination.decode(page_token).offset
    query = sq.experiments_query(
        stages=stages,
        filters=filters,
        order_by=ordering,
        offset=offset,
        limit=max_results + 1,
        visible=visible,
    )
    rows, token = pagination.page(await _fetch(conn, query), offset, max_results)
    return list(rows), token
