"""MLflow's search filters of runs and experiments: what they may name, and its checks. Pure.

``parse_runs_filter("metrics.acc > 0.9 and params.model = 'cnn'")`` returns the comparisons
that ``api.search_sql`` turns into SQL. What is accepted, how values are read, and the error
messages follow MLflow's ``SearchUtils``/``SearchExperimentsUtils`` plus the comparator checks
its SQL store applies before querying (so one call here rejects everything MLflow rejects
before touching the database). The syntax (tokens, clauses, order-by clauses) is
``filter_grammar``'s, shared with logged models; this module reads its clauses against a
``Vocabulary``: the entity prefixes, attributes, numeric and list attributes and comparators
an entity declares. Runs declare ``RUNS``; a search worded like MLflow's ``SearchUtils`` (the
model registry's) declares its own and calls ``parse_filter``/``parse_order_by``.
Experiments word some refusals their own way and keep their own checks below.

Where sqlparse's SQL lexing rejects odd inputs that the grammar does not need to (reserved
words as bare keys such as ``params.from``, several spaces in ``IS NOT  NULL``), we accept
them; docs/search.md lists the known differences. Messages that show one of MLflow's
comparator or key sets print it sorted, where MLflow prints a Python set in hash order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from runstream.api.mlflow import filter_grammar as g
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import parse_experiment_id

METRIC: Final = "metric"
PARAM: Final = "parameter"
TAG: Final = "tag"
ATTRIBUTE: Final = "attribute"
DATASET: Final = "dataset"

METRIC_COMPARATORS = frozenset({">", ">=", "!=", "=", "<", "<="})
PARAM_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"})
TAG_COMPARATORS = PARAM_COMPARATORS
STRING_ATTRIBUTE_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "IN", "NOT IN"})
NUMERIC_ATTRIBUTE_COMPARATORS = METRIC_COMPARATORS
DATASET_COMPARATORS = STRING_ATTRIBUTE_COMPARATORS
_NULL_COMPARATORS = ("IS NULL", "IS NOT NULL")
_LIST_COMPARATORS = ("IN", "NOT IN")

Value = str | int | float | tuple[str, ...] | tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class Rule:
    """The comparators an entity (or kind of attribute) takes, and how MLflow's refusal
    lists them: the set it names, and whether it closes its quote (it varies, sic)."""

    allowed: frozenset[str]
    listed: frozenset[str]
    closing: str = ""


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What one entity's filter and order_by may name, as MLflow's ``SearchUtils`` reads them."""

    entities: Mapping[str, str]
    """Entity prefixes as written (``metrics``, ``tag``, ...) and the entity each names."""
    entity_names: tuple[str, ...]
    """The entities as MLflow's "Invalid entity type" message lists them."""
    attributes: frozenset[str]
    """Attributes a filter may compare (identifiers without a prefix are attributes)."""
    order_by_attributes: frozenset[str]
    numeric_attributes: frozenset[str]
    list_attributes: tuple[str, ...]
    """Attributes that take ``IN``/``NOT IN`` with a list of quoted strings."""
    rules: Mapping[str, Rule]
    """The comparators of each non-attribute entity."""
    string_attribute_rule: Rule
    """The comparators of attributes that are not numeric."""
    numeric_attribute_rule: Rule
    dataset_keys: frozenset[str] = frozenset()
    key_aliases: Mapping[str, str] = field(default_factory=dict)
    """Attribute names the UI writes for columns (``created`` is ``start_time``)."""
    null_entities: tuple[str, ...] = (TAG, PARAM)
    """Entities that take ``IS NULL``/``IS NOT NULL``."""


# Run attributes (MLflow's RunInfo searchable attributes plus the UI's aliases).
RUN_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time", "created", "Created"})
RUN_SEARCH_ATTRIBUTES = frozenset(
    {"artifact_uri", "end_time", "run_id", "run_name", "start_time", "status", "user_id"}
    | {"created", "Created", "run name", "Run name", "Run Name"}
)
RUN_ORDER_BY_ATTRIBUTES = frozenset(
    {"artifact_uri", "end_time", "run_id", "run_name", "start_time", "status", "user_id"}
    | {"created", "Created"}
)
DATASET_KEYS = frozenset({"name", "digest", "context"})
_KEY_ALIASES = {
    "created": "start_time",
    "Created": "start_time",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
}

RUNS = Vocabulary(
    entities={
        METRIC: METRIC,
        "metrics": METRIC,
        PARAM: PARAM,
        "parameters": PARAM,
        "param": PARAM,
        "params": PARAM,
        TAG: TAG,
        "tags": TAG,
        ATTRIBUTE: ATTRIBUTE,
        "attr": ATTRIBUTE,
        "attributes": ATTRIBUTE,
        "run": ATTRIBUTE,
        DATASET: DATASET,
        "datasets": DATASET,
    },
    entity_names=(METRIC, PARAM, TAG, ATTRIBUTE, DATASET),
    attributes=RUN_SEARCH_ATTRIBUTES,
    order_by_attributes=RUN_ORDER_BY_ATTRIBUTES,
    numeric_attributes=RUN_NUMERIC_ATTRIBUTES,
    list_attributes=("run_id",),
    rules={
        METRIC: Rule(METRIC_COMPARATORS, METRIC_COMPARATORS),
        PARAM: Rule(PARAM_COMPARATORS, PARAM_COMPARATORS, "'"),
        TAG: Rule(TAG_COMPARATORS, TAG_COMPARATORS),
        DATASET: Rule(DATASET_COMPARATORS, DATASET_COMPARATORS),
    },
    string_attribute_rule=Rule(STRING_ATTRIBUTE_COMPARATORS, STRING_ATTRIBUTE_COMPARATORS, "'"),
    # MLflow names the string comparators in this message (sic).
    numeric_attribute_rule=Rule(NUMERIC_ATTRIBUTE_COMPARATORS, STRING_ATTRIBUTE_COMPARATORS),
    dataset_keys=DATASET_KEYS,
    key_aliases=_KEY_ALIASES,
)

EXPERIMENT_ATTRIBUTES = frozenset({"name", "experiment_id", "creation_time", "last_update_time"})
EXPERIMENT_NUMERIC_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})
_EXPERIMENT_ENTITY_TYPES = ("attribute", "tag", "tags")
_EXPERIMENT_LIST_KEYS = ("experiment_id",)
DEFAULT_EXPERIMENT_ORDER_BY = ("creation_time DESC", "experiment_id ASC")


@dataclass(frozen=True, slots=True)
class Comparison:
    """One ``<entity>.<key> <comparator> <value>`` clause.

    ``key`` is as written (MLflow's aliases such as ``created`` are resolved by ``column``);
    ``comparator`` is upper case; ``value`` is a float for metrics, an int or float for
    numeric attributes, a tuple for ``IN``/``NOT IN``, None for ``IS [NOT] NULL``, else str.
    """

    entity: str
    key: str
    comparator: str
    value: Value

    @property
    def column(self) -> str:
        return _KEY_ALIASES.get(self.key, self.key)


@dataclass(frozen=True, slots=True)
class OrderBy:
    entity: str
    key: str
    ascending: bool

    @property
    def column(self) -> str:
        return _KEY_ALIASES.get(self.key, self.key)


def _fmt_set(items: Iterable[str]) -> str:
    return "{" + ", ".join(repr(x) for x in sorted(items)) + "}"


def _invalid(message: str) -> InvalidParameterValue:
    return InvalidParameterValue(message)


# --- clauses -----------------------------------------------------------------------------------


def _clause_error(fragment: str) -> InvalidParameterValue:
    return _invalid(f"Invalid clause(s) in filter string: '{fragment.strip()}'")


def _clauses(filter_string: str) -> list[g.RawComparison]:
    """The clauses of a filter, refused in MLflow's ``SearchUtils`` words."""
    if not filter_string.strip():
        raise _invalid(f"Invalid filter '{filter_string}'. Could not be parsed.")
    semis = [t for t in g.lex(filter_string) if t.text == ";"]
    if semis:
        if filter_string[semis[0].end :].strip():
            raise _invalid(
                f"Search filter contained multiple expression {filter_string!r}. "
                "Provide AND-ed expression list."
            )
        raise _clause_error(";")
    try:
        return g.comparisons(filter_string, and_required=False)
    except g.FilterSyntaxError as exc:
        raise _clause_error(exc.fragment) from None


# --- MLflow's identifier and value rules ------------------------------------------------------


def _strip_quotes(text: str, expect_quoted: bool = False) -> str:
    if g.is_quoted(text, "'") or g.is_quoted(text, '"'):
        return text[1:-1]
    if expect_quoted:
        raise _invalid(
            "Parameter value is either not quoted or unidentified quote types used for "
            f"string value {text}. Use either single or double quotes."
        )
    return text


def _bad_attribute(key: str, valid: frozenset[str]) -> InvalidParameterValue:
    return _invalid(f"Invalid attribute key '{key}' specified. Valid keys are '{_fmt_set(valid)}'")


def _entity(raw: str, vocabulary: Vocabulary) -> str:
    entity = g.trim_backticks(raw)
    if entity not in vocabulary.entities:
        raise _invalid(
            f"Invalid entity type '{entity}'. Valid values are {list(vocabulary.entity_names)}"
        )
    return vocabulary.entities[entity]


def _identifier(
    identifier: str, vocabulary: Vocabulary, valid_attributes: frozenset[str]
) -> tuple[str, str]:
    head, dot, rest = identifier.partition(".")
    entity, key = (_entity(head, vocabulary), rest) if dot else (ATTRIBUTE, head)
    key = g.trim_backticks(_strip_quotes(key))
    if entity == ATTRIBUTE and key not in valid_attributes:
        raise _bad_attribute(key, valid_attributes)
    if entity == DATASET and key not in vocabulary.dataset_keys:
        raise _invalid(
            f"Invalid dataset key '{key}' specified. "
            f"Valid keys are '{_fmt_set(vocabulary.dataset_keys)}'"
        )
    return entity, key


def _number(tok: g.Token) -> int | float:
    text = tok.text
    return float(text) if any(ch in text for ch in ".eE") else int(text)


def _parse_list(text: str) -> tuple[str, ...]:
    items = g.literal_list(text)
    if items is None:
        raise _invalid(
            "While parsing a list in the query,"
            " expected a non-empty list of string values, but got ill-formed list."
        )
    if not items:
        raise _invalid(
            "While parsing a list in the query,"
            " expected a non-empty list of string values, but got empty list"
        )
    strings = tuple(x for x in items if isinstance(x, str))
    if len(strings) != len(items):
        raise _invalid(
            "While parsing a list in the query, expected string value, punctuation, "
            f"or whitespace, but got different type in list: {items}"
        )
    return strings


def _string_value(tok: g.Token | None) -> str | None:
    """A quoted string (single or double quotes), or None when the token is not string-like."""
    if tok is None or tok.kind not in ("str", "sym", "tick", "word") or tok.word(*g.KEYWORDS):
        return None
    return _strip_quotes(tok.text, expect_quoted=True)


def _value(
    entity: str,
    key: str,
    raw: g.RawComparison,
    numeric_attributes: frozenset[str],
    list_keys: tuple[str, ...],
) -> Value:
    tok = raw.value
    if entity == METRIC:
        if tok is None or tok.kind != "num":
            raise _invalid(f"Expected numeric value type for metric. Found {raw.shown_value}")
        return float(tok.text)
    if entity in (PARAM, TAG):
        text = _string_value(tok)
        if text is None:
            raise _invalid(
                f"Expected a quoted string value for {entity} (e.g. 'my-value'). "
                f"Got value {raw.shown_value}"
            )
        return text
    if entity == ATTRIBUTE:
        if key in numeric_attributes:
            if tok is None or tok.kind != "num":
                raise _invalid(
                    f"Expected numeric value type for numeric attribute: {key}. "
                    f"Found {raw.shown_value}"
                )
            return _number(tok)
        text = _string_value(tok)
        if text is not None:
            return text
        if raw.list_text is not None:
            if key not in list_keys:
                raise _invalid(
                    f"Only {sorted(list_keys)} attributes support comparison with a list of "
                    "quoted string values."
                )
            return _parse_list(raw.list_text)
        raise _invalid(
            f"Expected a quoted string value for attributes. Got value {raw.shown_value}"
        )
    # dataset
    text = _string_value(tok)
    if text is not None:
        return text
    if raw.list_text is not None:
        return _parse_list(raw.list_text)
    raise _invalid(
        f"Expected a quoted string value for dataset attributes. Got value {raw.shown_value}"
    )


# --- entities worded as SearchUtils (runs) -----------------------------------------------------


def parse_filter(filter_string: str | None, vocabulary: Vocabulary) -> tuple[Comparison, ...]:
    """Parse and validate a filter against ``vocabulary`` (empty or None: no condition)."""
    if not filter_string:
        return ()
    parsed = []
    for raw in _clauses(filter_string):
        entity, key = _identifier(raw.identifier, vocabulary, vocabulary.attributes)
        if raw.comparator in _NULL_COMPARATORS:
            if entity not in vocabulary.null_entities:
                raise _invalid(
                    "IS NULL / IS NOT NULL is only supported for tags and params, "
                    f"not for '{entity}' '{key}'"
                )
            parsed.append(Comparison(entity, key, raw.comparator, None))
            continue
        value = _value(entity, key, raw, vocabulary.numeric_attributes, vocabulary.list_attributes)
        parsed.append(Comparison(entity, key, raw.comparator, value))
    # MLflow's store checks comparators only once the whole string has parsed.
    return tuple(_check_comparator(comp, vocabulary) for comp in parsed)


def _check_comparator(comp: Comparison, vocabulary: Vocabulary) -> Comparison:
    comparator = comp.comparator.upper()
    entity, key = comp.entity, vocabulary.key_aliases.get(comp.key, comp.key)
    if entity == ATTRIBUTE and key not in vocabulary.numeric_attributes:
        rule = vocabulary.string_attribute_rule
    elif entity == ATTRIBUTE:
        rule = vocabulary.numeric_attribute_rule
    else:
        rule = vocabulary.rules[entity]
    if comparator not in rule.allowed:
        raise _invalid(
            f"Invalid comparator '{comparator}' not one of '{_fmt_set(rule.listed)}{rule.closing}"
        )
    is_list = isinstance(comp.value, tuple)
    if is_list != (comparator in _LIST_COMPARATORS):
        # MLflow lets these through to SQL, where they fail; say so plainly instead.
        raise _invalid(
            f"Invalid comparator '{comparator}' for value {comp.value!r}: "
            "IN and NOT IN take a parenthesised list of quoted strings, other comparators "
            "a single value"
        )
    return Comparison(comp.entity, comp.key, comparator, comp.value)


def parse_order_by(order_by: Sequence[str] | None, vocabulary: Vocabulary) -> tuple[OrderBy, ...]:
    """Parse ``order_by`` against ``vocabulary``; rejects unknown keys and repeated fields."""
    parsed: list[OrderBy] = []
    seen: set[tuple[str, str]] = set()
    for clause in order_by or ():
        ident, ascending = g.order_by_parts(clause)
        entity, key = _identifier(ident.strip(), vocabulary, vocabulary.order_by_attributes)
        if entity == DATASET:
            raise _invalid(f"Invalid identifier type '{entity}'")
        item = OrderBy(entity, key, ascending)
        column = vocabulary.key_aliases.get(key, key)
        if (entity, column) in seen:
            raise _invalid(f"`order_by` contains duplicate fields: {list(order_by or ())}")
        seen.add((entity, column))
        parsed.append(item)
    return tuple(parsed)


@functools.lru_cache(maxsize=256)
def parse_runs_filter(filter_string: str | None) -> tuple[Comparison, ...]:
    """Parse and validate a ``search_runs`` filter (empty or None: no condition).

    Cached: a dashboard or a sweep asks the same search again and again, and lexing it was
    ~0.1 ms of each; the result is immutable, and a refused filter raises again each time.
    """
    return parse_filter(filter_string, RUNS)


def parse_runs_order_by(order_by: Sequence[str] | None) -> tuple[OrderBy, ...]:
    """Parse ``order_by`` of ``search_runs``."""
    return parse_order_by(order_by, RUNS)


# --- experiments -------------------------------------------------------------------------------


def _experiment_identifier(identifier: str, valid_attributes: frozenset[str]) -> tuple[str, str]:
    head, dot, rest = identifier.partition(".")
    if dot:
        if head not in _EXPERIMENT_ENTITY_TYPES:
            raise _invalid(
                f"Invalid entity type '{head}'. Valid entity types are {_EXPERIMENT_ENTITY_TYPES}"
            )
        entity, key = RUNS.entities[head], rest
    else:
        entity, key = ATTRIBUTE, head
    key = g.trim_backticks(_strip_quotes(key))
    if entity == ATTRIBUTE and key not in valid_attributes:
        raise _bad_attribute(key, valid_attributes)
    return entity, key


def parse_experiments_filter(filter_string: str | None) -> tuple[Comparison, ...]:
    """Parse and validate a ``search_experiments`` filter.

    As in MLflow, comparators here are case-sensitive (``name like 'x'`` is rejected).
    """
    if not filter_string:
        return ()
    parsed = []
    for raw in _clauses(filter_string):
        entity, key = _experiment_identifier(raw.identifier, EXPERIMENT_ATTRIBUTES)
        if raw.comparator in ("IS NULL", "IS NOT NULL"):
            if entity != TAG:
                raise _invalid(
                    f"IS NULL / IS NOT NULL is only supported for tags, not for attribute '{key}'"
                )
            parsed.append(Comparison(entity, key, raw.comparator, None))
            continue
        value = _value(entity, key, raw, EXPERIMENT_NUMERIC_ATTRIBUTES, _EXPERIMENT_LIST_KEYS)
        parsed.append(Comparison(entity, key, raw.comparator, value))
    return tuple(_check_experiment_comparison(c) for c in parsed)


def _check_experiment_comparison(comp: Comparison) -> Comparison:
    comparator, key, value = comp.comparator, comp.key, comp.value
    if comp.entity == TAG:
        if comparator not in ("=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"):
            raise _invalid(f"Invalid comparator for tag: {comparator}")
        return comp
    if key == "experiment_id":
        if comparator not in ("=", "!=", "IN", "NOT IN"):
            raise _invalid(f"Invalid comparator for experiment_id: {comparator}")
        items = value if isinstance(value, tuple) else (value,)
        ids = tuple(parse_experiment_id(v) for v in items)
        if (comparator in ("IN", "NOT IN")) != isinstance(value, tuple):
            raise _invalid(f"Invalid comparator for experiment_id: {comparator}")
        return Comparison(comp.entity, key, comparator, ids if isinstance(value, tuple) else ids[0])
    if key in EXPERIMENT_NUMERIC_ATTRIBUTES:
        if comparator not in NUMERIC_ATTRIBUTE_COMPARATORS:
            raise _invalid(
                f"Invalid comparator '{comparator}' not one of "
                f"'{_fmt_set(STRING_ATTRIBUTE_COMPARATORS)}"
            )
        if isinstance(value, float):
            raise _invalid(f"Invalid value for numeric attribute '{key}': {str(value)!r}")
        return comp
    if comparator not in STRING_ATTRIBUTE_COMPARATORS:
        raise _invalid(
            f"Invalid comparator '{comparator}' not one of "
            f"'{_fmt_set(STRING_ATTRIBUTE_COMPARATORS)}'"
        )
    if comparator not in ("=", "!=", "LIKE", "ILIKE"):
        raise _invalid(f"Invalid comparator for string attribute: {comparator}")
    return comp


def parse_experiments_order_by(order_by: Sequence[str] | None) -> tuple[OrderBy, ...]:
    """Parse ``order_by`` of ``search_experiments`` (default: newest first, then by id)."""
    parsed = []
    for clause in order_by or DEFAULT_EXPERIMENT_ORDER_BY:
        ident, ascending = g.order_by_parts(clause)
        entity, key = _experiment_identifier(ident.strip(), EXPERIMENT_ATTRIBUTES)
        if entity != ATTRIBUTE:
            raise _invalid(f"Invalid order_by entity: {entity}")
        parsed.append(OrderBy(entity, key, ascending))
    return tuple(parsed)
