"""What a committed batch changed, announced for live streams (``constants.changes_channel``).

The api's live fan-out (``api/native/live_hub.py``) subscribes once per process and reads the new
points by offset from PostgreSQL; this message only says where to look. Published after the
batch's transaction commits and its watermark is set, so a reader always finds the rows.
A lost message delays a live client until the next batch of the same run (or its reconnect).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgpack
from redis.exceptions import RedisError

from runstream.projector.store import StreamEntry
from runstream.projector.streams import ShardStream
from runstream.schemas import constants as c
from runstream.schemas import metrics as me
from runstream.schemas import runs as ru
from runstream.schemas.sharding import format_entry_id

logger = logging.getLogger(__name__)

_RUN_EVENTS = (ru.RunCreated, ru.RunUpdated, ru.RunDeleted, ru.RunRestored)


def describe(shard: int, entries: Iterable[StreamEntry]) -> dict[str, object] | None:
    """The message for ``entries`` (pure), or None when they change nothing live streams show."""
    series: dict[tuple[str, str], None] = {}
    runs: dict[str, None] = {}
    newest = None
    for e in entries:
        newest = e.entry_id if newest is None or e.entry_id > newest else newest
        for event in e.entry.events:
            if isinstance(event, me.MetricsLogged):
                for s in event.series:
                    if s.values:
                        series[(event.run_id, s.key)] = None
            elif isinstance(event, _RUN_EVENTS):
                runs[event.run_id] = None
    if newest is None or not (series or runs):
        return None
    return {
        "s": shard,
        "e": format_entry_id(newest),
        "m": [list(k) for k in series],
        "r": list(runs),
    }


async def publish(stream: ShardStream, entries: Iterable[StreamEntry]) -> None:
    message = describe(stream.shard, entries)
    if message is None:
        return
    try:
        await stream.redis.publish(
            c.changes_channel(stream.prefix), msgpack.packb(message, use_bin_type=True)
        )
    except RedisError as exc:  # the batch is committed; live clients catch up later
        logger.warning("cannot announce changes: %s", exc, extra={"action": "changes_lost"})
