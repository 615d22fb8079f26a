"""The wire form of live streams: Server-Sent Events frames, and event ids that list, per
series, how many points the client has received (``<series_id>:<count>,...``), which
``Last-Event-ID`` sends back on reconnection."""

from __future__ import annotations

from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import invalid_value


def sse(event: str, data: bytes, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + data + b"\n\n"


def format_positions(positions: dict[int, int]) -> str:
    return ",".join(f"{sid}:{count}" for sid, count in sorted(positions.items()))


def parse_positions(text: str) -> dict[int, int]:
    out: dict[int, int] = {}
    if not text.strip():
        return out
    try:
        for part in text.split(","):
            sid, _, count = part.partition(":")
            out[int(sid)] = int(count)
    except ValueError:
        raise InvalidParameterValue(invalid_value("Last-Event-ID", text)) from None
    if any(v < 0 for v in out.values()):
        raise InvalidParameterValue(invalid_value("Last-Event-ID", text))
    return out
