"""``WatermarkWaiter`` against a real Redis: woken by PUBLISH, rescued by polling, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from runstream.ingest.watermarks import WatermarkWaiter
from runstream.schemas import constants as c
from runstream.schemas.errors import TemporarilyUnavailable
from runstream.schemas.sharding import WriteToken


@pytest.fixture
async def waiter(redis: aioredis.Redis, stream_prefix: str) -> AsyncIterator[WatermarkWaiter]:
    # A long poll interval, so that only the published message can wake the waiter in time.
    waiter = WatermarkWaiter(redis, stream_prefix, poll_interval=30.0)
    await waiter.start()
    try:
        yield waiter
    finally:
        await waiter.stop()


async def test_wakes_on_publish(
    waiter: WatermarkWaiter, redis: aioredis.Redis, stream_prefix: str
) -> None:
    token = WriteToken.parse("1:100-0,3:200-5")
    task = asyncio.create_task(waiter.wait(token, timeout=5.0))
    await asyncio.sleep(0.05)
    channel = c.watermark_channel(stream_prefix)
    await redis.publish(channel, "1 100-0")
    await redis.publish(channel, "3 200-4")
    await asyncio.sleep(0.05)
    assert not task.done()
    await redis.publish(channel, "3 200-5")
    await asyncio.wait_for(task, 2.0)
    assert waiter.watermark(3) == (200, 5)


async def test_poll_finds_a_missed_message(redis: aioredis.Redis, stream_prefix: str) -> None:
    waiter = WatermarkWaiter(redis, stream_prefix, poll_interval=0.05)
    token = WriteToken.parse("2:50-0")
    task = asyncio.create_task(waiter.wait(token, timeout=5.0))
    await asyncio.sleep(0.1)
    # The key moves without a message (as if it were lost during a reconnect).
    await redis.set(c.watermark_key(stream_prefix, 2), "60-0")
    await asyncio.wait_for(task, 1.0)


async def test_times_out_with_503(waiter: WatermarkWaiter) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TemporarilyUnavailable) as caught:
        await waiter.wait(WriteToken.parse("0:999-0"), timeout=0.2)
    assert 0.15 < loop.time() - started < 1.0
    assert caught.value.http_status == 503
    assert "999-0" in caught.value.message


async def test_already_applied_returns_at_once(
    waiter: WatermarkWaiter, redis: aioredis.Redis, stream_prefix: str
) -> None:
    await redis.set(c.watermark_key(stream_prefix, 0), "10-0")
    await waiter.wait(WriteToken.parse("0:9-3"), timeout=0.5)
    await waiter.wait(WriteToken.parse(""), timeout=0.0)


async def test_catch_up_waits_for_the_tails_read_at_its_start(
    waiter: WatermarkWaiter, redis: aioredis.Redis, stream_prefix: str
) -> None:
    """Reads catch up with every write appended before them, on every shard they name."""
    await redis.set(c.tail_key(stream_prefix, 1), "100-0")
    await redis.set(c.tail_key(stream_prefix, 2), "200-0")
    # Shard 3 never took a write: nothing to wait for there.
    task = asyncio.create_task(waiter.catch_up([1, 2, 3], timeout=5.0))
    await asyncio.sleep(0.05)
    channel = c.watermark_channel(stream_prefix)
    await redis.publish(channel, "1 100-0")
    # A write after the read began is not waited for.
    await redis.set(c.tail_key(stream_prefix, 2), "300-0")
    await asyncio.sleep(0.05)
    assert not task.done()
    await redis.publish(channel, "2 200-0")
    await asyncio.wait_for(task, 2.0)


async def test_catch_up_with_no_writes_returns_at_once(waiter: WatermarkWaiter) -> None:
    await waiter.catch_up([0, 1, 2], timeout=0.0)
