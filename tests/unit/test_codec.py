from __future__ import annotations

import math
import struct

import msgpack
import pytest

from runstream.schemas import codec, entries, experiments, metrics, runs
from runstream.schemas.errors import EventDecodeError

RUN = "0123456789abcdef0123456789abcdef"


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def every_event() -> list[codec.Event]:
    nan_payload = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
    return [
        experiments.ExperimentCreated("7", "exp ü", "mlflow-artifacts:/7", 1, (("k", "v"),)),
        experiments.ExperimentRenamed("7", "new", 2),
        experiments.ExperimentDeleted("7", 3),
        experiments.ExperimentRestored("7", 4),
        experiments.ExperimentTagSet("7", "k", "v"),
        experiments.ExperimentTagDeleted("7", "k"),
        runs.RunCreated(
            RUN, "7", "me", "name", 5, "mlflow-artifacts:/7/x/artifacts", (("a", "b"),)
        ),
        runs.RunUpdated(RUN, "FINISHED", 6, None),
        runs.RunDeleted(RUN, 7),
        runs.RunRestored(RUN, 8),
        runs.RunTagsSet(RUN, (("t", "1"), ("t", "2"))),
        runs.RunTagDeleted(RUN, "t"),
        runs.ParamsLogged(RUN, (("lr", "0.1"),)),
        metrics.MetricsLogged(
            RUN,
            (
                metrics.MetricSeries.from_lists(
                    "lößs/µ",
                    [-(2**63), 0, 2**63 - 1, 3],
                    [0, 2**62, 1_700_000_000_000, 9],
                    [math.nan, nan_payload, -0.0, math.inf],
                ),
                metrics.MetricSeries.from_lists("acc", [1], [2], [-math.inf]),
            ),
        ),
    ]


@pytest.mark.parametrize("event", every_event(), ids=lambda e: type(e).__name__)
def test_every_event_round_trips_bit_exactly(event: codec.Event) -> None:
    entry = entries.decode_entry(entries.encode_entry(123, [event]))
    assert entry.at == 123
    assert entry.events == (event,)


def test_nan_payload_and_negative_zero_survive() -> None:
    event = every_event()[-1]
    assert isinstance(event, metrics.MetricsLogged)
    back = entries.decode_entry(entries.encode_entry(0, [event])).events[0]
    assert isinstance(back, metrics.MetricsLogged)
    assert back.series[0].values == event.series[0].values
    assert back.series[0].values[8:16] == b"\x01\x00\x00\x00\x00\x00\xf8\x7f"
    assert back.series[0].values[16:24] == bits(-0.0)


def test_list_columns_are_accepted_and_packed() -> None:
    obj = {
        "type": "metrics_logged",
        "run_id": RUN,
        "series": [{"key": "x", "steps": [1, 2], "timestamps": [3, 4], "values": [0.5, "NaN"]}],
    }
    event = codec.decode_event(obj)
    assert isinstance(event, metrics.MetricsLogged)
    (s1, s2) = event.series[0].points()
    assert s1 == (1, 3, 0.5)
    assert s2[:2] == (2, 4) and math.isnan(s2[2])


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "expected a map"),
        ({"type": "nope"}, "unknown event type"),
        ({"type": "run_deleted", "v": 9, "run_id": RUN, "time": 1}, "unsupported version"),
        ({"type": "run_deleted", "run_id": RUN}, "event.time: missing required field"),
        ({"type": "run_deleted", "run_id": RUN, "time": "x"}, "event.time: expected an integer"),
        ({"type": "run_deleted", "run_id": RUN, "time": 2**64}, "outside the 64-bit"),
        ({"type": "run_deleted", "run_id": RUN, "time": 1, "extra": 1}, "unknown field"),
        ({"type": "params_logged", "run_id": RUN, "params": [["a"]]}, "event.params[0]"),
        (
            {
                "type": "metrics_logged",
                "run_id": RUN,
                "series": [{"key": "x", "steps": [1], "timestamps": [1, 2], "values": [1.0]}],
            },
            "columns differ in length",
        ),
        (
            {
                "type": "metrics_logged",
                "run_id": RUN,
                "series": [{"key": "x", "steps": b"123", "timestamps": [1], "values": [1.0]}],
            },
            "packed int64 column of 3 bytes",
        ),
        (
            {
                "type": "metrics_logged",
                "run_id": RUN,
                "series": [{"key": "x", "steps": [1], "timestamps": [1], "values": ["one"]}],
            },
            "event.series[0].values[0]: expected a number",
        ),
    ],
)
def test_malformed_events_are_refused_with_their_path(obj: object, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        codec.decode_event(obj)


def test_malformed_entries_are_refused() -> None:
    with pytest.raises(EventDecodeError, match="not valid msgpack"):
        entries.decode_entry(b"\xc1")
    with pytest.raises(EventDecodeError, match="unknown entry format version"):
        entries.decode_entry(msgpack.packb({"v": 99, "at": 1, "ev": []}))
