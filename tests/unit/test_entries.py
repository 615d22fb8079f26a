"""Stream entries: one envelope for ingest and the projector, split under the size limit, and
a packed-metrics decode path that agrees with the schema-driven one on every input."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from runstream.schemas import entries
from runstream.schemas import runs as rn
from runstream.schemas.codec import event_to_obj
from runstream.schemas.entries import decode_entry, decode_entry_general, encode_entries
from runstream.schemas.errors import EventDecodeError
from runstream.schemas.metrics import MetricSeries, MetricsLogged, unpack_int64

RUN = "a" * 32
COL = b"\x01" * 16


def points(key: str, n: int, start: int = 0) -> MetricSeries:
    steps = range(start, start + n)
    return MetricSeries.from_lists(key, steps, steps, [float(s) for s in steps])


# -- encoding -----------------------------------------------------------------------------------


def test_one_entry_equals_the_whole_envelope_packed_at_once() -> None:
    events = [
        rn.ParamsLogged(RUN, (("a", "1"),)),
        MetricsLogged(RUN, (points("m", 10),)),
        rn.RunDeleted(RUN, 3),
    ]
    whole = msgpack.packb(
        {"v": 1, "at": 1234, "ev": [event_to_obj(e) for e in events]}, use_bin_type=True
    )
    assert encode_entries(1234, events) == [entries.encode_entry(1234, events)] == [whole]


def test_large_metrics_are_split_in_order() -> None:
    big = MetricsLogged(RUN, (points("a", 3000), points("b", 500), points("c", 10)))
    events = [rn.RunTagsSet(RUN, (("k", "v"),)), big, rn.RunDeleted(RUN, 1)]
    limit = 20_000
    payloads = encode_entries(7, events, max_bytes=limit)
    assert len(payloads) > 3
    assert all(len(p) <= limit for p in payloads)
    decoded = [e for p in payloads for e in decode_entry(p).events]
    assert decoded[0] == events[0] and decoded[-1] == events[2]
    by_key: dict[str, list[int]] = {}
    for event in decoded[1:-1]:
        assert isinstance(event, MetricsLogged) and event.run_id == RUN
        for s in event.series:
            by_key.setdefault(s.key, []).extend(unpack_int64(s.steps))
    assert by_key == {"a": list(range(3000)), "b": list(range(500)), "c": list(range(10))}


# -- the packed-metrics path and the general one --------------------------------------------------


def series(**changes: Any) -> dict[str, Any]:
    return {"key": "loss", "steps": COL, "timestamps": COL, "values": COL, **changes}


def entry(*events: dict[str, Any], **changes: Any) -> bytes:
    return msgpack.packb({"v": 1, "at": 5, "ev": list(events), **changes}, use_bin_type=True)


def metrics(**changes: Any) -> dict[str, Any]:
    return {"type": "metrics_logged", "v": 1, "run_id": RUN, "series": [series()], **changes}


VALID = [
    entry(metrics()),
    entry(metrics(series=[series(), series(key="acc")]), metrics(series=[])),
    entry({"type": "metrics_logged", "run_id": RUN, "series": [series()]}),
    entries.encode_entry(
        1,
        [
            MetricsLogged(RUN, (MetricSeries.from_lists("k", [1], [2], [3.0]),)),
            rn.ParamsLogged(RUN, (("a", "b"),)),
        ],
    ),
    entry(metrics(series=[series(steps=[1, 2], timestamps=[3, 4], values=[1.0, "NaN"])])),
]

INVALID = [
    b"\xc1",
    msgpack.packb([1, 2]),
    entry(metrics(), v=2),
    entry(metrics(), at="x"),
    entry(metrics(v=2)),
    entry(metrics(extra=1)),
    entry(metrics(run_id=5)),
    entry(metrics(series=[series(extra=1)])),
    entry(metrics(series=[series(steps=b"\x01" * 8)])),
    entry(metrics(series=[series(values=b"\x01" * 15)])),
    entry(metrics(series=[series(key=None)])),
    entry({"type": "nope"}),
    entry({"run_id": RUN, "series": []}),
]


@pytest.mark.parametrize("data", VALID)
def test_same_entry_as_the_general_decoder(data: bytes) -> None:
    assert decode_entry(data) == decode_entry_general(data)


@pytest.mark.parametrize("data", INVALID)
def test_same_error_as_the_general_decoder(data: bytes) -> None:
    with pytest.raises(EventDecodeError) as expected:
        decode_entry_general(data)
    with pytest.raises(EventDecodeError) as got:
        decode_entry(data)
    assert str(got.value) == str(expected.value)
