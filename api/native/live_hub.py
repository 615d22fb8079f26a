"""The live hub: one per api process, it knows which client watches which runs and keys,
hears what the projector applied (``constants.changes_channel``, subscribed while it has
clients), reads the new points once per series and puts them in every interested client's
bounded queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import redis.asyncio as aioredis
from aiohttp import web

from runstream.api.native.live_cursors import CursorBook
from runstream.api.native.live_points import (
    RUNS,
    SERIES_OF_RUNS,
    SeriesKey,
    SeriesPoints,
    points_after,
    run_json,
)
from runstream.api.queries import Executor
from runstream.api.reads import run_not_found
from runstream.resources import PG_POOL, REDIS, SETTINGS, listen_forever
from runstream.schemas import constants as c

logger = logging.getLogger(__name__)

FAN_OUT_RETRY_SECONDS = 0.5
"""Pause before a failed fan-out (database error) is tried again."""

CLIENT_QUEUE_ITEMS = 1_000
"""Items (point batches, run changes) queued per client before it is dropped."""


class _Dropped:
    pass


DROPPED = _Dropped()
QueueItem = SeriesPoints | dict[str, Any] | _Dropped


@dataclass(eq=False)
class LiveClient:
    runs: frozenset[str]
    keys: frozenset[str] | None
    limit: int = CLIENT_QUEUE_ITEMS
    queue: asyncio.Queue[QueueItem] = field(default_factory=asyncio.Queue)
    dropped: bool = False

    def wants(self, run_id: str, key: str) -> bool:
        return run_id in self.runs and (self.keys is None or key in self.keys)

    def offer(self, item: QueueItem) -> bool:
        """Queue ``item``; past ``limit`` the client is dropped (False)."""
        if self.dropped:
            return False
        if self.queue.qsize() >= self.limit:
            self.dropped = True
            self.queue.put_nowait(DROPPED)
            return False
        self.queue.put_nowait(item)
        return True


@dataclass(frozen=True, slots=True)
class Snapshot:
    runs: list[dict[str, Any]]
    series: dict[SeriesKey, tuple[int, int]]
    """(series_id, point count) of every existing series the client watches."""


class LiveHub:
    """The one subscriber of an api process (see module doc)."""

    def __init__(self, pool: Executor, redis: aioredis.Redis, prefix: str) -> None:
        self.pool = pool
        self.redis = redis
        self.prefix = prefix
        self.cursors = CursorBook(redis)
        """The live streams' positions in Redis, one pipeline per fan-out (live_cursors)."""
        self.clients: set[LiveClient] = set()
        self.by_run: dict[str, set[LiveClient]] = {}
        self.offsets: dict[SeriesKey, int] = {}
        """Points of each watched series already fanned out."""
        self._lock = asyncio.Lock()
        self._pending_series: set[SeriesKey] = set()
        self._pending_runs: set[str] = set()
        self._sweep: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncio.Task[None] | None = None
        self.fanouts = 0

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._process(), name="live-fanout")]

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._listener] if self._listener is not None else [])]
        self._listener = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for client in list(self.clients):
            client.offer(DROPPED)

    def _listen_while_watched(self) -> None:
        """Subscribe to the change channel while at least one client watches.

        Every projected batch publishes a change message; parsing it costs each api process
        CPU that requests could use (a tenth of a log_metric's, measured, issue 12), so a
        process with no live client does not subscribe. Changes published before the
        subscription are caught by ``_on_subscribed``'s sweep of every watched run.
        """
        if self.clients and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="live-listener")
        elif not self.clients and self._listener is not None:
            self._listener.cancel()
            self._listener = None

    async def subscribe(self, client: LiveClient) -> Snapshot:
        """Register ``client``; return its runs and series as of now (404 for a missing run)."""
        async with self._lock:
            runs = list(client.runs)
            run_rows = await self.pool.fetch(RUNS, runs)
            found = {r["run_id"] for r in run_rows}
            for run_id in runs:
                if run_id not in found:
                    raise run_not_found(run_id)
            series = {}
            for r in await self.pool.fetch(SERIES_OF_RUNS, runs):
                if client.wants(r["run_id"], r["key"]):
                    key = (r["run_id"], r["key"])
                    series[key] = (r["series_id"], r["point_count"])
                    self.offsets.setdefault(key, r["point_count"])
            self.clients.add(client)
            for run_id in client.runs:
                self.by_run.setdefault(run_id, set()).add(client)
            self._listen_while_watched()
            return Snapshot([run_json(r) for r in run_rows], series)

    def unsubscribe(self, client: LiveClient) -> None:
        self.clients.discard(client)
        for run_id in client.runs:
            watchers = self.by_run.get(run_id)
            if watchers is None:
                continue
            watchers.discard(client)
            if not watchers:
                del self.by_run[run_id]
                for key in [k for k in self.offsets if k[0] == run_id]:
                    del self.offsets[key]
        self._listen_while_watched()

    def note(self, message: dict[str, Any]) -> None:
        """Take one change message (decoded); the fan-out task reads and delivers."""
        for run_id, key in message.get("m") or ():
            if run_id in self.by_run:
                self._pending_series.add((run_id, key))
        for run_id in message.get("r") or ():
            if run_id in self.by_run:
                self._pending_runs.add(run_id)
        if self._pending_series or self._pending_runs:
            self._wake.set()

    async def _process(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            series, self._pending_series = self._pending_series, set()
            runs, self._pending_runs = self._pending_runs, set()
            sweep, self._sweep = self._sweep, set()
            try:
                async with self._lock:
                    await self._fan_out(series, runs, sweep)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Clients catch up on the next change of their series (offsets are kept).
                logger.warning("live fan-out failed: %s", exc, extra={"action": "live_error"})
                self._pending_series |= series
                self._pending_runs |= runs
                await asyncio.sleep(FAN_OUT_RETRY_SECONDS)
                self._wake.set()

    async def _fan_out(self, series: set[SeriesKey], runs: set[str], sweep: set[str]) -> None:
        if sweep:
            watched = [r for r in sweep if r in self.by_run]
            for r in await self.pool.fetch(SERIES_OF_RUNS, watched):
                series.add((r["run_id"], r["key"]))
            runs |= set(watched)
        wanted = [
            (run_id, key, self.offsets.get((run_id, key), 0))
            for run_id, key in series
            if any(cl.wants(run_id, key) for cl in self.by_run.get(run_id, ()))
        ]
        for sp in await points_after(self.pool, wanted):
            self.offsets[(sp.run_id, sp.key)] = sp.end
            self.fanouts += 1
            for client in list(self.by_run.get(sp.run_id, ())):
                if client.wants(sp.run_id, sp.key) and not client.offer(sp):
                    self._drop(client)
        watched_runs = [r for r in runs if r in self.by_run]
        if watched_runs:
            for row in await self.pool.fetch(RUNS, watched_runs):
                change = run_json(row)
                for client in list(self.by_run.get(row["run_id"], ())):
                    if not client.offer(change):
                        self._drop(client)

    def _drop(self, client: LiveClient) -> None:
        logger.info(
            "live client dropped: %d items behind",
            client.limit,
            extra={"action": "live_client_dropped"},
        )
        self.unsubscribe(client)

    async def _listen(self) -> None:
        await listen_forever(
            self.redis,
            c.changes_channel(self.prefix),
            self._on_message,
            self._on_subscribed,
            "live",
        )

    def _on_subscribed(self) -> None:
        # Messages may have been missed while (re)subscribing: look at everything.
        self._sweep |= set(self.by_run)
        if self._sweep:
            self._wake.set()

    def _on_message(self, data: bytes) -> None:
        try:
            decoded = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.UnpackException):
            logger.debug("ignoring change message %r", data)
            return
        if isinstance(decoded, dict):
            self.note(decoded)


LIVE = web.AppKey("live_hub", LiveHub)
_LIVE_ADDED = web.AppKey("live_added", bool)


def use_live(app: web.Application) -> None:
    """Run one ``LiveHub`` while the app runs (idempotent; after ``use_stores``)."""
    if app.get(_LIVE_ADDED):
        return
    app[_LIVE_ADDED] = True

    async def live_ctx(app: web.Application) -> AsyncIterator[None]:
        hub = LiveHub(app[PG_POOL], app[REDIS], app[SETTINGS].stream_prefix)
        await hub.start()
        app[LIVE] = hub
        try:
            yield
        finally:
            await hub.stop()

    app.cleanup_ctx.append(live_ctx)
