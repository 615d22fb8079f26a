"""The syntax every MLflow search filter shares: tokens, comparisons, order-by clauses. Pure.

MLflow parses the filters of ``search_runs``, ``search_experiments``, ``search_logged_models``
(and of the registry's ``search_registered_models``/``search_model_versions``) with sqlparse
into ``<identifier> <comparator> <value>`` clauses joined by ``AND``; what an identifier may
name, which comparators and values fit it, and the wording of each refusal are the entity's.
This module is the shared half: one lexer for the subset of SQL those filters use, and one
parser from a filter string to ``RawComparison``s (identifier text, comparator as written,
value token or parenthesised list). The entity half reads those against what it declares:
``search_filter`` for runs and experiments (and, through its ``Vocabulary``, any entity
worded like them), ``logged_model_search`` for logged models.

A filter that does not have this shape raises ``FilterSyntaxError``, which says what was
expected where; each entity turns it into its MLflow message (runs: "Invalid clause(s) in
filter string", logged models: "Expected an identifier", ...).
"""

from __future__ import annotations

import ast
import functools
import re
import shlex
from dataclasses import dataclass
from typing import Final

from runstream.schemas.errors import InvalidParameterValue

# What a FilterSyntaxError expected.
IDENTIFIER: Final = "identifier"
COMPARATOR: Final = "comparator"
VALUE: Final = "value"
LIST: Final = "list"
SEPARATOR: Final = "AND"

_LEX_PATTERN = r"""
      (?P<ws>\s+)
    | (?P<str>'(?:''|\\'|[^'])*')
    | (?P<sym>"(?:""|\\"|[^"])*")
    | (?P<tick>`(?:``|[^`])*`)
    | (?P<hex>-?0[xX][0-9a-fA-F]+)
    | (?P<num>-?(?:\d+(?:\.\d+)?[eE]-?\d+|\d+\.\d*|\.\d+|\d+)(?![\w.]))
    | (?P<word>\w[\w$#{word_chars}]*)
    | (?P<op>[<>=!~]+)
    | (?P<punct>[(),.;])
    | (?P<other>.)
"""

KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "RLIKE", "TRUE", "FALSE"}
)
"""Words that never start an identifier (a key with such a name is quoted or prefixed)."""
_IDENT_START = ("word", "sym", "tick")
_IDENT_PART = ("word", "sym", "tick", "str", "num")
_LIST_ITEM = ("ws", "str", "sym", "num")
VALUE_KINDS = ("str", "sym", "tick", "num", "word")
"""Tokens that may stand as a single value (an entity decides which it takes)."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    """ws, str ('...'), sym ("..."), tick (`...`), hex, num, word, op, punct or other."""
    text: str
    start: int
    end: int

    def word(self, *upper: str) -> bool:
        return self.kind == "word" and self.text.upper() in upper


@functools.cache
def _lexer(word_chars: str) -> re.Pattern[str]:
    return re.compile(_LEX_PATTERN.format(word_chars=re.escape(word_chars)), re.VERBOSE | re.DOTALL)


def lex(text: str, word_chars: str = "") -> list[Token]:
    """Tokens of ``text``; ``word_chars`` are characters a word may hold past its first (logged
    models let keys and bare values hold ``-:/``, as their own lexer always did)."""
    tokens = []
    for m in _lexer(word_chars).finditer(text):
        kind = m.lastgroup
        assert kind is not None
        tokens.append(Token(kind, m.group(), m.start(), m.end()))
    return tokens


class FilterSyntaxError(Exception):
    """A filter not made of ``<identifier> <comparator> <value>`` clauses joined by AND."""

    def __init__(
        self, expected: str, fragment: str, position: int, found: str | None, comparator: str = ""
    ) -> None:
        super().__init__(f"expected {expected} at {position}")
        self.expected = expected
        """IDENTIFIER, COMPARATOR, VALUE, LIST or SEPARATOR."""
        self.fragment = fragment
        """The clause up to and including what did not fit (MLflow's runs message shows it)."""
        self.position = position
        """Where in the filter the clause stopped fitting."""
        self.found = found
        """The text found instead (for LIST, the whole parenthesised text); None at the end."""
        self.comparator = comparator
        """The comparator before a missing value or list."""


class Cursor:
    def __init__(self, text: str, word_chars: str = "") -> None:
        self.text = text
        self.tokens = lex(text, word_chars)
        self.i = 0

    def peek(self, skip_ws: bool = True) -> Token | None:
        j = self.i
        while skip_ws and j < len(self.tokens) and self.tokens[j].kind == "ws":
            j += 1
        return self.tokens[j] if j < len(self.tokens) else None

    def take(self, skip_ws: bool = True) -> Token | None:
        while skip_ws and self.i < len(self.tokens) and self.tokens[self.i].kind == "ws":
            self.i += 1
        if self.i >= len(self.tokens):
            return None
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def identifier(self) -> str | None:
        """The raw text of a dotted identifier starting at the cursor (no whitespace inside)."""
        first = self.peek()
        if first is None or first.kind not in _IDENT_START or first.word(*KEYWORDS):
            return None
        self.take()
        end = first.end
        toks = self.tokens
        while (
            self.i + 1 < len(toks)
            and toks[self.i].text == "."
            and toks[self.i + 1].kind in _IDENT_PART
            and not toks[self.i + 1].text.startswith("-")
        ):
            end = toks[self.i + 1].end
            self.i += 2
        if self.i < len(toks) and toks[self.i].kind == "num" and toks[self.i].text.startswith("."):
            # `params.x.1` lexes its tail as the number `.1`: still one identifier.
            end = toks[self.i].end
            self.i += 1
        return self.text[first.start : end]


@dataclass(frozen=True, slots=True)
class RawComparison:
    """One clause as written: the entity reads and checks it."""

    identifier: str
    comparator: str
    """As written (case kept), except ``IS NULL``, ``IS NOT NULL`` and ``NOT IN``, which are
    spelt so; ``NOT LIKE`` keeps its ``LIKE`` as written."""
    value: Token | None
    """The value token; None for IS [NOT] NULL and for a parenthesised list."""
    list_text: str | None
    """``( ... )`` as written, for a parenthesised value."""

    @property
    def shown_value(self) -> str:
        """The value as MLflow's messages show it."""
        if self.value is None:
            return self.list_text or ""
        return self.value.text


def comparisons(text: str, *, and_required: bool, word_chars: str = "") -> list[RawComparison]:
    """The clauses of a filter. Without ``and_required``, ``AND`` is a separator that may also
    be left out or repeated, as MLflow's runs grammar (sqlparse) lets it be."""
    cur = Cursor(text, word_chars)
    found: list[RawComparison] = []
    while (tok := cur.peek()) is not None:
        if and_required and found:
            if not tok.word("AND"):
                raise FilterSyntaxError(SEPARATOR, text[tok.start :], tok.start, tok.text)
            cur.take()
            after = cur.peek()
            if after is None:
                raise FilterSyntaxError(IDENTIFIER, "", len(text), None)
            tok = after
        elif not and_required and tok.word("AND"):
            cur.take()
            continue
        ident = cur.identifier()
        if ident is None:
            raise FilterSyntaxError(IDENTIFIER, text[tok.start :], tok.start, tok.text)
        found.append(_comparison_after(cur, ident, tok.start))
    return found


def _failure(
    cur: Cursor, start: int, expected: str, found: Token | None, comparator: str = ""
) -> FilterSyntaxError:
    pos = cur.tokens[cur.i - 1].end if cur.i else start
    fragment = cur.text[start:pos] or cur.text[start:]
    shown = None if found is None else found.text
    return FilterSyntaxError(expected, fragment, pos, shown, comparator)


def _comparison_after(cur: Cursor, ident: str, start: int) -> RawComparison:
    tok = cur.take()
    if tok is None:
        raise _failure(cur, start, COMPARATOR, None)
    if tok.kind == "op" or tok.word("LIKE", "ILIKE", "RLIKE"):
        return _with_value(cur, ident, tok.text, start)
    if tok.word("IN"):
        return _with_list(cur, ident, tok.text, start)
    if tok.word("NOT"):
        nxt = cur.take()
        if nxt is not None and nxt.word("IN"):
            return _with_list(cur, ident, "NOT IN", start)
        if nxt is not None and nxt.word("LIKE", "ILIKE", "RLIKE"):
            return _with_value(cur, ident, f"NOT {nxt.text}", start)
        raise _failure(cur, start, COMPARATOR, tok)
    if tok.word("IS"):
        nxt = cur.take()
        if nxt is not None and nxt.word("NULL"):
            return RawComparison(ident, "IS NULL", None, None)
        if nxt is not None and nxt.word("NOT"):
            last = cur.take()
            if last is not None and last.word("NULL"):
                return RawComparison(ident, "IS NOT NULL", None, None)
        raise _failure(cur, start, COMPARATOR, tok)
    raise _failure(cur, start, COMPARATOR, tok)


def _with_value(cur: Cursor, ident: str, comparator: str, start: int) -> RawComparison:
    tok = cur.peek()
    if tok is None:
        raise _failure(cur, start, VALUE, None, comparator)
    if tok.text == "(":
        return RawComparison(ident, comparator, None, _list_text(cur, start, comparator))
    cur.take()
    if tok.kind in VALUE_KINDS:
        return RawComparison(ident, comparator, tok, None)
    raise _failure(cur, start, VALUE, tok, comparator)


def _with_list(cur: Cursor, ident: str, comparator: str, start: int) -> RawComparison:
    tok = cur.peek()
    if tok is None or tok.text != "(":
        cur.take()
        raise _failure(cur, start, LIST, tok, comparator)
    return RawComparison(ident, comparator, None, _list_text(cur, start, comparator))


def _list_text(cur: Cursor, start: int, comparator: str) -> str:
    """``( ... )`` of quoted strings, numbers and commas (nested parentheses allowed)."""
    open_tok = cur.take()
    assert open_tok is not None
    first = cur.i - 1
    depth = 1
    end = open_tok.end
    while depth:
        tok = cur.take(skip_ws=False)
        if tok is None or (tok.kind not in _LIST_ITEM and tok.text not in ("(", ")", ",")):
            problem = _failure(cur, start, LIST, tok, comparator)
            # The whole parenthesised text, so that a message can show the list as written.
            problem.found = _balanced(cur.tokens[first:], cur.text)
            raise problem
        depth += (tok.text == "(") - (tok.text == ")")
        end = tok.end
    return cur.text[open_tok.start : end]


def _balanced(tokens: list[Token], text: str) -> str:
    depth = 0
    for tok in tokens:
        depth += (tok.text == "(") - (tok.text == ")")
        if depth == 0:
            return text[tokens[0].start : tok.end]
    return text[tokens[0].start :]


# -- values ---------------------------------------------------------------------------------------


def is_quoted(text: str, quote: str) -> bool:
    return len(text) >= 2 and text.startswith(quote) and text.endswith(quote)


def trim_backticks(text: str) -> str:
    return text[1:-1] if is_quoted(text, "`") else text


def literal_list(text: str) -> tuple[object, ...] | None:
    """A parenthesised list as Python reads it (MLflow reads lists with ``ast``), or None."""
    try:
        parsed = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        return None
    return parsed if isinstance(parsed, tuple) else (parsed,)


# -- order_by -------------------------------------------------------------------------------------


def order_by_parts(order_by: str) -> tuple[str, bool]:
    """MLflow's ``_parse_order_by_string``: ``<identifier>[ ASC|DESC]`` -> (identifier, asc)."""
    cur = Cursor(order_by)
    could_not = InvalidParameterValue(f"Invalid order_by clause '{order_by}'. Could not be parsed.")
    first = cur.peek(skip_ws=False)
    if first is None or first.kind == "ws":
        raise could_not
    ident = cur.identifier()
    if ident is None:
        raise could_not
    rest = cur.tokens[cur.i :]
    if rest and (rest[0].kind != "ws" or rest[-1].kind == "ws"):
        raise could_not
    words = [t for t in rest if t.kind != "ws"]
    if len(words) > 1:
        raise could_not
    if words and words[0].kind != "word":
        raise could_not
    if len(words) == 1 and words[0].text.lower() not in ("asc", "desc"):
        raise InvalidParameterValue(f"Invalid ordering key in order_by clause '{order_by}'.")
    try:
        unquoted = shlex.split(ident.replace("`", '"'))
    except ValueError as exc:
        raise could_not from exc
    if len(unquoted) != 1:
        raise could_not
    if not words:
        return ident, True  # MLflow keeps the quotes of a lone identifier
    return unquoted[0], words[0].text.lower() == "asc"
