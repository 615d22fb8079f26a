"""Live metric points and run changes as Server-Sent Events, one fan-out per api process.

``GET /api/runstream/v1/live?runs=<id>,<id>&keys=<k>,...`` (``keys`` optional: every key)
streams, as the projector applies them:

- ``event: ready`` once, ``data: {"runs": [<run>...]}`` with each run's current status;
- ``event: metric``, ``data: {"run_id", "key", "offset", "steps", "timestamps", "values"}``:
  new points of one series, ``offset`` being the position of the first one in the series;
- ``event: run``, ``data: <run>`` (``run_id``, ``status``, ``end_time``, ``lifecycle_stage``)
  when a run's row changed;
- ``event: dropped`` before the server closes a client that fell too far behind;
- ``: ping`` comments every ``HEARTBEAT_SECONDS`` so that proxies keep idle streams open.

Every event's ``id`` is ``<stream token>.<sequence>``; how many points of each series the
client has received is kept in Redis under the token (``constants.live_cursor_key``, updated
before each event is written, kept for ``LIVE_CURSOR_TTL_SECONDS``), so the id stays a few
bytes however many series are watched (it used to list them all: 370 KB per event with
50,000 keys). A client that reconnects with ``Last-Event-ID`` (browsers do it by themselves)
receives exactly the points it missed: positions are offsets in the stored series, so nothing
is skipped or repeated. An id of the older form ``<series_id>:<count>,...`` is still read; an
expired token resumes from the series' current ends (points sent meanwhile are not repeated).

How it scales: after each committed batch the projector publishes what changed
(``constants.changes_channel``: run ids, keys, entry id). One ``LiveHub`` per process holds
one subscription; for the series some client watches it reads the new points once (by point
offset, from PostgreSQL) and puts them in every interested client's bounded queue. Clients
never query on their own, except once at connect to catch up from ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import orjson
import redis.asyncio as aioredis
from aiohttp import web

from runstream.api.native.downsample import Points
from runstream.api.native.history import json_values
from runstream.api.queries import Executor
from runstream.api.reads import run_not_found
from runstream.resources import PG_POOL, REDIS, SETTINGS, listen_forever
from runstream.schemas import constants as c
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import invalid_value, missing_value

logger = logging.getLogger(__name__)

FAN_OUT_RETRY_SECONDS = 0.5
"""Pause before a failed fan-out (database error) is tried again."""

HEARTBEAT_SECONDS = 15.0
CLIENT_QUEUE_ITEMS = 1_000
"""Items (point batches, run changes) queued per client before it is dropped."""
MAX_LIVE_RUNS = 100
MAX_LIVE_KEYS = 1_000

SeriesKey = tuple[str, str]
"""(run_id, key)"""

# Points of each (run, key) from an offset on, with each chunk's offset in the series. The
# window sums only summary columns; packed columns are fetched for the chunks needed.
_POINTS_AFTER = """
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
        WITH ORDINALITY AS u(run_id, key, from_offset, i)
), c AS (
    SELECT u.i, u.from_offset, s.series_id, ch.chunk_no, ch.n,
           sum(ch.n) OVER (PARTITION BY u.i ORDER BY ch.chunk_no) - ch.n AS start_offset
    FROM u
    JOIN metric_series s ON s.run_id = u.run_id AND s.key = u.key
    JOIN metric_chunks ch ON ch.series_id = s.series_id
)
SELECT c.i, c.series_id, c.start_offset, m.steps, m.timestamps, m.vals
FROM c JOIN metric_chunks m ON m.series_id = c.series_id AND m.chunk_no = c.chunk_no
WHERE c.start_offset + c.n > c.from_offset
ORDER BY c.i, c.chunk_no
"""

_RUNS = """
SELECT run_id, status, end_time, lifecycle_stage FROM runs WHERE run_id = ANY($1::text[])
"""

_SERIES_OF_RUNS = """
SELECT run_id, key, series_id, point_count FROM metric_series
WHERE run_id = ANY($1::text[])
"""


@dataclass(frozen=True, slots=True)
class SeriesPoints:
    run_id: str
    key: str
    series_id: int
    start: int
    """Offset of the first point in the series."""
    points: Points

    @property
    def end(self) -> int:
        return self.start + len(self.points)

    def since(self, offset: int) -> SeriesPoints:
        skip = max(0, offset - self.start)
        if skip == 0:
            return self
        keep = np.arange(skip, len(self.points))
        return SeriesPoints(
            self.run_id, self.key, self.series_id, self.start + skip, self.points.take(keep)
        )

    def event_data(self) -> bytes:
        return orjson.dumps(
            {
                "run_id": self.run_id,
                "key": self.key,
                "offset": self.start,
                "steps": self.points.steps,
                "timestamps": self.points.timestamps,
                "values": json_values(self.points.values),
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )


async def points_after(db: Executor, wanted: Sequence[tuple[str, str, int]]) -> list[SeriesPoints]:
    """Points of each ``(run_id, key, from_offset)`` from that offset to the newest applied
    (series without new points are left out)."""
    if not wanted:
        return []
    rows = await db.fetch(
        _POINTS_AFTER, [w[0] for w in wanted], [w[1] for w in wanted], [w[2] for w in wanted]
    )
    grouped: dict[int, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    out = []
    for i, chunk_rows in grouped.items():
        run_id, key, from_offset = wanted[i - 1]
        first = chunk_rows[0][2]
        points = Points.from_packed(
            b"".join(r[3] for r in chunk_rows),
            b"".join(r[4] for r in chunk_rows),
            b"".join(r[5] for r in chunk_rows),
        )
        sp = SeriesPoints(run_id, key, chunk_rows[0][1], first, points).since(from_offset)
        if len(sp.points):
            out.append(sp)
    return out


def run_json(row: Any) -> dict[str, Any]:
    return {
        "run_id": row["run_id"],
        "status": row["status"],
        "end_time": row["end_time"],
        "lifecycle_stage": row["lifecycle_stage"],
    }


# -- event ids -------------------------------------------------------------------------------------


def format_positions(positions: dict[int, int]) -> str:
    return ",".join(f"{sid}:{count}" for sid, count in sorted(positions.items()))


_TOKEN_ID = re.compile(r"^([0-9a-f]{32})\.[0-9]+$")


async def resume_positions(
    redis: aioredis.Redis, prefix: str, last_id: str
) -> dict[int, int] | None:
    """Positions of the stream a ``Last-Event-ID`` names; None when its token expired."""
    match = _TOKEN_ID.match(last_id)
    if match is None:
        return parse_positions(last_id)  # the older form, listing every series
    stored = await redis.hgetall(c.live_cursor_key(prefix, match.group(1)))
    if not stored:
        return None
    return {int(k): int(v) for k, v in stored.items() if k not in (b"", "")}


def parse_positions(text: str) -> dict[int, int]:
    out: dict[int, int] = {}
    if not text.strip():
        return out
    try:
        for part in text.split(","):
            sid, _, count = part.partition(":")
            out[int(sid)] = int(count)
    except ValueError:
        raise InvalidParameterValue(invalid_value("Last-Event-ID", text)) from None
    if any(v < 0 for v in out.values()):
        raise InvalidParameterValue(invalid_value("Last-Event-ID", text))
    return out


# -- clients and the hub ---------------------------------------------------------------------------


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
        self._subscribed = asyncio.Event()
        self.fanouts = 0

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="live-listener"),
            asyncio.create_task(self._process(), name="live-fanout"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 1.0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for client in list(self.clients):
            client.offer(DROPPED)

    async def subscribe(self, client: LiveClient) -> Snapshot:
        """Register ``client``; return its runs and series as of now (404 for a missing run)."""
        async with self._lock:
            runs = list(client.runs)
            run_rows = await self.pool.fetch(_RUNS, runs)
            found = {r["run_id"] for r in run_rows}
            for run_id in runs:
                if run_id not in found:
                    raise run_not_found(run_id)
            series = {}
            for r in await self.pool.fetch(_SERIES_OF_RUNS, runs):
                if client.wants(r["run_id"], r["key"]):
                    key = (r["run_id"], r["key"])
                    series[key] = (r["series_id"], r["point_count"])
                    self.offsets.setdefault(key, r["point_count"])
            self.clients.add(client)
            for run_id in client.runs:
                self.by_run.setdefault(run_id, set()).add(client)
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
            for r in await self.pool.fetch(_SERIES_OF_RUNS, watched):
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
            for row in await self.pool.fetch(_RUNS, watched_runs):
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
        self._subscribed.set()
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


# -- the handler -----------------------------------------------------------------------------------


def _csv(request: web.Request, name: str, limit: int) -> list[str]:
    raw = request.query.getall(name, [])
    items = list(dict.fromkeys(x.strip() for part in raw for x in part.split(",") if x.strip()))
    if len(items) > limit:
        raise InvalidParameterValue(invalid_value(name, len(items), f"at most {limit}"))
    return items


def sse(event: str, data: bytes, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + data + b"\n\n"


class _Stream:
    """One client's positions (mirrored in Redis under its token) and writes."""

    def __init__(
        self,
        response: web.StreamResponse,
        positions: dict[SeriesKey, int],
        redis: aioredis.Redis,
        prefix: str,
    ) -> None:
        self.response = response
        self.positions = positions
        self.ids: dict[SeriesKey, int] = {}
        self.redis = redis
        self.token = uuid.uuid4().hex
        self.cursor_key = c.live_cursor_key(prefix, self.token)
        self.sequence = 0

    async def save_positions(self, keys: Sequence[SeriesKey] | None = None) -> str:
        """Record the positions of ``keys`` (all when None); the id of the next event."""
        chosen = self.positions if keys is None else {k: self.positions[k] for k in keys}
        mapping = {self.ids[k]: v for k, v in chosen.items()}
        async with self.redis.pipeline(transaction=False) as pipe:
            if mapping:
                pipe.hset(self.cursor_key, mapping=mapping)  # type: ignore[arg-type]
            else:
                pipe.hset(self.cursor_key, "", 0)  # the token exists even with no series
            pipe.expire(self.cursor_key, c.LIVE_CURSOR_TTL_SECONDS)
            await pipe.execute()
        self.sequence += 1
        return f"{self.token}.{self.sequence}"

    def event_id(self) -> str:
        return f"{self.token}.{self.sequence}"

    async def send_points(self, sp: SeriesPoints, db: Executor) -> None:
        key = (sp.run_id, sp.key)
        self.ids[key] = sp.series_id
        position = self.positions.get(key, 0)
        if sp.end <= position:
            return
        if sp.start > position:  # points the hub fanned out before this client knew the series
            for earlier in await points_after(db, [(sp.run_id, sp.key, position)]):
                await self.send_points(earlier, db)
            position = self.positions.get(key, 0)
            if sp.end <= position:
                return
        part = sp.since(position)
        self.positions[key] = part.end
        event_id = await self.save_positions([key])
        await self.response.write(sse("metric", part.event_data(), event_id))


async def get_live(request: web.Request) -> web.StreamResponse:
    """``GET /api/runstream/v1/live?runs=...&keys=...`` (see module doc)."""
    runs = _csv(request, "runs", MAX_LIVE_RUNS)
    if not runs:
        raise InvalidParameterValue(missing_value("runs"))
    keys = _csv(request, "keys", MAX_LIVE_KEYS)
    last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    redis = request.app[REDIS]
    prefix = request.app[SETTINGS].stream_prefix
    resume = await resume_positions(redis, prefix, last_id) if last_id else None
    hub = request.app[LIVE]
    db = request.app[PG_POOL]
    client = LiveClient(frozenset(runs), frozenset(keys) if keys else None, CLIENT_QUEUE_ITEMS)
    snapshot = await hub.subscribe(client)
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        stream = _Stream(response, {}, redis, prefix)
        for key, (series_id, count) in snapshot.series.items():
            stream.ids[key] = series_id
            stream.positions[key] = count if resume is None else resume.get(series_id, 0)
        ready_id = await stream.save_positions()
        await response.write(sse("ready", orjson.dumps({"runs": snapshot.runs}), ready_id))
        if resume is not None:
            behind = [
                (k[0], k[1], pos)
                for k, pos in stream.positions.items()
                if pos < snapshot.series[k][1]
            ]
            for sp in await points_after(db, behind):
                await stream.send_points(sp, db)
        await _pump(client, stream, db)
        return response
    finally:
        hub.unsubscribe(client)


async def _pump(client: LiveClient, stream: _Stream, db: Executor) -> None:
    while True:
        try:
            item = await asyncio.wait_for(client.queue.get(), HEARTBEAT_SECONDS)
        except TimeoutError:
            await stream.response.write(b": ping\n\n")
            continue
        if isinstance(item, _Dropped):
            await stream.response.write(
                sse("dropped", b'{"reason":"client too slow; reconnect with Last-Event-ID"}')
            )
            return
        if isinstance(item, SeriesPoints):
            await stream.send_points(item, db)
        else:
            await stream.response.write(sse("run", orjson.dumps(item), stream.event_id()))
