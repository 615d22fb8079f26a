"""Live cursors (api/native/live_cursors.py) against the real Redis: one pipeline per fan-out,
every saver back only once its positions are stored, TTLs set and refreshed sparingly."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from runstream.api.native.live_cursors import CursorBook
from runstream.schemas import constants as c


async def stored(redis: aioredis.Redis, key: str) -> dict[int, int]:
    raw = await redis.hgetall(key)
    return {int(k): int(v) for k, v in raw.items() if k != b""}


async def test_clients_woken_together_share_one_pipeline_and_return_once_stored(
    redis: aioredis.Redis, stream_prefix: str
) -> None:
    book = CursorBook(redis)
    keys = [c.live_cursor_key(stream_prefix, f"{i:032x}") for i in range(100)]
    sent = {key: {7: i, 9: 2 * i} for i, key in enumerate(keys)}

    async def client(key: str) -> dict[int, int]:
        await book.save(key, sent[key])
        return await stored(redis, key)  # what a reconnect would read, right after the event

    seen = await asyncio.gather(*(client(k) for k in keys))
    assert seen == [sent[k] for k in keys]
    assert book.pipelines == 1
    for key in keys:
        assert 0 < await redis.ttl(key) <= c.LIVE_CURSOR_TTL_SECONDS


async def test_later_positions_replace_earlier_ones_and_an_empty_stream_has_its_token(
    redis: aioredis.Redis, stream_prefix: str
) -> None:
    book = CursorBook(redis)
    key = c.live_cursor_key(stream_prefix, "a" * 32)
    empty = c.live_cursor_key(stream_prefix, "b" * 32)
    await asyncio.gather(book.save(key, {1: 5}), book.save(key, {1: 8, 2: 1}), book.save(empty, {}))
    assert await stored(redis, key) == {1: 8, 2: 1}
    assert await redis.exists(empty) == 1 and await stored(redis, empty) == {}
    await book.save(key, {2: 4})
    assert await stored(redis, key) == {1: 8, 2: 4}
    assert book.pipelines == 2


async def test_ttl_is_refreshed_once_per_refresh_period_not_per_event(
    redis: aioredis.Redis, stream_prefix: str
) -> None:
    key = c.live_cursor_key(stream_prefix, "c" * 32)
    book = CursorBook(redis, ttl_seconds=1000, refresh_seconds=3600)
    await book.save(key, {1: 1})
    await redis.expire(key, 50)  # stands for the TTL having run down since
    await book.save(key, {1: 2})
    assert await redis.ttl(key) <= 50  # not refreshed within the period
    fresh = CursorBook(redis, ttl_seconds=1000, refresh_seconds=0)
    await fresh.save(key, {1: 3})
    assert await redis.ttl(key) > 50
    assert await stored(redis, key) == {1: 3}


async def test_a_client_that_leaves_does_not_cancel_the_others(
    redis: aioredis.Redis, stream_prefix: str
) -> None:
    book = CursorBook(redis)
    gone, staying = (c.live_cursor_key(stream_prefix, t * 32) for t in "de")
    leaving = asyncio.ensure_future(book.save(gone, {1: 1}))
    await asyncio.sleep(0)
    leaving.cancel()
    await book.save(staying, {1: 2})
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await stored(redis, staying) == {1: 2}


async def test_a_redis_error_reaches_every_saver(stream_prefix: str) -> None:
    broken = aioredis.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    book = CursorBook(broken)
    try:
        results = await asyncio.gather(
            book.save(c.live_cursor_key(stream_prefix, "f" * 32), {1: 1}),
            book.save(c.live_cursor_key(stream_prefix, "0" * 32), {1: 1}),
            return_exceptions=True,
        )
    finally:
        await broken.aclose()
    assert all(isinstance(r, RedisConnectionError) for r in results), results
