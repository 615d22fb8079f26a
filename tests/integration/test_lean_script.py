"""``LeanScript`` (the append script's short path) against a real Redis: answers, NOSCRIPT,
Redis restarted, frozen and gone, bounded connections."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runstream.embedded import valkey_binary
from runstream.lean_script import LeanScript, pack_command

ECHO = "return {KEYS[1], ARGV[1], #ARGV[2]}"


class OwnRedis:
    """A Redis server of this test alone, so it can be restarted, frozen and stopped."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(valkey_binary(), "--port", str(self.port), "--save", ""),
                *("--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def signal(self, sig: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(own_redis: OwnRedis) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.from_url(own_redis.url, socket_timeout=1.0)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
async def echo(client: aioredis.Redis) -> AsyncIterator[LeanScript]:
    script = LeanScript(client, ECHO)
    try:
        yield script
    finally:
        await script.aclose()


def test_packs_what_redis_py_packs() -> None:
    big = b"x" * 10_000
    parts = (b"EVALSHA", "abc", "1", "k\u00e9y", b"", big)
    expected = b"".join(
        b"$%d\r\n%b\r\n" % (len(p), p)
        for p in (p if isinstance(p, bytes) else p.encode() for p in parts)
    )
    packed = pack_command(*parts)
    assert b"".join(packed) == b"*6\r\n" + expected
    assert big in packed  # sent as its own buffer, not copied


async def test_numbers_go_as_redis_py_sends_them(client: aioredis.Redis) -> None:
    assert b"".join(pack_command("GET", 7, -2)) == b"*3\r\n$3\r\nGET\r\n$1\r\n7\r\n$2\r\n-2\r\n"
    script = LeanScript(client, "return tonumber(ARGV[1]) + tonumber(ARGV[2])")
    try:
        assert await script([], [40, 2]) == 42
    finally:
        await script.aclose()


async def test_answers_as_redis_py_script(echo: LeanScript, client: aioredis.Redis) -> None:
    big = b"e" * 10_000
    expected = await client.register_script(ECHO)(keys=["k"], args=[b"a", big])
    assert await echo(["k"], [b"a", big]) == expected == [b"k", b"a", 10_000]


async def test_script_errors_stay_response_errors(client: aioredis.Redis) -> None:
    script = LeanScript(client, "return redis.error_reply('refused here')")
    try:
        with pytest.raises(ResponseError, match="refused here"):
            await script([], [])
        assert await LeanScript(client, "return 7")([], []) == 7  # the connection still works
    finally:
        await script.aclose()


async def test_loads_the_script_after_a_flush(echo: LeanScript, client: aioredis.Redis) -> None:
    assert await echo(["k"], [b"1", b""]) == [b"k", b"1", 0]
    await client.script_flush()
    assert await echo(["k"], [b"2", b""]) == [b"k", b"2", 0]
    assert echo._open == 1  # the same connection throughout


async def test_reconnects_after_redis_restarts(echo: LeanScript, own_redis: OwnRedis) -> None:
    assert await echo(["k"], [b"1", b""]) == [b"k", b"1", 0]
    own_redis.stop()
    own_redis.start()  # an empty script cache, and the idle connection closed by the old one
    await asyncio.sleep(0.1)  # a server's loop sees the close before the next request
    assert await echo(["k"], [b"2", b""]) == [b"k", b"2", 0]


async def test_redis_gone_is_a_connection_error(echo: LeanScript, own_redis: OwnRedis) -> None:
    assert await echo(["k"], [b"1", b""]) == [b"k", b"1", 0]
    own_redis.stop()
    with pytest.raises(RedisConnectionError):
        await echo(["k"], [b"2", b""])
    own_redis.start()
    assert await echo(["k"], [b"3", b""]) == [b"k", b"3", 0]


async def test_frozen_redis_times_out_then_recovers(echo: LeanScript, own_redis: OwnRedis) -> None:
    assert await echo(["k"], [b"1", b""]) == [b"k", b"1", 0]
    own_redis.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await echo(["k"], [b"2", b""])
        assert time.monotonic() - started < 3  # the client's socket timeout is 1 s
    finally:
        own_redis.signal(signal.SIGCONT)
    # The timed-out connection was dropped: its late reply cannot answer the next call.
    assert await echo(["k"], [b"3", b""]) == [b"k", b"3", 0]


async def test_connections_are_reused_and_bounded(own_redis: OwnRedis) -> None:
    redis = aioredis.from_url(own_redis.url, max_connections=2)
    slow = LeanScript(redis, "local t = redis.call('TIME') return 1")
    try:
        for _ in range(5):
            assert await slow([], []) == 1
        assert slow._open == 1
        results = await asyncio.gather(*(slow([], []) for _ in range(3)), return_exceptions=True)
        assert slow._open <= 2
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, RedisConnectionError) for r in refused)
        assert results.count(1) >= 2
    finally:
        await slow.aclose()
        await redis.aclose()
    with pytest.raises(RedisConnectionError):
        await slow([], [])
