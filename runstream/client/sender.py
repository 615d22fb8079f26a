"""The background sender: one thread and one keep-alive connection per server per process.

Every ``flush_interval`` (or sooner when a buffer fills) the sender takes what the runs'
buffers hold, cuts it into batches (``batches.build_batches``) and sends the queue head first:
batches leave in the order they were logged, one at a time, so the events of a run arrive in
order. A failed send (connection error, 5xx, 429/503) is retried with backoff or the server's
``Retry-After``; past ``max_queue_points`` the oldest batches move to the spool directory and
are sent from there, still in order. A batch the server refuses (other 4xx) is split into
single events to find the bad one, which is kept under ``spool/rejected/`` and counted.
Nothing here raises into the training loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from runstream.client.batches import Batch, build_batches
from runstream.client.buffer import RunBuffer
from runstream.client.config import ClientConfig
from runstream.client.delivery import backoff, fill_experiment, merge_tokens, post_events
from runstream.client.spool import (
    SpoolWriter,
    claim_orphans,
    read_file,
    reject_file,
)
from runstream.client.transport import Transport

logger = logging.getLogger(__name__)

ORPHAN_CHECK_SECONDS = 60.0


@dataclass(slots=True)
class RunLink:
    """A run as the sender sees it: its buffer, delivery progress and counters."""

    run_id: str
    buffer: RunBuffer
    experiment_id: str | None = None
    experiment_name: str | None = None
    """Set while the experiment id is unknown (the server was down at ``start_run``)."""
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


class Sender:
    """Sends the batches of every run of this process that logs to one server."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.transport = Transport(config.url, config.request_timeout, dict(config.headers))
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._collect_lock = threading.Lock()
        self._wake = threading.Event()
        self._links: dict[str, RunLink] = {}
        self._active: set[str] = set()
        self._queue: deque[Batch] = deque()
        self._memory_points = 0
        self._writer = SpoolWriter(config.spool_dir)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._retry_at = 0.0
        self._server_asked_wait = False
        """True while the current wait is a 429/503 Retry-After (flush does not cut it)."""
        self._failing = 0
        self._next_orphan_check = 0.0
        self._skip_orphans: set[str] = set()

    # -- runs -------------------------------------------------------------------------------

    def register(self, link: RunLink) -> None:
        with self._lock:
            self._links[link.run_id] = link
            self._active.add(link.run_id)
        self._ensure_thread()

    def wake(self) -> None:
        self._ensure_thread()
        self._wake.set()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._stopping:
                    return
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="runstream-sender", daemon=True
                    )
                    self._thread.start()

    def flush(self, link: RunLink, timeout: float) -> bool:
        """Wait until everything logged to ``link`` so far is settled; False on timeout."""
        target = link.buffer.seal()
        with self._lock:
            if not self._server_asked_wait:
                self._retry_at = 0.0  # try now rather than after a long backoff
        self.wake()
        deadline = time.monotonic() + timeout
        with self._progress:
            while link.done_seq < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._progress.wait(min(left, 0.5))
                # A sender thread that sleeps in a backoff is woken so it collects new items.
            return True

    def close_run(self, link: RunLink, timeout: float) -> bool:
        """Flush a run that has ended; what is not delivered in ``timeout`` is spooled.

        Returns True when everything was delivered. The last run to close stops the thread
        and gives the spool directory up for ``runstream sync`` or a later sender.
        """
        delivered = self.flush(link, timeout)
        with self._lock:
            self._active.discard(link.run_id)
            last = not self._active
        if not delivered:
            self._collect()
            with self._lock:
                self._spill_locked(everything=True)
                for batch in self._queue:
                    if batch.run_id == link.run_id:
                        batch.last_seq = -1  # settled by the spool from now on
                link.done_seq = link.buffer.seq
        if last:
            self.stop(timeout=0.0 if not delivered else 1.0)
        return delivered

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread; spool what is still queued; release the spool directory."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._collect()
        with self._lock:
            self._spill_locked(everything=True)
            self._writer.close()
        self.transport.close()
        _forget_sender(self)

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.config.flush_interval
        while True:
            self._wake.clear()
            try:
                self._collect()
            except Exception:
                logger.exception("runstream: collecting buffered points failed")
            with self._lock:
                if self._stopping:
                    return
                head = self._queue[0] if self._queue else None
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                self._wake.wait(min(wait, interval))
                continue
            if head is None:
                if not self._adopt_orphans():
                    self._wake.wait(interval)
                continue
            try:
                self._send(head)
            except Exception as exc:  # never let the thread die
                logger.exception("runstream: sending a batch failed unexpectedly")
                self._note_retry(head, f"unexpected: {exc!r}", None)

    def _collect(self) -> None:
        """Take every run's buffered items into the queue, in order; spill past the bound."""
        with self._collect_lock:
            with self._lock:
                links = list(self._links.values())
            new: list[Batch] = []
            for link in links:
                items, seq = link.buffer.take()
                if not items:
                    continue
                batches = build_batches(
                    link.run_id, items, link.taken_seq + 1, self.config.batch_points
                )
                link.taken_seq = seq
                for batch in batches:
                    if link.experiment_name is not None and _has_unresolved_run(batch):
                        batch.experiment_name = link.experiment_name
                    link.queued_points += batch.points
                new.extend(batches)
            if not new:
                return
            with self._lock:
                for batch in new:
                    self._queue.append(batch)
                    self._memory_points += batch.points
                if self._memory_points > self.config.max_queue_points:
                    self._spill_locked(everything=False)

    def _spill_locked(self, everything: bool) -> None:
        for batch in self._queue:
            if not everything and self._memory_points <= self.config.max_queue_points:
                return
            if batch.spool_path is not None or batch.events is None:
                continue
            link = self._links.get(batch.run_id)
            try:
                batch.spool_path = self._writer.write(batch, self.config.url)
            except OSError as exc:
                logger.error(
                    "runstream: cannot spool to %s: %s",
                    self._writer.path,
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

    def _send(self, batch: Batch) -> None:
        link = self._links.get(batch.run_id)
        events = batch.events
        if events is None:
            assert batch.spool_path is not None
            try:
                events = read_file(batch.spool_path).events
            except (OSError, ValueError) as exc:
                # Sent and deleted by ``runstream sync`` meanwhile, or damaged: nothing to do.
                logger.warning("runstream: spooled batch unreadable: %s", exc)
                self._settle(batch, link)
                return
        if batch.experiment_name is not None and link is not None and link.experiment_id:
            batch.experiment_name = None
            fill_experiment(events, link.experiment_id)
        batch.attempts += 1
        outcome = post_events(
            self.transport,
            events,
            batch.idempotency_key,
            self.config.compress_min_bytes,
            batch.experiment_name,
        )
        if outcome.kind == "ok":
            if batch.experiment_name is not None and link is not None:
                link.experiment_id = _experiment_of(events)
                link.experiment_name = None
            with self._lock:
                self._failing = 0
                if link is not None:
                    link.points_sent += batch.points
                    link.batches_sent += 1
                    link.token = merge_tokens(link.token, outcome.token)
            self._settle(batch, link)
        elif outcome.kind == "retry":
            self._note_retry(batch, outcome.error, outcome.retry_after)
        else:
            self._reject(batch, events, link, outcome.error)

    def _settle(self, batch: Batch, link: RunLink | None) -> None:
        with self._lock:
            if self._queue and self._queue[0] is batch:
                self._queue.popleft()
            if batch.spool_path is not None:
                batch.spool_path.unlink(missing_ok=True)
            elif batch.events is not None:
                self._memory_points -= batch.points
            if link is not None:
                link.queued_points -= batch.points
                link.done_seq = max(link.done_seq, batch.last_seq)
            self._progress.notify_all()

    def _note_retry(self, batch: Batch, error: str, retry_after: float | None) -> None:
        with self._lock:
            self._failing += 1
            delay = (
                min(retry_after, 60.0)
                if retry_after is not None
                else backoff(self._failing, self.config.max_backoff)
            )
            self._retry_at = time.monotonic() + delay
            self._server_asked_wait = retry_after is not None
            link = self._links.get(batch.run_id)
            if link is not None:
                link.retries += 1
                link.last_error = error
            if self._failing == 1 or self._failing % 20 == 0:
                logger.warning(
                    "runstream: sending to %s failed (%s); retrying in %.1fs",
                    self.config.url,
                    error,
                    delay,
                    extra={"action": "send_retry"},
                )

    def _reject(
        self, batch: Batch, events: list[dict[str, Any]], link: RunLink | None, error: str
    ) -> None:
        if len(events) > 1:
            # Find the refused event: resend one event per batch, in the same order.
            parts = [
                Batch(
                    batch.run_id,
                    [event],
                    _points_of(event),
                    1,
                    batch.last_seq if i == len(events) - 1 else -1,
                    f"{batch.idempotency_key}-{i}",
                    batch.experiment_name if event.get("type") == "run_created" else None,
                )
                for i, event in enumerate(events)
            ]
            with self._lock:
                if self._queue and self._queue[0] is batch:
                    self._queue.popleft()
                if batch.spool_path is not None:
                    batch.spool_path.unlink(missing_ok=True)
                elif batch.events is not None:
                    self._memory_points -= batch.points
                for part in reversed(parts):
                    self._queue.appendleft(part)
                    self._memory_points += part.points
            return
        logger.error(
            "runstream: the server refused a batch of run %s: %s (kept under %s)",
            batch.run_id,
            error,
            self.config.spool_dir / "rejected",
            extra={"action": "batch_rejected"},
        )
        try:
            reject_file(self.config.spool_dir, _with_events(batch, events), self.config.url, error)
        except OSError as exc:
            logger.error("runstream: cannot keep the refused batch: %s", exc)
        if link is not None:
            with self._lock:
                link.failures += 1
                link.points_rejected += batch.points
                link.last_error = error
        self._settle(batch, link)

    def _adopt_orphans(self) -> bool:
        """Send the files of one spool directory left by a process that is gone.

        Returns True when it did any work (the caller then loops without waiting).
        """
        now = time.monotonic()
        if now < self._next_orphan_check or self._failing:
            return False
        worked = False
        for claim in claim_orphans(self.config.spool_dir, skip=self._writer.path):
            try:
                if str(claim.path) in self._skip_orphans:
                    continue
                for path in claim.files():
                    if self._stopping or self._wake.is_set():
                        return True
                    try:
                        spooled = read_file(path)
                    except (OSError, ValueError):
                        continue
                    if spooled.url.rstrip("/") != self.config.url:
                        self._skip_orphans.add(str(claim.path))
                        break
                    worked = True
                    outcome = post_events(
                        self.transport,
                        spooled.events,
                        spooled.idempotency_key,
                        self.config.compress_min_bytes,
                        spooled.experiment_name,
                    )
                    if outcome.kind == "ok":
                        path.unlink(missing_ok=True)
                    elif outcome.kind == "reject":
                        batch = Batch(
                            spooled.run_id,
                            spooled.events,
                            spooled.points,
                            len(spooled.events),
                            0,
                            spooled.idempotency_key,
                        )
                        reject_file(self.config.spool_dir, batch, spooled.url, outcome.error)
                        path.unlink(missing_ok=True)
                    else:
                        self._next_orphan_check = now + ORPHAN_CHECK_SECONDS
                        return True
            finally:
                claim.release()
        self._next_orphan_check = now + ORPHAN_CHECK_SECONDS
        return worked

    def after_fork_child(self) -> None:
        """This object in a forked child: no thread, no connection, no spool directory."""
        self._thread = None
        self._stopping = True
        self._writer.forget()
        self.transport.forget()


def _has_unresolved_run(batch: Batch) -> bool:
    return any(
        e.get("type") == "run_created" and not e.get("experiment_id") for e in batch.events or ()
    )


def _experiment_of(events: list[dict[str, Any]]) -> str | None:
    for event in events:
        if event.get("type") == "run_created":
            return str(event.get("experiment_id") or "") or None
    return None


def _points_of(event: dict[str, Any]) -> int:
    if event.get("type") != "metrics_logged":
        return 0
    return sum(len(s["values"]) // 8 for s in event.get("series", ()))


def _with_events(batch: Batch, events: list[dict[str, Any]]) -> Batch:
    return Batch(
        batch.run_id,
        events,
        batch.points,
        len(events),
        batch.last_seq,
        batch.idempotency_key,
        batch.experiment_name,
    )


# -- one sender per server per process ----------------------------------------------------------

_registry: dict[tuple[str, tuple[tuple[str, str], ...]], Sender] = {}
_registry_lock = threading.Lock()


def _sender_key(config: ClientConfig) -> tuple[str, tuple[tuple[str, str], ...]]:
    # Runs that send different credentials (tokens of two users) must not share a sender.
    return config.url, tuple(sorted(config.headers.items()))


def sender_for(config: ClientConfig) -> Sender:
    """The process's sender for ``config.url`` and its credentials, created on first use."""
    key = _sender_key(config)
    with _registry_lock:
        sender = _registry.get(key)
        if sender is None or sender._stopping:
            sender = _registry[key] = Sender(config)
        return sender


def _forget_sender(sender: Sender) -> None:
    key = _sender_key(sender.config)
    with _registry_lock:
        if _registry.get(key) is sender:
            del _registry[key]


def live_senders() -> list[Sender]:
    with _registry_lock:
        return list(_registry.values())


def reset_after_fork() -> None:
    """In a forked child: forget the parent's senders (their threads do not exist here)."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for sender in list(_registry.values()):
        sender.after_fork_child()
    _registry.clear()
