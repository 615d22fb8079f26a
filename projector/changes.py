"""What a committed batch changed, announced for live streams (``constants.changes_channel``).

The api's live fan-out (``api/native/live_hub.py``) subscribes once per process and reads the new
points by offset from PostgreSQL; this message only says where to look. Published by the
call that finishes the batch in Redis (``ShardStream.finish``), after its transaction
committed and with its watermark, so a reader always finds the rows. A lost message delays
a live client until the next batch of the same run (or its reconnect).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgpack

from runstream.projector.store import StreamEntry
from runstream.schemas import metrics as me
from runstream.schemas import runs as ru
from runstream.schemas.sharding import format_entry_id

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


def message(shard: int, entries: Iterable[StreamEntry]) -> bytes:
    """``describe`` packed for the channel; empty when there is nothing to announce.

    The projector hands it to ``ShardStream.finish``, which publishes it with the
    batch's watermark, after the transaction committed.
    """
    described = describe(shard, entries)
    return b"" if described is None else msgpack.packb(described, use_bin_type=True)
