"""``read_json_body`` takes the auth guard's parse only under bounds at least as tight."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from runstream.schemas.errors import RequestTooLarge
from runstream.web import CACHED_BODY, PARSED_BODY, ParsedBody, read_json_body


def _guarded_request(body: bytes, parsed: object, max_items: int | None) -> web.Request:
    request = make_mocked_request("POST", "/x", headers={"Content-Type": "application/json"})
    request[CACHED_BODY] = body
    request[PARSED_BODY] = ParsedBody(parsed, max_items)
    return request


async def test_the_guards_parse_is_reused_under_a_looser_or_equal_bound() -> None:
    parsed = {"run_id": "r"}
    for route_bound in (100, 1_000, None):
        request = _guarded_request(b'{"run_id": "r"}', parsed, 100)
        assert await read_json_body(request, 1_000, route_bound) is parsed


async def test_a_tighter_bound_parses_again() -> None:
    body = b'{"xs": [1, 2, 3, 4, 5]}'
    request = _guarded_request(body, {"stale": True}, 100)
    with pytest.raises(RequestTooLarge):
        await read_json_body(request, 1_000, 2)
    request = _guarded_request(body, {"stale": True}, None)
    assert await read_json_body(request, 1_000, 100) == {"xs": [1, 2, 3, 4, 5]}


async def test_the_byte_bound_still_applies_to_a_parsed_body() -> None:
    request = _guarded_request(b'{"pad": "' + b"x" * 100 + b'"}', {"pad": "x"}, 100)
    with pytest.raises(RequestTooLarge):
        await read_json_body(request, 50, 100)
