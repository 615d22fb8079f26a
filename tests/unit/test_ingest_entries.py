"""Entry payloads: byte-identical to ``codec.encode_entry``, split under the size limit."""

from __future__ import annotations

from runstream.ingest.entries import encode_entries
from runstream.schemas import codec
from runstream.schemas import runs as rn
from runstream.schemas.metrics import MetricSeries, MetricsLogged, unpack_int64

RUN = "a" * 32


def series(key: str, n: int, start: int = 0) -> MetricSeries:
    steps = range(start, start + n)
    return MetricSeries.from_lists(key, steps, steps, [float(s) for s in steps])


def test_one_entry_equals_codec_encoding() -> None:
    events = [
        rn.ParamsLogged(RUN, (("a", "1"),)),
        MetricsLogged(RUN, (series("m", 10),)),
        rn.RunDeleted(RUN, 3),
    ]
    assert encode_entries(1234, events) == [codec.encode_entry(1234, events)]


def test_large_metrics_are_split_in_order() -> None:
    big = MetricsLogged(RUN, (series("a", 3000), series("b", 500), series("c", 10)))
    events = [rn.RunTagsSet(RUN, (("k", "v"),)), big, rn.RunDeleted(RUN, 1)]
    limit = 20_000
    payloads = encode_entries(7, events, max_bytes=limit)
    assert len(payloads) > 3
    assert all(len(p) <= limit for p in payloads)
    decoded = [e for p in payloads for e in codec.decode_entry(p).events]
    assert decoded[0] == events[0] and decoded[-1] == events[2]
    points: dict[str, list[int]] = {}
    for event in decoded[1:-1]:
        assert isinstance(event, MetricsLogged) and event.run_id == RUN
        for s in event.series:
            points.setdefault(s.key, []).extend(unpack_int64(s.steps))
    assert points == {"a": list(range(3000)), "b": list(range(500)), "c": list(range(10))}
