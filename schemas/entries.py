"""Stream entries: the envelope around a shard's events, written by ingest, read by the projector.

An entry is the msgpack map ``{"v": ENTRY_FORMAT_VERSION, "at": <ms>, "ev": [event, ...]}``
whose events are ``codec``'s event maps. This module is the only one that writes or reads it:

- ``encode_entries`` cuts a shard's events into payloads under ``MAX_ENTRY_BYTES``; each event
  is encoded once and an entry is the envelope header followed by its events' bytes (a metric
  event too large for one entry is cut by series, a series by point ranges: slices of the
  packed columns, never a loop over points). ``encode_entry`` is one envelope, uncut.
- ``decode_entry`` reads an entry. Most entries hold only ``metrics_logged`` events with
  packed columns, and on small entries the schema-driven decoder (which builds an error path
  for every field it checks) costs more than applying them, so the common shape is checked
  directly, with the same rules; every other entry, and any entry that breaks a rule, goes to
  ``decode_entry_general``, which decodes it or raises the precise ``EventDecodeError``. Both
  give equal results on every input (a property test checks it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from runstream.schemas import constants as c
from runstream.schemas.codec import Event, decode_event, encode_event, unpack
from runstream.schemas.errors import EventDecodeError
from runstream.schemas.metrics import MetricSeries, MetricsLogged


@dataclass(frozen=True, slots=True)
class Entry:
    """The decoded payload of one stream entry."""

    at: int
    """Milliseconds since the epoch at which ingest accepted the request."""
    events: tuple[Event, ...]


# -- encoding -----------------------------------------------------------------------------------

_EVENT_OVERHEAD = 256
"""Bytes allowed for an event's map keys and ids besides its columns (an upper bound)."""


def encode_entry(at: int, events: Sequence[Event]) -> bytes:
    """One entry payload holding ``events``, whatever its size (see ``encode_entries``)."""
    return _envelope(at, [encode_event(e) for e in events])


def encode_entries(
    at: int, events: Sequence[Event], max_bytes: int = c.MAX_ENTRY_BYTES
) -> list[bytes]:
    """Entry payloads holding ``events`` in order, each at most ``max_bytes``."""
    encoded = [encode_event(e) for ev in events for e in split_event(ev, max_bytes)]
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
    """The entry map with already encoded events: byte-equal to ``packb`` of the whole map."""
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


# -- decoding -----------------------------------------------------------------------------------


def decode_entry(data: bytes) -> Entry:
    """The entry in ``data``; raises ``EventDecodeError`` naming the first bad field."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception:
        return decode_entry_general(data)  # raises the EventDecodeError
    entry = _packed_metrics_entry(obj)
    return entry if entry is not None else decode_entry_general(data)


def decode_entry_general(data: bytes) -> Entry:
    """``decode_entry`` through the schema-driven event decoder only (every event kind)."""
    obj = unpack(data, "stream entry")
    if not isinstance(obj, dict):
        raise EventDecodeError("stream entry: expected a map")
    version = obj.get("v")
    if version != c.ENTRY_FORMAT_VERSION:
        raise EventDecodeError(f"stream entry: unknown entry format version {version!r}")
    at = obj.get("at")
    if not isinstance(at, int):
        raise EventDecodeError("stream entry: 'at' must be an integer")
    evs = obj.get("ev")
    if not isinstance(evs, list):
        raise EventDecodeError("stream entry: 'ev' must be a list")
    return Entry(at, tuple(decode_event(e, f"ev[{i}]") for i, e in enumerate(evs)))


_METRICS = MetricsLogged.TYPE
_MAX_SERIES_BYTES = 8 * c.MAX_POINTS_PER_SERIES_EVENT


def _packed_metrics_entry(obj: Any) -> Entry | None:
    """The entry when it holds only well-formed packed metric events, else None.

    Per series, not per point: the columns are checked by length and kept as bytes.
    """
    if type(obj) is not dict or obj.get("v") != c.ENTRY_FORMAT_VERSION:
        return None
    at = obj.get("at")
    events = obj.get("ev")
    if type(at) is not int or type(events) is not list:
        return None
    out = []
    try:
        for ev in events:
            # Exactly the fields of a metrics_logged event ("v" optional), nothing unknown.
            if (
                type(ev) is not dict
                or ev["type"] != _METRICS
                or len(ev) != (4 if "v" in ev else 3)
                or ev.get("v", MetricsLogged.VERSION) != MetricsLogged.VERSION
            ):
                return None
            run_id = ev["run_id"]
            raw_series = ev["series"]
            if type(run_id) is not str or type(raw_series) is not list:
                return None
            series = []
            for s in raw_series:
                if type(s) is not dict or len(s) != 4:
                    return None
                key, steps, stamps, values = s["key"], s["steps"], s["timestamps"], s["values"]
                if (
                    type(key) is not str
                    or type(steps) is not bytes
                    or type(stamps) is not bytes
                    or type(values) is not bytes
                ):
                    return None
                n = len(values)
                if n % 8 or len(steps) != n or len(stamps) != n:
                    return None
                if n > _MAX_SERIES_BYTES:
                    return None
                series.append(MetricSeries(key, steps, stamps, values))
            out.append(MetricsLogged(run_id, tuple(series)))
    except KeyError:
        return None
    return Entry(at, tuple(out))
