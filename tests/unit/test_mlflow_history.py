"""History ordering, paging and sampling as MLflow's SQL store does them."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest

from runstream.api.mlflow import history as mlflow_history
from runstream.api.mlflow.history import (
    Points,
    history_order,
    metrics_json,
    metrics_json_array,
    page,
    sample,
    step_order,
)


def triples(points: Points) -> list[tuple[int, int, float]]:
    return list(
        zip(points.steps.tolist(), points.timestamps.tolist(), points.values.tolist(), strict=True)
    )


def ntile_reference(n: int, buckets: int) -> list[int]:
    """First row index of each bucket of SQL's NTILE, computed row by row."""
    firsts, seen = [], set()
    size, extra = divmod(n, buckets)
    row = 0
    for bucket in range(buckets):
        count = size + (1 if bucket < extra else 0)
        if count and bucket not in seen:
            firsts.append(row)
            seen.add(bucket)
        row += count
    return firsts


def test_history_orders_by_timestamp_step_value_and_drops_repeated_points() -> None:
    points = Points.from_lists([2, 1, 1, 1, 0], [10, 10, 10, 10, 11], [0.5, 0.3, 0.1, 0.3, 9.0])
    assert triples(history_order(points)) == [
        (1, 10, 0.1),
        (1, 10, 0.3),
        (2, 10, 0.5),
        (0, 11, 9.0),
    ]


def test_nan_sorts_as_zero_and_is_kept_once() -> None:
    points = Points.from_lists([0, 0, 0, 0], [1, 1, 1, 1], [math.nan, 0.5, math.nan, -1.0])
    got = history_order(points)
    assert got.values[0] == -1.0 and math.isnan(got.values[1]) and got.values[2] == 0.5
    assert len(got) == 3


def test_pages() -> None:
    points = Points.from_lists(list(range(7)), list(range(7)), [0.0] * 7)
    first, next_offset = page(points, 0, 3)
    assert first.steps.tolist() == [0, 1, 2] and next_offset == 3
    last, next_offset = page(points, 6, 3)
    assert last.steps.tolist() == [6] and next_offset is None
    everything, next_offset = page(points, 0, None)
    assert len(everything) == 7 and next_offset is None


def test_sampling_matches_ntile_plus_the_last_point() -> None:
    for n in (1, 2, 5, 7, 100, 101, 2501):
        for m in (1, 2, 3, 10, 2500):
            steps = list(range(n))
            got = sample(Points.from_lists(steps, steps, [1.0] * n), m).steps.tolist()
            expected = ntile_reference(n, min(m, n))
            if expected[-1] != n - 1:
                if len(expected) >= m:
                    expected[-1] = n - 1
                else:
                    expected.append(n - 1)
            assert got == expected, (n, m)


def test_sampling_orders_by_step_and_clips_to_the_range() -> None:
    points = Points.from_lists([5, 1, 3, 9], [1, 2, 3, 4], [0.0, 1.0, 2.0, 3.0])
    assert step_order(points).steps.tolist() == [1, 3, 5, 9]
    assert sample(points, 10, 2, 6).steps.tolist() == [3, 5]
    assert len(sample(points, 10, 20, 30)) == 0


def test_metric_json_writes_non_finite_values_as_protobuf_does() -> None:
    points = Points(
        np.array([0, 1], dtype=np.int64),
        np.array([5, 6], dtype=np.int64),
        np.array([math.nan, math.inf]),
    )
    assert metrics_json("k", points, "r") == [
        {"key": "k", "value": "NaN", "timestamp": 5, "step": 0, "run_id": "r"},
        {"key": "k", "value": "Infinity", "timestamp": 6, "step": 1, "run_id": "r"},
    ]


def _reference_order(points: Points) -> Points:
    """MLflow's order by a plain sort of (timestamp, step, stored value) tuples."""
    rows = sorted(
        zip(points.timestamps, points.steps, points.values, strict=True),
        key=lambda r: (r[0], r[1], 0.0 if np.isnan(r[2]) else r[2]),
    )
    return Points.from_lists([r[1] for r in rows], [r[0] for r in rows], [r[2] for r in rows])


@pytest.mark.parametrize("seed", range(8))
def test_history_order_fast_path_equals_a_full_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 500
    # Mostly in time order with ties (the fast path), and a shuffled copy (the sort).
    stamps = np.sort(rng.integers(0, 50, n))
    steps = rng.integers(0, 5, n)
    values = rng.choice([0.0, 1.0, -1.0, np.nan], n)
    for order in (np.arange(n), rng.permutation(n)):
        points = Points(steps[order], stamps[order], values[order])
        got = history_order(points)
        expected = mlflow_history._unique_sorted(
            _reference_order(points), np.arange(len(points), dtype=np.int64)
        )
        assert got.timestamps.tolist() == expected.timestamps.tolist()
        assert got.steps.tolist() == expected.steps.tolist()
        assert np.array_equal(got.values, expected.values, equal_nan=True)


def test_ordered_histories_are_valid_for_their_point_count_and_bounded() -> None:
    cache = mlflow_history.OrderedHistories(max_points=5)
    three = Points.from_lists([1, 2, 3], [1, 2, 3], [1.0, 2.0, 3.0])
    cache.put("r", "a", 3, three)
    assert cache.get("r", "a", 3) is three
    assert cache.get("r", "a", 4) is None  # the series grew: recompute
    cache.put("r", "b", 3, three)  # 6 points > 5: the least recently used goes
    assert cache.get("r", "a", 3) is None
    assert cache.get("r", "b", 3) is three
    cache.put("r", "big", 6, Points.from_lists([0] * 6, [0] * 6, [0.0] * 6))
    assert cache.get("r", "big", 6) is None  # larger than the whole budget: not kept


@pytest.mark.parametrize("key", ["loss", 'a"b%s\\', "ü/x y"])
def test_history_json_array_is_the_dicts_serialized(key: str) -> None:
    values = [1.0, math.nan, math.inf, -math.inf, -0.0, 1e300, 5e-324, 0.1]
    points = Points.from_lists(list(range(-3, 5)), [2**62 + i for i in range(8)], values)
    assert json.loads(metrics_json_array(key, points)) == json.loads(
        orjson.dumps(metrics_json(key, points))
    )
    assert metrics_json_array(key, points.take(slice(0, 0))) == b"[]"
