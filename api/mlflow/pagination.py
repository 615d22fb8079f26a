"""MLflow's page tokens and ``max_results`` checks, for every paged MLflow route. Pure.

A token is base64 of a JSON object with the ``offset`` of the next page, as MLflow's
``SearchUtils.create_page_token`` makes it, so tokens look like MLflow's to anyone who looks.
Two optional parts serve searches that need more than an offset:

- ``bound``: request fields the token is only valid with (logged-model search keeps the
  experiment ids, filter and order in it, as MLflow's ``SearchLoggedModelsPaginationToken``
  does); a later request with other values is refused with MLflow's "... in the page token
  does not match ..." message. They are written before ``offset``, in the order given.
- ``after``: the sort key of the last row handed out, for keyset paging (the next page starts
  after that key instead of skipping ``offset`` rows). No route uses it yet; a search over a
  large, append-mostly table (model versions) can, without a second token format.

Every malformed token gets MLflow's ``parse_start_offset_from_page_token`` wording as
``INVALID_PARAMETER_VALUE``. The route pages by fetching ``max_results + 1`` rows (``page``):
one row more than a page tells that there is a next one, without counting.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from runstream.schemas import constants as c
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import invalid_value

T = TypeVar("T")

OFFSET = "offset"
AFTER = "after"


@dataclass(frozen=True, slots=True)
class Bound:
    """A request field a token is bound to: ``name`` in the token, ``value`` as JSON, and how
    MLflow's refusal names it (``"Experiment IDs"``/``"experiment IDs"``, ``do`` or ``does``)."""

    name: str
    value: Any
    title: str
    noun: str
    verb: str = "does"

    def mismatch(self, found: Any) -> InvalidParameterValue:
        return InvalidParameterValue(
            f"{self.title} in the page token {self.verb} not match the requested {self.noun}. "
            f"Expected: {self.value}. Found: {found}"
        )


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: rows to skip, and for keyset paging the last sort key seen."""

    offset: int = 0
    after: tuple[Any, ...] | None = None


def encode(offset: int, bound: Sequence[Bound] = (), after: Sequence[Any] | None = None) -> str:
    """The token of the page that starts ``offset`` rows in (and after ``after``)."""
    payload: dict[str, Any] = {b.name: b.value for b in bound}
    payload[OFFSET] = offset
    if after is not None:
        payload[AFTER] = list(after)
    return base64.b64encode(json.dumps(payload).encode()).decode()


def decode(token: str | None, bound: Sequence[Bound] = ()) -> Cursor:
    """The cursor a token carries (the first page without one), checked against ``bound``."""
    if not token:
        return Cursor()
    try:
        decoded = base64.b64decode(token)
    except (TypeError, ValueError):  # binascii.Error, and non-ASCII text, are ValueErrors
        raise InvalidParameterValue("Invalid page token, could not base64-decode") from None
    try:
        parsed = json.loads(decoded)
    except ValueError:
        raise InvalidParameterValue(f"Invalid page token, decoded value={decoded!r}") from None
    raw_offset = parsed.get(OFFSET) if isinstance(parsed, dict) else None
    if not raw_offset:
        raise InvalidParameterValue(f"Invalid page token, parsed value={parsed}")
    try:
        offset = int(raw_offset)
    except (TypeError, ValueError):
        raise InvalidParameterValue(f"Invalid page token, not stringable {raw_offset}") from None
    if offset < 0:
        raise InvalidParameterValue(f"Invalid page token, parsed value={parsed}")
    for field in bound:
        found = parsed.get(field.name) or None
        if found != (field.value or None):
            raise field.mismatch(found)
    after = parsed.get(AFTER)
    if after is not None and not isinstance(after, list):
        raise InvalidParameterValue(f"Invalid page token, parsed value={parsed}")
    return Cursor(offset, None if after is None else tuple(after))


def page(
    rows: Sequence[T],
    offset: int,
    max_results: int | None,
    bound: Sequence[Bound] = (),
    key: Callable[[T], Sequence[Any]] | None = None,
) -> tuple[Sequence[T], str | None]:
    """A page of ``rows`` (fetched with ``limit=max_results + 1`` from ``offset``) and the
    token of the next page, None when this is the last (or ``max_results`` is None: all).

    With ``key`` (a row's sort key, JSON values), the token also carries the key of the page's
    last row, for a query that continues after it instead of skipping ``offset`` rows."""
    if max_results is None or len(rows) <= max_results:
        return rows, None
    shown = rows[:max_results]
    after = None if key is None else key(shown[-1])
    return shown, encode(offset + max_results, bound, after)


# -- max_results ----------------------------------------------------------------------------------


def check_max_results(max_results: int | None, *, allow_null: bool = False) -> int | None:
    """MLflow's search stores' ``_validate_max_results_param``: 1 to the search maximum."""
    if (max_results is None and not allow_null) or (max_results is not None and max_results < 1):
        raise InvalidParameterValue(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be "
            "a positive integer"
        )
    if max_results is not None and max_results > c.SEARCH_MAX_RESULTS_THRESHOLD:
        raise InvalidParameterValue(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be at "
            f"most {c.SEARCH_MAX_RESULTS_THRESHOLD}"
        )
    return max_results


def check_page_size(max_results: int, limit: int = c.SEARCH_MAX_RESULTS_THRESHOLD) -> int:
    """A page size of routes whose MLflow store checks none (logged models, the native API):
    refused past ``limit`` all the same, as every read is bounded."""
    if not 1 <= max_results <= limit:
        raise InvalidParameterValue(
            invalid_value("max_results", max_results, f"must be between 1 and {limit}")
        )
    return max_results
