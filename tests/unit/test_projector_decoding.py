"""The projector's fast decoder agrees with ``codec.decode_entry`` on every input."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from runstream.projector.decoding import decode_stream_entry
from runstream.schemas import codec
from runstream.schemas import runs as ru
from runstream.schemas.errors import EventDecodeError
from runstream.schemas.metrics import MetricSeries, MetricsLogged

RUN = "0123456789abcdef0123456789abcdef"
COL = b"\x01" * 16


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
    codec.encode_entry(
        1,
        [
            MetricsLogged(RUN, (MetricSeries.from_lists("k", [1], [2], [3.0]),)),
            ru.ParamsLogged(RUN, (("a", "b"),)),
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
def test_same_entry_as_codec(data: bytes) -> None:
    assert decode_stream_entry(data) == codec.decode_entry(data)


@pytest.mark.parametrize("data", INVALID)
def test_same_error_as_codec(data: bytes) -> None:
    with pytest.raises(EventDecodeError) as expected:
        codec.decode_entry(data)
    with pytest.raises(EventDecodeError) as got:
        decode_stream_entry(data)
    assert str(got.value) == str(expected.value)
