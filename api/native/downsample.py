"""Downsampled metric history: at most N points that keep a curve's shape. Pure numpy, no I/O.

The step range ``[start_step, end_step]`` is cut into buckets; each bucket contributes the
point of its smallest and of its largest value (the first such point in logged order, NaN
ignored), and the first and last points of the range are always kept. The chosen points come
back in logged order, so a chart draws the envelope of the curve: every spike survives,
whatever the zoom. With ``B = (N - 2) // 2`` buckets the answer has at most ``2B + 2 <= N``
points; a range holding at most N points comes back whole.

Reading a 10^6-point series in full costs ~50-110 ms of PostgreSQL time alone, so the stored
chunk summaries do most of the work (``plan_read`` / ``assemble``):

- a chunk whose steps fall inside one bucket contributes only its stored extrema (value,
  position in the chunk, step, timestamp: migration 0004), two points instead of ~1,000;
- bucket edges are snapped to nearby chunk boundaries (within half a bucket), so that for a
  whole-series chart almost no chunk straddles an edge;
- only chunks that straddle an edge, overlap the range partially, hold the range's first or
  last point, or lack extrema (written before 0004) are unpacked.

Replacing a chunk by its min and max points, in logged order, changes no bucket's min or max
and keeps first occurrences first, so ``assemble`` returns exactly what ``select`` returns on
the fully unpacked points with the same edges (a unit test checks this).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runstream.schemas.metrics import column_arrays

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MIN_POINTS = 2
MAX_POINTS = 100_000
"""Bounds of ``?points=N``."""


@dataclass(frozen=True, slots=True)
class Points:
    """Columns of points in logged order."""

    steps: I64
    timestamps: I64
    values: F64

    @classmethod
    def empty(cls) -> Points:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))

    @classmethod
    def from_packed(cls, steps: bytes, timestamps: bytes, values: bytes) -> Points:
        return cls(*column_arrays(steps, timestamps, values))

    def __len__(self) -> int:
        return len(self.values)

    def take(self, index: npt.NDArray[np.intp] | Mask) -> Points:
        return Points(self.steps[index], self.timestamps[index], self.values[index])


def bucket_count(max_points: int) -> int:
    """Buckets for an answer of at most ``max_points``: two points each, plus first and last."""
    return max(0, (max_points - 2) // 2)


def nominal_edges(lo: int, hi: int, buckets: int) -> I64:
    """Inner edges of ``buckets`` equal step ranges over ``[lo, hi]``: bucket ``k`` holds the
    steps ``edges[k-1] <= s < edges[k]`` (``searchsorted(edges, s, "right")``)."""
    if buckets <= 1 or hi <= lo:
        return np.empty(0, np.int64)
    span = hi - lo + 1
    if span < 2**52:
        k = np.arange(1, buckets, dtype=np.float64)
        edges = lo + np.floor(k * span / buckets).astype(np.int64)
    else:  # beyond float64's exact integers: Python ints, one per bucket (not per point)
        edges = np.array([lo + span * k // buckets for k in range(1, buckets)], np.int64)
    return np.unique(edges[edges > lo])


def select(steps: I64, values: F64, edges: I64 | None) -> npt.NDArray[np.intp]:
    """Indices (ascending, i.e. logged order) of the first point, the last point, and each
    bucket's first smallest and first largest non-NaN value (no buckets when ``edges`` is
    None: an answer of 2 or 3 points)."""
    n = len(values)
    if n == 0:
        return np.empty(0, np.intp)
    if edges is None:
        return np.unique(np.array([0, n - 1], np.intp))
    buckets = len(edges) + 1
    index = np.arange(n, dtype=np.intp)
    valid = ~np.isnan(values)
    k = np.searchsorted(edges, steps[valid], side="right")
    v = values[valid]
    iv = index[valid]
    lowest = np.full(buckets, np.inf)
    highest = np.full(buckets, -np.inf)
    np.minimum.at(lowest, k, v)
    np.maximum.at(highest, k, v)
    first_min = np.full(buckets, n, np.intp)
    first_max = np.full(buckets, n, np.intp)
    hit = v == lowest[k]
    np.minimum.at(first_min, k[hit], iv[hit])
    hit = v == highest[k]
    np.minimum.at(first_max, k[hit], iv[hit])
    chosen = np.concatenate(([0, n - 1], first_min, first_max))
    return np.unique(chosen[chosen < n])


def in_range(steps: I64, start_step: int | None, end_step: int | None) -> Mask:
    lo = INT64_MIN if start_step is None else start_step
    hi = INT64_MAX if end_step is None else end_step
    out: Mask = (steps >= lo) & (steps <= hi)
    return out


def downsample(
    points: Points,
    max_points: int,
    start_step: int | None = None,
    end_step: int | None = None,
) -> Points:
    """At most ``max_points`` points of ``points`` within the step range (see module doc)."""
    if start_step is not None or end_step is not None:
        points = points.take(in_range(points.steps, start_step, end_step))
    if len(points) <= max_points:
        return points
    lo, hi = int(points.steps.min()), int(points.steps.max())
    buckets = bucket_count(max_points)
    edges = nominal_edges(lo, hi, buckets) if buckets else None
    return points.take(select(points.steps, points.values, edges))


# -- the chunk-summary path -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkSummaries:
    """Summary columns of a series' chunks in chunk order. NULLs as NaN (values) or -1
    (positions); a chunk with ``min_pos == -1`` and a non-NaN ``min_value`` lacks extrema."""

    n: I64
    min_step: I64
    max_step: I64
    min_value: F64
    max_value: F64
    min_pos: I64
    max_pos: I64
    min_value_step: I64
    max_value_step: I64
    min_value_ts: I64
    max_value_ts: I64

    def __len__(self) -> int:
        return len(self.n)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    edges: I64 | None
    """Inner bucket edges (``select``'s argument)."""
    overlap: Mask
    """Chunks that may hold points of the range."""
    unpack: Mask
    """Chunks whose packed columns ``assemble`` needs."""


def clean_boundaries(min_step: I64, max_step: I64) -> I64:
    """Steps ``b`` that no chunk straddles (no chunk has ``min_step < b <= max_step``),
    among the chunks' ``min_step``s."""
    if len(min_step) < 2:
        return np.empty(0, np.int64)
    order = np.argsort(min_step, kind="stable")
    lows = min_step[order]
    reach = np.maximum.accumulate(max_step[order])
    clean = reach[:-1] < lows[1:]
    return np.unique(lows[1:][clean])


def snap(edges: I64, candidates: I64, lo: int, hi: int, buckets: int) -> I64:
    """Move each edge to the nearest candidate within half a bucket width."""
    if len(edges) == 0 or len(candidates) == 0:
        return edges
    half = (hi - lo + 1) / buckets / 2
    right = np.clip(np.searchsorted(candidates, edges), 0, len(candidates) - 1)
    left = np.clip(right - 1, 0, len(candidates) - 1)
    dl = np.abs(edges.astype(np.float64) - candidates[left].astype(np.float64))
    dr = np.abs(candidates[right].astype(np.float64) - edges.astype(np.float64))
    nearest = np.where(dl <= dr, candidates[left], candidates[right])
    distance = np.minimum(dl, dr)
    snapped = np.where(distance <= half, nearest, edges)
    return np.unique(snapped[(snapped > lo) & (snapped <= hi)])


def plan_read(
    chunks: ChunkSummaries,
    max_points: int,
    start_step: int | None = None,
    end_step: int | None = None,
) -> ReadPlan:
    """Which chunks to unpack, and the bucket edges, from the summaries alone."""
    lo = INT64_MIN if start_step is None else start_step
    hi = INT64_MAX if end_step is None else end_step
    overlap = (chunks.max_step >= lo) & (chunks.min_step <= hi) & (chunks.n > 0)
    if not overlap.any():
        return ReadPlan(None, overlap, overlap.copy())
    if int(chunks.n[overlap].sum()) <= max_points:
        # Possibly returned whole: unpack it all (at most max_points points).
        lo_s = max(lo, int(chunks.min_step[overlap].min()))
        hi_s = min(hi, int(chunks.max_step[overlap].max()))
        buckets = bucket_count(max_points)
        return ReadPlan(
            nominal_edges(lo_s, hi_s, buckets) if buckets else None, overlap, overlap.copy()
        )
    inside = overlap & (chunks.min_step >= lo) & (chunks.max_step <= hi)
    lo_s = max(lo, int(chunks.min_step[overlap].min()))
    hi_s = min(hi, int(chunks.max_step[overlap].max()))
    buckets = bucket_count(max_points)
    edges: I64 | None = None
    straddle = np.zeros(len(chunks), bool)
    if buckets:
        edges = nominal_edges(lo_s, hi_s, buckets)
        if buckets > 1:
            candidates = clean_boundaries(chunks.min_step[overlap], chunks.max_step[overlap])
            edges = snap(edges, candidates, lo_s, hi_s, buckets)
        straddle = np.searchsorted(edges, chunks.min_step, "right") != np.searchsorted(
            edges, chunks.max_step, "right"
        )
    lacks_extrema = (chunks.min_pos < 0) & ~np.isnan(chunks.min_value)
    lacks_extrema |= (chunks.max_pos < 0) & ~np.isnan(chunks.max_value)
    unpack = overlap & (~inside | straddle | lacks_extrema)
    inside_at = np.flatnonzero(inside)
    if len(inside_at):
        # The range's first and last points, with their timestamps, are in these chunks
        # (or in partial chunks before/after them, which are unpacked anyway).
        unpack[inside_at[0]] = True
        unpack[inside_at[-1]] = True
    return ReadPlan(edges, overlap, unpack)


def assemble(
    chunks: ChunkSummaries,
    plan: ReadPlan,
    unpacked: Mapping[int, Points],
    max_points: int,
    start_step: int | None = None,
    end_step: int | None = None,
) -> Points:
    """The downsampled points, from the summaries and the chunks ``plan.unpack`` names
    (``unpacked[i]`` = points of chunk ``i``, the index in ``chunks``)."""
    proxy = plan.overlap & ~plan.unpack
    unpack_at = np.flatnonzero(plan.unpack)
    parts_order: list[I64] = []
    parts_pos: list[I64] = []
    parts: list[Points] = []
    for i in unpack_at.tolist():  # one iteration per unpacked chunk, not per point
        pts = unpacked[i]
        keep = in_range(pts.steps, start_step, end_step)
        parts.append(pts.take(keep))
        parts_order.append(np.full(int(keep.sum()), i, np.int64))
        parts_pos.append(np.flatnonzero(keep).astype(np.int64))
    at = np.flatnonzero(proxy & ~np.isnan(chunks.min_value))
    if len(at):
        for pos, step, ts, value in (
            (chunks.min_pos, chunks.min_value_step, chunks.min_value_ts, chunks.min_value),
            (chunks.max_pos, chunks.max_value_step, chunks.max_value_ts, chunks.max_value),
        ):
            parts.append(Points(step[at], ts[at], value[at]))
            parts_order.append(at.astype(np.int64))
            parts_pos.append(pos[at])
    if not parts:
        return Points.empty()
    order = np.concatenate(parts_order)
    pos = np.concatenate(parts_pos)
    merged = Points(
        np.concatenate([p.steps for p in parts]),
        np.concatenate([p.timestamps for p in parts]),
        np.concatenate([p.values for p in parts]),
    )
    # Logged order; a chunk's min and max at the same position are one point.
    sort = np.lexsort((pos, order))
    order, pos = order[sort], pos[sort]
    first = np.ones(len(sort), bool)
    first[1:] = (order[1:] != order[:-1]) | (pos[1:] != pos[:-1])
    merged = merged.take(sort[first])
    if not proxy.any() and len(merged) <= max_points:
        return merged
    return merged.take(select(merged.steps, merged.values, plan.edges))
