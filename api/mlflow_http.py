"""What every MLflow route does around its own logic: read fields, write events, answer.

Writes go through the ingest room's ``Ingestor`` (which makes MLflow's synchronous checks
atomically with the append), and the route answers only once the projector's watermark has
passed the write (read-your-writes), so the client's next read sees it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from aiohttp import web

from runstream.api.mlflow_requests import fields_from_body, fields_from_query
from runstream.ingest.app_keys import INGESTOR
from runstream.ingest.watermarks import WATERMARKS
from runstream.resources import SETTINGS
from runstream.schemas.codec import Event
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.sharding import WriteToken
from runstream.web import read_json_body

JSON_TYPE = "application/json"


async def request_fields(request: web.Request, repeated: Collection[str] = ()) -> dict[str, Any]:
    """The message's fields: the query string of a GET that has one, else the JSON body."""
    if request.method == "GET" and request.query:
        return fields_from_query(request.query, repeated)
    if request.method in ("POST", "PUT", "PATCH"):
        content_type = request.headers.get("Content-Type")
        if content_type is None:
            raise InvalidParameterValue("Bad Request. Content-Type header is missing.")
        if content_type.split(";")[0].strip() != JSON_TYPE:
            raise InvalidParameterValue(
                f"Bad Request. Content-Type must be one of ['{JSON_TYPE}']."
            )
    body = await read_json_body(request, request.app[SETTINGS].max_body_bytes)
    return fields_from_body(body)


async def wait_for(request: web.Request, token: WriteToken) -> None:
    """Read-your-writes: 503 with Retry-After if the projector does not catch up in time."""
    await request.app[WATERMARKS].wait(token, request.app[SETTINGS].read_your_writes_timeout)


async def write(request: web.Request, events: Sequence[Event]) -> WriteToken:
    """Append ``events`` (refused with MLflow's error when a check fails) and wait for them."""
    token = await request.app[INGESTOR].append(events)
    await wait_for(request, token)
    return token
