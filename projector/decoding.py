"""Decoding stream entries on the projector's hot path.

Most entries hold only ``metrics_logged`` events with packed columns, and on small entries
``codec.decode_entry`` (which builds an error path for every field it checks) costs more than
applying them. ``decode_stream_entry`` checks that common shape directly, with the same
rules, and hands every other entry, and any entry that breaks a rule, to
``codec.decode_entry``, which decodes it or raises the precise ``EventDecodeError``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from runstream.schemas import codec
from runstream.schemas import constants as c
from runstream.schemas.metrics import MetricSeries, MetricsLogged

_METRICS = MetricsLogged.TYPE
_MAX_SERIES_BYTES = 8 * c.MAX_POINTS_PER_SERIES_EVENT


def decode_stream_entry(data: bytes) -> codec.Entry:
    """``codec.decode_entry``, faster for entries of packed metric columns."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception:
        return codec.decode_entry(data)  # raises the EventDecodeError
    entry = _fast(obj)
    return entry if entry is not None else codec.decode_entry(data)


def _fast(obj: Any) -> codec.Entry | None:
    if type(obj) is not dict or obj.get("v") != c.ENTRY_FORMAT_VERSION:
        return None
    at = obj.get("at")
    events = obj.get("ev")
    if type(at) is not int or type(events) is not list:
        return None
    out = []
    try:
        for ev in events:
            # Exactly the fields of a metrics_logged event ("v" optional), nothing unknown.
            if (
                type(ev) is not dict
                or ev["type"] != _METRICS
                or len(ev) != (4 if "v" in ev else 3)
                or ev.get("v", MetricsLogged.VERSION) != MetricsLogged.VERSION
            ):
                return None
            run_id = ev["run_id"]
            raw_series = ev["series"]
            if type(run_id) is not str or type(raw_series) is not list:
                return None
            series = []
            for s in raw_series:
                if type(s) is not dict or len(s) != 4:
                    return None
                key, steps, stamps, values = s["key"], s["steps"], s["timestamps"], s["values"]
                if (
                    type(key) is not str
                    or type(steps) is not bytes
                    or type(stamps) is not bytes
                    or type(values) is not bytes
                ):
                    return None
                n = len(values)
                if n % 8 or len(steps) != n or len(stamps) != n:
                    return None
                if n > _MAX_SERIES_BYTES:
                    return None
                series.append(MetricSeries(key, steps, stamps, values))
            out.append(MetricsLogged(run_id, tuple(series)))
    except KeyError:
        return None
    return codec.Entry(at, tuple(out))
