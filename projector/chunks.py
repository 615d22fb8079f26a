"""Where a batch's metric points land, with summaries: pure functions over packed columns.

A series' points live in chunks of at most ``chunk_points`` points, numbered from 0 in logged
order. New points first fill the series' last chunk (its *tail*), then go to new chunks.
``layout`` takes the stored state of each series plus the batch's points and returns the tail
fills, the new chunks and the new series state. A large batch never loops over points in
Python (one vectorised pass per column over the whole batch, ``reduceat`` per chunk piece or
series); a batch of a few points (``SMALL_BATCH_POINTS``) is reduced point by point, which
costs less than numpy's calls.

The latest value follows MLflow's ``_update_latest_metrics_if_necessary``: a point replaces
the latest one only when ``(step, timestamp, value)`` is strictly greater, where the value is
compared as MLflow stores it (NaN as 0, ±inf as ±max float). Ties keep the earlier point.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from runstream.projector.plan import MetricAppends

_FLOAT_MAX = sys.float_info.max
_I8 = np.dtype("<i8")
_F8 = np.dtype("<f8")


@dataclass(frozen=True, slots=True)
class SeriesState:
    """One ``metric_series`` row (its stored summary), or a new series' empty state."""

    series_id: int
    point_count: int = 0
    chunk_count: int = 0
    tail_count: int = 0
    latest_step: int | None = None
    latest_timestamp: int | None = None
    latest_value: float | None = None
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True, slots=True)
class ChunkPiece:
    """Points for one chunk: a whole new chunk, or what is appended to a tail chunk."""

    series_id: int
    chunk_no: int
    n: int
    min_step: int
    max_step: int
    first_step: int
    last_step: int
    min_value: float | None
    """None when every value is NaN."""
    max_value: float | None
    first_value: float
    last_value: float
    steps: bytes
    timestamps: bytes
    vals: bytes
    # Where the min and max value are (migration 0005): position in this piece, step,
    # timestamp; None when every value is NaN. A tail fill offsets the position (FILL_TAILS).
    min_value_pos: int | None = None
    max_value_pos: int | None = None
    min_value_step: int | None = None
    max_value_step: int | None = None
    min_value_ts: int | None = None
    max_value_ts: int | None = None

    def record(self) -> tuple[object, ...]:
        """The ``metric_chunks`` row, columns in ``CHUNK_COLUMNS`` order."""
        return (
            self.series_id,
            self.chunk_no,
            self.n,
            self.min_step,
            self.max_step,
            self.first_step,
            self.last_step,
            self.min_value,
            self.max_value,
            self.first_value,
            self.last_value,
            self.steps,
            self.timestamps,
            self.vals,
            self.min_value_pos,
            self.max_value_pos,
            self.min_value_step,
            self.max_value_step,
            self.min_value_ts,
            self.max_value_ts,
        )


CHUNK_COLUMNS = (
    "series_id",
    "chunk_no",
    "n",
    "min_step",
    "max_step",
    "first_step",
    "last_step",
    "min_value",
    "max_value",
    "first_value",
    "last_value",
    "steps",
    "timestamps",
    "vals",
    "min_value_pos",
    "max_value_pos",
    "min_value_step",
    "max_value_step",
    "min_value_ts",
    "max_value_ts",
)


@dataclass(frozen=True, slots=True)
class MetricWrites:
    tail_fills: list[ChunkPiece]
    new_chunks: list[ChunkPiece]
    series: list[SeriesState]
    """The new state of every series the batch touched."""


def comparable(step: int, timestamp: int, value: float) -> tuple[int, int, float]:
    """The key MLflow orders latest values by (its ``sanitize_metric_value``)."""
    if math.isnan(value):
        value = 0.0
    elif math.isinf(value):
        value = _FLOAT_MAX if value > 0 else -_FLOAT_MAX
    return (step, timestamp, value)


def is_newer(candidate: tuple[int, int, float], current: tuple[int, int, float] | None) -> bool:
    """Whether a point ``(step, timestamp, value)`` replaces the current latest (MLflow's rule)."""
    if current is None:
        return True
    return comparable(*candidate) > comparable(*current)


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def latest_indexes(
    steps: npt.NDArray[np.int64],
    stamps: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    starts: npt.NDArray[np.intp],
) -> npt.NDArray[np.intp]:
    """Index of each segment's latest point: greatest comparable key, first logged on ties."""
    lengths = np.diff(np.append(starts, len(steps)))
    sanitized = np.where(np.isnan(values), 0.0, np.clip(values, -_FLOAT_MAX, _FLOAT_MAX))
    best = np.repeat(np.maximum.reduceat(steps, starts), lengths)
    mask = steps == best
    # Narrow the candidates column by column; the filler of masked-out points never matters
    # because each step ANDs with the previous mask, which keeps at least one point per segment.
    best_ts = np.maximum.reduceat(np.where(mask, stamps, np.iinfo(np.int64).min), starts)
    mask &= stamps == np.repeat(best_ts, lengths)
    best_value = np.maximum.reduceat(np.where(mask, sanitized, -np.inf), starts)
    mask &= sanitized == np.repeat(best_value, lengths)
    hits = np.flatnonzero(mask)
    return hits[np.searchsorted(hits, starts)]


def extreme_indexes(
    values: npt.NDArray[np.float64], starts: npt.NDArray[np.intp], largest: bool
) -> npt.NDArray[np.intp]:
    """Index of each segment's first smallest (or largest) non-NaN value; -1 when a segment
    is all NaN."""
    lengths = np.diff(np.append(starts, len(values)))
    best = (np.fmax if largest else np.fmin).reduceat(values, starts)
    hits = np.flatnonzero(values == np.repeat(best, lengths))
    if len(hits) == 0:
        return np.full(len(starts), -1, np.intp)
    at = np.minimum(np.searchsorted(hits, starts), len(hits) - 1)
    found = hits[at]
    ends = starts + lengths
    ok = (found >= starts) & (found < ends) & ~np.isnan(best)
    return np.where(ok, found, -1).astype(np.intp)


SMALL_BATCH_POINTS = 64
SMALL_BATCH_PIECES = 8
"""Up to these many points and chunk pieces a batch is reduced in plain Python
(``_reduce_in_python``): one MLflow call's few points cost numpy's per-call overhead many
times over (in the projector ~120 µs a batch of one point, against ~40 µs). Python's cost
grows with the pieces, numpy's hardly: past 8 pieces of 8 points numpy is as fast."""


class Reductions(NamedTuple):
    """Per piece and per series summaries of a batch's points (``layout``'s column work).

    Piece extremes are positions in the piece of the first smallest and largest value that is
    not NaN (-1 when all its values are NaN) with the step and timestamp found there (any value
    when the position is -1). Minima and maxima are the values at those positions (NaN when
    every value is): of ``-0.0`` and ``0.0`` the first logged, however the batch was cut.
    """

    min_step: list[int]
    max_step: list[int]
    first_step: list[int]
    last_step: list[int]
    min_value: list[float]
    max_value: list[float]
    first_value: list[float]
    last_value: list[float]
    lowest: list[int]
    highest: list[int]
    lowest_step: list[int]
    highest_step: list[int]
    lowest_ts: list[int]
    highest_ts: list[int]
    series_min: list[float]
    series_max: list[float]
    latest_step: list[int]
    latest_ts: list[int]
    latest_value: list[float]


def _reduce_with_numpy(
    appends: MetricAppends, piece_starts: list[int], series_starts: list[int]
) -> Reductions:
    steps = np.frombuffer(appends.steps, dtype=_I8)
    stamps = np.frombuffer(appends.timestamps, dtype=_I8)
    values = np.frombuffer(appends.values, dtype=_F8)
    starts = np.asarray(piece_starts, dtype=np.intp)
    last = np.append(starts[1:], len(values)) - 1
    lowest = extreme_indexes(values, starts, largest=False)
    highest = extreme_indexes(values, starts, largest=True)
    lowest_at = np.maximum(lowest, 0)
    highest_at = np.maximum(highest, 0)
    by_series = np.asarray(series_starts, dtype=np.intp)
    latest = latest_indexes(steps, stamps, values, by_series)
    series_lowest = extreme_indexes(values, by_series, largest=False)
    series_highest = extreme_indexes(values, by_series, largest=True)
    return Reductions(
        min_step=np.minimum.reduceat(steps, starts).tolist(),
        max_step=np.maximum.reduceat(steps, starts).tolist(),
        first_step=steps[starts].tolist(),
        last_step=steps[last].tolist(),
        min_value=_values_at(values, lowest),
        max_value=_values_at(values, highest),
        first_value=values[starts].tolist(),
        last_value=values[last].tolist(),
        lowest=np.where(lowest >= 0, lowest - starts, -1).tolist(),
        highest=np.where(highest >= 0, highest - starts, -1).tolist(),
        lowest_step=steps[lowest_at].tolist(),
        highest_step=steps[highest_at].tolist(),
        lowest_ts=stamps[lowest_at].tolist(),
        highest_ts=stamps[highest_at].tolist(),
        series_min=_values_at(values, series_lowest),
        series_max=_values_at(values, series_highest),
        latest_step=steps[latest].tolist(),
        latest_ts=stamps[latest].tolist(),
        latest_value=values[latest].tolist(),
    )


def _reduce_in_python(
    appends: MetricAppends, piece_starts: list[int], series_starts: list[int]
) -> Reductions:
    """``_reduce_with_numpy``'s answers, point by point (for small batches)."""
    n = len(appends.values) // 8
    steps = struct.unpack(f"<{n}q", appends.steps)
    stamps = struct.unpack(f"<{n}q", appends.timestamps)
    values = struct.unpack(f"<{n}d", appends.values)
    out = Reductions(*([] for _ in Reductions._fields))
    for a, b in zip(piece_starts, [*piece_starts[1:], n], strict=True):
        part = steps[a:b]
        out.min_step.append(min(part))
        out.max_step.append(max(part))
        out.first_step.append(part[0])
        out.last_step.append(part[-1])
        out.first_value.append(values[a])
        out.last_value.append(values[b - 1])
        for extremes, pick, at, at_step, at_ts in (
            (out.min_value, min, out.lowest, out.lowest_step, out.lowest_ts),
            (out.max_value, max, out.highest, out.highest_step, out.highest_ts),
        ):
            i = _first_extreme(values, a, b, pick)
            extremes.append(math.nan if i < 0 else values[i])
            at.append(i - a if i >= 0 else -1)
            at_step.append(steps[max(i, a)])
            at_ts.append(stamps[max(i, a)])
    piece = 0
    for a, b in zip(series_starts, [*series_starts[1:], n], strict=True):
        # A series' pieces are consecutive: its extremes are theirs.
        first = piece
        while piece < len(piece_starts) and piece_starts[piece] < b:
            piece += 1
        out.series_min.append(_first_pick(out.min_value[first:piece], min))
        out.series_max.append(_first_pick(out.max_value[first:piece], max))
        latest = a
        best = comparable(steps[a], stamps[a], values[a])
        for i in range(a + 1, b):
            key = comparable(steps[i], stamps[i], values[i])
            if key > best:
                best, latest = key, i
        out.latest_step.append(steps[latest])
        out.latest_ts.append(stamps[latest])
        out.latest_value.append(values[latest])
    return out


def _values_at(values: npt.NDArray[np.float64], indexes: npt.NDArray[np.intp]) -> list[float]:
    """``values[i]`` for each index, NaN for -1."""
    return np.where(indexes >= 0, values[np.maximum(indexes, 0)], np.nan).tolist()  # type: ignore[no-any-return]


def _first_pick(values: list[float], pick: Callable[[list[float]], float]) -> float:
    """``min`` or ``max`` of the values that are not NaN (the first of equals, so of ``-0.0``
    and ``0.0`` whichever came first); NaN when all are."""
    kept = [v for v in values if not math.isnan(v)]
    return pick(kept) if kept else math.nan


def _first_extreme(
    values: Sequence[float], a: int, b: int, pick: Callable[[list[float]], float]
) -> int:
    """Index of the first smallest (``min``) or largest (``max``) non-NaN value of
    ``values[a:b]``; -1 when all are NaN. Equal values (``-0.0 == 0.0``) count as one."""
    best = _first_pick(list(values[a:b]), pick)
    if math.isnan(best):
        return -1
    return next(i for i in range(a, b) if values[i] == best)


def layout(
    appends: MetricAppends, states: Sequence[SeriesState], chunk_points: int
) -> MetricWrites:
    """Place the batch's points (``appends``) after each series' stored ``states``."""
    if chunk_points < 1:
        raise ValueError("chunk_points must be at least 1")
    if not appends.series:
        return MetricWrites([], [], [])
    offsets = appends.offsets

    # Pieces: per series, the part that fills its tail chunk, then whole or partial new chunks.
    piece_start: list[int] = []
    piece_series: list[int] = []
    piece_chunk: list[int] = []
    piece_is_tail: list[bool] = []
    new_states: list[tuple[int, int, int]] = []  # chunk_count, tail_count, point_count
    for i, state in enumerate(states):
        start, end = offsets[i], offsets[i + 1]
        chunk_count, tail_count = state.chunk_count, state.tail_count
        room = chunk_points - tail_count if chunk_count else 0
        pos = start
        if room > 0:
            take = min(room, end - pos)
            piece_start.append(pos)
            piece_series.append(i)
            piece_chunk.append(chunk_count - 1)
            piece_is_tail.append(True)
            pos += take
            tail_count += take
        while pos < end:
            piece_start.append(pos)
            piece_series.append(i)
            piece_chunk.append(chunk_count)
            piece_is_tail.append(False)
            take = min(chunk_points, end - pos)
            pos += take
            chunk_count += 1
            tail_count = take
        new_states.append((chunk_count, tail_count, state.point_count + end - start))

    points = len(appends.values) // 8
    small = points <= SMALL_BATCH_POINTS and len(piece_start) <= SMALL_BATCH_PIECES
    reduce = _reduce_in_python if small else _reduce_with_numpy
    r = reduce(appends, piece_start, list(offsets[:-1]))

    tail_fills: list[ChunkPiece] = []
    new_chunks: list[ChunkPiece] = []
    for p, a in enumerate(piece_start):
        b = piece_start[p + 1] if p + 1 < len(piece_start) else points
        has_min, has_max = r.lowest[p] >= 0, r.highest[p] >= 0
        piece = ChunkPiece(
            series_id=states[piece_series[p]].series_id,
            chunk_no=piece_chunk[p],
            n=b - a,
            min_step=r.min_step[p],
            max_step=r.max_step[p],
            first_step=r.first_step[p],
            last_step=r.last_step[p],
            min_value=_nan_to_none(r.min_value[p]),
            max_value=_nan_to_none(r.max_value[p]),
            first_value=r.first_value[p],
            last_value=r.last_value[p],
            steps=appends.steps[a * 8 : b * 8],
            timestamps=appends.timestamps[a * 8 : b * 8],
            vals=appends.values[a * 8 : b * 8],
            min_value_pos=r.lowest[p] if has_min else None,
            max_value_pos=r.highest[p] if has_max else None,
            min_value_step=r.lowest_step[p] if has_min else None,
            max_value_step=r.highest_step[p] if has_max else None,
            min_value_ts=r.lowest_ts[p] if has_min else None,
            max_value_ts=r.highest_ts[p] if has_max else None,
        )
        (tail_fills if piece_is_tail[p] else new_chunks).append(piece)

    out: list[SeriesState] = []
    for i, state in enumerate(states):
        candidate = (r.latest_step[i], r.latest_ts[i], r.latest_value[i])
        current = (
            None
            if state.latest_step is None
            or state.latest_timestamp is None
            or state.latest_value is None
            else (state.latest_step, state.latest_timestamp, state.latest_value)
        )
        newest = candidate if is_newer(candidate, current) else current
        assert newest is not None
        chunk_count, tail_count, point_count = new_states[i]
        out.append(
            SeriesState(
                series_id=state.series_id,
                point_count=point_count,
                chunk_count=chunk_count,
                tail_count=tail_count,
                latest_step=newest[0],
                latest_timestamp=newest[1],
                latest_value=newest[2],
                min_value=_least(state.min_value, _nan_to_none(r.series_min[i])),
                max_value=_greatest(state.max_value, _nan_to_none(r.series_max[i])),
            )
        )
    return MetricWrites(tail_fills, new_chunks, out)


def _least(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _greatest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
