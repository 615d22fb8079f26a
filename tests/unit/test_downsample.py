"""Downsampling: pure functions on plain arrays, and the chunk-summary path against them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runstream.api.native import downsample as ds
from runstream.projector.chunks import SeriesState, layout
from runstream.projector.plan import MetricAppends


def pts(steps: list[int] | np.ndarray, values: list[float] | np.ndarray) -> ds.Points:
    s = np.asarray(steps, np.int64)
    return ds.Points(s, s * 10 + 7, np.asarray(values, np.float64))


def as_tuples(p: ds.Points) -> list[tuple[int, int, float]]:
    return list(zip(p.steps.tolist(), p.timestamps.tolist(), p.values.tolist(), strict=True))


def test_shorter_than_n_returned_whole() -> None:
    p = pts([0, 1, 1, 5], [1.0, math.nan, 2.0, -1.0])
    out = ds.downsample(p, 10)
    assert out.steps.tolist() == [0, 1, 1, 5]
    assert np.array_equal(out.values, p.values, equal_nan=True)


def test_bound_first_last_and_extrema() -> None:
    rng = np.random.default_rng(1)
    n = 100_000
    values = rng.standard_normal(n)
    values[12_345] = 50.0
    values[67_890] = -50.0
    p = pts(np.arange(n), values)
    for limit in (2, 3, 4, 5, 100, 1000, 1001):
        out = ds.downsample(p, limit)
        assert 2 <= len(out) <= limit
        assert as_tuples(out)[0] == as_tuples(p)[0]
        assert as_tuples(out)[-1] == as_tuples(p)[-1]
        assert np.all(np.diff(out.steps) > 0)  # logged order
        if limit >= 4:
            assert 50.0 in out.values.tolist() and -50.0 in out.values.tolist()


def test_each_bucket_keeps_its_min_and_max() -> None:
    rng = np.random.default_rng(2)
    steps = np.arange(1000)
    values = rng.standard_normal(1000)
    out = ds.downsample(pts(steps, values), 22)  # 10 buckets of 100 steps
    for b in range(10):
        inside = values[b * 100 : (b + 1) * 100]
        kept = out.values[(out.steps >= b * 100) & (out.steps < (b + 1) * 100)]
        assert inside.min() in kept and inside.max() in kept


def test_step_range_zooms() -> None:
    p = pts(np.arange(10_000), np.sin(np.arange(10_000) / 100))
    out = ds.downsample(p, 50, start_step=2000, end_step=2999)
    assert out.steps[0] == 2000 and out.steps[-1] == 2999
    assert len(out) <= 50
    whole = ds.downsample(p, 5000, start_step=100, end_step=199)
    assert whole.steps.tolist() == list(range(100, 200))
    assert len(ds.downsample(p, 50, start_step=20_000)) == 0


def test_duplicate_steps_keep_logged_order_and_first_occurrence() -> None:
    steps = [0, 1, 1, 1, 2, 2, 3, 3]
    values = [0.0, 5.0, -5.0, 5.0, 0.0, -5.0, 1.0, 1.0]
    p = ds.Points(
        np.array(steps, np.int64), np.arange(8, dtype=np.int64), np.array(values, np.float64)
    )
    out = ds.downsample(p, 4)  # one bucket: first, last, min, max
    assert out.timestamps.tolist() == [0, 1, 2, 7]  # first 5.0 and first -5.0, in order


def test_nan_values_are_ignored_by_buckets_but_first_last_exact() -> None:
    values = np.array([math.nan, 1.0, math.nan, -3.0, 2.0, math.nan] * 100)
    p = pts(np.arange(600), values)
    out = ds.downsample(p, 10)
    assert math.isnan(out.values[0]) and math.isnan(out.values[-1])
    inner = out.values[1:-1]
    assert not np.isnan(inner).any()
    assert -3.0 in inner and 2.0 in inner
    all_nan = ds.downsample(pts(np.arange(100), np.full(100, math.nan)), 10)
    assert len(all_nan) == 2


def test_extreme_steps_do_not_overflow() -> None:
    steps = np.array([ds.INT64_MIN, -1, 0, 1, ds.INT64_MAX] * 3, np.int64)
    out = ds.downsample(pts(np.sort(steps), np.arange(15.0)), 6)
    assert len(out) <= 6
    assert out.steps[0] == ds.INT64_MIN and out.steps[-1] == ds.INT64_MAX


# -- the chunk-summary path equals the reference on the unpacked points ------------------------


def chunked(
    steps: np.ndarray, values: np.ndarray, chunk_points: int
) -> tuple[ds.ChunkSummaries, list[ds.Points]]:
    """Chunks and summaries exactly as the projector writes them (``chunks.layout``)."""
    stamps = (steps * 3 + 1).astype("<i8")
    appends = MetricAppends(
        (("r", "k"),),
        (0, len(values)),
        steps.astype("<i8").tobytes(),
        stamps.tobytes(),
        values.astype("<f8").tobytes(),
    )
    writes = layout(appends, [SeriesState(1)], chunk_points)
    pieces = writes.new_chunks

    def col(name: str, null: float) -> np.ndarray:
        return np.array([null if getattr(c, name) is None else getattr(c, name) for c in pieces])

    summ = ds.ChunkSummaries(
        n=col("n", 0).astype(np.int64),
        min_step=col("min_step", 0).astype(np.int64),
        max_step=col("max_step", 0).astype(np.int64),
        min_value=col("min_value", math.nan).astype(np.float64),
        max_value=col("max_value", math.nan).astype(np.float64),
        min_pos=col("min_value_pos", -1).astype(np.int64),
        max_pos=col("max_value_pos", -1).astype(np.int64),
        min_value_step=col("min_value_step", 0).astype(np.int64),
        max_value_step=col("max_value_step", 0).astype(np.int64),
        min_value_ts=col("min_value_ts", 0).astype(np.int64),
        max_value_ts=col("max_value_ts", 0).astype(np.int64),
    )
    return summ, [ds.Points.from_packed(c.steps, c.timestamps, c.vals) for c in pieces]


def via_summaries(
    summ: ds.ChunkSummaries,
    chunks: list[ds.Points],
    limit: int,
    lo: int | None,
    hi: int | None,
) -> tuple[ds.Points, ds.ReadPlan]:
    plan = ds.plan_read(summ, limit, lo, hi)
    unpacked = {i: chunks[i] for i in np.flatnonzero(plan.unpack).tolist()}
    return ds.assemble(summ, plan, unpacked, limit, lo, hi), plan


def reference(
    chunks: list[ds.Points], plan: ds.ReadPlan, limit: int, lo: int | None, hi: int | None
) -> ds.Points:
    full = ds.Points(
        np.concatenate([c.steps for c in chunks]),
        np.concatenate([c.timestamps for c in chunks]),
        np.concatenate([c.values for c in chunks]),
    )
    full = full.take(ds.in_range(full.steps, lo, hi))
    if len(full) <= limit:
        return full
    return full.take(ds.select(full.steps, full.values, plan.edges))


@pytest.mark.parametrize("seed", range(12))
def test_summary_path_equals_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30_000))
    kind = seed % 4
    if kind == 0:
        steps = np.arange(n)
    elif kind == 1:
        steps = np.repeat(np.arange(n // 3 + 1), 3)[:n]  # duplicate steps
    elif kind == 2:
        steps = rng.integers(0, n, n)  # out of order
    else:
        steps = np.cumsum(rng.integers(0, 5, n))  # gaps
    values = np.round(rng.standard_normal(n), 1)  # ties
    values[rng.random(n) < 0.05] = math.nan
    values[: min(n, 600)] = math.nan if seed % 3 == 0 else values[: min(n, 600)]
    summ, chunks = chunked(steps.astype(np.int64), values, int(rng.choice([7, 100, 1024])))
    for limit in (2, 9, 100, 1000):
        for lo, hi in ((None, None), (n // 4, n // 2), (n // 3, None), (-5, 3)):
            got, plan = via_summaries(summ, chunks, limit, lo, hi)
            want = reference(chunks, plan, limit, lo, hi)
            assert len(got) <= max(limit, 0)
            assert got.steps.tolist() == want.steps.tolist()
            assert got.timestamps.tolist() == want.timestamps.tolist()
            assert np.array_equal(got.values, want.values, equal_nan=True)


def test_whole_series_chart_unpacks_few_chunks() -> None:
    n = 1_000_000
    steps = np.arange(n, dtype=np.int64)
    values = np.cumsum(np.random.default_rng(3).standard_normal(n))
    summ, chunks = chunked(steps, values, 1024)
    got, plan = via_summaries(summ, chunks, 1000, None, None)
    assert int(plan.unpack.sum()) <= 4
    assert len(got) <= 1000
    assert got.steps[0] == 0 and got.steps[-1] == n - 1
    assert values.max() in got.values and values.min() in got.values
