"""A Lua script called the short way: EVALSHA packed here, on connections of its own.

Every write runs ingest's append script once, and every projector batch its finish script
(``projector/streams.py``). redis-py's ``Script.__call__`` wraps that round trip in layers:
``evalsha`` → ``execute_command`` (retry object, observability hooks) → the pool's
``get_connection``/``release`` (a lock, connection-count records, an event dispatch) →
``pack_command`` (an encoder call per argument) → ``send_packed_command``, which runs the
send in ``asyncio.wait_for`` (a task per send) because the client has a socket timeout.
Measured in a loop, that is about twice the client CPU of the round trip itself, and in the
server, where caches are cold between requests, each microsecond of it costs several
(docs/performance.md, "Third pass").

What is kept of redis-py: its ``Connection`` (connecting, AUTH, SELECT and TLS as the URL
says, the health check after an idle spell, dropping the socket on any error or cancellation
mid-command) and its exceptions, so ``ingestor._store_errors`` maps failures as before
(``ConnectionError``/``TimeoutError`` → 503; a script error stays a ``ResponseError``).

What is done here:

- packing: a RESP array of bytes; entries past ``_COPY_LIMIT`` go out as their own buffers,
  not copied into one;
- the timeout: one ``asyncio.timeout`` around the round trip (the client's socket timeout,
  5 s by default), expiring as redis-py's did: the connection is dropped (a reply may still
  be on its way) and redis's ``TimeoutError`` raised;
- NOSCRIPT (Redis restarted or its script cache flushed): ``SCRIPT LOAD`` on the same
  connection, then the call again, once;
- the pool: idle connections reused last-in first-out; one that Redis closed while it was idle
  (or that holds unread bytes) is reconnected before use, as redis-py's pool does; at most
  ``max_connections`` open at once (the client's own limit), past that a
  ``ConnectionError`` as from redis-py's pool.

A round trip is not retried after a connection error: the script may have run (the reply
lost), and a second run of the append script would append twice. redis-py's client, as
runstream configures it, does not retry either.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

_COPY_LIMIT = 6_000
"""Arguments longer than this are written as buffers of their own (redis-py's cut-off)."""


def pack_command(*parts: bytes | str | int) -> list[bytes]:
    """A command as RESP: ``*<n>`` then ``$<len>`` and the bytes of each part (an int as its
    decimal digits, as Redis reads numbers)."""
    buffers: list[bytes] = []
    pieces = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, bytes):
            data = part
        elif isinstance(part, int):
            data = b"%d" % part
        else:
            data = part.encode()
        if len(data) > _COPY_LIMIT:
            pieces.append(b"$%d\r\n" % len(data))
            buffers += (b"".join(pieces), data)
            pieces = [b"\r\n"]
        else:
            pieces += (b"$%d\r\n" % len(data), data, b"\r\n")
    buffers.append(b"".join(pieces))
    return buffers


class LeanScript:
    """``text`` called with ``await script(keys, args)`` over a pool of its own connections."""

    def __init__(self, redis: aioredis.Redis, text: str) -> None:
        pool = redis.connection_pool
        kwargs = dict(pool.connection_kwargs)
        self.timeout: float | None = kwargs.pop("socket_timeout", None)
        self._make: Callable[[], AbstractConnection] = lambda: pool.connection_class(
            socket_timeout=None, **kwargs
        )
        self.max_connections: int = pool.max_connections
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()
        self._load = pack_command("SCRIPT", "LOAD", text)
        self._idle: list[AbstractConnection] = []
        self._open = 0
        self._closed = False

    async def __call__(self, keys: Sequence[str], args: Sequence[bytes | str | int]) -> Any:
        command = pack_command("EVALSHA", self.sha, str(len(keys)), *keys, *args)
        conn = await self._checkout()
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    return await _round_trip(conn, command)
                except NoScriptError:
                    await _round_trip(conn, self._load)
                    return await _round_trip(conn, command)
        except TimeoutError:
            # The cancelled read dropped the connection (redis-py does on any interruption).
            raise RedisTimeoutError(f"Redis did not answer within {self.timeout}s") from None
        finally:
            await self._checkin(conn)

    async def aclose(self) -> None:
        """Close the idle connections now and the busy ones when they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open -= 1
            await conn.disconnect()

    async def _checkout(self) -> AbstractConnection:
        if self._closed:
            raise RedisConnectionError("The script's connections are closed")
        if self._idle:
            conn = self._idle.pop()
        elif self._open >= self.max_connections:
            raise RedisConnectionError("Too many connections")
        else:
            conn = self._make()
            self._open += 1
        try:
            if not conn.is_connected:
                await conn.connect()  # type: ignore[no-untyped-call]
            elif await conn.can_read():
                # Closed by Redis while idle (a restart), or bytes nobody read: start afresh.
                await conn.disconnect()
                await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await self._checkin(conn)
            raise
        return conn

    async def _checkin(self, conn: AbstractConnection) -> None:
        if self._closed:
            self._open -= 1
            await conn.disconnect()
        else:
            self._idle.append(conn)


async def _round_trip(conn: AbstractConnection, command: list[bytes]) -> Any:
    await conn.send_packed_command(command)
    return await conn.read_response()
