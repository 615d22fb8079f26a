"""MLflow search as one parameterised PostgreSQL query: pure builders, no I/O.

``runs_query`` turns parsed comparisons and order-by clauses (``api.search_filter``) into a
query over ``runs`` returning run ids in MLflow's order; ``experiments_query`` does the same
for ``experiments``. Values are always bound parameters; the only identifiers written into the
SQL come from the fixed column maps below. View types follow MLflow's SQL store; paging
(offset tokens, ``max_results``) is ``api.mlflow.pagination``'s.

Semantics carried over from MLflow's SQL store (``_get_sqlalchemy_filter_clauses``,
``_get_orderby_clauses``):

- a metric filter compares the run's latest value (``metric_series.latest_value``); a NaN
  latest value satisfies ``!=`` and nothing else;
- a param/tag/metric comparison needs the key to be present (``!=`` too);
  ``IS NULL``/``IS NOT NULL`` test presence;
- ordering by a key puts runs lacking it last in either direction, and NaN metrics after
  every number but before missing ones; then ``start_time DESC`` (unless ordered by
  already) and ``run_id`` break ties.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from runstream.api.mlflow import search_filter as sf
from runstream.api.views import LIFECYCLE_STAGES_OF_VIEW, VIEW_TYPES
from runstream.schemas import constants as c
from runstream.schemas.errors import InvalidParameterValue
from runstream.web import Visibility

# Whitelists: the only identifiers that reach SQL text.
_RUN_COLUMNS = {
    "run_id": "r.run_id",
    "run_name": "r.name",
    "status": "r.status",
    "user_id": "r.user_id",
    "artifact_uri": "r.artifact_uri",
    "start_time": "r.start_time",
    "end_time": "r.end_time",
}
_EXPERIMENT_COLUMNS = {
    "experiment_id": "e.experiment_id",
    "name": "e.name",
    "creation_time": "e.creation_time",
    "last_update_time": "e.last_update_time",
}
_KEYED_TABLES = {sf.PARAM: "params", sf.TAG: "run_tags"}
_SQL_OPERATORS = {
    "=": "=",
    "!=": "<>",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "LIKE": "LIKE",
    "ILIKE": "ILIKE",
}
# Long param and tag values cannot sit in a btree; the search indexes (0002) hold this prefix,
# and an equality filter tests the prefix first so that the index narrows it down.
INDEXED_PREFIX = 200

EXPERIMENT_COLUMNS = (
    "experiment_id",
    "name",
    "artifact_location",
    "lifecycle_stage",
    "creation_time",
    "last_update_time",
    "deleted_time",
)


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    args: tuple[object, ...]


@dataclass(slots=True)
class Args:
    """A query's bound parameters: ``arg(value, "::int8")`` keeps the value and returns its
    placeholder (``$3::int8``), so that no value is ever written into SQL text."""

    values: list[object] = field(default_factory=list)

    def __call__(self, value: object, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{cast}"


def _invalid(message: str) -> InvalidParameterValue:
    return InvalidParameterValue(message)


# --- view types ----------------------------------------------------------------------------


def view_stages(view_type: str | int) -> tuple[str, ...]:
    """Lifecycle stages of a view type: ``ACTIVE_ONLY``/``DELETED_ONLY``/``ALL`` (any case) or
    MLflow's enum numbers 1/2/3."""
    if isinstance(view_type, int) and not isinstance(view_type, bool):
        names = {number: name for name, number in VIEW_TYPES.items()}
        view_type = names.get(view_type, str(view_type))
    stages = LIFECYCLE_STAGES_OF_VIEW.get(str(view_type).upper())
    if stages is None:
        raise _invalid(f"Invalid view type '{view_type}'. Valid view types are {list(VIEW_TYPES)}")
    return stages


# --- runs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scope:
    """The searched experiments (one bound parameter) as a condition on an ``experiment_id``,
    and how a condition on a run's rows in another table is read.

    params, run_tags and metric_series carry their run's experiment (migration 0006); every
    filter and order-by join names it, so the planner reads only the experiment's part of the
    ``(experiment_id, key, ...)`` search indexes instead of the key's rows in every experiment.
    """

    param: str
    many: bool
    hashed: bool = False
    """``Plan.SMALL``: each such condition reads its matching rows once, into a hash."""

    def on(self, column: str) -> str:
        return f"{column} = ANY({self.param})" if self.many else f"{column} = {self.param}"

    def has(self, table: str, alias: str, where: str, *, present: bool = True) -> str:
        """The run has (``present``) or has not a row of ``table`` meeting ``where``.

        ``EXISTS`` probes the run's rows per candidate: right for a walk that stops early, and
        the planner may turn it into a join. Hashed, ``run_id IN (...)`` reads the experiment's
        matching rows once (one index range) into a hash that every run of the experiment is
        looked up in. ``IS TRUE`` keeps PostgreSQL from making that ``IN`` a semi-join, whose
        size it guesses from run_id's statistics (one row, for any experiment: then it probes
        per run again); ``NOT IN`` is never made a join (run_id is never NULL, so it means
        ``NOT EXISTS``).
        """
        if self.hashed:
            sql = (
                f"r.run_id {'IN' if present else 'NOT IN'}"
                f" (SELECT {alias}.run_id FROM {table} {alias} WHERE {where})"
            )
            return f"({sql}) IS TRUE" if present else sql
        exists = "EXISTS" if present else "NOT EXISTS"
        return (
            f"{exists} (SELECT 1 FROM {table} {alias} WHERE {alias}.run_id = r.run_id AND {where})"
        )


def _scope(experiment_ids: Sequence[int], arg: Args, *, hashed: bool = False) -> _Scope:
    # One experiment as "=" lets the planner walk runs_search in start-time order.
    if len(experiment_ids) == 1:
        return _Scope(arg(experiment_ids[0], "::int8"), many=False, hashed=hashed)
    return _Scope(arg(list(experiment_ids), "::int8[]"), many=True, hashed=hashed)


def _in_list(column: str, comparator: str, values: tuple[object, ...], arg: Args, cast: str) -> str:
    if comparator == "IN":
        return f"{column} = ANY({arg(list(values), cast)})"
    return f"{column} <> ALL({arg(list(values), cast)})"


def _run_attribute(comp: sf.Comparison, arg: Args) -> str:
    column = _RUN_COLUMNS[comp.column]
    value = comp.value
    if isinstance(value, tuple):
        return _in_list(column, comp.comparator, value, arg, "::text[]")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _invalid(f"Invalid value {value!r} for attribute '{comp.key}'")
    cast = (
        "::text" if isinstance(value, str) else "::int8" if isinstance(value, int) else "::float8"
    )
    return f"{column} {_SQL_OPERATORS[comp.comparator]} {arg(value, cast)}"


def _metric(comp: sf.Comparison, arg: Args, scope: _Scope) -> str:
    assert isinstance(comp.value, float)
    op = _SQL_OPERATORS[comp.comparator]
    # PostgreSQL orders NaN above every number, so only > and >= need it kept out; NaN <> x
    # holds, as MLflow wants for !=.
    nan = " AND m.latest_value < 'NaN'::float8" if op in (">", ">=") else ""
    where = (
        f"{scope.on('m.experiment_id')} AND m.key = {arg(comp.key, '::text')}"
        f" AND m.latest_value {op} {arg(comp.value, '::float8')}{nan}"
    )
    return scope.has("metric_series", "m", where)


def like_prefix(pattern: str) -> str | None:
    """The literal of a LIKE pattern that is a literal followed by ``%``s, else None.

    PostgreSQL's LIKE escapes with backslash; ``_`` or a ``%`` before the end disqualifies.
    """
    literal: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 == len(pattern):
                return None  # PostgreSQL rejects the pattern; let it say so
            literal.append(pattern[i + 1])
            i += 2
        elif ch == "_":
            return None
        elif ch == "%":
            return "".join(literal) if not pattern[i:].strip("%") else None
        else:
            literal.append(ch)
            i += 1
    return None


_INDEXED_VALUE = f'(left(k.value, {INDEXED_PREFIX}) COLLATE "C")'
"""The expression of ``params_search`` and ``run_tags_search`` (migration 0010): under "C" a
prefix ``LIKE`` is an index range, and equality and ``LIKE`` answer as under any collation."""


def _keyed(comp: sf.Comparison, arg: Args, scope: _Scope) -> str:
    table = _KEYED_TABLES[comp.entity]
    where = f"{scope.on('k.experiment_id')} AND k.key = {arg(comp.key, '::text')}"
    if comp.comparator in ("IS NULL", "IS NOT NULL"):
        return scope.has(table, "k", where, present=comp.comparator == "IS NOT NULL")
    assert isinstance(comp.value, str)
    value = arg(comp.value, "::text")
    if comp.comparator == "=":
        prefix = _INDEXED_VALUE
        if len(comp.value) < INDEXED_PREFIX:
            # A value shorter than the prefix equals a stored value exactly when it equals the
            # stored prefix (a longer stored value has a prefix of INDEXED_PREFIX characters),
            # so the index condition decides alone. (The heap row is still visited: PostgreSQL
            # 15 does no index-only scan on an expression index.)
            return scope.has(table, "k", f"{where} AND {prefix} = {value}")
        where += f" AND {prefix} = left({value}, {INDEXED_PREFIX})"
    elif comp.comparator == "LIKE":
        literal = like_prefix(comp.value)
        if literal is not None and len(literal) < INDEXED_PREFIX:
            # 'abc%': a value starts with a literal shorter than the indexed prefix exactly when
            # its prefix does, so the indexed expression decides alone here too.
            return scope.has(table, "k", f"{where} AND {_INDEXED_VALUE} LIKE {value}")
    op = _SQL_OPERATORS[comp.comparator]
    return scope.has(table, "k", f"{where} AND k.value {op} {value}")


def _run_condition(comp: sf.Comparison, arg: Args, scope: _Scope) -> str:
    if comp.entity == sf.ATTRIBUTE:
        return _run_attribute(comp, arg)
    if comp.entity == sf.METRIC:
        return _metric(comp, arg, scope)
    if comp.entity in _KEYED_TABLES:
        return _keyed(comp, arg, scope)
    return _dataset(comp, arg, scope)


def _dataset(comp: sf.Comparison, arg: Args, scope: _Scope) -> str:
    """``datasets.name|digest|context``: the run has a dataset input that matches (MLflow joins
    each condition on its own, so two conditions may be met by two different inputs)."""
    if comp.key == "context":
        column = "t.value"
        table, alias = "run_dataset_input_tags", "t"
        where = f"{scope.on('t.experiment_id')} AND t.key = {arg(c.DATASET_CONTEXT_TAG, '::text')}"
    else:
        column = f"d.{comp.key}"
        table, alias = "run_dataset_inputs", "d"
        where = scope.on("d.experiment_id")
    value = comp.value
    if isinstance(value, tuple):
        condition = _in_list(column, comp.comparator, value, arg, "::text[]")
    else:
        condition = f"{column} {_SQL_OPERATORS[comp.comparator]} {arg(str(value), '::text')}"
    return scope.has(table, alias, f"{where} AND {condition}")


@dataclass(frozen=True, slots=True)
class _OrderKey:
    """One order_by item: the row it reads (``table`` ``alias`` ``ON on``) and its sort keys."""

    keys: tuple[str, ...]
    table: str = ""
    alias: str = ""
    on: str = ""

    @property
    def left_join(self) -> str:
        return f"LEFT JOIN {self.table} {self.alias} ON {self.on}" if self.table else ""


def _order_key(n: int, item: sf.OrderBy, arg: Args, scope: _Scope) -> _OrderKey:
    direction = "ASC" if item.ascending else "DESC"
    if item.entity == sf.ATTRIBUTE:
        return _OrderKey((f"{_RUN_COLUMNS[item.column]} {direction} NULLS LAST",))
    alias = f"o{n}"
    on = (
        f"{alias}.run_id = r.run_id AND {scope.on(alias + '.experiment_id')}"
        f" AND {alias}.key = {arg(item.key, '::text')}"
    )
    if item.entity == sf.METRIC:
        value = f"{alias}.latest_value"
        # ASC: numbers, then NaN (PostgreSQL sorts it above them), then missing;
        # DESC: numbers, then NaN, then missing.
        keys = (
            (f"{value} ASC NULLS LAST",)
            if item.ascending
            else (f"({value} = 'NaN'::float8) ASC NULLS LAST", f"{value} DESC")
        )
        return _OrderKey(keys, "metric_series", alias, on)
    return _OrderKey(
        (f"{alias}.value {direction} NULLS LAST",), _KEYED_TABLES[item.entity], alias, on
    )


def _tie_keys(order_by: Sequence[sf.OrderBy]) -> list[str]:
    keys = []
    if not any(i.entity == sf.ATTRIBUTE and i.column == "start_time" for i in order_by):
        keys.append("r.start_time DESC")
    keys.append("r.run_id")
    return keys


def _select(
    joins: Sequence[str], where: Sequence[str], keys: Sequence[str], columns: str = "r.run_id"
) -> str:
    sql = f"SELECT {columns} FROM runs r"
    if joins:
        sql += "\n" + "\n".join(joins)
    sql += "\nWHERE " + "\n  AND ".join(where)
    return sql + "\nORDER BY " + ", ".join(keys)


def _numbers_join(first: _OrderKey, ascending: bool) -> str:
    """The join of a metric first order key that keeps the runs with a number, in the order
    its index walks: numbers then NaN ascending (one walk); numbers only descending
    (PostgreSQL sorts NaN above every number, MLflow after them)."""
    value = f"{first.alias}.latest_value"
    kept = f"{value} IS NOT NULL" if ascending else f"{value} < 'NaN'::float8"
    return f"JOIN {first.table} {first.alias} ON {first.on} AND {kept}"


def _metric_first(
    first: _OrderKey,
    ascending: bool,
    rest: Sequence[_OrderKey],
    ties: Sequence[str],
    where: Sequence[str],
    offset: int,
    limit: int,
    arg: Args,
) -> str:
    """Top-N ordered by a metric first: walk its ``(experiment_id, key, latest_value)`` index.

    MLflow's order (numbers, NaN, runs lacking the key) is three parts; each is one index-
    ordered walk that stops after ``offset + limit`` rows (PostgreSQL sorts NaN above every
    number, so DESC cannot be one walk). A later part runs only when the earlier ones found
    fewer rows than that: its outer LIMIT is then 0, and PostgreSQL does not start it.
    """
    joins = [k.left_join for k in rest if k.table]
    rest_keys = [key for k in rest for key in k.keys] + list(ties)
    value = f"{first.alias}.latest_value"
    numbers = [_numbers_join(first, ascending), *joins]
    parts: list[tuple[list[str], list[str], list[str]]] = []  # joins, where, keys
    parts.append((numbers, [*where], [f"{value} {'ASC' if ascending else 'DESC'}", *rest_keys]))
    if not ascending:  # (ascending, the numbers part holds NaN too)
        nans = [f"JOIN {first.table} {first.alias} ON {first.on} AND {value} = 'NaN'::float8"]
        parts.append(([*nans, *joins], [*where], rest_keys))
    missing = (
        f"NOT EXISTS (SELECT 1 FROM {first.table} {first.alias}"
        f" WHERE {first.on} AND {value} IS NOT NULL)"
    )
    parts.append((joins, [*where, missing], rest_keys))

    wanted = arg(offset + limit, "::int8")
    ctes = []
    found = ""
    for i, (part_joins, part_where, keys) in enumerate(parts):
        # pos: the row's place in its part, so the parts are put together in order.
        pos = f"r.run_id, row_number() OVER (ORDER BY {', '.join(keys)}) AS pos"
        select = _select(part_joins, part_where, keys, columns=pos)
        body = f"{select}\nLIMIT {wanted}"
        if i:
            body = f"SELECT * FROM ({body}) p\nORDER BY pos LIMIT GREATEST(0, {wanted}{found})"
        ctes.append(f"p{i} AS MATERIALIZED (\n{body}\n)")
        found += f" - (SELECT count(*) FROM p{i})"
    union = "\nUNION ALL ".join(
        f"SELECT {i} AS part, pos, run_id FROM p{i}" for i in range(len(parts))
    )
    sql = (
        "WITH " + ",\n".join(ctes) + f"\nSELECT run_id FROM (\n{union}\n) parts\nORDER BY part, pos"
    )
    sql += f"\nLIMIT {arg(limit, '::int8')}"
    if offset:
        sql += f" OFFSET {arg(offset, '::int8')}"
    return sql


class Plan(enum.Enum):
    """How ``runs_query`` finds and orders the runs (``search.py`` picks one per search).

    ``SMALL``: for small experiments, whatever the order: each filter reads its matching rows
    once into a hash (``_Scope.has``), then one sort; no join order to plan, no probe per run.
    ``SORT``: one statement that sorts every matching run, filters as ``EXISTS``.
    ``NUMBERS``: only the runs whose value is a number (with NaN too when
    ascending), walking the metric's index and stopping early; it is the whole page whenever
    it finds ``offset + limit`` rows. ``WALK``: ``_metric_first``'s three parts, right for any
    page, but planning three joins costs ~2 ms more than ``NUMBERS`` (docs/search.md).
    """

    SMALL = "small"
    SORT = "sort"
    NUMBERS = "numbers"
    WALK = "walk"


def walks(order_by: Sequence[sf.OrderBy], limit: int | None) -> bool:
    """Whether ``runs_query`` can page by walking a metric's index (``Plan``)."""
    return limit is not None and bool(order_by) and order_by[0].entity == sf.METRIC


def runs_query(
    *,
    experiment_ids: Sequence[int],
    stages: Sequence[str],
    filters: Sequence[sf.Comparison] = (),
    order_by: Sequence[sf.OrderBy] = (),
    offset: int = 0,
    limit: int | None = None,
    plan: Plan = Plan.WALK,
) -> Query:
    """Run ids matching ``filters`` in the experiments and stages, in MLflow's order.

    ``Plan.NUMBERS`` and ``Plan.WALK`` apply only where ``walks`` (else they are ``SORT``);
    ``NUMBERS`` may return fewer rows than the page holds (then ask again with ``WALK``).
    """
    arg = Args()
    scope = _scope(experiment_ids, arg, hashed=plan is Plan.SMALL)
    where = [scope.on("r.experiment_id")]
    if len(stages) == 1:
        where.append(f"r.lifecycle_stage = {arg(stages[0], '::text')}")
    else:
        where.append(f"r.lifecycle_stage = ANY({arg(list(stages), '::text[]')})")
    where.extend(_run_condition(comp, arg, scope) for comp in filters)
    keys = [_order_key(n, item, arg, scope) for n, item in enumerate(order_by, 1)]
    ties = _tie_keys(order_by)
    joins = [k.left_join for k in keys if k.table]
    sort_keys = [s for k in keys for s in k.keys] + ties
    if limit is not None and walks(order_by, limit):
        first, ascending = keys[0], order_by[0].ascending
        if plan is Plan.WALK:
            sql = _metric_first(first, ascending, keys[1:], ties, where, offset, limit, arg)
            return Query(sql, tuple(arg.values))
        if plan is Plan.NUMBERS:
            joins[0] = _numbers_join(first, ascending)
            value = f"{first.alias}.latest_value"
            sort_keys = [f"{value} {'ASC' if ascending else 'DESC'}", *sort_keys[len(first.keys) :]]
    sql = _select(joins, where, sort_keys)
    if limit is not None:
        sql += f"\nLIMIT {arg(limit, '::int8')}"
    if offset:
        sql += f" OFFSET {arg(offset, '::int8')}"
    return Query(sql, tuple(arg.values))


# --- experiments -------------------------------------------------------------------------------


def _experiment_condition(comp: sf.Comparison, arg: Args) -> str:
    if comp.entity == sf.TAG:
        where = f"t.experiment_id = e.experiment_id AND t.key = {arg(comp.key, '::text')}"
        if comp.comparator == "IS NULL":
            return f"NOT EXISTS (SELECT 1 FROM experiment_tags t WHERE {where})"
        if comp.comparator == "IS NOT NULL":
            return f"EXISTS (SELECT 1 FROM experiment_tags t WHERE {where})"
        op = _SQL_OPERATORS[comp.comparator]
        return (
            f"EXISTS (SELECT 1 FROM experiment_tags t WHERE {where}"
            f" AND t.value {op} {arg(comp.value, '::text')})"
        )
    column = _EXPERIMENT_COLUMNS[comp.key]
    if isinstance(comp.value, tuple):
        return _in_list(column, comp.comparator, comp.value, arg, "::int8[]")
    cast = "::text" if comp.key == "name" else "::int8"
    return f"{column} {_SQL_OPERATORS[comp.comparator]} {arg(comp.value, cast)}"


def experiments_query(
    *,
    stages: Sequence[str],
    filters: Sequence[sf.Comparison] = (),
    order_by: Sequence[sf.OrderBy] = (),
    offset: int = 0,
    limit: int | None = None,
    visible: Visibility | None = None,
) -> Query:
    """Experiment rows (``EXPERIMENT_COLUMNS``) in MLflow's ``search_experiments`` order,
    limited to ``visible`` (the caller's readable experiments) when given."""
    arg = Args()
    where = [f"e.lifecycle_stage = ANY({arg(list(stages), '::text[]')})"]
    if visible is not None:
        ids = arg(sorted(int(i) for i in visible.exceptions if i.isdigit()), "::bigint[]")
        where.append(f"{'NOT ' if visible.default else ''}(e.experiment_id = ANY({ids}))")
    where.extend(_experiment_condition(comp, arg) for comp in filters)
    keys = [f"{_EXPERIMENT_COLUMNS[o.column]} {'ASC' if o.ascending else 'DESC'}" for o in order_by]
    if not any(o.column == "experiment_id" for o in order_by):
        keys.append("e.experiment_id DESC")
    columns = ", ".join(f"e.{column}" for column in EXPERIMENT_COLUMNS)
    sql = f"SELECT {columns} FROM experiments e\nWHERE " + "\n  AND ".join(where)
    sql += "\nORDER BY " + ", ".join(keys)
    if limit is not None:
        sql += f"\nLIMIT {arg(limit, '::int8')}"
    if offset:
        sql += f" OFFSET {arg(offset, '::int8')}"
    return Query(sql, tuple(arg.values))
