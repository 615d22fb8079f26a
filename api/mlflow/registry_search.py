"""Search of registered models and model versions: MLflow's filter and order_by rules, and the
SQL they become. Pure.

The filter grammar is the one ``search_filter`` lexes for runs and experiments (its
comparisons, values and ``order_by`` parts are reused here, not lexed a third time); this
module adds the registry's own identifiers and comparator rules, from MLflow's
``SearchModelUtils``/``SearchModelVersionUtils`` and the checks of its SQL store:

- registered models: ``name`` (``=``, ``!=``, ``LIKE``, ``ILIKE``, ``IN``, ``NOT IN``) and
  ``tags.<key>`` (``=``, ``!=``, ``LIKE``, ``ILIKE``); order by ``name``,
  ``timestamp``/``last_updated_timestamp`` (name ascending breaks ties).
- model versions: ``name``, ``run_id`` (lists too), ``source_path``, ``version_number``
  (numeric) and tags; order by ``name``, ``version_number``, ``creation_timestamp``,
  ``last_updated_timestamp``; default newest change first.

As in MLflow, prompts (models tagged ``mlflow.prompt.is_prompt = 'true'``) are left out unless
the filter asks for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runstream.api.mlflow import filter_grammar as g
from runstream.api.mlflow import search_filter as sf
from runstream.schemas.errors import InvalidParameterValue

PROMPT_TAG = "mlflow.prompt.is_prompt"
STRING_COMPARATORS = frozenset({"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"})
TAG_COMPARATORS = frozenset({"=", "!=", "LIKE", "ILIKE"})
NUMERIC_COMPARATORS = frozenset({"=", "!=", ">", ">=", "<", "<="})

MODEL_ATTRIBUTES = frozenset({"name"})
MODEL_ORDER_KEYS = frozenset({"name", "timestamp", "last_updated_timestamp"})
VERSION_ATTRIBUTES = frozenset({"name", "version_number", "run_id", "source_path"})
VERSION_NUMERIC = frozenset({"version_number"})
VERSION_ORDER_KEYS = frozenset(
    {"name", "version_number", "creation_timestamp", "last_updated_timestamp"}
)
DEFAULT_VERSION_ORDER = ("last_updated_timestamp DESC", "name ASC", "version_number DESC")

_VERSION_COLUMNS = {
    "name": "v.name",
    "version_number": "v.version",
    "run_id": "v.run_id",
    "source_path": "v.source",
    "creation_timestamp": "v.creation_time",
    "last_updated_timestamp": "v.last_updated_time",
}
_MODEL_COLUMNS = {
    "name": "m.name",
    "timestamp": "m.last_updated_time",
    "last_updated_timestamp": "m.last_updated_time",
}
_ENTITIES = {"attribute": sf.ATTRIBUTE, "tag": sf.TAG, "tags": sf.TAG}


@dataclass(frozen=True, slots=True)
class Condition:
    entity: str
    """``sf.ATTRIBUTE`` or ``sf.TAG``."""
    key: str
    comparator: str
    value: sf.Value


def _identifier(identifier: str, attributes: frozenset[str]) -> tuple[str, str]:
    head, dot, rest = identifier.partition(".")
    if dot:
        if head not in _ENTITIES:
            raise InvalidParameterValue(
                f"Invalid entity type '{head}'. Valid entity types are "
                f"{('attribute', 'tag', 'tags')}"
            )
        entity, key = _ENTITIES[head], rest
    else:
        entity, key = sf.ATTRIBUTE, head
    if entity == sf.ATTRIBUTE and key not in attributes:
        raise InvalidParameterValue(
            f"Invalid attribute key '{key}' specified. Valid keys are '{set(sorted(attributes))}'"
        )
    return entity, g.trim_backticks(sf._strip_quotes(key))


def _parse(
    filter_string: str | None,
    attributes: frozenset[str],
    numeric: frozenset[str],
    list_keys: tuple[str, ...],
) -> tuple[Condition, ...]:
    if not filter_string:
        return ()
    out = []
    for raw in sf._clauses(filter_string):
        entity, key = _identifier(raw.identifier, attributes)
        comparator = raw.comparator.upper()
        if comparator in ("IS NULL", "IS NOT NULL"):
            raise InvalidParameterValue(f"Invalid comparator for {entity}: {comparator}")
        value = sf._value(entity, key, raw, numeric, list_keys)
        if entity == sf.TAG:
            if comparator not in TAG_COMPARATORS:
                raise InvalidParameterValue(f"Invalid comparator for tag: {comparator}")
        elif key in numeric:
            if comparator not in NUMERIC_COMPARATORS:
                raise InvalidParameterValue(f"Invalid comparator for attribute {key}: {comparator}")
            if isinstance(value, float):
                raise InvalidParameterValue(
                    f"Invalid value for numeric attribute '{key}': {value!r}"
                )
        elif comparator not in STRING_COMPARATORS or (comparator in ("IN", "NOT IN")) != isinstance(
            value, tuple
        ):
            raise InvalidParameterValue(f"Invalid comparator for attribute: {comparator}")
        out.append(Condition(entity, key, comparator, value))
    return tuple(out)


def parse_models_filter(filter_string: str | None) -> tuple[Condition, ...]:
    return _parse(filter_string, MODEL_ATTRIBUTES, frozenset(), ("name",))


def parse_versions_filter(filter_string: str | None) -> tuple[Condition, ...]:
    return _parse(filter_string, VERSION_ATTRIBUTES, VERSION_NUMERIC, ("name", "run_id"))


def _order(
    order_by: Sequence[str], keys: frozenset[str], columns: dict[str, str], what: str
) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for clause in order_by:
        ident, ascending = g.order_by_parts(clause)
        key = ident.strip()
        if key.startswith("attribute."):
            key = key[len("attribute.") :]
        if key not in keys:
            raise InvalidParameterValue(
                f"Invalid order by key '{key}' specified. Valid keys are {set(sorted(keys))}"
                if what == "versions"
                else f"Invalid order by key '{key}' specified.Valid keys are "
                "'{'name', 'timestamp'}'"
            )
        column = columns[key]
        if column in seen:
            raise InvalidParameterValue(f"`order_by` contains duplicate fields: {list(order_by)}")
        seen.add(column)
        out.append((column, ascending))
    return out


def models_order(order_by: Sequence[str]) -> list[tuple[str, bool]]:
    order = _order(order_by, MODEL_ORDER_KEYS, _MODEL_COLUMNS, "models")
    if "m.name" not in {c for c, _ in order}:
        order.append(("m.name", True))
    return order


def versions_order(order_by: Sequence[str]) -> list[tuple[str, bool]]:
    order = _order(
        order_by or DEFAULT_VERSION_ORDER, VERSION_ORDER_KEYS, _VERSION_COLUMNS, "versions"
    )
    columns = {c for c, _ in order}
    if "v.name" not in columns:
        order.append(("v.name", True))
    if "v.version" not in columns:
        order.append(("v.version", False))
    return order


class _Params:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _compare(column: str, comparator: str, value: sf.Value, bind: _Params) -> str:
    if comparator == "IN":
        return f"{column} = ANY({bind(list(value))}::text[])"  # type: ignore[arg-type]
    if comparator == "NOT IN":
        return f"NOT ({column} = ANY({bind(list(value))}::text[]))"  # type: ignore[arg-type]
    op = "<>" if comparator == "!=" else comparator
    return f"{column} {op} {bind(value)}"


def _asks_for_prompts(conditions: Sequence[Condition]) -> bool:
    """MLflow's ``_is_querying_prompt``."""
    for c in conditions:
        if c.entity == sf.TAG and c.key == PROMPT_TAG and isinstance(c.value, str):
            return (c.comparator == "=" and c.value.lower() == "true") or (
                c.comparator == "!=" and c.value.lower() == "false"
            )
    return False


def _where(
    conditions: Sequence[Condition],
    bind: _Params,
    columns: dict[str, str],
    tag_scope: str,
    prompt_scope: str,
) -> list[str]:
    """``tag_scope``/``prompt_scope``: ``<tag table> t WHERE <join>`` for tag conditions and for
    the prompt flag (on the model for models, on any version of the name for versions)."""
    where = []
    for c in conditions:
        if c.entity == sf.TAG:
            if c.key == PROMPT_TAG:
                continue  # decided by the prompt exclusion below, as MLflow's store does
            value_test = _compare("t.value", c.comparator, c.value, bind)
            where.append(
                f"EXISTS (SELECT 1 FROM {tag_scope} AND t.key = {bind(c.key)} AND {value_test})"
            )
        else:
            where.append(_compare(columns[c.key], c.comparator, c.value, bind))
    prompt = (
        f"EXISTS (SELECT 1 FROM {prompt_scope} AND t.key = '{PROMPT_TAG}' AND t.value = 'true')"
    )
    where.append(prompt if _asks_for_prompts(conditions) else f"NOT {prompt}")
    return where


def _order_sql(order: Sequence[tuple[str, bool]]) -> str:
    return ", ".join(f"{column} {'ASC' if asc else 'DESC'}" for column, asc in order)


def models_query(
    select: str,
    conditions: Sequence[Condition],
    order: Sequence[tuple[str, bool]],
    limit: int,
    offset: int,
) -> tuple[str, list[Any]]:
    """``select`` (columns of ``registered_models m``) for one page of matching models;
    ``limit`` includes the look-ahead row."""
    bind = _Params()
    scope = "registered_model_tags t WHERE t.name = m.name"
    where = _where(conditions, bind, _MODEL_COLUMNS, scope, scope)
    sql = (
        f"SELECT {select} FROM registered_models m WHERE "
        + " AND ".join(where)
        + f" ORDER BY {_order_sql(order)} LIMIT {bind(limit)} OFFSET {bind(offset)}"
    )
    return sql, bind.values


def versions_query(
    select: str,
    conditions: Sequence[Condition],
    order: Sequence[tuple[str, bool]],
    limit: int,
    offset: int,
) -> tuple[str, list[Any]]:
    """``select`` (columns of ``model_versions v``) for one page of matching live versions;
    ``limit`` includes the look-ahead row."""
    bind = _Params()
    where = _where(
        conditions,
        bind,
        _VERSION_COLUMNS,
        "model_version_tags t WHERE t.name = v.name AND t.version = v.version",
        "model_version_tags t WHERE t.name = v.name",
    )
    sql = (
        f"SELECT {select} FROM model_versions v WHERE v.current_stage <> 'Deleted_Internal' AND "
        + " AND ".join(where)
        + f" ORDER BY {_order_sql(order)} LIMIT {bind(limit)} OFFSET {bind(offset)}"
    )
    return sql, bind.values
