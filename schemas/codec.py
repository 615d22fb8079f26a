"""msgpack encoding of events: the one event codec of the SDK, ingest and the projector.

An event is a msgpack map ``{"type": <TYPE>, "v": <VERSION>, <field>: <value>, ...}``; pairs
(tags, params) are lists of 2-lists; a metric series is a map with ``key`` and three ``bin``
columns. The stream-entry envelope around events is ``entries``'s.

Every decoding failure is raised as one ``EventDecodeError`` naming the path of the bad field.
Decoding also accepts the request forms that clients send: columns as lists of numbers (JSON
bodies) besides packed ``bin`` columns, and "NaN"/"Infinity"/"-Infinity" strings for values.
"""

from __future__ import annotations

import math
import types
from dataclasses import fields
from typing import Any, Union, get_args, get_origin, get_type_hints

import msgpack

from runstream.schemas import constants as c
from runstream.schemas import experiments, inputs, metrics, models, registry, runs
from runstream.schemas.errors import EventDecodeError
from runstream.schemas.metrics import MetricSeries, pack_float64, pack_int64
from runstream.schemas.validation import INT64_MAX, INT64_MIN

Event = (
    experiments.ExperimentEvent
    | runs.RunEvent
    | metrics.MetricsLogged
    | models.LoggedModelEvent
    | inputs.RunInputEvent
    | registry.RegistryEvent
)

EVENT_TYPES: dict[str, type[Any]] = {
    cls.TYPE: cls
    for cls in (
        experiments.ExperimentCreated,
        experiments.ExperimentRenamed,
        experiments.ExperimentDeleted,
        experiments.ExperimentRestored,
        experiments.ExperimentTagSet,
        experiments.ExperimentTagDeleted,
        runs.RunCreated,
        runs.RunUpdated,
        runs.RunDeleted,
        runs.RunRestored,
        runs.RunTagsSet,
        runs.RunTagDeleted,
        runs.ParamsLogged,
        metrics.MetricsLogged,
        *models.LOGGED_MODEL_EVENT_TYPES,
        *inputs.RUN_INPUT_EVENT_TYPES,
        *registry.REGISTRY_EVENT_TYPES,
    )
}


def register_event_type(cls: type[Any]) -> type[Any]:
    """Add an event family defined elsewhere in ``schemas`` (e.g. logged models)."""
    EVENT_TYPES[cls.TYPE] = cls
    _FIELD_SPECS.pop(cls, None)
    return cls


# -- encoding -----------------------------------------------------------------------------------


def event_to_obj(event: Event) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": event.TYPE, "v": event.VERSION}
    for f in fields(event):
        value = getattr(event, f.name)
        if f.name == "series":
            obj["series"] = [
                {"key": s.key, "steps": s.steps, "timestamps": s.timestamps, "values": s.values}
                for s in value
            ]
        elif isinstance(value, tuple):
            obj[f.name] = [list(pair) for pair in value]
        else:
            obj[f.name] = value
    return obj


def encode_event(event: Event) -> bytes:
    return msgpack.packb(event_to_obj(event), use_bin_type=True)  # type: ignore[no-any-return]


# -- decoding -----------------------------------------------------------------------------------


def unpack(data: bytes, what: str = "body") -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise EventDecodeError(f"{what} is not valid msgpack: {exc}") from exc


def decode_event(obj: Any, path: str = "event") -> Event:
    """Decode one event map, checking every field's type; unknown fields are refused."""
    if not isinstance(obj, dict):
        raise EventDecodeError(f"{path}: expected a map, got {type(obj).__name__}")
    type_name = obj.get("type")
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise EventDecodeError(f"{path}.type: unknown event type {type_name!r}")
    version = obj.get("v", cls.VERSION)
    if version != cls.VERSION:
        raise EventDecodeError(
            f"{path}.v: unsupported version {version!r} of {type_name} (this server reads "
            f"version {cls.VERSION})"
        )
    specs = _field_specs(cls)
    unknown = set(obj) - set(specs) - {"type", "v"}
    if unknown:
        raise EventDecodeError(f"{path}: unknown field(s) {sorted(unknown)} for {type_name}")
    kwargs: dict[str, Any] = {}
    for name, (kind, required) in specs.items():
        if name not in obj:
            if required:
                raise EventDecodeError(f"{path}.{name}: missing required field")
            continue
        kwargs[name] = _decode_field(kind, obj[name], f"{path}.{name}")
    return cls(**kwargs)  # type: ignore[no-any-return]


_FIELD_SPECS: dict[type[Any], dict[str, tuple[str, bool]]] = {}


def _field_specs(cls: type[Any]) -> dict[str, tuple[str, bool]]:
    specs = _FIELD_SPECS.get(cls)
    if specs is None:
        hints = get_type_hints(cls)
        specs = {}
        for f in fields(cls):
            required = f.default is f.default_factory  # both MISSING when there is no default
            specs[f.name] = (_kind_of(hints[f.name]), required)
        _FIELD_SPECS[cls] = specs
    return specs


def _kind_of(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        return "opt_" + _kind_of(inner[0])
    if hint is str:
        return "str"
    if hint is int:
        return "int"
    if hint is float:
        return "float"
    if hint is bool:
        return "bool"
    if origin is tuple:
        args = get_args(hint)
        if args and args[0] is MetricSeries:
            return "series"
        if args and get_origin(args[0]) is tuple:
            return "pairs"
        if args and args[0] is str:
            return "strs"
    raise TypeError(f"no codec for field type {hint!r}")


def _decode_field(kind: str, value: Any, path: str) -> Any:
    if kind.startswith("opt_"):
        return None if value is None else _decode_field(kind[4:], value, path)
    if kind == "str":
        if not isinstance(value, str):
            raise EventDecodeError(f"{path}: expected a string, got {type(value).__name__}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise EventDecodeError(f"{path}: expected an integer, got {type(value).__name__}")
        if not INT64_MIN <= value <= INT64_MAX:
            raise EventDecodeError(f"{path}: {value} is outside the 64-bit integer range")
        return value
    if kind == "float":
        return _decode_float(value, path)
    if kind == "bool":
        if not isinstance(value, bool):
            raise EventDecodeError(f"{path}: expected a boolean, got {type(value).__name__}")
        return value
    if kind == "pairs":
        if not isinstance(value, list | tuple):
            raise EventDecodeError(f"{path}: expected a list of [key, value] pairs")
        out = []
        for i, pair in enumerate(value):
            if (
                not isinstance(pair, list | tuple)
                or len(pair) != 2
                or not isinstance(pair[0], str)
                or not isinstance(pair[1], str)
            ):
                raise EventDecodeError(f"{path}[{i}]: expected a [key, value] pair of strings")
            out.append((pair[0], pair[1]))
        return tuple(out)
    if kind == "strs":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise EventDecodeError(f"{path}: expected a list of strings")
        return tuple(value)
    if kind == "series":
        if not isinstance(value, list | tuple):
            raise EventDecodeError(f"{path}: expected a list of series")
        return tuple(decode_series(s, f"{path}[{i}]") for i, s in enumerate(value))
    raise AssertionError(kind)


def decode_series(obj: Any, path: str) -> MetricSeries:
    if not isinstance(obj, dict):
        raise EventDecodeError(f"{path}: expected a map with key, steps, timestamps, values")
    unknown = set(obj) - {"key", "steps", "timestamps", "values"}
    if unknown:
        raise EventDecodeError(f"{path}: unknown field(s) {sorted(unknown)}")
    key = obj.get("key")
    if not isinstance(key, str):
        raise EventDecodeError(f"{path}.key: expected a string")
    steps = _int_column(obj.get("steps"), f"{path}.steps")
    stamps = _int_column(obj.get("timestamps"), f"{path}.timestamps")
    values = _float_column(obj.get("values"), f"{path}.values")
    n = len(values) // 8
    if len(steps) // 8 != n or len(stamps) // 8 != n:
        raise EventDecodeError(
            f"{path}: columns differ in length (steps {len(steps) // 8}, timestamps "
            f"{len(stamps) // 8}, values {n})"
        )
    if n > c.MAX_POINTS_PER_SERIES_EVENT:
        raise EventDecodeError(
            f"{path}: {n} points in one series exceeds {c.MAX_POINTS_PER_SERIES_EVENT}"
        )
    return MetricSeries(key, steps, stamps, values)


def _int_column(value: Any, path: str) -> bytes:
    if isinstance(value, bytes):
        if len(value) % 8:
            raise EventDecodeError(f"{path}: packed int64 column of {len(value)} bytes")
        return value
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int) or not INT64_MIN <= v <= INT64_MAX:
                raise EventDecodeError(f"{path}[{i}]: expected a 64-bit integer, got {v!r}")
        return pack_int64(value)
    raise EventDecodeError(f"{path}: expected packed bytes or a list of integers")


_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _decode_float(value: Any, path: str) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[value]
    raise EventDecodeError(f"{path}: expected a number, got {value!r}")


def _float_column(value: Any, path: str) -> bytes:
    if isinstance(value, bytes):
        if len(value) % 8:
            raise EventDecodeError(f"{path}: packed float64 column of {len(value)} bytes")
        return value
    if isinstance(value, list | tuple):
        return pack_float64([_decode_float(v, f"{path}[{i}]") for i, v in enumerate(value)])
    raise EventDecodeError(f"{path}: expected packed bytes or a list of numbers")
