"""The SDK's one points type: ``History`` reads the server's packed columns (or lists) once,
bit-exactly, as numpy arrays, ``array.array`` or tuples, through schemas' one column reader."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from runstream import History
from runstream.schemas.metrics import column_arrays, pack_float64, pack_int64

NAN_PAYLOAD = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
STEPS = [-(2**63), 0, 2**63 - 1]
STAMPS = [1, 2, 3]
VALUES = [NAN_PAYLOAD, -0.0, math.inf]


def bits(values: object) -> list[bytes]:
    return [struct.pack("<d", v) for v in values]  # type: ignore[attr-defined]


def test_packed_answer_reads_bit_exactly_in_every_form() -> None:
    answer = {
        "key": "loss",
        "steps": pack_int64(STEPS),
        "timestamps": pack_int64(STAMPS),
        "values": pack_float64(VALUES),
    }
    history = History.from_answer(answer, "loss")
    assert len(history) == 3 and history.key == "loss"
    assert history.steps.tolist() == STEPS and history.timestamps.tolist() == STAMPS
    assert bits(history.values.tolist()) == bits(VALUES)
    assert history.values.dtype == np.float64 and not history.values.flags.writeable
    steps, stamps, values = history.arrays()
    assert list(steps) == STEPS and list(stamps) == STAMPS and bits(values) == bits(VALUES)
    assert [(s, t) for s, t, _ in history.points()] == list(zip(STEPS, STAMPS, strict=True))


def test_list_answer_is_the_same_history() -> None:
    answer = {"steps": STEPS, "timestamps": STAMPS, "values": ["NaN", -0.0, "Infinity"]}
    history = History.from_answer(answer, "k")
    assert history.key == "k" and history.steps.tolist() == STEPS
    assert math.isnan(history.values[0]) and bits(history.values.tolist()[1:]) == bits(VALUES[1:])


def test_columns_of_different_lengths_are_refused() -> None:
    answer = {"steps": pack_int64([1, 2]), "timestamps": pack_int64([1]), "values": b""}
    with pytest.raises(ValueError, match="different lengths"):
        History.from_answer(answer, "k")
    with pytest.raises(ValueError, match="same number"):
        column_arrays(b"\x00" * 8, b"", b"")
