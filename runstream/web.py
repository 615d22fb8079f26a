"""What every runstream HTTP service shares: the error middleware and JSON responses.

Errors are mapped here and only here: a ``RunstreamError`` becomes its ``http_status`` with
``{"error_code", "message"}``; anything else is logged and answered as INTERNAL_ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web

from runstream import failures
from runstream.schemas.errors import (
    EndpointNotFound,
    MalformedRequest,
    Overloaded,
    RequestTimedOut,
    RequestTooLarge,
    RunstreamError,
    TemporarilyUnavailable,
    Unauthenticated,
)

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BODY_TIMEOUT = web.AppKey("body_timeout", float)
"""Seconds a request body may stall (``Settings.body_timeout``), set by the app factory."""
DEFAULT_BODY_TIMEOUT = 60.0

JSON_CONTENT_TYPE = "application/json"
BASIC_CHALLENGE = 'Basic realm="runstream"'
"""``WWW-Authenticate`` of every 401: MLflow's clients (and browsers) answer it with Basic."""
NATIVE_PREFIX = "/api/runstream/"
"""runstream's own routes answer an unknown path with ENDPOINT_NOT_FOUND JSON; every other
path (MLflow's routes, the UI) answers as ``mlflow server`` (Flask) does: an HTML page, which
MLflow's client reads as ENDPOINT_NOT_FOUND from the 404 status."""
MLFLOW_404_HTML = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again.</p>\n"
)
MLFLOW_405_HTML = (
    "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n"
    "<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n"
)


CACHED_BODY = "runstream.body"
"""Request key of a body already read (the auth middleware reads JSON bodies to find the
experiment or run a request names); ``read_body`` hands it to the handler."""
PARSED_BODY = "runstream.parsed-body"
"""Request key of a ``ParsedBody`` the auth middleware parsed; ``read_json_body`` hands it to
the handler instead of parsing the same bytes again."""
VISIBILITY = "runstream.visibility"
"""Request key of the caller's ``Visibility``; absent when auth is off or the caller is admin."""
GATE = "runstream.gate"
"""Request key of the caller's ``Gate``; absent when auth is off or the caller is admin."""


class Gate(Protocol):
    """What a handler asks when the resources a request touches are only known inside it
    (the events of a native batch, the queries of a GraphQL request)."""

    async def require(
        self,
        action: str,
        run_ids: Collection[str] = (),
        experiment_ids: Collection[str] = (),
        model_ids: Collection[str] = (),
    ) -> None:
        """Raise PermissionDenied unless ``action`` ("read", "update", "delete"; "admin" for
        what only admins may) is allowed on every run, experiment and logged model named."""


@dataclass(frozen=True, slots=True)
class Visibility:
    """The experiments a caller may read: all but ``exceptions`` when ``default`` is True,
    else only ``exceptions`` (the grants that differ from the default permission)."""

    default: bool
    exceptions: frozenset[str]

    def allows(self, experiment_id: str) -> bool:
        return (experiment_id in self.exceptions) != self.default


def visibility_of(request: web.Request) -> Visibility | None:
    """What the caller may read; None when every experiment is visible to them."""
    found: Visibility | None = request.get(VISIBILITY)
    return found


async def require(
    request: web.Request,
    action: str,
    run_ids: Collection[str] = (),
    experiment_ids: Collection[str] = (),
    model_ids: Collection[str] = (),
) -> None:
    """``Gate.require`` of the caller; nothing to check when auth is off or for an admin."""
    gate: Gate | None = request.get(GATE)
    if gate is not None:
        await gate.require(action, run_ids, experiment_ids, model_ids)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    return web.Response(body=body, status=status, content_type=JSON_CONTENT_TYPE, headers=headers)


def error_response(error: RunstreamError) -> web.Response:
    headers = {}
    if isinstance(error, Overloaded | TemporarilyUnavailable):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    elif isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = BASIC_CHALLENGE
    body = error.to_json()
    # A message may quote what the client sent, lone surrogates included, which JSON output
    # (orjson) refuses: they are shown escaped rather than turning a 400 into a 500.
    body = {k: v.encode("utf-8", "backslashreplace").decode() for k, v in body.items()}
    return json_response(body, status=error.http_status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RunstreamError as error:
        return error_response(error)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(RequestTooLarge(f"Request body exceeds {exc.text}"))
    except web.HTTPNotFound:
        if not request.path.startswith(NATIVE_PREFIX):
            return web.Response(status=404, text=MLFLOW_404_HTML, content_type="text/html")
        return error_response(EndpointNotFound(f"No endpoint {request.method} {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        if not request.path.startswith(NATIVE_PREFIX):
            allow = ", ".join(sorted(exc.allowed_methods))
            return web.Response(
                status=405, text=MLFLOW_405_HTML, content_type="text/html", headers={"Allow": allow}
            )
        return error_response(
            EndpointNotFound(f"Method {request.method} not allowed on {request.path}")
        )
    except web.HTTPException:
        raise
    except Exception as exc:
        if client_went_away(request, exc):
            # Nothing can be sent; one line, not a traceback (aiohttp drops the response).
            logger.info(
                "client went away during %s %s: %s",
                request.method,
                request.path,
                exc,
                extra={"action": "client_gone"},
            )
            return web.Response(status=499)
        translated = failures.translate(exc)
        if translated is not None:
            if translated.http_status >= 500:
                logger.warning(
                    "%s %s: %s",
                    request.method,
                    request.path,
                    translated.message,
                    extra={"action": "store_unavailable"},
                )
            return error_response(translated)
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(RunstreamError("Internal error; see the server log"))


def client_went_away(request: web.Request, exc: BaseException) -> bool:
    """A reset or closed connection of the client itself (not of a store)."""
    if not isinstance(exc, ConnectionResetError | BrokenPipeError):
        return False
    transport = request.transport
    return transport is None or transport.is_closing()


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A JSON body parsed once (by the auth middleware), with the item bound it was parsed
    under: a route with a tighter bound parses again rather than take it."""

    value: Any
    max_items: int | None


async def read_json_body(request: web.Request, max_bytes: int, max_items: int | None = None) -> Any:
    """Read and parse a JSON body, bounded in bytes and in items (``parse_json_body``)."""
    body = await read_body(request, max_bytes)
    parsed: ParsedBody | None = request.get(PARSED_BODY)
    if parsed is not None and (
        max_items is None or (parsed.max_items is not None and parsed.max_items <= max_items)
    ):
        return parsed.value
    return parse_json_body(body, max_items)


def parse_json_body(body: bytes, max_items: int | None = None) -> Any:
    """Parse a JSON body; ``{}`` for an empty one. MLflow's client sends NaN/Infinity
    literals, which orjson refuses, so those bodies go through the standard library.

    Parsing holds the event loop for as long as it takes, and what it takes grows with the
    number of values, not the bytes: 24 MiB of small metric objects hold it 250 ms (the stdlib
    fallback 350 ms), 24 MiB of one string 20 ms. ``max_items`` bounds the values from the
    commas before parsing (``too_many_items``).
    """
    if not body:
        return {}
    if max_items is not None and too_many_items(body, max_items):
        raise RequestTooLarge(
            f"Request body holds more than {max_items:,} JSON items; split it into several requests"
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        import json

        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            # orjson refuses nesting past 1,024; json recurses until Python's limit.
            raise MalformedRequest(f"Request body is not valid JSON: {exc!s:.200}") from exc


def too_many_items(body: bytes, max_items: int) -> bool:
    """Does ``body`` hold more than ``max_items`` JSON separators (commas)?

    Every value past the first of an array or object follows a comma, and nesting without
    commas is bounded by the parsers' depth (orjson 1,024), so the commas bound the values
    and with them the time parsing holds the loop (100,000 commas: under 10 ms). One pass at
    memchr speed, and none for a body shorter than the limit. Commas inside strings count
    too: the bound errs toward refusing, never toward parsing longer.
    """
    return len(body) > max_items and body.count(b",") > max_items


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, refused with 413 past ``max_bytes`` before more is read, and with 408
    when the client stops sending for ``BODY_TIMEOUT`` seconds (a slow client holds no more
    than a connection, and not for ever)."""
    body: bytes | None = request.get(CACHED_BODY)
    if body is None:
        length = request.content_length
        if length is not None and length > max_bytes:
            raise RequestTooLarge(
                f"Request body of {length} bytes exceeds the limit of {max_bytes}"
            )
        if not request.content.is_eof():
            return await _streamed_body(request, max_bytes)
        # A small body usually arrives with its head: it is all buffered already, and taking
        # it at once spares the streaming loop's timer and generator on every call (issue 12).
        body = request.content.read_nowait()
    # Also a body read earlier (by the auth guard) under a limit looser than this one.
    if len(body) > max_bytes:
        raise _body_too_large(max_bytes)
    return body


async def _streamed_body(request: web.Request, max_bytes: int) -> bytes:
    chunks = []
    total = 0
    async for chunk in stalling_after(request, request.content.iter_chunked(1 << 16)):
        total += len(chunk)
        if total > max_bytes:
            raise _body_too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _body_too_large(max_bytes: int) -> RequestTooLarge:
    return RequestTooLarge(f"Request body exceeds the limit of {max_bytes} bytes")


async def stalling_after(request: web.Request, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``body``'s blocks; ``RequestTimedOut`` when none arrives for the app's body timeout."""
    stall = request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT)
    blocks = aiter(body)
    while True:
        try:
            async with asyncio.timeout(stall):
                block = await anext(blocks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimedOut(
                f"No part of the request body arrived for {stall:g} s; the request is refused"
            ) from None
        yield block


def answer_head_on_get(app: web.Application) -> None:
    """Every GET route also answers HEAD (same handler; aiohttp sends no body for HEAD).

    ``add_get`` does this by default but ``add_route("GET", ...)`` does not, and route tables
    (MLflow's, the UI's, the artifact proxy's) add routes by method. Call it once every part
    has added its routes, before the app starts (the router freezes then).
    """
    for resource in app.router.resources():
        if not isinstance(resource, web.Resource):  # static files and sub-apps answer HEAD
            continue
        methods = {route.method for route in resource}
        if "HEAD" in methods or "*" in methods:
            continue
        get = next((route for route in resource if route.method == "GET"), None)
        if get is not None:
            resource.add_route("HEAD", get.handler)
