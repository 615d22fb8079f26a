"""Backpressure: how far the projector is behind on each shard, read at most every 100 ms.

The backlog of a shard is the consumer group's lag (entries not yet delivered) plus its
pending entries (delivered, not yet acknowledged); before the group exists it is the stream
length. Past ``backlog_limit`` ingest refuses with 429 and Retry-After rather than letting
Redis memory grow without bound.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from runstream.schemas import constants as c
from runstream.schemas.errors import Overloaded

CACHE_SECONDS = 0.1
RETRY_AFTER_SECONDS = 1.0


def backlog_of(groups: Any, length: int) -> int:
    """The backlog from an XINFO GROUPS reply (or an error when the stream is new)."""
    if isinstance(groups, Exception):
        return length
    for group in groups:
        name = group.get("name")
        if name in (c.CONSUMER_GROUP, c.CONSUMER_GROUP.encode()):
            lag = group.get("lag")
            pending = int(group.get("pending") or 0)
            # Redis reports no lag after trimming past undelivered entries: fall back on length.
            return (length if lag is None else int(lag)) + pending
    return length


class BacklogGauge:
    def __init__(self, redis: aioredis.Redis, prefix: str, limit: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.limit = limit
        self._readings: dict[int, tuple[float, int]] = {}

    async def check(self, shards: Sequence[int]) -> None:
        """Raise ``Overloaded`` when any of ``shards`` is past the limit."""
        now = time.monotonic()
        stale = [s for s in shards if now - self._readings.get(s, (-1e9, 0))[0] > CACHE_SECONDS]
        if stale:
            pipe = self.redis.pipeline(transaction=False)
            for shard in stale:
                key = c.stream_key(self.prefix, shard)
                pipe.xinfo_groups(key)
                pipe.xlen(key)
            replies = await pipe.execute(raise_on_error=False)
            for i, shard in enumerate(stale):
                groups, length = replies[2 * i], replies[2 * i + 1]
                if isinstance(length, ResponseError):
                    raise length
                self._readings[shard] = (now, backlog_of(groups, int(length)))
        for shard in shards:
            backlog = self._readings[shard][1]
            if backlog > self.limit:
                raise Overloaded(
                    f"Shard {shard} has {backlog} entries waiting for the projector (limit "
                    f"{self.limit}); retry later.",
                    retry_after=RETRY_AFTER_SECONDS,
                )

    def note_appended(self, shard: int, entries: int) -> None:
        """Count our own appends until the next reading, so one process cannot overshoot."""
        reading = self._readings.get(shard)
        if reading is not None:
            self._readings[shard] = (reading[0], reading[1] + entries)
