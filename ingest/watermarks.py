"""Waiting for the projector: read-your-writes for writers that ask for it.

After committing a batch, a projector sets ``watermark_key(prefix, shard)`` to the newest
applied entry id and publishes ``"<shard> <entry id>"`` on ``watermark_channel(prefix)``.
One ``WatermarkWaiter`` per process holds a single subscription, keeps the newest watermark
of each shard in memory and wakes the waiters whose token it passed. Waiters also re-read
the keys every ``poll_interval`` seconds, so a message lost while Redis reconnected delays a
waiter by one poll at most instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from runstream.resources import REDIS, listen_forever, use_stores
from runstream.schemas import constants as c
from runstream.schemas.errors import TemporarilyUnavailable
from runstream.schemas.sharding import WriteToken, parse_entry_id
from runstream.settings import Settings

logger = logging.getLogger(__name__)

Position = tuple[int, int]

POLL_INTERVAL_SECONDS = 0.05


def parse_message(data: bytes | str) -> tuple[int, Position] | None:
    """``"<shard> <ms>-<seq>"`` as (shard, position); None for anything else."""
    text = data.decode() if isinstance(data, bytes) else data
    shard, _, entry_id = text.strip().partition(" ")
    try:
        return int(shard), parse_entry_id(entry_id)
    except ValueError:
        return None


def reached(marks: dict[int, Position], token: WriteToken) -> bool:
    for shard, position in token.positions:
        mark = marks.get(shard)
        if mark is None or mark < position:
            return False
    return True


MIN_ANSWER_SECONDS = 1.0
"""Time Redis gets to answer the tail read, whatever the wait for the projector."""


class WatermarkWaiter:
    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        poll_interval: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.poll_interval = poll_interval
        self._marks: dict[int, Position] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        """Subscribe in the background; returns once subscribed (or after one poll interval)."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="watermark-listener")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), 1.0)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def watermark(self, shard: int) -> Position | None:
        return self._marks.get(shard)

    def note(self, shard: int, position: Position) -> None:
        """Record a watermark; only ever moves forward."""
        current = self._marks.get(shard)
        if current is None or position > current:
            self._marks[shard] = position
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def refresh(self, shards: Sequence[int]) -> None:
        keys = [c.watermark_key(self.prefix, s) for s in shards]
        try:
            values = await self.redis.mget(keys)
        except RedisError as exc:
            logger.debug("cannot read watermarks: %s", exc)
            return
        for shard, value in zip(shards, values, strict=True):
            if value is not None:
                with contextlib.suppress(ValueError):
                    self.note(shard, parse_entry_id(value))

    async def wait(self, token: WriteToken, timeout: float) -> None:  # noqa: ASYNC109
        # (a plain timeout argument: the api passes its read-your-writes setting through)
        """Return once every shard of ``token`` is applied; ``TemporarilyUnavailable`` if not
        within ``timeout`` seconds."""
        if not token.positions or reached(self._marks, token):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        shards = [shard for shard, _ in token.positions]
        next_poll = loop.time()
        while True:
            changed = self._changed
            now = loop.time()
            if now >= next_poll:
                try:
                    async with asyncio.timeout(max(deadline - now, 0.1)):
                        await self.refresh(shards)
                except TimeoutError:
                    pass  # the deadline check below answers 503
                next_poll = loop.time() + self.poll_interval
            if reached(self._marks, token):
                return
            now = loop.time()
            if now >= deadline:
                raise TemporarilyUnavailable(
                    f"Timed out after {timeout:g}s waiting for the projector to apply write "
                    f"{token}; the write is accepted and will be applied.",
                    retry_after=1.0,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(deadline, next_poll) - now)

    async def catch_up(self, shards: Sequence[int], timeout: float) -> None:  # noqa: ASYNC109
        """Return once every entry appended to ``shards`` before this call is applied.

        This is read-your-writes seen from the reader: a write answers as soon as its entry is
        in the stream, and a read waits for the entries that were there when it began.
        """
        await self.wait(await self.tails(shards, timeout), timeout)

    async def tails(self, shards: Sequence[int], timeout: float) -> WriteToken:  # noqa: ASYNC109
        """The newest entry appended to each of ``shards`` (those that have one), now; 503
        when Redis does not answer within ``timeout`` (at least ``MIN_ANSWER_SECONDS``)."""
        try:
            # A frozen Redis must not hold the read for ever (issue 14): 503 instead.
            async with asyncio.timeout(max(timeout, MIN_ANSWER_SECONDS)):
                tails = await self._get_tails(shards)
        except TimeoutError:
            raise TemporarilyUnavailable(
                f"Redis did not answer within {max(timeout, MIN_ANSWER_SECONDS):g}s",
                retry_after=1.0,
            ) from None
        return WriteToken(
            tuple(
                (shard, parse_entry_id(tail))
                for shard, tail in zip(shards, tails, strict=True)
                if tail is not None
            )
        )

    async def _get_tails(self, shards: Sequence[int]) -> list[bytes | str | None]:
        keys = [c.tail_key(self.prefix, shard) for shard in shards]
        if len(keys) == 1:
            # A read about one run (get_run, get-history): a plain GET costs the client library
            # a fraction of a pipeline's work, on every such read (issue 12).
            return [await self.redis.get(keys[0])]
        # One GET per shard, pipelined: the tails live in different cluster slots, so no MGET.
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return list(await pipe.execute())

    def snapshot(self) -> dict[int, Position]:
        """The watermarks known now: every entry up to them is committed in PostgreSQL."""
        return dict(self._marks)

    async def _listen(self) -> None:
        # While unsubscribed, waiters are covered by polling the watermark keys.
        await listen_forever(
            self.redis,
            c.watermark_channel(self.prefix),
            self._on_message,
            self._subscribed.set,
            "watermark",
        )

    def _on_message(self, data: bytes) -> None:
        parsed = parse_message(data)
        if parsed is None:
            logger.debug("ignoring watermark message %r", data)
            return
        self.note(*parsed)


WATERMARKS = web.AppKey("watermarks", WatermarkWaiter)
_WATERMARKS_ADDED = web.AppKey("watermarks_added", bool)


def use_watermarks(app: web.Application, settings: Settings) -> None:
    """Ensure ``app[WATERMARKS]``, one waiter per app shared by ingest and api (idempotent)."""
    if app.get(_WATERMARKS_ADDED):
        return
    app[_WATERMARKS_ADDED] = True
    use_stores(app, settings)

    async def watermarks_ctx(app: web.Application) -> AsyncIterator[None]:
        waiter = WatermarkWaiter(app[REDIS], settings.stream_prefix)
        await waiter.start()
        app[WATERMARKS] = waiter
        try:
            yield
        finally:
            await waiter.stop()

    app.cleanup_ctx.append(watermarks_ctx)
