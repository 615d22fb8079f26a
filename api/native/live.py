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
before each event is written, kept for ``LIVE_CURSOR_TTL_SECONDS``; ``live_cursors`` writes
the cursors of all the clients one fan-out wakes in one pipeline), so the id stays a few bytes
however many series are watched (it used to list them all: 370 KB per event with 50,000
keys). A client that reconnects with ``Last-Event-ID`` (browsers do it by themselves)
receives exactly the points it missed: positions are offsets in the stored series, so nothing
is skipped or repeated. An id of the older form ``<series_id>:<count>,...`` is still read; an
expired token resumes from the series' current ends (points sent meanwhile are not repeated).

Modules: this one is the handler (query, subscription, catch-up from ``Last-Event-ID``, the
client's pump); ``live_hub`` the fan-out; ``live_points`` the reads; ``sse`` the framing and
event ids.

How it scales: after each committed batch the projector publishes what changed
(``constants.changes_channel``: run ids, keys, entry id). One ``LiveHub`` per process holds
one subscription; for the series some client watches it reads the new points once (by point
offset, from PostgreSQL) and puts them in every interested client's bounded queue. Clients
never query on their own, except once at connect to catch up from ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence

import orjson
import redis.asyncio as aioredis
from aiohttp import web

from runstream.api.native.live_cursors import EMPTY_FIELD, CursorBook
from runstream.api.native.live_hub import (
    CLIENT_QUEUE_ITEMS,
    LIVE,
    LiveClient,
    _Dropped,
)
from runstream.api.native.live_points import SeriesKey, SeriesPoints, points_after
from runstream.api.native.sse import parse_positions, sse
from runstream.api.queries import Executor
from runstream.resources import PG_POOL, REDIS, SETTINGS
from runstream.schemas import constants as c
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import invalid_value, missing_value

HEARTBEAT_SECONDS = 15.0
MAX_LIVE_RUNS = 100
MAX_LIVE_KEYS = 1_000


def _csv(request: web.Request, name: str, limit: int) -> list[str]:
    raw = request.query.getall(name, [])
    items = list(dict.fromkeys(x.strip() for part in raw for x in part.split(",") if x.strip()))
    if len(items) > limit:
        raise InvalidParameterValue(invalid_value(name, len(items), f"at most {limit}"))
    return items


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
    empty = (EMPTY_FIELD, EMPTY_FIELD.encode())
    return {int(k): int(v) for k, v in stored.items() if k not in empty}


class _Stream:
    """One client's positions (mirrored in Redis under its token) and writes."""

    def __init__(
        self,
        response: web.StreamResponse,
        positions: dict[SeriesKey, int],
        cursors: CursorBook,
        prefix: str,
    ) -> None:
        self.response = response
        self.positions = positions
        self.ids: dict[SeriesKey, int] = {}
        self.cursors = cursors
        self.token = uuid.uuid4().hex
        self.cursor_key = c.live_cursor_key(prefix, self.token)
        self.sequence = 0

    async def save_positions(self, keys: Sequence[SeriesKey] | None = None) -> str:
        """Record the positions of ``keys`` (all when None); the id of the next event."""
        chosen = self.positions if keys is None else {k: self.positions[k] for k in keys}
        await self.cursors.save(self.cursor_key, {self.ids[k]: v for k, v in chosen.items()})
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
    stream: _Stream | None = None
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        stream = _Stream(response, {}, hub.cursors, prefix)
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
        if stream is not None:
            hub.cursors.forget(stream.cursor_key)


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
