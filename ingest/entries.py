"""Stream entry payloads for one shard's events, split to stay under ``MAX_ENTRY_BYTES``.

Each event is encoded once; an entry is the envelope header followed by its events' bytes,
which is exactly what ``codec.encode_entry`` produces, without encoding anything twice. A
metric event too large for one entry is cut by series and a series by point ranges (slices
of the packed columns, never a loop over points).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgpack

from runstream.schemas import codec
from runstream.schemas import constants as c
from runstream.schemas.codec import Event
from runstream.schemas.metrics import MetricSeries, MetricsLogged

_EVENT_OVERHEAD = 256
"""Bytes allowed for an event's map keys and ids besides its columns (an upper bound)."""


def encode_entries(
    at: int, events: Sequence[Event], max_bytes: int = c.MAX_ENTRY_BYTES
) -> list[bytes]:
    """Entry payloads (``{"v", "at", "ev"}``) holding ``events`` in order."""
    encoded = [codec.encode_event(e) for ev in events for e in split_event(ev, max_bytes)]
    entries: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for data in encoded:
        if group and size + len(data) + _EVENT_OVERHEAD > max_bytes:
            entries.append(_envelope(at, group))
            group, size = [], 0
        group.append(data)
        size += len(data)
    if group:
        entries.append(_envelope(at, group))
    return entries


def _envelope(at: int, encoded_events: list[bytes]) -> bytes:
    packer = msgpack.Packer(use_bin_type=True)
    head = (
        packer.pack_map_header(3)
        + packer.pack("v")
        + packer.pack(c.ENTRY_FORMAT_VERSION)
        + packer.pack("at")
        + packer.pack(at)
        + packer.pack("ev")
        + packer.pack_array_header(len(encoded_events))
    )
    return bytes(head) + b"".join(encoded_events)


def split_event(event: Event, max_bytes: int) -> Iterator[Event]:
    """``event`` itself, or metric events of its series that each fit an entry."""
    if not isinstance(event, MetricsLogged):
        yield event
        return
    budget = max_bytes - 2 * _EVENT_OVERHEAD
    if _series_bytes(event.series) <= budget:
        yield event
        return
    group: list[MetricSeries] = []
    size = 0
    for whole in event.series:
        for series in _cut_series(whole, budget):
            cost = _series_bytes((series,))
            if group and size + cost > budget:
                yield MetricsLogged(event.run_id, tuple(group))
                group, size = [], 0
            group.append(series)
            size += cost
    if group:
        yield MetricsLogged(event.run_id, tuple(group))


def _series_bytes(series: Sequence[MetricSeries]) -> int:
    return sum(
        len(s.key.encode()) + len(s.steps) + len(s.timestamps) + len(s.values) + 64 for s in series
    )


def _cut_series(series: MetricSeries, budget: int) -> Iterator[MetricSeries]:
    per_point = 24
    room = max(1, (budget - len(series.key.encode()) - 64) // per_point)
    n = series.count
    if n <= room:
        yield series
        return
    for start in range(0, n, room):
        lo, hi = 8 * start, 8 * min(n, start + room)
        yield MetricSeries(
            series.key, series.steps[lo:hi], series.timestamps[lo:hi], series.values[lo:hi]
        )
