"""Properties of the wire codec: every event kind of ``schemas`` round-trips bit-exactly through
the event codec and through stream entries, and the packed-metrics decode path of
``entries.decode_entry`` agrees with the general decoder on valid and on damaged entries.

Events are generated from their dataclass fields, so a new event kind or field is covered
without touching this file. Floats are compared by their bits: NaN payloads, -0.0 and ±inf.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import types
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstream.schemas import codec, entries
from runstream.schemas.errors import EventDecodeError
from runstream.schemas.metrics import MetricSeries, MetricsLogged
from runstream.schemas.validation import INT64_MAX, INT64_MIN

# Lone surrogates are not UTF-8 and cannot be on the wire; every other code point can.
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
int64s = st.one_of(
    st.sampled_from([INT64_MIN, INT64_MIN + 1, -1, 0, INT64_MAX]), st.integers(INT64_MIN, INT64_MAX)
)
float_bits = st.one_of(
    st.sampled_from(
        [
            struct.pack("<d", x)
            for x in (0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308)
        ]
        + [b"\x01\x00\x00\x00\x00\x00\xf8\x7f", b"\xff\xff\xff\xff\xff\xff\xff\xff"]
    ),
    st.binary(min_size=8, max_size=8),  # any bit pattern, NaN payloads included
)
floats = float_bits.map(lambda b: struct.unpack("<d", b)[0])


@st.composite
def metric_series(draw: st.DrawFn) -> MetricSeries:
    n = draw(st.integers(0, 20))
    steps = draw(st.lists(int64s, min_size=n, max_size=n))
    stamps = draw(st.lists(int64s, min_size=n, max_size=n))
    values = b"".join(draw(st.lists(float_bits, min_size=n, max_size=n)))
    return MetricSeries(draw(texts), *(struct.pack(f"<{n}q", *c) for c in (steps, stamps)), values)


def strategy_of(hint: Any) -> st.SearchStrategy[Any]:
    """Values of one field type as the event dataclasses declare them."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return st.none() | strategy_of(inner)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: texts,
        int: int64s,
        float: floats,
        bool: st.booleans(),
    }
    if hint in simple:
        return simple[hint]
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if item is MetricSeries:
            return st.lists(metric_series(), max_size=4).map(tuple)
        if typing.get_origin(item) is tuple:
            return st.lists(st.tuples(texts, texts), max_size=4).map(tuple)
        return st.lists(strategy_of(item), max_size=4).map(tuple)
    raise AssertionError(f"no strategy for field type {hint!r}: add one")


def event_strategy(cls: type[Any]) -> st.SearchStrategy[codec.Event]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_of(hints[f.name]) for f in dataclasses.fields(cls)})


EVENT_KINDS = sorted(codec.EVENT_TYPES.values(), key=lambda cls: cls.TYPE)
events = st.one_of([event_strategy(cls) for cls in EVENT_KINDS])
metric_events = event_strategy(MetricsLogged)


def bits(value: Any) -> Any:
    """``value`` with every float replaced by its 8 bytes, so that equality is bit equality."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (type(value).__name__, tuple(bits(getattr(value, f.name)) for f in fields))
    if isinstance(value, tuple | list):
        return tuple(bits(v) for v in value)
    return (type(value).__name__, value)


def test_every_event_kind_is_covered() -> None:
    assert {cls.TYPE for cls in EVENT_KINDS} == set(codec.EVENT_TYPES)
    assert len(EVENT_KINDS) == len(codec.EVENT_TYPES) > 20


@pytest.mark.parametrize("kind", EVENT_KINDS, ids=lambda cls: cls.TYPE)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(data=st.data())
def test_every_event_kind_round_trips_through_the_codec(
    kind: type[Any], data: st.DataObject
) -> None:
    event = data.draw(event_strategy(kind))
    wire = msgpack.unpackb(codec.encode_event(event), raw=False, strict_map_key=True)
    assert bits(codec.decode_event(wire)) == bits(event)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(st.integers(0, INT64_MAX), st.lists(events, min_size=1, max_size=6))
def test_events_round_trip_through_a_stream_entry(at: int, sent: list[codec.Event]) -> None:
    payload = entries.encode_entry(at, sent)
    assert entries.encode_entries(at, sent) == [payload]
    for decode in (entries.decode_entry, entries.decode_entry_general):
        entry = decode(payload)
        assert entry.at == at
        assert bits(entry.events) == bits(tuple(sent))


def outcome(decode: Any, data: bytes) -> Any:
    try:
        return bits(decode(data))
    except EventDecodeError as exc:
        return ("error", str(exc))


mutations = st.one_of(
    st.just(None),
    st.tuples(st.just("drop"), st.sampled_from(["type", "v", "run_id", "series", "key", "steps"])),
    st.tuples(st.just("add"), texts),
    st.tuples(
        st.just("set"),
        st.sampled_from(["v", "run_id", "series", "key", "steps", "timestamps", "values"]),
        st.one_of(st.none(), st.booleans(), int64s, floats, texts, st.binary(max_size=24),
                  st.lists(st.integers(-3, 3), max_size=3)),
    ),
)  # fmt: skip


def mutate(obj: dict[str, Any], mutation: Any) -> None:
    """Damage one map of an entry: the event's, or its first series' when it has the field."""
    if mutation is None:
        return
    target = obj
    name = mutation[1] if mutation[0] != "add" else ""
    if name in ("key", "steps", "timestamps", "values") and obj.get("series"):
        target = obj["series"][0]
    if mutation[0] == "drop":
        target.pop(name, None)
    elif mutation[0] == "add":
        target[mutation[1] or "x"] = 1
    else:
        target[name] = mutation[2]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(
    st.lists(st.one_of(metric_events, metric_events, events), max_size=4),
    st.lists(mutations, max_size=4),
    st.booleans(),
)
def test_the_fast_decode_path_agrees_with_the_general_one(
    sent: list[codec.Event], damage: list[Any], omit_version: bool
) -> None:
    objs = [codec.event_to_obj(e) for e in sent]
    for obj, mutation in zip(objs, damage, strict=False):
        if omit_version:
            obj.pop("v")  # the version is optional on the wire
        mutate(obj, mutation)
    try:
        payload = msgpack.packb({"v": 1, "at": 7, "ev": objs}, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return  # not representable in msgpack: nothing could send it
    assert outcome(entries.decode_entry, payload) == outcome(entries.decode_entry_general, payload)
