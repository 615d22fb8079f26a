"""The outbox: batches waiting to be sent, in logged order, bounded in memory by the spool.

One lock (a ``Condition``, the sender's) guards everything here: the queue, the points it
holds in memory, the runs and their counters. ``collect`` takes the runs' buffers into the
queue; the sender thread sends the head and ``settle``s it; past ``max_queue_points`` the
oldest batches are written to the spool directory and sent from there, still in order;
``wait_settled`` is what ``flush`` waits on. Nothing here does network I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runstream.client.batches import Batch, build_batches
from runstream.client.buffer import RunBuffer
from runstream.client.spool import SpoolWriter

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class RunLink:
    """A run as the sender sees it: its buffer, delivery progress and counters."""

    run_id: str
    buffer: RunBuffer
    experiment_id: str | None = None
    experiment_name: str | None = None
    """Set while the experiment id is unknown (the server was down at ``start_run``)."""
    started_in: str | None = None
    """The experiment name ``start_run`` was given (None when it was given an id)."""
    taken_seq: int = 0
    done_seq: int = 0
    """Buffer items up to this sequence are settled: delivered, or refused and kept aside."""
    token: str = ""
    """Write token of the newest delivered batch (for ``Client(..., wait_for=token)``)."""
    points_sent: int = 0
    points_spooled: int = 0
    points_rejected: int = 0
    points_lost: int = 0
    batches_sent: int = 0
    retries: int = 0
    failures: int = 0
    last_error: str | None = None
    queued_points: int = 0


class Outbox:
    """The queue of one sender, shared by its thread and the threads that flush runs."""

    def __init__(
        self,
        url: str,
        batch_points: int,
        max_queue_points: int,
        writer: SpoolWriter,
        lock: threading.Condition,
    ) -> None:
        self.url = url
        self.batch_points = batch_points
        self.max_queue_points = max_queue_points
        self.writer = writer
        self._changed = lock
        self._links: dict[str, RunLink] = {}
        self._active: set[str] = set()
        self._queue: deque[Batch] = deque()
        self._memory_points = 0

    # -- runs -------------------------------------------------------------------------------

    def register(self, link: RunLink) -> None:
        with self._changed:
            self._links[link.run_id] = link
            self._active.add(link.run_id)

    def end(self, link: RunLink) -> bool:
        """The run has ended; True when it was the last one still open."""
        with self._changed:
            self._active.discard(link.run_id)
            return not self._active

    def link(self, run_id: str) -> RunLink | None:
        with self._changed:
            return self._links.get(run_id)

    # -- the queue --------------------------------------------------------------------------

    def collect(self) -> None:
        """Take every run's buffered items into the queue, in order; spill past the bound."""
        with self._changed:
            for link in self._links.values():
                items, seq = link.buffer.take()
                if not items:
                    continue
                batches = build_batches(link.run_id, items, link.taken_seq + 1, self.batch_points)
                link.taken_seq = seq
                for batch in batches:
                    if link.experiment_name is not None and _has_unresolved_run(batch):
                        batch.experiment_name = link.experiment_name
                    if link.started_in is not None and _creates_run(batch):
                        batch.started_in = link.started_in
                    link.queued_points += batch.points
                    self._queue.append(batch)
                    self._memory_points += batch.points
            if self._memory_points > self.max_queue_points:
                self._spill(everything=False)

    def head(self) -> Batch | None:
        with self._changed:
            return self._queue[0] if self._queue else None

    def spill_all(self) -> None:
        """Write every batch still only in memory to the spool (the process is leaving)."""
        with self._changed:
            self._spill(everything=True)

    def spool_run(self, link: RunLink) -> None:
        """Spool everything queued and count ``link``'s items settled: the spool has them."""
        with self._changed:
            self._spill(everything=True)
            for batch in self._queue:
                if batch.run_id == link.run_id:
                    batch.last_seq = -1  # settled by the spool from now on
            link.done_seq = link.buffer.seq
            self._changed.notify_all()

    def _spill(self, everything: bool) -> None:
        for batch in self._queue:
            if not everything and self._memory_points <= self.max_queue_points:
                return
            if batch.spool_path is not None or batch.events is None:
                continue
            link = self._links.get(batch.run_id)
            try:
                batch.spool_path = self.writer.write(batch, self.url)
            except OSError as exc:
                logger.error(
                    "runstream: cannot spool to %s: %s",
                    self.writer.path,
                    exc,
                    extra={"action": "spool_failed"},
                )
                if link is not None:
                    link.last_error = f"spool: {exc}"
                return
            self._memory_points -= batch.points
            if link is not None:
                link.points_spooled += batch.points
            batch.events = None if batch.attempts == 0 else batch.events

    # -- outcomes of the head ---------------------------------------------------------------

    def delivered(self, batch: Batch, token: str, merge: Callable[[str, str], str]) -> None:
        """The server took ``batch``: count it and settle it."""
        with self._changed:
            link = self._links.get(batch.run_id)
            if link is not None:
                link.points_sent += batch.points
                link.batches_sent += 1
                link.token = merge(link.token, token)
            self._settle(batch, link)

    def retrying(self, batch: Batch, error: str) -> None:
        with self._changed:
            link = self._links.get(batch.run_id)
            if link is not None:
                link.retries += 1
                link.last_error = error

    def refused(self, batch: Batch, error: str) -> None:
        """The server refused ``batch`` for good (it is kept under ``rejected/``)."""
        with self._changed:
            link = self._links.get(batch.run_id)
            if link is not None:
                link.failures += 1
                link.points_rejected += batch.points
                link.last_error = error
            self._settle(batch, link)

    def dropped(self, batch: Batch) -> None:
        """``batch`` needs no sending any more (its spool file is gone)."""
        with self._changed:
            self._settle(batch, self._links.get(batch.run_id))

    def replace_head(self, batch: Batch, parts: list[Batch]) -> None:
        """Send ``parts`` in place of ``batch`` (a refused batch split to find the bad event)."""
        with self._changed:
            self._remove(batch)
            for part in reversed(parts):
                self._queue.appendleft(part)
                self._memory_points += part.points

    def _settle(self, batch: Batch, link: RunLink | None) -> None:
        self._remove(batch)
        if link is not None:
            link.queued_points -= batch.points
            link.done_seq = max(link.done_seq, batch.last_seq)
        self._changed.notify_all()

    def _remove(self, batch: Batch) -> None:
        if self._queue and self._queue[0] is batch:
            self._queue.popleft()
        if batch.spool_path is not None:
            batch.spool_path.unlink(missing_ok=True)
        elif batch.events is not None:
            self._memory_points -= batch.points

    # -- waiting ----------------------------------------------------------------------------

    def wait_settled(
        self, link: RunLink, target: int, timeout: float, alive: Callable[[], bool]
    ) -> bool:
        """Wait until ``link``'s items up to ``target`` are settled; False on timeout, or
        as soon as ``alive()`` says nobody is sending any more."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while link.done_seq < target:
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    return False
                # Woken by each settle; the 0.5 s cap notices a sender thread that died.
                self._changed.wait(min(left, 0.5))
            return True

    def close(self) -> None:
        """Give the spool directory up (to ``runstream sync`` or a later sender)."""
        with self._changed:
            self.writer.close()


def _creates_run(batch: Batch) -> bool:
    return any(e.get("type") == "run_created" for e in batch.events or ())


def _has_unresolved_run(batch: Batch) -> bool:
    return any(
        e.get("type") == "run_created" and not e.get("experiment_id") for e in batch.events or ()
    )


def experiment_of(events: list[dict[str, Any]]) -> str | None:
    """The experiment id a batch's ``run_created`` event was sent with."""
    for event in events:
        if event.get("type") == "run_created":
            return str(event.get("experiment_id") or "") or None
    return None
