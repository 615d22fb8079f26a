"""Metric history of one (run, key): every point in logged order, as JSON or packed msgpack.

The chunks' packed little-endian columns are joined as bytes (one copy per chunk) and never
unpacked per point. The msgpack answer carries them unchanged, so it is bit-exact (NaN
payloads, ±inf, -0.0). The JSON answer turns them into numpy arrays that orjson writes
natively; values that JSON cannot carry are written as MLflow's server writes metric values,
the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, which MLflow's client (protobuf's
JSON parser) and ``float()`` read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
import orjson
from aiohttp import web

from runstream.api import queries
from runstream.api.native.downsample import Points
from runstream.api.reads import await_token, run_not_found
from runstream.resources import PG_POOL
from runstream.schemas.errors import InvalidParameterValue, RunstreamError
from runstream.schemas.validation import missing_value

MSGPACK_CONTENT_TYPE = "application/msgpack"
_MSGPACK_TYPES = (MSGPACK_CONTENT_TYPE, "application/x-msgpack")


@dataclass(frozen=True, slots=True)
class History:
    """The chunks' packed little-endian columns, in chunk order: int64 steps, int64 ms
    timestamps, float64 values. Kept as chunks so that the msgpack answer copies each once."""

    key: str
    step_chunks: tuple[bytes, ...]
    timestamp_chunks: tuple[bytes, ...]
    value_chunks: tuple[bytes, ...]

    @classmethod
    def from_chunks(
        cls,
        key: str,
        steps: Sequence[bytes],
        timestamps: Sequence[bytes],
        values: Sequence[bytes],
    ) -> History:
        for s, t, v in zip(steps, timestamps, values, strict=True):
            if len(v) % 8 or len(s) != len(v) or len(t) != len(v):
                # A torn chunk is a projector bug; answering a misaligned series would be worse.
                raise RunstreamError(
                    f"Stored chunk of metric {key!r} has mismatched column lengths "
                    f"({len(s)}, {len(t)}, {len(v)} bytes)"
                )
        return cls(key, tuple(steps), tuple(timestamps), tuple(values))

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.value_chunks) // 8

    @property
    def steps(self) -> bytes:
        return b"".join(self.step_chunks)

    @property
    def timestamps(self) -> bytes:
        return b"".join(self.timestamp_chunks)

    @property
    def values(self) -> bytes:
        return b"".join(self.value_chunks)

    def points(self) -> Points:
        """The columns as numpy arrays (``downsample.Points``)."""
        return Points.from_packed(self.steps, self.timestamps, self.values)


def json_values(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | list[Any]:
    """Values for orjson: the array itself when all finite (orjson writes it natively),
    else a list with the non-finite ones as protobuf's JSON strings."""
    if np.isfinite(values).all():
        return values
    out = values.astype(object)
    out[np.isnan(values)] = "NaN"
    out[values == np.inf] = "Infinity"
    out[values == -np.inf] = "-Infinity"
    result: list[Any] = out.tolist()
    return result


def history_to_json(history: History) -> bytes:
    """``{"key", "steps", "timestamps", "values"}`` as JSON bytes."""
    points = history.points()
    return orjson.dumps(
        {
            "key": history.key,
            "steps": points.steps,
            "timestamps": points.timestamps,
            "values": json_values(points.values),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _bin_header(size: int) -> bytes:
    """msgpack's bin 8/16/32 header for ``size`` bytes (the smallest that fits, as packb)."""
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    if size < 1 << 32:
        return b"\xc6" + size.to_bytes(4, "big")
    raise RunstreamError(f"Metric history of {size} bytes per column exceeds msgpack's 4 GiB")


def history_to_msgpack(history: History) -> bytes:
    """``{"key", "steps": bin, "timestamps": bin, "values": bin}``, columns as stored.

    Equal to ``msgpack.packb`` of the joined columns, but framed by hand so that each chunk
    is copied once, straight into the body (packb would copy the joined columns again).
    """
    head: bytes = msgpack.packb({"key": history.key}, use_bin_type=True)
    parts = [b"\x84", head[1:]]  # fixmap of 4; reuse the packed "key" pair
    for name, chunks in (
        ("steps", history.step_chunks),
        ("timestamps", history.timestamp_chunks),
        ("values", history.value_chunks),
    ):
        parts.append(msgpack.packb(name))
        parts.append(_bin_header(sum(len(c) for c in chunks)))
        parts.extend(chunks)
    return b"".join(parts)


def wants_msgpack(accept: str) -> bool:
    return any(kind in accept for kind in _MSGPACK_TYPES)


async def load_history(db: queries.Executor, run_id: str, key: str) -> History:
    chunks = await queries.series_chunks(db, run_id, key)
    if chunks is None:
        raise run_not_found(run_id)
    return History.from_chunks(key, chunks.steps, chunks.timestamps, chunks.values)


def history_key(request: web.Request) -> str:
    key = request.query.get("key")
    if key is None or key == "":
        raise InvalidParameterValue(missing_value("key"))
    return key


async def get_whole_history(request: web.Request, key: str) -> web.Response:
    """Every point of ``GET /api/runstream/v1/runs/{run_id}/history?key=<key>``."""
    await await_token(request)
    history = await load_history(request.app[PG_POOL], request.match_info["run_id"], key)
    return history_response(request, history)


def history_response(request: web.Request, history: History) -> web.Response:
    """``history`` as msgpack when the client accepts it, else JSON."""
    headers = {"Vary": "Accept"}
    if wants_msgpack(request.headers.get("Accept", "")):
        return web.Response(
            body=history_to_msgpack(history), content_type=MSGPACK_CONTENT_TYPE, headers=headers
        )
    return web.Response(
        body=history_to_json(history), content_type="application/json", headers=headers
    )
