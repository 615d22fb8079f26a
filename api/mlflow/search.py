"""``search_runs`` and ``search_experiments`` with MLflow's semantics, as one query each.

Parsing lives in ``api.search_filter`` and SQL building in ``api.search_sql``; this module
validates the request the way MLflow's SQL store does, runs the query and makes the next page
token. The REST handlers render what these return (runs by id, experiments from their rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from runstream.api.mlflow import search_filter as sf
from runstream.api.mlflow import search_sql as sq
from runstream.web import Visibility

SEARCH_MAX_RESULTS_DEFAULT = sq.SEARCH_MAX_RESULTS_DEFAULT

# A search's best plan depends on its values (an experiment of 1,000 runs wants per-run index
# lookups, one of 100,000 wants hash joins), so never reuse a generic plan of the prepared
# statement; and the tables it reads are index-heavy and cached, so price random reads so.
# Measurements in docs/search.md.
PLANNER_SETTINGS = "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL random_page_cost = 1.1"


async def _fetch(conn: asyncpg.Connection, query: sq.Query) -> list[asyncpg.Record]:
    async with conn.transaction():  # SET LOCAL ends with it
        await conn.execute(PLANNER_SETTINGS)
        rows: list[asyncpg.Record] = await conn.fetch(query.sql, *query.args)
    return rows


async def search_runs(
    conn: asyncpg.Connection,
    *,
    experiment_ids: Sequence[str],
    filter_string: str = "",
    run_view_type: str = "ACTIVE_ONLY",
    max_results: int = SEARCH_MAX_RESULTS_DEFAULT,
    order_by: Sequence[str] = (),
    page_token: str | None = None,
) -> tuple[list[str], str | None]:
    """Run ids matching the search, in order, and the token of the next page (or None).

    Raises ``InvalidParameterValue`` with MLflow's message for a bad filter, order_by,
    max_results, page token, view type or experiment id.
    """
    sq.check_max_results(max_results, allow_null=True)
    stages = sq.view_stages(run_view_type)
    filters = sf.parse_runs_filter(filter_string)
    ordering = sf.parse_runs_order_by(order_by)
    offset = sq.parse_page_token(page_token)
    ids = [sf.parse_experiment_id(e) for e in experiment_ids]
    if not ids:
        return [], None
    limit = None if max_results is None else max_results + 1
    query = sq.runs_query(
        experiment_ids=ids,
        stages=stages,
        filters=filters,
        order_by=ordering,
        offset=offset,
        limit=limit,
    )
    rows = await _fetch(conn, query)
    token = sq.next_page_token(offset, max_results, len(rows))
    return [r["run_id"] for r in rows[:max_results]], token


async def search_experiments(
    conn: asyncpg.Connection,
    *,
    view_type: str = "ACTIVE_ONLY",
    max_results: int = SEARCH_MAX_RESULTS_DEFAULT,
    filter_string: str = "",
    order_by: Sequence[str] = (),
    page_token: str | None = None,
    visible: Visibility | None = None,
) -> tuple[list[asyncpg.Record], str | None]:
    """Experiment rows (columns ``search_sql.EXPERIMENT_COLUMNS``) and the next page token;
    only those ``visible`` allows (auth: what the caller may read)."""
    sq.check_max_results(max_results)
    stages = sq.view_stages(view_type)
    filters = sf.parse_experiments_filter(filter_string)
    ordering = sf.parse_experiments_order_by(order_by)
    offset = sq.parse_page_token(page_token)
    query = sq.experiments_query(
        stages=stages,
        filters=filters,
        order_by=ordering,
        offset=offset,
        limit=max_results + 1,
        visible=visible,
    )
    rows = await _fetch(conn, query)
    return rows[:max_results], sq.next_page_token(offset, max_results, len(rows))
