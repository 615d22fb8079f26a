"""Slow clients cannot hold connections: a deadline for each request's line and headers.

aiohttp's server closes a connection that stays idle between requests (keep-alive timeout),
but not one that sends a request head slowly: 100 clients sending a header byte every 2 s
kept their connections for good (issue 14). ``GuardedAppRunner`` serves an app like
``web.AppRunner`` with one difference: from the first byte of a request head (or from the
connection's start), the whole head must arrive within ``header_timeout`` seconds, or the
connection is closed. Bodies are bounded where they are read (``web.read_body``).

aiohttp offers no hook for this, so the handler class overrides two of its methods and reads
its request counter; ``tests/unit/test_connections.py`` fails if aiohttp changes them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

logger = logging.getLogger(__name__)

_HEAD, _REQUEST, _IDLE = "head", "request", "idle"


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with a deadline on each request head."""

    def __init__(self, manager: Any, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.header_timeout = header_timeout
        self.head_state = _HEAD
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.head_state == _IDLE:
            self.head_state = _HEAD
            self._arm()
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self.head_state = _REQUEST
            self._disarm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    async def finish_response(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().finish_response(*args, **kwargs)
        self.head_state = _IDLE  # until the next request's first byte (keep-alive rules)
        return result

    def _arm(self) -> None:
        self._disarm()
        if self.header_timeout > 0:
            self._head_timer = self._loop.call_later(self.header_timeout, self._head_overdue)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self.head_state != _HEAD or self.transport is None:
            return
        peer = self.transport.get_extra_info("peername")
        logger.info(
            "closing connection from %s: request head not received within %.0f s",
            peer,
            self.header_timeout,
            extra={"action": "slow_client_closed"},
        )
        self.force_close()
        self.transport.close()


class GuardedServer(web.Server):
    header_timeout: float = 10.0

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(
            self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs
        )


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections have a request-head deadline."""

    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer
        assert isinstance(server, GuardedServer)
        server.header_timeout = self.header_timeout
        return server
