"""What every MLflow route does around its own logic: read fields, write events, answer.

Writes go through the ingest room's ``Ingestor``, which makes MLflow's synchronous checks
atomically with the append; the route answers once the entry is in the stream. Reads catch up
first: they wait until the projector has applied every entry the shards held when the read
began, so a client's next read sees its writes (read-your-writes), through any api process.
Routes that answer with the entity they wrote (create run, update run, ...) wait for their own
write instead. docs/design-decisions.md says why the wait moved from writes to reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

from aiohttp import web

from runstream.api.mlflow.messages import fields_from_body, fields_from_query
from runstream.ingest.app_keys import INGESTOR
from runstream.ingest.watermarks import WATERMARKS, reached
from runstream.resources import SETTINGS
from runstream.schemas.codec import Event
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.sharding import WriteToken, shard_of_run
from runstream.schemas.validation import check_search_size
from runstream.web import read_json_body

JSON_TYPE = "application/json"
T = TypeVar("T")


async def request_fields(request: web.Request, repeated: Collection[str] = ()) -> dict[str, Any]:
    """The message's fields (checked for bounded search work, schemas.validation)."""
    fields = await _request_fields(request, repeated)
    settings = request.app[SETTINGS]
    check_search_size(fields, settings.max_filter_chars, settings.max_filter_clauses)
    return fields


async def _request_fields(request: web.Request, repeated: Collection[str]) -> dict[str, Any]:
    """The message's fields: the query string of a GET (or its HEAD) that has one, else the
    JSON body."""
    if request.method in ("GET", "HEAD") and request.query:
        return fields_from_query(request.query, repeated)
    if request.method in ("POST", "PUT", "PATCH"):
        content_type = request.headers.get("Content-Type")
        if content_type is None:
            raise InvalidParameterValue("Bad Request. Content-Type header is missing.")
        if content_type.split(";")[0].strip() != JSON_TYPE:
            raise InvalidParameterValue(
                f"Bad Request. Content-Type must be one of ['{JSON_TYPE}']."
            )
    settings = request.app[SETTINGS]
    body = await read_json_body(request, settings.max_json_bytes, settings.max_json_items)
    return fields_from_body(body)


async def wait_for(request: web.Request, token: WriteToken) -> None:
    """Read-your-writes: 503 with Retry-After if the projector does not catch up in time."""
    await request.app[WATERMARKS].wait(token, request.app[SETTINGS].read_your_writes_timeout)


def _shards(request: web.Request, run_ids: Collection[str]) -> Sequence[int]:
    settings = request.app[SETTINGS]
    if run_ids:
        return sorted({shard_of_run(run_id, settings.shards) for run_id in run_ids})
    return range(settings.shards)


async def catch_up(request: web.Request, run_ids: Collection[str] = ()) -> None:
    """Wait until every write accepted before this request is applied: on the shards of
    ``run_ids`` when the read is about those runs only, else on every shard."""
    await request.app[WATERMARKS].catch_up(
        _shards(request, run_ids), request.app[SETTINGS].read_your_writes_timeout
    )


async def read_caught_up(
    request: web.Request, run_ids: Collection[str], read: Callable[[], Awaitable[T]]
) -> T:
    """``catch_up`` then ``read()``, overlapped: one round trip instead of two when the
    projector is not behind (the usual case of a read that follows other reads).

    ``read()`` runs while the shards' tails are fetched. Its result stands when the
    watermarks known *before* it started already covered those tails: every write accepted
    before this request was then committed before the read's query began. Otherwise wait as
    ``catch_up`` does and read again.
    """
    waiter = request.app[WATERMARKS]
    timeout = request.app[SETTINGS].read_your_writes_timeout
    before = waiter.snapshot()
    result, tails = await asyncio.gather(read(), waiter.tails(_shards(request, run_ids), timeout))
    if reached(before, tails):
        return result
    await waiter.wait(tails, timeout)
    return await read()


async def write(request: web.Request, events: Sequence[Event], *, wait: bool = False) -> WriteToken:
    """Append ``events`` (refused with MLflow's error when a check fails).

    ``wait=True`` also waits for the projector to apply them, for routes that answer with what
    they wrote.
    """
    token = await request.app[INGESTOR].append(events)
    if wait:
        await wait_for(request, token)
    return token
