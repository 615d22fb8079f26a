"""From buffer to request bodies: the server's own decoder reads back exactly what was logged."""

from __future__ import annotations

import math
import struct

import msgpack
import pytest

from runstream.client.batches import build_batches, encode_body, maybe_gzip
from runstream.client.buffer import RunBuffer
from runstream.schemas import codec
from runstream.schemas.metrics import MetricsLogged
from runstream.schemas.runs import ParamsLogged

RUN = "0123456789abcdef0123456789abcdef"
NAN_PAYLOAD = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def decoded(bodies: list[bytes]) -> list[codec.Event]:
    events = []
    for body in bodies:
        obj = msgpack.unpackb(body, raw=False)
        events.extend(codec.decode_event(e) for e in obj["events"])
    return events


@pytest.mark.parametrize("max_points", [1, 7, 100, 1_000_000])
def test_batches_carry_exactly_the_points_logged(max_points: int) -> None:
    buf = RunBuffer()
    expected: dict[str, list[tuple[int, bytes]]] = {}
    specials = [math.nan, NAN_PAYLOAD, math.inf, -math.inf, -0.0, 1e-310]
    for i in range(50):
        metrics = {"loss": specials[i % len(specials)] if i % 3 == 0 else i / 7, "acc": i}
        if i % 5 == 0:
            metrics["rare/key.x"] = -i
        step = i * 2 if i % 4 == 0 else None
        before = buf.next_steps()
        buf.log(metrics, step=step)
        for key, value in metrics.items():
            at = step if step is not None else before.get(key, 0)
            expected.setdefault(key, []).append((at, bits(float(value))))
        if i == 25:
            buf.add_event(codec.event_to_obj(ParamsLogged(RUN, (("lr", "0.1"),))))
    items, seq = buf.take()
    batches = build_batches(RUN, items, 1, max_points)
    assert batches[-1].last_seq == seq
    assert all(b.points <= max_points for b in batches)
    events = decoded([b.body() for b in batches])
    got: dict[str, list[tuple[int, bytes]]] = {}
    kinds = []
    for event in events:
        kinds.append(type(event).__name__)
        if isinstance(event, MetricsLogged):
            assert event.run_id == RUN
            for series in event.series:
                for step, _ts, value in series.points():
                    got.setdefault(series.key, []).append((step, bits(value)))
    assert got == expected  # every point, bit for bit (NaN payloads, -0.0), in logged order
    params_at = kinds.index("ParamsLogged")
    assert 0 < params_at < len(kinds) - 1
    assert sum(b.points for b in batches) == sum(len(v) for v in expected.values())


def test_idempotency_keys_are_unique_per_batch() -> None:
    buf = RunBuffer()
    for i in range(100):
        buf.log({"a": float(i)})
    batches = build_batches(RUN, buf.take()[0], 1, 10)
    assert len(batches) == 10
    assert len({b.idempotency_key for b in batches}) == 10


def test_gzip_only_when_it_pays() -> None:
    small = encode_body([{"type": "x"}])
    assert maybe_gzip(small, 0) == (small, None)
    assert maybe_gzip(small, 1 << 20) == (small, None)
    buf = RunBuffer()
    for _ in range(10_000):
        buf.log({"a": 1.0})
    body = build_batches(RUN, buf.take()[0], 1, 100_000)[0].body()
    packed, encoding = maybe_gzip(body, 1024)
    assert encoding == "gzip" and len(packed) < len(body)
    import os

    noise = os.urandom(100_000)
    assert maybe_gzip(noise, 1024) == (noise, None)
