"""History encoding: bit-exact msgpack, MLflow's JSON for values JSON cannot carry."""

from __future__ import annotations

import math
import struct

import msgpack
import orjson
import pytest

from runstream.api.native.history import (
    History,
    history_to_json,
    history_to_msgpack,
    wants_msgpack,
)
from runstream.schemas.errors import RunstreamError
from runstream.schemas.metrics import pack_float64, pack_int64

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
NAN_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]

STEPS = [INT64_MIN, -1, 0, 1, INT64_MAX, 5, 5]
TIMESTAMPS = [0, INT64_MAX, INT64_MIN, 1_700_000_000_000, 1, 2, 3]
VALUES = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, NAN_PAYLOAD]


def split(values: list[float] | list[int], sizes: list[int]) -> list[list[float] | list[int]]:
    out, start = [], 0
    for size in sizes:
        out.append(values[start : start + size])
        start += size
    return out


def history(sizes: list[int]) -> History:
    return History.from_chunks(
        "loss/train",
        [pack_int64(part) for part in split(STEPS, sizes)],  # type: ignore[arg-type]
        [pack_int64(part) for part in split(TIMESTAMPS, sizes)],  # type: ignore[arg-type]
        [pack_float64(part) for part in split(VALUES, sizes)],
    )


@pytest.mark.parametrize("sizes", [[7], [1, 6], [3, 3, 1], [1] * 7])
def test_msgpack_is_bit_exact_across_chunks(sizes: list[int]) -> None:
    decoded = msgpack.unpackb(history_to_msgpack(history(sizes)))
    assert decoded == {
        "key": "loss/train",
        "steps": pack_int64(STEPS),
        "timestamps": pack_int64(TIMESTAMPS),
        "values": pack_float64(VALUES),
    }


def test_json_writes_non_finite_values_as_mlflow_does() -> None:
    decoded = orjson.loads(history_to_json(history([2, 5])))
    assert decoded["key"] == "loss/train"
    assert decoded["steps"] == STEPS
    assert decoded["timestamps"] == TIMESTAMPS
    assert decoded["values"][:3] == ["NaN", "Infinity", "-Infinity"]
    assert decoded["values"][6] == "NaN"
    assert math.copysign(1.0, decoded["values"][3]) == -1.0
    assert decoded["values"][4:6] == VALUES[4:6]


def test_json_of_finite_values_is_numbers() -> None:
    h = History.from_chunks(
        "k", [pack_int64([1, 2])], [pack_int64([3, 4])], [pack_float64([0.1, -2.5])]
    )
    assert orjson.loads(history_to_json(h)) == {
        "key": "k",
        "steps": [1, 2],
        "timestamps": [3, 4],
        "values": [0.1, -2.5],
    }


def test_empty_history() -> None:
    h = History.from_chunks("k", [], [], [])
    assert h.count == 0
    assert orjson.loads(history_to_json(h)) == {
        "key": "k",
        "steps": [],
        "timestamps": [],
        "values": [],
    }
    assert msgpack.unpackb(history_to_msgpack(h))["values"] == b""


def test_torn_chunk_is_an_error() -> None:
    with pytest.raises(RunstreamError, match="mismatched"):
        History.from_chunks("k", [pack_int64([1])], [pack_int64([1, 2])], [pack_float64([1.0])])


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/msgpack", True),
        ("application/x-msgpack;q=1, */*;q=0.1", True),
        ("application/json", False),
        ("", False),
    ],
)
def test_wants_msgpack(accept: str, expected: bool) -> None:
    assert wants_msgpack(accept) is expected


@pytest.mark.parametrize("points", [0, 1, 31, 32, 8191, 8192, 10_000])
@pytest.mark.parametrize("key", ["k", "a/" + "x" * 40])
def test_msgpack_framing_equals_packb(points: int, key: str) -> None:
    """bin 8/16/32 boundaries are at 256 and 65,536 bytes (32 and 8,192 points)."""
    cut = points // 3
    steps = list(range(points))
    values = [float(i) for i in steps]
    h = History.from_chunks(
        key,
        [pack_int64(steps[:cut]), pack_int64(steps[cut:])],
        [pack_int64(steps[:cut]), pack_int64(steps[cut:])],
        [pack_float64(values[:cut]), pack_float64(values[cut:])],
    )
    assert h.count == points
    expected = msgpack.packb(
        {
            "key": key,
            "steps": pack_int64(steps),
            "timestamps": pack_int64(steps),
            "values": pack_float64(values),
        },
        use_bin_type=True,
    )
    assert history_to_msgpack(h) == expected
