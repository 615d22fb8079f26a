"""Metric history as MLflow's SQL store returns it: pure numpy over the stored columns.

runstream keeps every point in logged order. MLflow's ``metrics`` table instead has one row
per (key, timestamp, step, value, is_nan) of a run — logging the same point twice stores it
once — and its reads sort: ``get-history`` by (timestamp, step, value), the UI's
``get-history-bulk-interval`` by (step, timestamp, value, is_nan) and then samples with
``NTILE``. NaN sorts as its stored value, 0. These functions reproduce exactly that.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from runstream.api.views import JsonDict, json_float

Int64s = npt.NDArray[np.int64]
Float64s = npt.NDArray[np.float64]
_INT64 = np.dtype("<i8")
_FLOAT64 = np.dtype("<f8")


@dataclass(frozen=True, slots=True)
class Points:
    steps: Int64s
    timestamps: Int64s
    values: Float64s

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def from_packed(cls, steps: bytes, timestamps: bytes, values: bytes) -> Points:
        """Packed little-endian columns (int64, int64, float64), as chunks store them."""
        return cls(
            np.frombuffer(steps, dtype=_INT64).astype(np.int64),
            np.frombuffer(timestamps, dtype=_INT64).astype(np.int64),
            np.frombuffer(values, dtype=_FLOAT64).astype(np.float64),
        )

    @classmethod
    def from_lists(cls, steps: list[int], timestamps: list[int], values: list[float]) -> Points:
        return cls(
            np.array(steps, dtype=np.int64),
            np.array(timestamps, dtype=np.int64),
            np.array(values, dtype=np.float64),
        )

    def take(self, index: Any) -> Points:
        return Points(self.steps[index], self.timestamps[index], self.values[index])


def _stored_value(values: Float64s) -> Float64s:
    """The value column as MLflow's table holds it: NaN as 0 (with ``is_nan`` set)."""
    return np.where(np.isnan(values), 0.0, values)


def _unique_sorted(points: Points, order: Int64s) -> Points:
    """``points`` in ``order``, keeping the first of each run of identical rows."""
    p = points.take(order)
    if len(p) < 2:
        return p
    stored = _stored_value(p.values)
    nan = np.isnan(p.values)
    same = (
        (p.steps[1:] == p.steps[:-1])
        & (p.timestamps[1:] == p.timestamps[:-1])
        & (stored[1:] == stored[:-1])
        & (nan[1:] == nan[:-1])
    )
    keep = np.ones(len(p), dtype=bool)
    keep[1:] = ~same
    return p.take(keep)


def history_order(points: Points) -> Points:
    """``get-history``'s order: (timestamp, step, value), each stored point once."""
    stored = _stored_value(points.values)
    if _is_sorted(points.timestamps, points.steps, stored):
        # Points are logged as time goes by, so the stored order usually is MLflow's order
        # already: an O(n) check spares the O(n log n) sort of a million-point series.
        order = np.arange(len(points), dtype=np.int64)
    else:
        order = np.lexsort((stored, points.steps, points.timestamps))
    return _unique_sorted(points, order)


def _is_sorted(primary: Int64s, secondary: Int64s, tertiary: Float64s) -> bool:
    """Whether rows are in ascending (primary, secondary, tertiary) order."""
    step = np.diff(primary)
    if (step < 0).any():
        return False
    tied = step == 0
    if not tied.any():
        return True
    step2 = np.diff(secondary)
    if (step2[tied] < 0).any():
        return False
    tied &= step2 == 0
    return not tied.any() or not (np.diff(tertiary)[tied] < 0).any()


class OrderedHistories:
    """Series in ``get-history`` order, kept for the pages that follow the first.

    MLflow's client reads a history 25,000 points a page; without this, every page of a
    million-point series would load and order the whole series again. A series is only
    appended to, so an entry is valid while the series' point count is unchanged. Bounded by
    total points held; least recently used first out.
    """

    def __init__(self, max_points: int = 4_000_000) -> None:
        self.max_points = max_points
        self._held = 0
        self._entries: OrderedDict[tuple[str, str], tuple[int, Points]] = OrderedDict()

    def get(self, run_id: str, key: str, point_count: int) -> Points | None:
        entry = self._entries.get((run_id, key))
        if entry is None or entry[0] != point_count:
            return None
        self._entries.move_to_end((run_id, key))
        return entry[1]

    def put(self, run_id: str, key: str, point_count: int, ordered: Points) -> None:
        if len(ordered) > self.max_points:
            return
        old = self._entries.pop((run_id, key), None)
        if old is not None:
            self._held -= len(old[1])
        self._entries[(run_id, key)] = (point_count, ordered)
        self._held += len(ordered)
        while self._held > self.max_points:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._held -= len(evicted)


def step_order(points: Points) -> Points:
    """``get-history-bulk-interval``'s order: (step, timestamp, value, is_nan)."""
    values = points.values
    order = np.lexsort((np.isnan(values), _stored_value(values), points.timestamps, points.steps))
    return _unique_sorted(points, order)


def page(points: Points, offset: int, max_results: int | None) -> tuple[Points, int | None]:
    """One page and the offset of the next (None on the last page), as MLflow pages history."""
    if max_results is None:
        return points.take(slice(offset, None)), None
    end = offset + max_results
    next_offset = end if len(points) > end else None
    return points.take(slice(offset, end)), next_offset


def sample(
    points: Points, max_results: int, start_step: int | None = None, end_step: int | None = None
) -> Points:
    """MLflow's bulk-interval sampling: ``points`` in step order, optionally within
    [start_step, end_step]; the first point of each of ``max_results`` NTILE buckets, and the
    last point always (replacing the last sample when there are already ``max_results``)."""
    ordered = step_order(points)
    if start_step is not None and end_step is not None:
        inside = (ordered.steps >= start_step) & (ordered.steps <= end_step)
        ordered = ordered.take(inside)
    n = len(ordered)
    if n == 0:
        return ordered
    max_results = max(1, max_results)
    # NTILE(m) over n rows: the first n % m buckets hold one row more than the others.
    size, extra = divmod(n, max_results)
    buckets = np.arange(min(max_results, n), dtype=np.int64)
    firsts = buckets * size + np.minimum(buckets, extra)
    if firsts[-1] != n - 1:
        if len(firsts) >= max_results:
            firsts[-1] = n - 1
        else:
            firsts = np.append(firsts, n - 1)
    return ordered.take(firsts)


def metrics_json(key: str, points: Points, run_id: str | None = None) -> list[JsonDict]:
    """MLflow ``Metric`` (or ``MetricWithRunId``) JSON objects; NaN/±inf as protobuf strings."""
    steps = points.steps.tolist()
    stamps = points.timestamps.tolist()
    values = [json_float(v) for v in points.values.tolist()]
    if run_id is None:
        return [
            {"key": key, "value": v, "timestamp": t, "step": s}
            for s, t, v in zip(steps, stamps, values, strict=True)
        ]
    return [
        {"key": key, "value": v, "timestamp": t, "step": s, "run_id": run_id}
        for s, t, v in zip(steps, stamps, values, strict=True)
    ]


_NON_FINITE = {"NaN": b'"NaN"', "Infinity": b'"Infinity"', "-Infinity": b'"-Infinity"'}


def metrics_json_array(key: str, points: Points) -> bytes:
    """``orjson.dumps(metrics_json(key, points))``, built without a dict per point.

    The three columns are interleaved into one list (slice assignment), serialized by one
    orjson call and split into their numbers, which fill one ``%s`` template repeated per
    point: ~30% less CPU than 20,000 dicts built and serialized one by one.
    """
    n = len(points)
    if n == 0:
        return b"[]"
    flat: list[float | int] = [0] * (3 * n)
    flat[0::3] = points.values.tolist()
    flat[1::3] = points.timestamps.tolist()
    flat[2::3] = points.steps.tolist()
    numbers = orjson.dumps(flat)[1:-1].split(b",")
    for i in np.flatnonzero(~np.isfinite(points.values)).tolist():
        # orjson writes null for NaN/inf; protobuf's JSON mapping writes these strings.
        numbers[3 * i] = _NON_FINITE[str(json_float(float(points.values[i])))]
    head = b'{"key":' + orjson.dumps(key).replace(b"%", b"%%")
    template = head + b',"value":%s,"timestamp":%s,"step":%s},'
    return b"[" + (template * n)[:-1] % tuple(numbers) + b"]"
