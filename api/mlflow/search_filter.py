"""MLflow's search grammar for runs and experiments: pure parsing and validation, no I/O.

``parse_runs_filter("metrics.acc > 0.9 and params.model = 'cnn'")`` returns the comparisons
that ``api.search_sql`` turns into SQL. What is accepted, how values are read, and the error
messages follow MLflow's ``SearchUtils``/``SearchExperimentsUtils`` plus the comparator checks
its SQL store applies before querying (so one call here rejects everything MLflow rejects
before touching the database). MLflow parses with sqlparse; this module has its own small
lexer for the subset MLflow accepts. Where sqlparse's SQL lexing rejects odd inputs that the
grammar does not need to (reserved words as bare keys such as ``params.from``, several spaces
in ``IS NOT  NULL``), we accept them; docs/search.md lists the known differences.

Messages that show one of MLflow's comparator or key sets print it sorted, where MLflow prints
a Python set in hash order.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import parse_experiment_id

METRIC: Final = "metric"
PARAM: Final = "parameter"
TAG: Final = "tag"
ATTRIBUTE: Final = "attribute"
DATASET: Final = "dataset"

_ENTITY_ORDER = (METRIC, PARAM, TAG, ATTRIBUTE, DATASET)
_ENTITY_ALIASES = {
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
}

METRIC_COMPARATORS = frozenset({">", ">=", "!=", "=", "<", "<="})
PARAM_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"})
TAG_COMPARATORS = PARAM_COMPARATORS
STRING_ATTRIBUTE_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "IN", "NOT IN"})
NUMERIC_ATTRIBUTE_COMPARATORS = METRIC_COMPARATORS
DATASET_COMPARATORS = STRING_ATTRIBUTE_COMPARATORS

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
_RUN_LIST_KEYS = ("run_id",)
DATASET_KEYS = frozenset({"name", "digest", "context"})
_KEY_ALIASES = {
    "created": "start_time",
    "Created": "start_time",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
}

EXPERIMENT_ATTRIBUTES = frozenset({"name", "experiment_id", "creation_time", "last_update_time"})
EXPERIMENT_NUMERIC_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})
_EXPERIMENT_ENTITY_TYPES = ("attribute", "tag", "tags")
_EXPERIMENT_LIST_KEYS = ("experiment_id",)
DEFAULT_EXPERIMENT_ORDER_BY = ("creation_time DESC", "experiment_id ASC")

Value = str | int | float | tuple[str, ...] | tuple[int, ...] | None
_Fail = Callable[[], InvalidParameterValue]


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


# --- lexer ---------------------------------------------------------------------------------

_LEX = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<str>'(?:''|\\'|[^'])*')
    | (?P<sym>"(?:""|\\"|[^"])*")
    | (?P<tick>`(?:``|[^`])*`)
    | (?P<hex>-?0[xX][0-9a-fA-F]+)
    | (?P<num>-?(?:\d+(?:\.\d+)?[eE]-?\d+|\d+\.\d*|\.\d+|\d+)(?![\w.]))
    | (?P<word>\w[\w$#]*)
    | (?P<op>[<>=!~]+)
    | (?P<punct>[(),.;])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    start: int
    end: int

    def word(self, *upper: str) -> bool:
        return self.kind == "word" and self.text.upper() in upper


def _lex(text: str) -> list[_Tok]:
    toks = []
    for m in _LEX.finditer(text):
        kind = m.lastgroup
        assert kind is not None
        toks.append(_Tok(kind, m.group(), m.start(), m.end()))
    return toks


_IDENT_START = ("word", "sym", "tick")
_IDENT_PART = ("word", "sym", "tick", "str", "num")
_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "RLIKE", "TRUE", "FALSE"}
)


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _lex(text)
        self.i = 0

    def peek(self, skip_ws: bool = True) -> _Tok | None:
        j = self.i
        while skip_ws and j < len(self.toks) and self.toks[j].kind == "ws":
            j += 1
        return self.toks[j] if j < len(self.toks) else None

    def take(self, skip_ws: bool = True) -> _Tok | None:
        while skip_ws and self.i < len(self.toks) and self.toks[self.i].kind == "ws":
            self.i += 1
        if self.i >= len(self.toks):
            return None
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def identifier(self) -> str | None:
        """The raw text of a dotted identifier starting at the cursor (no whitespace inside)."""
        first = self.peek()
        if first is None or first.kind not in _IDENT_START or first.word(*_KEYWORDS):
            return None
        self.take()
        end = first.end
        while (
            self.i + 1 < len(self.toks)
            and self.toks[self.i].text == "."
            and self.toks[self.i + 1].kind in _IDENT_PART
            and not self.toks[self.i + 1].text.startswith("-")
        ):
            end = self.toks[self.i + 1].end
            self.i += 2
        if self.i < len(self.toks) and self.toks[self.i].kind == "num":
            # `params.x.1` lexes its tail as the number `.1`: still one identifier.
            tok = self.toks[self.i]
            if tok.text.startswith("."):
                end = tok.end
                self.i += 1
        return self.text[first.start : end]


def _clause_error(fragment: str) -> InvalidParameterValue:
    return _invalid(f"Invalid clause(s) in filter string: '{fragment.strip()}'")


@dataclass(frozen=True, slots=True)
class _RawComparison:
    identifier: str
    comparator: str  # as written, except IS NULL / IS NOT NULL / NOT IN which MLflow normalises
    value: _Tok | None
    list_text: str | None  # "( ... )" for a parenthesised value


def _statement(filter_string: str) -> str:
    if not filter_string.strip():
        raise _invalid(f"Invalid filter '{filter_string}'. Could not be parsed.")
    return filter_string


def _raw_comparisons(filter_string: str) -> list[_RawComparison]:
    """Split a filter into comparisons; ``AND`` is a separator that may also be left out."""
    cur = _Cursor(filter_string)
    semis = [t for t in cur.toks if t.text == ";"]
    if semis:
        rest = filter_string[semis[0].end :]
        if rest.strip():
            raise _invalid(
                f"Search filter contained multiple expression {filter_string!r}. "
                "Provide AND-ed expression list."
            )
        raise _clause_error(";")
    found = []
    while (tok := cur.peek()) is not None:
        if tok.word("AND"):
            cur.take()
            continue
        start = tok.start
        ident = cur.identifier()
        if ident is None:
            raise _clause_error(filter_string[start:])
        found.append(_comparison_after(cur, ident, start))
    return found


def _comparison_after(cur: _Cursor, ident: str, start: int) -> _RawComparison:
    def fail() -> InvalidParameterValue:
        pos = cur.toks[cur.i - 1].end if cur.i else start
        return _clause_error(cur.text[start:pos] or cur.text[start:])

    tok = cur.take()
    if tok is None:
        raise fail()
    if tok.kind == "op":
        return _with_value(cur, ident, tok.text, fail)
    if tok.word("LIKE", "ILIKE", "RLIKE"):
        return _with_value(cur, ident, tok.text, fail)
    if tok.word("IN"):
        return _with_list(cur, ident, tok.text, fail)
    if tok.word("NOT"):
        nxt = cur.take()
        if nxt is not None and nxt.word("IN"):
            return _with_list(cur, ident, "NOT IN", fail)
        if nxt is not None and nxt.word("LIKE", "ILIKE", "RLIKE"):
            return _with_value(cur, ident, f"NOT {nxt.text}", fail)
        raise fail()
    if tok.word("IS"):
        nxt = cur.take()
        if nxt is not None and nxt.word("NULL"):
            return _RawComparison(ident, "IS NULL", None, None)
        if nxt is not None and nxt.word("NOT"):
            last = cur.take()
            if last is not None and last.word("NULL"):
                return _RawComparison(ident, "IS NOT NULL", None, None)
        raise fail()
    raise fail()


def _with_value(cur: _Cursor, ident: str, comparator: str, fail: _Fail) -> _RawComparison:
    tok = cur.peek()
    if tok is None:
        raise fail()
    if tok.text == "(":
        return _RawComparison(ident, comparator, None, _list_text(cur, fail))
    if tok.kind in ("str", "sym", "tick", "num", "word"):
        cur.take()
        return _RawComparison(ident, comparator, tok, None)
    cur.take()
    raise fail()


def _with_list(cur: _Cursor, ident: str, comparator: str, fail: _Fail) -> _RawComparison:
    tok = cur.peek()
    if tok is None or tok.text != "(":
        cur.take()
        raise fail()
    return _RawComparison(ident, comparator, None, _list_text(cur, fail))


def _list_text(cur: _Cursor, fail: _Fail) -> str:
    open_tok = cur.take()
    assert open_tok is not None
    depth = 1
    while depth:
        tok = cur.take(skip_ws=False)
        if tok is None:
            raise fail()
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            depth -= 1
        elif tok.kind not in ("ws", "str", "sym", "num") and tok.text != ",":
            raise fail()
        end = tok.end
    return cur.text[open_tok.start : end]


# --- MLflow's identifier and value rules ------------------------------------------------------


def _is_quoted(text: str, quote: str) -> bool:
    return len(text) >= 2 and text.startswith(quote) and text.endswith(quote)


def _trim_backticks(text: str) -> str:
    return text[1:-1] if _is_quoted(text, "`") else text


def _strip_quotes(text: str, expect_quoted: bool = False) -> str:
    if _is_quoted(text, "'") or _is_quoted(text, '"'):
        return text[1:-1]
    if expect_quoted:
        raise _invalid(
            "Parameter value is either not quoted or unidentified quote types used for "
            f"string value {text}. Use either single or double quotes."
        )
    return text


def _bad_attribute(key: str, valid: frozenset[str]) -> InvalidParameterValue:
    return _invalid(f"Invalid attribute key '{key}' specified. Valid keys are '{_fmt_set(valid)}'")


def _entity(raw: str) -> str:
    entity = _trim_backticks(raw)
    if entity not in _ENTITY_ALIASES:
        raise _invalid(f"Invalid entity type '{entity}'. Valid values are {list(_ENTITY_ORDER)}")
    return _ENTITY_ALIASES[entity]


def _run_identifier(identifier: str, valid_attributes: frozenset[str]) -> tuple[str, str]:
    head, dot, rest = identifier.partition(".")
    entity, key = (_entity(head), rest) if dot else (ATTRIBUTE, head)
    key = _trim_backticks(_strip_quotes(key))
    if entity == ATTRIBUTE and key not in valid_attributes:
        raise _bad_attribute(key, valid_attributes)
    if entity == DATASET and key not in DATASET_KEYS:
        raise _invalid(
            f"Invalid dataset key '{key}' specified. Valid keys are '{_fmt_set(DATASET_KEYS)}'"
        )
    return entity, key


def _number(tok: _Tok) -> int | float:
    text = tok.text
    return float(text) if any(c in text for c in ".eE") else int(text)


def _parse_list(text: str) -> tuple[str, ...]:
    try:
        parsed = ast.literal_eval(text)
    except (SyntaxError, ValueError) as exc:
        raise _invalid(
            "While parsing a list in the query,"
            " expected a non-empty list of string values, but got ill-formed list."
        ) from exc
    items = parsed if isinstance(parsed, tuple) else (parsed,)
    if not items:
        raise _invalid(
            "While parsing a list in the query,"
            " expected a non-empty list of string values, but got empty list"
        )
    if not all(isinstance(x, str) for x in items):
        raise _invalid(
            "While parsing a list in the query, expected string value, punctuation, "
            f"or whitespace, but got different type in list: {items}"
        )
    return items


def _shown(raw: _RawComparison) -> str:
    return (
        raw.list_text
        if raw.value is None and raw.list_text
        else raw.value.text
        if raw.value
        else ""
    )


def _string_value(tok: _Tok | None) -> str | None:
    """A quoted string (single or double quotes), or None when the token is not string-like."""
    if tok is None or tok.kind not in ("str", "sym", "tick", "word") or tok.word(*_KEYWORDS):
        return None
    return _strip_quotes(tok.text, expect_quoted=True)


def _value(
    entity: str,
    key: str,
    raw: _RawComparison,
    numeric_attributes: frozenset[str],
    list_keys: tuple[str, ...],
) -> Value:
    tok = raw.value
    if entity == METRIC:
        if tok is None or tok.kind != "num":
            raise _invalid(f"Expected numeric value type for metric. Found {_shown(raw)}")
        return float(tok.text)
    if entity in (PARAM, TAG):
        text = _string_value(tok)
        if text is None:
            raise _invalid(
                f"Expected a quoted string value for {entity} (e.g. 'my-value'). "
                f"Got value {_shown(raw)}"
            )
        return text
    if entity == ATTRIBUTE:
        if key in numeric_attributes:
            if tok is None or tok.kind != "num":
                raise _invalid(
                    f"Expected numeric value type for numeric attribute: {key}. Found {_shown(raw)}"
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
        raise _invalid(f"Expected a quoted string value for attributes. Got value {_shown(raw)}")
    # dataset
    text = _string_value(tok)
    if text is not None:
        return text
    if raw.list_text is not None:
        return _parse_list(raw.list_text)
    raise _invalid(
        f"Expected a quoted string value for dataset attributes. Got value {_shown(raw)}"
    )


# --- runs --------------------------------------------------------------------------------------


def parse_runs_filter(filter_string: str | None) -> tuple[Comparison, ...]:
    """Parse and validate a ``search_runs`` filter (empty or None: no condition)."""
    if not filter_string:
        return ()
    parsed = []
    for raw in _raw_comparisons(_statement(filter_string)):
        if raw.comparator in ("IS NULL", "IS NOT NULL"):
            entity, key = _run_identifier(raw.identifier, RUN_SEARCH_ATTRIBUTES)
            if entity not in (TAG, PARAM):
                raise _invalid(
                    "IS NULL / IS NOT NULL is only supported for tags and params, "
                    f"not for '{entity}' '{key}'"
                )
            parsed.append(Comparison(entity, key, raw.comparator, None))
            continue
        entity, key = _run_identifier(raw.identifier, RUN_SEARCH_ATTRIBUTES)
        value = _value(entity, key, raw, RUN_NUMERIC_ATTRIBUTES, _RUN_LIST_KEYS)
        parsed.append(Comparison(entity, key, raw.comparator, value))
    # MLflow's store checks comparators only once the whole string has parsed.
    return tuple(_check_run_comparator(c) for c in parsed)


_STRING_ATTR_RULE = (STRING_ATTRIBUTE_COMPARATORS, STRING_ATTRIBUTE_COMPARATORS, "'")
# MLflow names the string comparators in this message (sic).
_NUMERIC_ATTR_RULE = (NUMERIC_ATTRIBUTE_COMPARATORS, STRING_ATTRIBUTE_COMPARATORS, "")
_ENTITY_RULES = {
    METRIC: (METRIC_COMPARATORS, METRIC_COMPARATORS, ""),
    PARAM: (PARAM_COMPARATORS, PARAM_COMPARATORS, "'"),
    TAG: (TAG_COMPARATORS, TAG_COMPARATORS, ""),
    DATASET: (DATASET_COMPARATORS, DATASET_COMPARATORS, ""),
}


def _check_run_comparator(comp: Comparison) -> Comparison:
    comparator = comp.comparator.upper()
    entity, key = comp.entity, comp.column
    # (allowed, the set MLflow's message names, whether the message closes its quote)
    if entity == ATTRIBUTE and key not in RUN_NUMERIC_ATTRIBUTES:
        allowed, listed, closing = _STRING_ATTR_RULE
    elif entity == ATTRIBUTE:
        allowed, listed, closing = _NUMERIC_ATTR_RULE
    else:
        allowed, listed, closing = _ENTITY_RULES[entity]
    if comparator not in allowed:
        raise _invalid(f"Invalid comparator '{comparator}' not one of '{_fmt_set(listed)}{closing}")
    is_list = isinstance(comp.value, tuple)
    if is_list != (comparator in ("IN", "NOT IN")):
        # MLflow lets these through to SQL, where they fail; say so plainly instead.
        raise _invalid(
            f"Invalid comparator '{comparator}' for value {comp.value!r}: "
            "IN and NOT IN take a parenthesised list of quoted strings, other comparators "
            "a single value"
        )
    return Comparison(comp.entity, comp.key, comparator, comp.value)


def _order_by_parts(order_by: str) -> tuple[str, bool]:
    """MLflow's ``_parse_order_by_string``: ``<identifier>[ ASC|DESC]`` -> (identifier, asc)."""
    cur = _Cursor(order_by)
    could_not = _invalid(f"Invalid order_by clause '{order_by}'. Could not be parsed.")
    first = cur.peek(skip_ws=False)
    if first is None or first.kind == "ws":
        raise could_not
    ident = cur.identifier()
    if ident is None:
        raise could_not
    rest = cur.toks[cur.i :]
    if rest and (rest[0].kind != "ws" or rest[-1].kind == "ws"):
        raise could_not
    words = [t for t in rest if t.kind != "ws"]
    if len(words) > 1:
        raise could_not
    if words and words[0].kind != "word":
        raise could_not
    if len(words) == 1 and words[0].text.lower() not in ("asc", "desc"):
        raise _invalid(f"Invalid ordering key in order_by clause '{order_by}'.")
    try:
        unquoted = shlex.split(ident.replace("`", '"'))
    except ValueError as exc:
        raise could_not from exc
    if len(unquoted) != 1:
        raise could_not
    if not words:
        return ident, True  # MLflow keeps the quotes of a lone identifier
    return unquoted[0], words[0].text.lower() == "asc"


def parse_runs_order_by(order_by: Sequence[str] | None) -> tuple[OrderBy, ...]:
    """Parse ``order_by`` of ``search_runs``; rejects unknown keys and repeated fields."""
    parsed: list[OrderBy] = []
    seen: set[tuple[str, str]] = set()
    for clause in order_by or ():
        ident, ascending = _order_by_parts(clause)
        entity, key = _run_identifier(ident.strip(), RUN_ORDER_BY_ATTRIBUTES)
        if entity == DATASET:
            raise _invalid(f"Invalid identifier type '{entity}'")
        item = OrderBy(entity, key, ascending)
        if (entity, item.column) in seen:
            raise _invalid(f"`order_by` contains duplicate fields: {list(order_by or ())}")
        seen.add((entity, item.column))
        parsed.append(item)
    return tuple(parsed)


# --- experiments -------------------------------------------------------------------------------


def _experiment_identifier(identifier: str, valid_attributes: frozenset[str]) -> tuple[str, str]:
    head, dot, rest = identifier.partition(".")
    if dot:
        if head not in _EXPERIMENT_ENTITY_TYPES:
            raise _invalid(
                f"Invalid entity type '{head}'. Valid entity types are {_EXPERIMENT_ENTITY_TYPES}"
            )
        entity, key = _ENTITY_ALIASES[head], rest
    else:
        entity, key = ATTRIBUTE, head
    key = _trim_backticks(_strip_quotes(key))
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
    for raw in _raw_comparisons(_statement(filter_string)):
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
        ident, ascending = _order_by_parts(clause)
        entity, key = _experiment_identifier(ident.strip(), EXPERIMENT_ATTRIBUTES)
        if entity != ATTRIBUTE:
            raise _invalid(f"Invalid order_by entity: {entity}")
        parsed.append(OrderBy(entity, key, ascending))
    return tuple(parsed)
