"""A run's in-memory buffer: metric points as columns per key, events in logged order.

``RunBuffer.log`` is the hot path of a training loop: no I/O, no allocation per point beyond
the arrays' amortised growth, a dict lookup per known key, one lock. Everything else (other
events, sealing, taking) is rare and may be slower.

The buffer keeps the order between metrics and other events: adding an event first seals the
points logged so far into a ``MetricGroup``, so the sender sees ``[points, params, points]``
in the order they were logged.
"""

from __future__ import annotations

import logging
import numbers
import operator
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import INT64_MAX, INT64_MIN, validate_key

logger = logging.getLogger(__name__)

_time_ns = time.time_ns


class _Series:
    """Columns of one key since the last take, and the key's auto-step counter."""

    __slots__ = ("key", "next_step", "stamps", "steps", "values")

    def __init__(self, key: str) -> None:
        self.key = key
        self.next_step = 0
        self.steps: array[int] = array("q")
        self.stamps: array[int] = array("q")
        self.values: array[float] = array("d")


@dataclass(slots=True)
class MetricGroup:
    """Points logged between two other events: ``(key, steps, timestamps, values)`` columns."""

    columns: list[tuple[str, array[int], array[int], array[float]]]
    points: int


@dataclass(slots=True)
class EventItem:
    """A non-metric event in its wire map form (``codec.event_to_obj``)."""

    obj: dict[str, Any]


Item = MetricGroup | EventItem


def check_step(step: Any) -> int:
    """An explicit step: an integer (numpy integers too) in the int64 range; bool is refused."""
    if isinstance(step, bool):
        raise TypeError(f"step must be an integer, got {step!r}")
    try:
        value = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an integer, got {type(step).__name__}") from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"step {value} is outside the 64-bit integer range")
    return value


def check_value(key: str, value: Any) -> float:
    """A metric value as float: ints, floats, numpy scalars, 0-d tensors; not bool or str."""
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        raise TypeError(f"metric {key!r}: bool is not a metric value, got {value!r}")
    if isinstance(value, numbers.Real) or (
        hasattr(value, "__float__") and not isinstance(value, str | bytes)
    ):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"metric {key!r}: {value!r} is not a number ({exc})") from None
    raise TypeError(f"metric {key!r}: expected a number, got {type(value).__name__}")


def check_key(key: Any, what: str = "metric") -> str:
    """A key by MLflow's rules, as ``ValueError`` (``TypeError`` for a non-string)."""
    if not isinstance(key, str):
        raise TypeError(f"{what} key must be a string, got {type(key).__name__}")
    try:
        return validate_key(key, what)
    except InvalidParameterValue as exc:
        raise ValueError(exc.message) from None


class RunBuffer:
    """Columns per key plus the events between them, bounded by ``max_points``."""

    def __init__(
        self,
        max_points: int = 4_000_000,
        wake_points: int = 100_000,
        on_full: Callable[[], None] | None = None,
    ) -> None:
        self._new_lock()
        self._series: dict[str, _Series] = {}
        self._items: list[Item] = []
        self._pending = 0
        """Points logged and not yet taken."""
        self._max = max_points
        self._wake_points = wake_points
        self._wake_at = wake_points
        self._on_full = on_full
        self.logged = 0
        self.dropped = 0
        self.seq = 0
        """Items sealed so far; ``take`` hands out items numbered ``taken+1 .. seq``."""
        self._warned_drop = False
        self._closed = False

    # -- hot path ---------------------------------------------------------------------------

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Append one point per key at ``step`` (auto per key when None), stamped now."""
        series = self._series
        try:
            pairs = metrics.items()
        except AttributeError:
            self._log_slow(metrics, step)
            return
        for key, value in pairs:
            tv = type(value)
            if (tv is not float and tv is not int) or key not in series:
                self._log_slow(metrics, step)
                return
        if step is not None and (type(step) is not int or not INT64_MIN <= step <= INT64_MAX):
            self._log_slow(metrics, step)
            return
        stamp = _time_ns() // 1_000_000
        n = len(metrics)
        self._acquire()
        try:
            pending = self._pending + n
            if pending > self._max:
                self._drop(n)
                return
            self._pending = pending
            self.logged += n
            if step is None:
                for key, value in metrics.items():
                    s = series[key]
                    s.values.append(value)
                    at = s.next_step
                    s.next_step = at + 1
                    s.steps.append(at)
                    s.stamps.append(stamp)
            else:
                nxt = step + 1
                for key, value in metrics.items():
                    s = series[key]
                    s.values.append(value)
                    s.next_step = nxt
                    s.steps.append(step)
                    s.stamps.append(stamp)
            if pending >= self._wake_at:
                self._wake_at = self._max + 1
                wake = True
            else:
                wake = False
        finally:
            self._release()
        if wake and self._on_full is not None:
            self._on_full()

    def _log_slow(self, metrics: Mapping[str, Any], step: Any) -> None:
        """New keys, other number types or a bad call: validate all, then log as floats."""
        if not isinstance(metrics, Mapping):
            raise TypeError(f"log() takes a dict of metrics, got {type(metrics).__name__}")
        clean = {check_key(k): check_value(k, v) for k, v in metrics.items()}
        checked = None if step is None else check_step(step)
        with self.lock:
            for key in clean:
                if key not in self._series:
                    self._series[key] = _Series(key)
        self.log(clean, checked)

    def close(self) -> None:
        """Refuse further points (the run is finished): ``log`` raises ``RuntimeError``."""
        with self.lock:
            self._closed = True
            self._max = -1

    def _drop(self, n: int) -> None:
        if self._closed:
            raise RuntimeError("the run is finished; start a new run to log more")
        self.dropped += n
        if not self._warned_drop:
            self._warned_drop = True
            logger.warning(
                "runstream: %d points waiting to be sent, over the limit; dropping points"
                " (see run.stats())",
                self._pending,
                extra={"action": "points_dropped"},
            )

    # -- events and taking ------------------------------------------------------------------

    def _seal_locked(self) -> None:
        if not self._pending_since_seal():
            return
        columns = []
        points = 0
        for s in self._series.values():
            if s.values:
                columns.append((s.key, s.steps, s.stamps, s.values))
                points += len(s.values)
                s.steps, s.stamps, s.values = array("q"), array("q"), array("d")
        self._items.append(MetricGroup(columns, points))
        self.seq += 1

    def _pending_since_seal(self) -> bool:
        return any(s.values for s in self._series.values())

    def add_event(self, obj: dict[str, Any]) -> int:
        """Queue a non-metric event after the points logged so far; returns its sequence."""
        with self.lock:
            self._seal_locked()
            self._items.append(EventItem(obj))
            self.seq += 1
            return self.seq

    def seal(self) -> int:
        """Close the current metric group; returns the sequence of the last item."""
        with self.lock:
            self._seal_locked()
            return self.seq

    def take(self) -> tuple[list[Item], int]:
        """Everything logged so far, in order, and the sequence of its last item."""
        with self.lock:
            self._seal_locked()
            items, self._items = self._items, []
            self._pending = 0
            self._wake_at = self._wake_points
            return items, self.seq

    @property
    def pending_points(self) -> int:
        return self._pending

    def next_steps(self) -> dict[str, int]:
        """The auto-step counter of every key seen (the step the next ``log`` would use)."""
        with self.lock:
            return {k: s.next_step for k, s in self._series.items()}

    def _new_lock(self) -> None:
        self.lock = threading.Lock()
        # Bound methods: half the cost of ``with self.lock`` on the hot path.
        self._acquire = self.lock.acquire
        self._release = self.lock.release

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock and empty columns; the auto-step counters stay."""
        self._new_lock()
        self._items = []
        self._pending = 0
        self._wake_at = 0  # the child's first point starts its sender
        self.logged = self.dropped = 0
        for s in self._series.values():
            s.steps, s.stamps, s.values = array("q"), array("q"), array("d")
