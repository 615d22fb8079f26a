"""From buffered items to request bodies: ``metrics_logged`` events with packed columns.

A ``Batch`` is one request to ``POST /api/runstream/v1/events``: the events of one run in
logged order, bounded by points and events, with an ``Idempotency-Key`` chosen once so that
every retry of the batch (from memory or from the spool, by this process or another) appends
nothing twice.
"""

from __future__ import annotations

import gzip
import sys
import uuid
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from runstream.client.buffer import EventItem, Item, MetricGroup
from runstream.schemas import constants as c
from runstream.schemas.codec import event_to_obj
from runstream.schemas.metrics import MetricSeries, MetricsLogged

_LITTLE = sys.byteorder == "little"
MAX_EVENTS = min(1_000, c.MAX_EVENTS_PER_REQUEST)


def column_bytes(column: array[Any]) -> bytes:
    """A column packed little-endian, as ``schemas.metrics`` expects."""
    if _LITTLE:
        return column.tobytes()
    copy = array(column.typecode, column)
    copy.byteswap()
    return copy.tobytes()


@dataclass(slots=True)
class Batch:
    """One request's worth of events of one run, and where it stands."""

    run_id: str
    events: list[dict[str, Any]] | None
    """Event maps; None once the batch lives only in its spool file."""
    points: int
    event_count: int
    last_seq: int
    """The run buffer's sequence of the last item in this batch (for ``flush``)."""
    idempotency_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    experiment_name: str | None = None
    """Set while the batch holds a ``run_created`` whose experiment id is not known yet."""
    started_in: str | None = None
    """The experiment name a ``run_created`` in this batch was started in: ``runstream sync``
    creates the run there when the server it syncs to has no experiment of the run's id."""
    spool_path: Path | None = None
    attempts: int = 0

    def body(self) -> bytes:
        """The msgpack request body."""
        if self.events is None:
            raise RuntimeError("batch events are in the spool file")
        return encode_body(self.events)


def encode_body(events: Sequence[dict[str, Any]]) -> bytes:
    return msgpack.packb({"events": list(events)}, use_bin_type=True)  # type: ignore[no-any-return]


def maybe_gzip(body: bytes, min_bytes: int) -> tuple[bytes, str | None]:
    """gzip (level 1) bodies of at least ``min_bytes`` when that makes them smaller."""
    if min_bytes <= 0 or len(body) < min_bytes:
        return body, None
    packed = gzip.compress(body, compresslevel=1, mtime=0)
    if len(packed) >= len(body) * 0.9:
        return body, None
    return packed, "gzip"


def metrics_event(run_id: str, group: MetricGroup) -> dict[str, Any]:
    series = tuple(
        MetricSeries(key, column_bytes(steps), column_bytes(stamps), column_bytes(values))
        for key, steps, stamps, values in group.columns
    )
    return event_to_obj(MetricsLogged(run_id, series))


def _split_group(group: MetricGroup, limit: int) -> Iterator[MetricGroup]:
    """Pieces of at most ``limit`` points; a key's points keep their order."""
    if group.points <= limit:
        yield group
        return
    piece: list[tuple[str, array[int], array[int], array[float]]] = []
    size = 0
    for key, steps, stamps, values in group.columns:
        start = 0
        while start < len(values):
            take = min(limit - size, len(values) - start)
            end = start + take
            piece.append((key, steps[start:end], stamps[start:end], values[start:end]))
            size += take
            start = end
            if size >= limit:
                yield MetricGroup(piece, size)
                piece, size = [], 0
    if piece:
        yield MetricGroup(piece, size)


def build_batches(
    run_id: str,
    items: Sequence[Item],
    first_seq: int,
    max_points: int,
    max_events: int = MAX_EVENTS,
) -> list[Batch]:
    """Cut a run's items (numbered ``first_seq``, ``first_seq + 1``, ...) into batches."""
    batches: list[Batch] = []
    events: list[dict[str, Any]] = []
    points = 0
    seq = first_seq - 1

    def close() -> None:
        nonlocal events, points
        if events:
            batches.append(Batch(run_id, events, points, len(events), seq))
            events, points = [], 0

    for item in items:
        if isinstance(item, EventItem):
            if len(events) >= max_events:
                close()
            events.append(item.obj)
        else:
            for piece in _split_group(item, max_points):
                if events and (points + piece.points > max_points or len(events) >= max_events):
                    close()
                events.append(metrics_event(run_id, piece))
                points += piece.points
        seq += 1
    close()
    return batches
