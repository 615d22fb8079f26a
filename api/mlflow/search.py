"""``search_runs`` and ``search_experiments`` with MLflow's semantics, as one query each.

Parsing lives in ``search_filter``, SQL building in ``search_sql`` and page tokens in
``pagination``; this module validates the request the way MLflow's SQL store does, runs the
query and makes the next page token. The REST handlers render what these return (the runs'
rows that ``search_run_rows`` reads with the search, experiments from their rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from cachetools import LRUCache, TTLCache

from runstream.api import queries
from runstream.api.mlflow import messages as rq
from runstream.api.mlflow import pagination
from runstream.api.mlflow import search_filter as sf
from runstream.api.mlflow import search_sql as sq
from runstream.schemas import constants as c
from runstream.schemas.validation import parse_experiment_id
from runstream.web import Visibility

SEARCH_SESSION = {
    # A search's best plan depends on its values (an experiment of 1,000 runs wants per-run
    # index lookups, one of 100,000 an early-stopping index walk), so never reuse a generic
    # plan of a prepared statement.
    "plan_cache_mode": "force_custom_plan",
    # The read tables are index-heavy and cached: price random reads so.
    "random_page_cost": "1.1",
    # Every join of a run search is on run_id, unique per candidate, so a Memoize node only
    # misses: it cost the 100,000-run walk ~3 ms of ~13 (docs/search.md).
    "enable_memoize": "off",
    # A search is an index walk that stops at its page or a sort of one experiment's runs:
    # starting parallel workers cost more than either (the 100,000-run walk took 60-80 ms with
    # two workers, 19-23 ms without, docs/search.md), and on a shared server they take the
    # cores that serve everyone else's requests.
    "max_parallel_workers_per_gather": "0",
}
"""Session settings of the connections that search (``search_store``): measurements in
docs/search.md, "Planner settings"."""

_GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"
_CUSTOM_PLANS = "SET plan_cache_mode = " + SEARCH_SESSION["plan_cache_mode"]


class PlanModes:
    """Which search connections plan their statements once (generic plans), by backend pid.

    A search of a small experiment (``Plan.SMALL``) sorts the experiment's runs whatever the
    values, so its prepared statement can keep one generic plan per connection: planning was
    most of such a search (0.4 of 1.1 ms at 300 runs, docs/search.md). Every other plan needs a
    custom plan: a generic one of the metric walk took 330 ms against 9 ms. A connection is
    switched with one ``SET`` when its last search used the other kind; one not recorded
    (new, or forgotten) is set before use, so a walk never runs on a generic plan. A recorded
    pid that PostgreSQL gave to a new backend can only make a small search plan afresh.
    """

    def __init__(self, capacity: int = 1_024) -> None:
        self._generic: LRUCache[int, bool] = LRUCache(maxsize=capacity)

    async def use(self, conn: asyncpg.Connection, *, generic: bool) -> None:
        pid = conn.get_server_pid()
        if self._generic.get(pid) is generic:
            return
        await conn.execute(_GENERIC_PLANS if generic else _CUSTOM_PLANS)
        self._generic[pid] = generic


SORT_RUNS_UP_TO = 2_000
"""Experiments with at most this many runs (in the searched stages) are searched by
``Plan.SMALL``: one sort, each filter read once into a hash. Planning a metric's index walk
costs more than the whole search of a small experiment, and the sort only falls behind the
walk from ~3,000 runs (docs/search.md)."""

_COUNT_UP_TO = """
SELECT count(*) FROM (SELECT 1 FROM runs r
                      WHERE r.experiment_id = ANY($1::int8[])
                        AND r.lifecycle_stage = ANY($2::text[])
                      LIMIT $3::int8) s
"""


class ExperimentSizes:
    """Whether searched experiments are small enough to sort (``SORT_RUNS_UP_TO``),
    remembered for ``ttl`` seconds: a count is a round trip of its own, and the answer only
    picks a plan, never the result, so an answer a few seconds old costs at most speed."""

    def __init__(self, ttl: float = 10.0, capacity: int = 1_024) -> None:
        self._small: TTLCache[tuple[tuple[int, ...], tuple[str, ...]], bool] = TTLCache(
            maxsize=capacity, ttl=ttl
        )

    async def small(
        self, conn: asyncpg.Connection, ids: Sequence[int], stages: Sequence[str]
    ) -> bool:
        key = (tuple(ids), tuple(stages))
        small = self._small.get(key)
        if small is None:
            small = await count_is_small(conn, ids, stages)
            self._small[key] = small
        return small


async def count_is_small(
    conn: asyncpg.Connection, ids: Sequence[int], stages: Sequence[str]
) -> bool:
    """Whether the experiments hold at most ``SORT_RUNS_UP_TO`` runs in ``stages``."""
    count: int = await conn.fetchval(_COUNT_UP_TO, list(ids), list(stages), SORT_RUNS_UP_TO + 1)
    return count <= SORT_RUNS_UP_TO


async def search_runs(
    conn: asyncpg.Connection,
    *,
    experiment_ids: Sequence[str],
    filter_string: str = "",
    run_view_type: str = "ACTIVE_ONLY",
    max_results: int | None = c.SEARCH_MAX_RESULTS_DEFAULT,
    order_by: Sequence[str] = (),
    page_token: str | None = None,
    sizes: ExperimentSizes | None = None,
    modes: PlanModes | None = None,
) -> tuple[list[str], str | None]:
    """Run ids matching the search, in order, and the token of the next page (or None).

    Raises ``InvalidParameterValue`` with MLflow's message for a bad filter, order_by,
    max_results, page token, view type or experiment id.
    """
    found, token = await _search(
        conn, experiment_ids, filter_string, run_view_type, max_results, order_by, page_token,
        sizes, modes, with_rows=False,
    )  # fmt: skip
    return [r["run_id"] for r in found], token


async def search_run_rows(
    conn: asyncpg.Connection,
    req: rq.SearchRuns,
    *,
    sizes: ExperimentSizes | None = None,
    modes: PlanModes | None = None,
) -> tuple[list[asyncpg.Record], str | None]:
    """As :func:`search_runs` for a parsed request, with each run's row (``queries.run``'s
    columns) in place of its id, read by the search's own statement."""
    return await _search(
        conn, req.experiment_ids, req.filter_string, req.run_view_type, req.max_results,
        req.order_by, req.page_token, sizes, modes, with_rows=True,
    )  # fmt: skip


async def _search(
    conn: asyncpg.Connection,
    experiment_ids: Sequence[str],
    filter_string: str,
    run_view_type: str,
    max_results: int | None,
    order_by: Sequence[str],
    page_token: str | None,
    sizes: ExperimentSizes | None,
    modes: PlanModes | None,
    *,
    with_rows: bool,
) -> tuple[list[asyncpg.Record], str | None]:
    pagination.check_max_results(max_results, allow_null=True)
    stages = sq.view_stages(run_view_type)
    filters = sf.parse_runs_filter(filter_string)
    ordering = sf.parse_runs_order_by(order_by)
    offset = pagination.decode(page_token).offset
    ids = [parse_experiment_id(e) for e in experiment_ids]
    if not ids:
        return [], None
    limit = None if max_results is None else max_results + 1

    async def fetch(plan: sq.Plan) -> list[asyncpg.Record]:
        query = sq.runs_query(
            experiment_ids=ids,
            stages=stages,
            filters=filters,
            order_by=ordering,
            offset=offset,
            limit=limit,
            plan=plan,
        )
        sql = queries.runs_in_order(query.sql) if with_rows else query.sql
        rows: list[asyncpg.Record] = await conn.fetch(sql, *query.args)
        return rows

    walks = sq.walks(ordering, limit)
    # Whether the experiments are small decides the plan only of a walk or of a filter on
    # other tables than runs (``Plan.SMALL``); don't spend a round trip on it otherwise.
    if walks or any(f.entity != sf.ATTRIBUTE for f in filters):
        small = await (sizes.small if sizes else count_is_small)(conn, ids, stages)
    else:
        small = False
    if modes is not None:
        await modes.use(conn, generic=small)
    if small:
        found = await fetch(sq.Plan.SMALL)
    elif not walks:
        found = await fetch(sq.Plan.SORT)
    else:
        # The runs with a number fill the page unless fewer than offset + limit have one.
        found = await fetch(sq.Plan.NUMBERS)
        if len(found) < (limit or 0):
            found = await fetch(sq.Plan.WALK)
    rows, token = pagination.page(found, offset, max_results)
    return list(rows), token


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
    rows, token = pagination.page(await conn.fetch(query.sql, *query.args), offset, max_results)
    return list(rows), token
