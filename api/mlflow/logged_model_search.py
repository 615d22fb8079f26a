"""MLflow's ``search_logged_models``: filter grammar, order_by, page tokens → SQL. Pure.

The grammar is MLflow's (``mlflow/utils/search_logged_model_utils.py``): comparisons joined
by ``AND``; an identifier is an attribute (``name``, ``creation_time``, ...), or
``metrics.<key>``, ``params.<key>``, ``tags.<key>`` (backticks around keys with spaces).
Numeric entities (metrics, the timestamps) take ``< <= > >= = !=``; strings take
``= != LIKE ILIKE IN NOT IN``. A metric comparison matches a model with any such point (on
one of the request's datasets, when given). Order: the given fields (attributes, or
``metrics.<key>`` by the model's latest point), nulls last, then newest first, then model id.

Page tokens are MLflow's (``api.mlflow.pagination``): base64 of ``{"experiment_ids",
"filter_string", "order_by", "offset"}``, refused when the request's fields differ from the
token's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runstream.api.mlflow import filter_grammar as g
from runstream.api.mlflow import pagination
from runstream.api.mlflow.logged_model_views import STATUS_FROM_PROTO
from runstream.api.mlflow.search_sql import Args
from runstream.schemas import constants as c
from runstream.schemas.errors import InvalidParameterValue

ALIASES = {
    "creation_time": "creation_timestamp_ms",
    "creation_timestamp": "creation_timestamp_ms",
    "last_updated_timestamp": "last_updated_timestamp_ms",
}
NUMERIC_ATTRIBUTES = frozenset({"creation_timestamp_ms", "last_updated_timestamp_ms"})
ATTRIBUTE_COLUMNS = {
    "model_id": "m.model_id",
    "experiment_id": "m.experiment_id::text",
    "name": "m.name",
    "artifact_location": "m.artifact_location",
    "creation_timestamp_ms": "m.creation_timestamp_ms",
    "last_updated_timestamp_ms": "m.last_updated_timestamp_ms",
    "status": "m.status",
    "lifecycle_stage": "m.lifecycle_stage",
    "model_type": "m.model_type",
    "source_run_id": "m.source_run_id",
    "status_message": "m.status_message",
}
"""Attributes a filter or order_by may name, and their SQL (fixed text, never user input)."""
ORDER_COLUMNS = {**ATTRIBUTE_COLUMNS, "experiment_id": "m.experiment_id"}

NUMERIC_OPS = ("<", "<=", ">", ">=", "=", "!=")
STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
ENTITY_TYPES = ("attributes", "metrics", "params", "tags")
KEY_CHARS = "-:/"
"""Besides word characters, what an unquoted key or value may hold (``tags.git-sha``)."""
_STATUS_VALUES = {str(value): status for value, status in STATUS_FROM_PROTO.items()}
"""A filter's ``status`` value (MLflow's enum name, or its number as text) as stored."""

_LIST_ITEM = re.compile(r"""\s*('(?:[^']|'')*'|"[^"]*")\s*(,|$)""")
_AND_EXAMPLE = (
    "Expected a list of comparisons separated by 'AND' (e.g. "
    "'metrics.loss > 0.1 AND params.lr = 0.01')."
)


@dataclass(frozen=True, slots=True)
class Comparison:
    entity: str
    """attributes, metrics, params or tags."""
    key: str
    op: str
    value: str | float | tuple[str, ...]


def invalid_filter(filter_string: str, detail: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Invalid filter string: {filter_string!r}. {detail}")


def _entity(identifier: str) -> tuple[str, str]:
    match = re.match(r"^([a-z]+)\.(.+)$", identifier)
    if match:
        entity, key = match[1], match[2].strip("`")
        if entity not in ENTITY_TYPES:
            raise InvalidParameterValue(
                f"Invalid entity type: {entity!r}. Expected one of {list(ENTITY_TYPES)}."
            )
        if entity == "attributes":
            key = ALIASES.get(key, key)
        return entity, key
    return "attributes", ALIASES.get(identifier, identifier).strip("`")


def _is_numeric(entity: str, key: str) -> bool:
    return entity == "metrics" or (entity == "attributes" and key in NUMERIC_ATTRIBUTES)


def _unquote(text: str) -> str:
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return text[1:-1]


def parse_filter(filter_string: str | None) -> list[Comparison]:
    """Comparisons joined by AND; raises INVALID_PARAMETER_VALUE with MLflow's wording."""
    if not filter_string or not filter_string.strip():
        return []
    try:
        clauses = g.comparisons(filter_string, and_required=True, word_chars=KEY_CHARS)
    except g.FilterSyntaxError as exc:
        raise invalid_filter(filter_string, _syntax_detail(exc)) from None
    return [_comparison(raw, filter_string) for raw in clauses]


def _syntax_detail(exc: g.FilterSyntaxError) -> str:
    if exc.expected == g.SEPARATOR:
        return _AND_EXAMPLE
    if exc.expected == g.IDENTIFIER:
        return "Expected an identifier."
    if exc.expected == g.COMPARATOR:
        if exc.found is None:
            return "Expected a comparison operator."
        return f"Expected a comparison operator, got {exc.found!r}."
    if exc.found is None:
        return "Expected a value."
    if exc.expected == g.LIST:
        if exc.found.startswith("("):
            return f"Invalid list of strings {exc.found}."
        return f"Expected a list of strings after {exc.comparator.upper()}."
    return f"Unexpected value {exc.found}."


def _comparison(raw: g.RawComparison, filter_string: str) -> Comparison:
    op = raw.comparator.upper()
    op = "!=" if op == "<>" else op
    entity, key = _entity(raw.identifier)
    numeric = _is_numeric(entity, key)
    ops = NUMERIC_OPS if numeric else STRING_OPS
    if op not in ops:
        raise InvalidParameterValue(
            f"Invalid comparison operator for {entity}.{key}: {op!r}. Expected one of {ops}."
        )
    if entity == "attributes" and key not in ATTRIBUTE_COLUMNS:
        raise InvalidParameterValue(f"Invalid attribute key: {key!r}.")
    tok = raw.value
    quoted = tok is not None and tok.kind in ("str", "sym")
    value: str | float | tuple[str, ...]
    if numeric:
        text = _unquote(tok.text) if tok is not None and quoted else raw.shown_value
        try:
            value = float(text)
        except ValueError:
            raise invalid_filter(
                filter_string, f"Expected a number for {entity}.{key}, got {raw.shown_value}."
            ) from None
    elif op in ("IN", "NOT IN"):
        if raw.list_text is None:
            raise invalid_filter(filter_string, f"Expected a list of strings after {op}.")
        value = _string_list(raw.list_text, filter_string)
    elif tok is not None and tok.kind in ("str", "sym", "num", "word"):
        value = _unquote(tok.text) if quoted else tok.text
    else:
        raise invalid_filter(filter_string, f"Unexpected value {raw.shown_value}.")
    return Comparison(entity, key, op, value)


def _string_list(text: str, filter_string: str) -> tuple[str, ...]:
    inner = text[1:-1].strip()
    items: list[str] = []
    pos = 0
    while pos < len(inner):
        match = _LIST_ITEM.match(inner, pos)
        if match is None:
            raise invalid_filter(filter_string, f"Invalid list of strings {text}.")
        items.append(_unquote(match[1]))
        pos = match.end()
    if not items:
        raise invalid_filter(filter_string, f"Invalid list of strings {text}.")
    return tuple(items)


# -- order_by and page tokens --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderBy:
    field_name: str
    ascending: bool = True
    dataset_name: str | None = None
    dataset_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The form MLflow's handler passes to its store, and keeps in page tokens."""
        return {
            "field_name": self.field_name,
            "ascending": self.ascending,
            "dataset_name": self.dataset_name,
            "dataset_digest": self.dataset_digest,
        }


@dataclass(frozen=True, slots=True)
class DatasetFilter:
    dataset_name: str
    dataset_digest: str | None = None


@dataclass(frozen=True, slots=True)
class SearchRequest:
    experiment_ids: tuple[str, ...]
    filter_string: str | None = None
    datasets: tuple[DatasetFilter, ...] = ()
    max_results: int = c.LOGGED_MODEL_SEARCH_MAX_RESULTS_DEFAULT
    order_by: tuple[OrderBy, ...] = ()
    page_token: str | None = None
    comparisons: tuple[Comparison, ...] = field(default=())


def page_token_bounds(request: SearchRequest) -> tuple[pagination.Bound, ...]:
    """What a page token of this search is bound to, as MLflow's
    ``SearchLoggedModelsPaginationToken`` keeps and checks it."""
    return (
        pagination.Bound(
            "experiment_ids",
            list(request.experiment_ids),
            "Experiment IDs",
            "experiment IDs",
            verb="do",
        ),
        pagination.Bound("filter_string", request.filter_string, "Filter string", "filter string"),
        pagination.Bound(
            "order_by", [o.to_dict() for o in request.order_by] or None, "Order by", "order by"
        ),
    )


# -- SQL -----------------------------------------------------------------------------------------


def _compare(column: str, op: str, value: Any, bind: Args) -> str:
    if op in ("IN", "NOT IN"):
        negate = "NOT " if op == "NOT IN" else ""
        return f"{negate}({column} = ANY({bind(list(value))}::text[]))"
    return f"{column} {op} {bind(value)}"


def _dataset_condition(datasets: Sequence[DatasetFilter], bind: Args, alias: str) -> str:
    parts = []
    for d in datasets:
        part = f"{alias}.dataset_name = {bind(d.dataset_name)}"
        if d.dataset_digest:
            part += f" AND {alias}.dataset_digest = {bind(d.dataset_digest)}"
        parts.append(f"({part})")
    return "(" + " OR ".join(parts) + ")"


def _filter_value(comparison: Comparison) -> Any:
    value = comparison.value
    if comparison.entity == "attributes" and comparison.key == "status":
        if isinstance(value, tuple):
            return tuple(_STATUS_VALUES.get(v, v) for v in value)
        if isinstance(value, str):
            return _STATUS_VALUES.get(value, value)
    return value


def build_query(request: SearchRequest, offset: int) -> tuple[str, list[Any]]:
    """SELECT of the matching model ids, in order, ``max_results + 1`` of them from ``offset``."""
    bind = Args()
    where = [
        "m.lifecycle_stage <> 'deleted'",
        f"m.experiment_id = ANY({bind([int(i) for i in request.experiment_ids])}::bigint[])",
    ]
    has_metric_filter = False
    for comp in request.comparisons:
        value = _filter_value(comp)
        if comp.entity == "attributes":
            column = ATTRIBUTE_COLUMNS[comp.key]
            if comp.key in NUMERIC_ATTRIBUTES:
                where.append(f"{column} {comp.op} {bind(value)}::float8")
            else:
                where.append(_compare(column, comp.op, value, bind))
        elif comp.entity == "metrics":
            has_metric_filter = True
            cond = (
                f"x.model_id = m.model_id AND x.key = {bind(comp.key)}"
                f" AND x.value {comp.op} {bind(value)}::float8"
            )
            if request.datasets:
                cond += " AND " + _dataset_condition(request.datasets, bind, "x")
            where.append(f"EXISTS (SELECT 1 FROM logged_model_metrics x WHERE {cond})")
        else:
            table = "logged_model_params" if comp.entity == "params" else "logged_model_tags"
            cond = _compare("x.value", comp.op, value, bind)
            where.append(
                f"EXISTS (SELECT 1 FROM {table} x WHERE x.model_id = m.model_id"
                f" AND x.key = {bind(comp.key)} AND {cond})"
            )
    if request.datasets and not has_metric_filter:
        cond = _dataset_condition(request.datasets, bind, "x")
        where.append(
            f"EXISTS (SELECT 1 FROM logged_model_metrics x WHERE x.model_id = m.model_id"
            f" AND {cond})"
        )
    order, joins = _order(request.order_by, bind)
    sql = (
        "SELECT m.model_id FROM logged_models m"
        + "".join(joins)
        + " WHERE "
        + " AND ".join(where)
        + " ORDER BY "
        + ", ".join(order)
        + f" LIMIT {bind(request.max_results + 1)} OFFSET {bind(offset)}"
    )
    return sql, bind.values


def _order(order_by: Sequence[OrderBy], bind: Args) -> tuple[list[str], list[str]]:
    clauses: list[str] = []
    joins: list[str] = []
    seen: set[str] = set()
    for n, ob in enumerate(order_by):
        direction = "ASC" if ob.ascending else "DESC"
        if "." not in ob.field_name:
            name = ALIASES.get(ob.field_name, ob.field_name)
            column = ORDER_COLUMNS.get(name)
            if column is None:
                raise InvalidParameterValue(f"Invalid order by field name: {ob.field_name}")
            seen.add(name)
            clauses.append(f"{column} {direction} NULLS LAST")
            continue
        entity, key = ob.field_name.split(".", 1)
        if entity != "metrics":
            raise InvalidParameterValue(
                f"Invalid order by field name: {ob.field_name}. Only metrics are supported."
            )
        cond = f"x.model_id = m.model_id AND x.key = {bind(key)}"
        if ob.dataset_name:
            cond += f" AND x.dataset_name = {bind(ob.dataset_name)}"
        if ob.dataset_digest:
            cond += f" AND x.dataset_digest = {bind(ob.dataset_digest)}"
        alias = f"o{n}"
        joins.append(
            f" LEFT JOIN LATERAL (SELECT x.value FROM logged_model_metrics x WHERE {cond}"
            " ORDER BY x.timestamp_ms DESC, x.step DESC, x.run_id ASC LIMIT 1)"
            f" {alias} ON true"
        )
        clauses.append(f"{alias}.value {direction} NULLS LAST")
    if "creation_timestamp_ms" not in seen:
        clauses.append("m.creation_timestamp_ms DESC")
    if "model_id" not in seen:
        clauses.append("m.model_id ASC")
    return clauses, joins
