"""Metric history as MLflow's SQL store returns it: pure numpy over the stored columns.

runstream keeps every point in logged order. MLflow's ``metrics`` table instead has one row
per (key, timestamp, step, value, is_nan) of a run — logging the same point twice stores it
once — and its reads sort: ``get-history`` by (timestamp, step, value), the UI's
``get-history-bulk-interval`` by (step, timestamp, value, is_nan) and then samples with
``NTILE``. NaN sorts as its stored value, 0. These functions reproduce exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

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
    order = np.lexsort((_stored_value(points.values), points.steps, points.timestamps))
    return _unique_sorted(points, order)


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
