"""Metric events: points of one run as columns, one column set per metric key.

Columns are packed little-endian arrays (``int64`` steps, ``int64`` millisecond timestamps,
``float64`` values) carried as msgpack ``bin``. They pass from the client through ingest and
the projector into PostgreSQL chunks without being unpacked per point, and they keep every
value exact: NaN payloads, ±inf and -0.0 included.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_LITTLE = sys.byteorder == "little"


def pack_int64(values: Iterable[int]) -> bytes:
    packed = array("q", values)
    if not _LITTLE:
        packed.byteswap()
    return packed.tobytes()


def pack_float64(values: Iterable[float]) -> bytes:
    packed = array("d", values)
    if not _LITTLE:
        packed.byteswap()
    return packed.tobytes()


def unpack_int64(data: bytes) -> array[int]:
    out = array("q")
    out.frombytes(data)
    if not _LITTLE:
        out.byteswap()
    return out


def unpack_float64(data: bytes) -> array[float]:
    out = array("d")
    out.frombytes(data)
    if not _LITTLE:
        out.byteswap()
    return out


def column_arrays(
    steps: bytes, timestamps: bytes, values: bytes
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Packed columns as numpy arrays: the one reader of packed columns for the SDK and the
    server's native reads.

    Zero-copy, read-only views of the bytes on little-endian machines (a byte-swapped copy
    elsewhere). numpy is imported here rather than with this module, so that only code that
    reads histories as arrays needs it.
    """
    import numpy as np

    n = len(values)
    if n % 8 or len(steps) != n or len(timestamps) != n:
        raise ValueError(
            f"packed columns of {len(steps)}, {len(timestamps)} and {n} bytes do not hold "
            f"the same number of 8-byte values"
        )
    return (
        np.frombuffer(steps, "<i8").astype(np.int64, copy=False),
        np.frombuffer(timestamps, "<i8").astype(np.int64, copy=False),
        np.frombuffer(values, "<f8").astype(np.float64, copy=False),
    )


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """The points of one key of one run, in logged order."""

    key: str
    steps: bytes
    """Packed little-endian int64, one per point."""
    timestamps: bytes
    """Packed little-endian int64 milliseconds since the epoch, one per point."""
    values: bytes
    """Packed little-endian float64, one per point."""

    @property
    def count(self) -> int:
        return len(self.values) // 8

    @classmethod
    def from_lists(
        cls, key: str, steps: Sequence[int], timestamps: Sequence[int], values: Sequence[float]
    ) -> MetricSeries:
        return cls(key, pack_int64(steps), pack_int64(timestamps), pack_float64(values))

    def points(self) -> list[tuple[int, int, float]]:
        """(step, timestamp, value) per point; for tests and small reads, not for hot paths."""
        return list(
            zip(
                unpack_int64(self.steps),
                unpack_int64(self.timestamps),
                unpack_float64(self.values),
                strict=True,
            )
        )


@dataclass(frozen=True, slots=True)
class MetricsLogged:
    TYPE: ClassVar[str] = "metrics_logged"
    VERSION: ClassVar[int] = 1

    run_id: str
    series: tuple[MetricSeries, ...]
    """One entry per key; a key may appear more than once (points keep their logged order)."""

    @property
    def point_count(self) -> int:
        return sum(s.count for s in self.series)
