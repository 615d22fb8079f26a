"""Chunk layout, summaries and MLflow's latest-value rule: pure, plain values."""

from __future__ import annotations

import math
import struct
import sys
from dataclasses import fields, is_dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runstream.projector.chunks import MetricWrites, SeriesState, comparable, is_newer, layout
from runstream.projector.plan import MetricAppends
from runstream.schemas.metrics import pack_float64, pack_int64, unpack_float64, unpack_int64

INF = math.inf
NAN = math.nan


def appends(*series: tuple[str, list[int], list[int], list[float]]) -> MetricAppends:
    offsets = [0]
    for _, steps, _, _ in series:
        offsets.append(offsets[-1] + len(steps))
    return MetricAppends(
        series=tuple(("r", key) for key, *_ in series),
        offsets=tuple(offsets),
        steps=b"".join(pack_int64(s) for _, s, _, _ in series),
        timestamps=b"".join(pack_int64(t) for _, _, t, _ in series),
        values=b"".join(pack_float64(v) for *_, v in series),
    )


def one(
    steps: list[int], stamps: list[int] | None = None, values: list[float] | None = None
) -> MetricAppends:
    stamps = stamps if stamps is not None else [0] * len(steps)
    values = values if values is not None else [float(s) for s in steps]
    return appends(("k", steps, stamps, values))


def latest(
    values: list[float], steps: list[int], stamps: list[int], state: SeriesState | None = None
) -> tuple[int, int, float]:
    w = layout(one(steps, stamps, values), [state or SeriesState(1)], 4)
    s = w.series[0]
    assert s.latest_step is not None and s.latest_timestamp is not None
    assert s.latest_value is not None
    return (s.latest_step, s.latest_timestamp, s.latest_value)


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


# -- latest value: MLflow's _update_latest_metrics_if_necessary --------------------------------


def test_latest_is_greatest_step_then_timestamp_then_value() -> None:
    assert latest([1.0, 2.0, 3.0], [5, 7, 6], [0, 0, 9]) == (7, 0, 2.0)
    assert latest([1.0, 2.0, 3.0], [5, 5, 5], [3, 9, 4]) == (5, 9, 2.0)
    assert latest([1.0, 3.0, 2.0], [5, 5, 5], [9, 9, 9]) == (5, 9, 3.0)


def test_latest_tie_keeps_the_first_logged() -> None:
    # -0.0 == 0.0: the second does not replace the first.
    _, _, v = latest([0.0, -0.0], [1, 1], [2, 2])
    assert bits(v) == bits(0.0)
    _, _, v = latest([-0.0, 0.0], [1, 1], [2, 2])
    assert bits(v) == bits(-0.0)


def test_latest_nan_compares_as_zero_and_inf_as_max_float() -> None:
    # NaN counts as 0: it loses to a positive value at the same step and timestamp...
    assert latest([NAN, 1.0], [1, 1], [1, 1]) == (1, 1, 1.0)
    # ...beats a negative one, and ties with 0.0 (first logged wins).
    assert math.isnan(latest([-1.0, NAN], [1, 1], [1, 1])[2])
    assert latest([0.0, NAN], [1, 1], [1, 1])[2] == 0.0
    assert math.isnan(latest([NAN, 0.0], [1, 1], [1, 1])[2])
    # +inf is sanitised to max float, so it ties with max float: first logged wins.
    big = sys.float_info.max
    assert latest([big, INF], [1, 1], [1, 1])[2] == big
    assert latest([INF, big], [1, 1], [1, 1])[2] == INF
    assert latest([-INF, -big], [1, 1], [1, 1])[2] == -INF


def test_latest_against_stored_state() -> None:
    stored = SeriesState(1, 3, 1, 3, latest_step=10, latest_timestamp=5, latest_value=NAN)
    # (10, 5, 0.0) ties with the stored NaN (=0): stored stays.
    assert math.isnan(latest([0.0], [10], [5], stored)[2])
    assert latest([0.1], [10], [5], stored) == (10, 5, 0.1)
    assert math.isnan(latest([99.0], [9], [99], stored)[2])


def test_comparable_and_is_newer() -> None:
    assert comparable(1, 2, NAN) == (1, 2, 0.0)
    assert comparable(1, 2, -INF) == (1, 2, -sys.float_info.max)
    assert is_newer((1, 1, 1.0), None)
    assert not is_newer((1, 1, 1.0), (1, 1, 1.0))
    assert is_newer((2, 0, -5.0), (1, 9, 9.0))


# -- chunk layout ---------------------------------------------------------------------------


def test_new_series_splits_at_the_chunk_boundary() -> None:
    w = layout(one(list(range(9))), [SeriesState(7)], 4)
    assert w.tail_fills == []
    assert [(c.chunk_no, c.n) for c in w.new_chunks] == [(0, 4), (1, 4), (2, 1)]
    assert [list(unpack_int64(c.steps)) for c in w.new_chunks] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8],
    ]
    (s,) = w.series
    assert (s.point_count, s.chunk_count, s.tail_count) == (9, 3, 1)
    assert (s.min_value, s.max_value) == (0.0, 8.0)


def test_exactly_full_chunks() -> None:
    w = layout(one(list(range(8))), [SeriesState(7)], 4)
    assert [(c.chunk_no, c.n) for c in w.new_chunks] == [(0, 4), (1, 4)]
    assert (w.series[0].chunk_count, w.series[0].tail_count) == (2, 4)
    # A full tail gets no fill: the next points start chunk 2.
    w2 = layout(one([8]), [w.series[0]], 4)
    assert w2.tail_fills == []
    assert [(c.chunk_no, c.n) for c in w2.new_chunks] == [(2, 1)]


def test_tail_is_filled_before_new_chunks() -> None:
    state = SeriesState(
        7,
        6,
        2,
        2,
        latest_step=5,
        latest_timestamp=0,
        latest_value=5.0,
        min_value=0.0,
        max_value=5.0,
    )
    w = layout(one([6, 7, 8, 9, 10]), [state], 4)
    (fill,) = w.tail_fills
    assert (fill.series_id, fill.chunk_no, fill.n) == (7, 1, 2)
    assert list(unpack_int64(fill.steps)) == [6, 7]
    assert [(c.chunk_no, c.n) for c in w.new_chunks] == [(2, 3)]
    s = w.series[0]
    assert (s.point_count, s.chunk_count, s.tail_count) == (11, 3, 3)
    assert (s.latest_step, s.min_value, s.max_value) == (10, 0.0, 10.0)


def test_fill_smaller_than_room() -> None:
    state = SeriesState(7, point_count=1, chunk_count=1, tail_count=1)
    w = layout(one([1, 2]), [state], 4)
    assert [(f.chunk_no, f.n) for f in w.tail_fills] == [(0, 2)]
    assert w.new_chunks == []
    assert (w.series[0].chunk_count, w.series[0].tail_count) == (1, 3)


def test_summaries_ignore_nan_and_keep_exact_bits() -> None:
    payload = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
    values = [NAN, -0.0, INF, payload, -INF, NAN, NAN, NAN]
    steps = [2**63 - 1, -(2**63), 0, 5, 3, 1, 1, 1]
    stamps = [1, 2, 3, 4, 5, 6, 7, 8]
    w = layout(one(steps, stamps, values), [SeriesState(1)], 4)
    a, b = w.new_chunks
    assert (a.min_step, a.max_step, a.first_step, a.last_step) == (
        -(2**63),
        2**63 - 1,
        2**63 - 1,
        5,
    )
    assert (a.min_value, a.max_value) == (-0.0, INF)
    assert math.isnan(a.first_value) and math.isnan(a.last_value)
    assert (b.min_value, b.max_value) == (-INF, -INF)
    assert a.vals + b.vals == pack_float64(values)
    assert a.timestamps + b.timestamps == pack_int64(stamps)
    s = w.series[0]
    assert (s.min_value, s.max_value) == (-INF, INF)
    assert s.latest_step == 2**63 - 1


def test_all_nan_chunk_has_null_min_max() -> None:
    w = layout(one([1, 2], [0, 0], [NAN, NAN]), [SeriesState(1)], 4)
    (c,) = w.new_chunks
    assert c.min_value is None and c.max_value is None
    assert w.series[0].min_value is None and w.series[0].max_value is None
    assert math.isnan(w.series[0].latest_value or 0.0)


def test_many_series_at_once() -> None:
    a = appends(
        ("a", [1, 2, 3], [0, 0, 0], [3.0, 1.0, 2.0]),
        ("b", [9], [0], [NAN]),
        ("c", list(range(10)), [0] * 10, [float(i) for i in range(10)]),
    )
    states = [SeriesState(1, 3, 1, 3), SeriesState(2), SeriesState(3, 4, 1, 4)]
    w = layout(a, states, 4)
    assert [(f.series_id, f.chunk_no, f.n) for f in w.tail_fills] == [(1, 0, 1)]
    assert [(c.series_id, c.chunk_no, c.n) for c in w.new_chunks] == [
        (1, 1, 2),
        (2, 0, 1),
        (3, 1, 4),
        (3, 2, 4),
        (3, 3, 2),
    ]
    assert [(s.point_count, s.chunk_count, s.tail_count) for s in w.series] == [
        (6, 2, 2),
        (1, 1, 1),
        (14, 4, 2),
    ]
    assert [s.latest_step for s in w.series] == [3, 9, 9]
    assert list(unpack_float64(w.new_chunks[0].vals)) == [1.0, 2.0]


def test_chunk_points_must_be_positive() -> None:
    with pytest.raises(ValueError):
        layout(one([1]), [SeriesState(1)], 0)


# -- small batches: the point-by-point reduction answers as numpy's ----------------------------

_values = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, INF, -INF, NAN, sys.float_info.max]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_series = st.lists(
    st.lists(st.tuples(st.integers(-3, 3), st.integers(-2, 2), _values), min_size=1, max_size=9),
    min_size=1,
    max_size=4,
)


def _plain(w: MetricWrites) -> tuple[object, ...]:
    """``w`` with every float as its bits, so NaN compares equal to itself."""

    def flat(x: object) -> object:
        if isinstance(x, float):
            return bits(x)
        if is_dataclass(x) and not isinstance(x, type):
            return tuple(flat(getattr(x, f.name)) for f in fields(x))
        return x

    return tuple(tuple(flat(x) for x in part) for part in (w.tail_fills, w.new_chunks, w.series))


@settings(max_examples=300, deadline=None)
@given(_series, st.lists(st.integers(0, 5), min_size=4, max_size=4), st.integers(1, 4))
def test_small_batches_reduce_in_python_as_numpy_does(
    series: list[list[tuple[int, int, float]]], tails: list[int], chunk_points: int
) -> None:
    batch = appends(
        *(
            (f"k{i}", [p[0] for p in s], [p[1] for p in s], [p[2] for p in s])
            for i, s in enumerate(series)
        )
    )
    states = [
        SeriesState(
            i + 1,
            point_count=tails[i],
            chunk_count=1 if tails[i] else 0,
            tail_count=min(tails[i], chunk_points),
            latest_step=0 if tails[i] else None,
            latest_timestamp=0 if tails[i] else None,
            latest_value=0.0 if tails[i] else None,
        )
        for i in range(len(series))
    ]
    import runstream.projector.chunks as chunks

    limits = chunks.SMALL_BATCH_POINTS, chunks.SMALL_BATCH_PIECES
    try:
        chunks.SMALL_BATCH_POINTS, chunks.SMALL_BATCH_PIECES = 10**6, 10**6
        in_python = layout(batch, states, chunk_points)
        chunks.SMALL_BATCH_POINTS = 0
        with_numpy = layout(batch, states, chunk_points)
    finally:
        chunks.SMALL_BATCH_POINTS, chunks.SMALL_BATCH_PIECES = limits
    assert _plain(in_python) == _plain(with_numpy)
