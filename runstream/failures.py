"""Which failures are the client's and which the server's: exceptions from the drivers and the
runtime translated into runstream's errors (4xx for bad input, 503 for a store that does not
answer), so that a 500 always means a fault of the server itself (issue 14).

Pure: ``translate`` looks at an exception and returns the error to answer with, or None.
"""

from __future__ import annotations

import errno

import asyncpg
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runstream.schemas.errors import (
    InvalidParameterValue,
    MalformedRequest,
    RunstreamError,
    TemporarilyUnavailable,
)

MAX_DETAIL = 300
"""Characters of a driver's message repeated to the client (it may quote the bad value)."""

_PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.AdminShutdownError,
)


def _detail(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "..."


def translate(exc: BaseException) -> RunstreamError | None:
    """The error to answer ``exc`` with, when it is not a fault of the server's own code."""
    if isinstance(exc, asyncpg.exceptions.DataError):
        # SQLSTATE class 22 and asyncpg's own argument encoding: a value of the request that
        # PostgreSQL cannot take (NUL, a lone surrogate, past int64, a bad LIKE escape).
        return InvalidParameterValue(f"Invalid value in the request: {_detail(exc)}")
    if isinstance(exc, asyncpg.exceptions.QueryCanceledError):
        return TemporarilyUnavailable(
            "The query was cancelled after the statement timeout; narrow it or retry later"
        )
    if isinstance(exc, _PG_UNAVAILABLE):
        return TemporarilyUnavailable(f"PostgreSQL is unavailable: {_detail(exc)}")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | BusyLoadingError):
        return TemporarilyUnavailable(f"Redis is unavailable: {_detail(exc)}")
    if isinstance(exc, RecursionError):
        return MalformedRequest("Request is nested too deeply")
    if isinstance(exc, UnicodeEncodeError):
        return InvalidParameterValue(f"Invalid value in the request: {_detail(exc)}")
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return InvalidParameterValue("Invalid path: a name in it is too long")
    if isinstance(exc, ConnectionRefusedError | TimeoutError):
        return TemporarilyUnavailable(f"A store did not answer: {_detail(exc) or 'timed out'}")
    return None
