"""Live streams' cursors in Redis, written for every client of a fan-out in one pipeline.

A live event's id is ``<token>.<sequence>``; the positions it stands for are stored under the
token (``constants.live_cursor_key``) before the event is written, so that ``Last-Event-ID``
resumes exactly. One change watched by 100 clients is 100 events: storing each client's
positions on its own cost 100 Redis round trips per change, on up to 100 pooled connections
at once (live p99 40 -> 72 ms in the re-run benchmarks; past the pool's connections, 503s).
``CursorBook.save`` collects what the clients woken by one fan-out save in the same turns of
the event loop and writes it in one pipeline; each caller returns once its own positions are
stored, as before. A cursor's TTL is refreshed at most once every ``REFRESH_SECONDS`` (an
EXPIRE per event doubled the commands), so a stream stays resumable between
``LIVE_CURSOR_TTL_SECONDS - REFRESH_SECONDS`` and ``LIVE_CURSOR_TTL_SECONDS`` after its last
event.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping

import redis.asyncio as aioredis

from runstream.schemas import constants as c

REFRESH_SECONDS = 60.0
"""Least time between two EXPIREs of one cursor (seconds)."""

EMPTY_FIELD = ""
"""The field a cursor holds while its stream watches no series (the token must exist)."""


class CursorBook:
    """Batches cursor writes of one api process (see module doc)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        ttl_seconds: int = c.LIVE_CURSOR_TTL_SECONDS,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._refresh = refresh_seconds
        self._expired_at: dict[str, float] = {}
        """``time.monotonic()`` of each open stream's last EXPIRE."""
        self._pending: dict[str, dict[int | str, int]] = {}
        self._stored: asyncio.Future[None] | None = None
        self.pipelines = 0
        """Pipelines written so far (the tests check that a fan-out is one write)."""

    async def save(self, cursor_key: str, positions: Mapping[int | str, int]) -> None:
        """Store ``positions`` (series id -> points sent) under ``cursor_key`` and refresh its
        TTL; returns when they are in Redis (raises what Redis raised)."""
        self._expired_at.setdefault(cursor_key, -math.inf)
        pending = self._pending.setdefault(cursor_key, {})
        if positions:
            pending.update(positions)
        else:
            pending.setdefault(EMPTY_FIELD, 0)
        stored = self._stored
        if stored is None:
            stored = self._stored = asyncio.get_running_loop().create_future()
            # A task, so that it runs after the clients already woken by this fan-out.
            asyncio.get_running_loop().call_soon(self._start_write)
        # Shielded: one client leaving (its handler cancelled) does not cancel the others'.
        await asyncio.shield(stored)

    def forget(self, cursor_key: str) -> None:
        """The stream closed: its cursor lives out its TTL untouched."""
        self._expired_at.pop(cursor_key, None)

    def _start_write(self) -> None:
        task = asyncio.get_running_loop().create_task(self._write(), name="live-cursors")
        task.add_done_callback(_retrieve)

    async def _write(self) -> None:
        batch, self._pending = self._pending, {}
        stored, self._stored = self._stored, None
        assert stored is not None
        now = time.monotonic()
        due = [k for k in batch if now - self._expired_at.get(k, -math.inf) >= self._refresh]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, mapping in batch.items():
                    pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
                for key in due:
                    pipe.expire(key, self._ttl)
                await pipe.execute()
        except asyncio.CancelledError:
            stored.cancel()
            raise
        except Exception as exc:
            stored.set_exception(exc)
            stored.exception()  # retrieved here too: no "never retrieved" when nobody waits
            raise
        else:
            for key in due:
                if key in self._expired_at:  # not closed meanwhile
                    self._expired_at[key] = now
            self.pipelines += 1
            stored.set_result(None)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # raised to the savers already
