"""The SDK's hot path: columns per key, auto steps, validation at the call site."""

from __future__ import annotations

import math
import threading
from decimal import Decimal

import numpy as np
import pytest

from runstream.client.buffer import EventItem, MetricGroup, RunBuffer


def columns(items: list[object]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for item in items:
        if isinstance(item, MetricGroup):
            for key, steps, stamps, values in item.columns:
                assert len(steps) == len(stamps) == len(values)
                out.setdefault(key, []).extend(zip(steps, values, strict=True))
    return out


def test_auto_steps_per_key_start_at_zero() -> None:
    buf = RunBuffer()
    buf.log({"loss": 1.0, "acc": 0.5})
    buf.log({"loss": 2.0})
    buf.log({"loss": 3.0, "acc": 0.6})
    items, seq = buf.take()
    assert seq == 1
    assert columns(items) == {
        "loss": [(0, 1.0), (1, 2.0), (2, 3.0)],
        "acc": [(0, 0.5), (1, 0.6)],
    }


def test_explicit_step_sets_next_auto_step() -> None:
    buf = RunBuffer()
    buf.log({"a": 1.0}, step=10)
    buf.log({"a": 2.0})
    buf.log({"a": 3.0}, step=5)
    buf.log({"a": 4.0})
    assert columns(buf.take()[0]) == {"a": [(10, 1.0), (11, 2.0), (5, 3.0), (6, 4.0)]}
    assert buf.next_steps() == {"a": 7}


def test_counters_survive_take() -> None:
    buf = RunBuffer()
    buf.log({"a": 1})
    buf.take()
    buf.log({"a": 2})
    assert columns(buf.take()[0]) == {"a": [(1, 2.0)]}


def test_timestamps_are_call_time_in_ms() -> None:
    import time

    before = time.time_ns() // 1_000_000
    buf = RunBuffer()
    buf.log({"a": 1.0, "b": 2.0})
    after = time.time_ns() // 1_000_000
    (group,) = buf.take()[0]
    assert isinstance(group, MetricGroup)
    for _key, _steps, stamps, _values in group.columns:
        assert before <= stamps[0] <= after


def test_special_values_and_number_types() -> None:
    buf = RunBuffer()
    buf.log(
        {
            "nan": math.nan,
            "inf": math.inf,
            "ninf": -math.inf,
            "negzero": -0.0,
            "int": 3,
            "np32": np.float32(0.5),
            "np64": np.float64(0.25),
            "npint": np.int64(7),
            "dec": Decimal("1.5"),
        },
        step=np.int64(4),
    )
    got = {k: v for k, [(step, v)] in columns(buf.take()[0]).items() if step == 4}
    assert math.isnan(got["nan"])
    assert got["inf"] == math.inf and got["ninf"] == -math.inf
    assert math.copysign(1.0, got["negzero"]) == -1.0
    assert got["int"] == 3.0 and got["np32"] == 0.5 and got["npint"] == 7.0
    assert got["dec"] == 1.5


@pytest.mark.parametrize(
    ("metrics", "step", "error"),
    [
        ({"a": True}, None, TypeError),
        ({"a": np.bool_(True)}, None, TypeError),
        ({"a": "0.5"}, None, TypeError),
        ({"a": None}, None, TypeError),
        ({"a": [1.0]}, None, TypeError),
        ({"bad key!": 1.0}, None, ValueError),
        ({"../escape": 1.0}, None, ValueError),
        ({"x" * 251: 1.0}, None, ValueError),
        ({3: 1.0}, None, TypeError),
        ({"a": 1.0}, True, TypeError),
        ({"a": 1.0}, 1.5, TypeError),
        ({"a": 1.0}, 2**63, ValueError),
    ],
)
def test_bad_calls_raise_and_keep_nothing(metrics: dict, step: object, error: type) -> None:  # type: ignore[type-arg]
    buf = RunBuffer()
    buf.log({"a": 1.0})  # "a" known: the fast path must refuse bad values as well
    with pytest.raises(error):
        buf.log({"ok": 2.0, **metrics}, step=step)  # type: ignore[arg-type]
    assert columns(buf.take()[0]) == {"a": [(0, 1.0)]}
    assert buf.logged == 1


def test_not_a_mapping() -> None:
    with pytest.raises(TypeError):
        RunBuffer().log([("a", 1.0)])  # type: ignore[arg-type]


def test_events_keep_their_place_between_points() -> None:
    buf = RunBuffer()
    buf.log({"a": 1.0})
    seq_event = buf.add_event({"type": "params_logged"})
    buf.log({"a": 2.0})
    items, seq = buf.take()
    assert [type(i).__name__ for i in items] == ["MetricGroup", "EventItem", "MetricGroup"]
    assert seq_event == 2 and seq == 3
    assert isinstance(items[1], EventItem)


def test_bound_drops_and_counts() -> None:
    buf = RunBuffer(max_points=5)
    for i in range(4):
        buf.log({"a": float(i), "b": 1.0})
    assert buf.logged == 4 and buf.dropped == 4
    assert buf.pending_points == 4
    buf.take()
    buf.log({"a": 9.0})
    assert buf.pending_points == 1


def test_wake_when_batch_threshold_reached() -> None:
    woken = []
    buf = RunBuffer(wake_points=3, on_full=lambda: woken.append(1))
    buf.log({"a": 1.0, "b": 2.0})
    assert woken == []
    buf.log({"a": 1.0, "b": 2.0})
    buf.log({"a": 1.0, "b": 2.0})
    assert woken == [1]  # once until the sender takes
    buf.take()
    buf.log({"a": 1.0, "b": 2.0, "c": 3.0})
    assert woken == [1, 1]


def test_closed_buffer_refuses() -> None:
    buf = RunBuffer()
    buf.log({"a": 1.0})
    buf.close()
    with pytest.raises(RuntimeError):
        buf.log({"a": 1.0})


def test_threads_lose_no_points() -> None:
    buf = RunBuffer()
    buf.log({"k": 0.0})
    buf.take()

    def work() -> None:
        for i in range(5000):
            buf.log({"k": float(i), "j": 1.0})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = columns(buf.take()[0])
    assert len(got["k"]) == 20000 and len(got["j"]) == 20000
    assert sorted(s for s, _ in got["k"]) == list(range(1, 20001))


def test_reset_after_fork_keeps_counters() -> None:
    buf = RunBuffer()
    buf.log({"a": 1.0})
    buf.log({"a": 1.0})
    old_lock = buf.lock
    buf.reset_after_fork()
    assert buf.lock is not old_lock
    assert buf.pending_points == 0 and buf.take()[0] == []
    buf.log({"a": 5.0})
    assert columns(buf.take()[0]) == {"a": [(2, 5.0)]}
