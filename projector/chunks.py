"""Where a batch's metric points land, with summaries: pure numpy over packed columns.

A series' points live in chunks of at most ``chunk_points`` points, numbered from 0 in logged
order. New points first fill the series' last chunk (its *tail*), then go to new chunks.
``layout`` takes the stored state of each series plus the batch's points and returns the tail
fills, the new chunks and the new series state; it never loops over points in Python (one
vectorised pass per column over the whole batch, ``reduceat`` per chunk piece or series).

The latest value follows MLflow's ``_update_latest_metrics_if_necessary``: a point replaces
the latest one only when ``(step, timestamp, value)`` is strictly greater, where the value is
compared as MLflow stores it (NaN as 0, ±inf as ±max float). Ties keep the earlier point.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

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


def layout(
    appends: MetricAppends, states: Sequence[SeriesState], chunk_points: int
) -> MetricWrites:
    """Place the batch's points (``appends``) after each series' stored ``states``."""
    if chunk_points < 1:
        raise ValueError("chunk_points must be at least 1")
    if not appends.series:
        return MetricWrites([], [], [])
    steps = np.frombuffer(appends.steps, dtype=_I8)
    stamps = np.frombuffer(appends.timestamps, dtype=_I8)
    values = np.frombuffer(appends.values, dtype=_F8)
    offsets = appends.offsets
    series_starts = np.asarray(offsets[:-1], dtype=np.intp)

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

    starts = np.asarray(piece_start, dtype=np.intp)
    ends = np.append(starts[1:], len(values))
    last = ends - 1
    piece_min_step = np.minimum.reduceat(steps, starts).tolist()
    piece_max_step = np.maximum.reduceat(steps, starts).tolist()
    piece_min_value = np.fmin.reduceat(values, starts).tolist()
    piece_max_value = np.fmax.reduceat(values, starts).tolist()
    first_steps = steps[starts].tolist()
    last_steps = steps[last].tolist()
    first_values = values[starts].tolist()
    last_values = values[last].tolist()
    ends_list = ends.tolist()
    lowest = extreme_indexes(values, starts, largest=False)
    highest = extreme_indexes(values, starts, largest=True)
    lowest_at = np.maximum(lowest, 0)
    highest_at = np.maximum(highest, 0)
    extrema = [
        (lowest - starts).tolist(),
        (highest - starts).tolist(),
        steps[lowest_at].tolist(),
        steps[highest_at].tolist(),
        stamps[lowest_at].tolist(),
        stamps[highest_at].tolist(),
    ]
    has_min = (lowest >= 0).tolist()
    has_max = (highest >= 0).tolist()

    tail_fills: list[ChunkPiece] = []
    new_chunks: list[ChunkPiece] = []
    for p, a in enumerate(piece_start):
        b = ends_list[p]
        piece = ChunkPiece(
            series_id=states[piece_series[p]].series_id,
            chunk_no=piece_chunk[p],
            n=b - a,
            min_step=piece_min_step[p],
            max_step=piece_max_step[p],
            first_step=first_steps[p],
            last_step=last_steps[p],
            min_value=_nan_to_none(piece_min_value[p]),
            max_value=_nan_to_none(piece_max_value[p]),
            first_value=first_values[p],
            last_value=last_values[p],
            steps=appends.steps[a * 8 : b * 8],
            timestamps=appends.timestamps[a * 8 : b * 8],
            vals=appends.values[a * 8 : b * 8],
            min_value_pos=extrema[0][p] if has_min[p] else None,
            max_value_pos=extrema[1][p] if has_max[p] else None,
            min_value_step=extrema[2][p] if has_min[p] else None,
            max_value_step=extrema[3][p] if has_max[p] else None,
            min_value_ts=extrema[4][p] if has_min[p] else None,
            max_value_ts=extrema[5][p] if has_max[p] else None,
        )
        (tail_fills if piece_is_tail[p] else new_chunks).append(piece)

    series_min = np.fmin.reduceat(values, series_starts).tolist()
    series_max = np.fmax.reduceat(values, series_starts).tolist()
    latest = latest_indexes(steps, stamps, values, series_starts)
    latest_steps = steps[latest].tolist()
    latest_stamps = stamps[latest].tolist()
    latest_values = values[latest].tolist()

    out: list[SeriesState] = []
    for i, state in enumerate(states):
        candidate = (latest_steps[i], latest_stamps[i], latest_values[i])
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
                min_value=_least(state.min_value, _nan_to_none(series_min[i])),
                max_value=_greatest(state.max_value, _nan_to_none(series_max[i])),
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
