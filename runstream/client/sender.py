"""The background sender: one thread and one keep-alive connection per server per process.

Every ``flush_interval`` (or sooner when a buffer fills) the thread collects the runs'
buffers into the ``Outbox`` (batches, in logged order) and sends its head: one batch at a
time, so the events of a run arrive in order. A failed send (connection error, 5xx, 429/503)
is retried when the ``RetryClock`` says; past ``max_queue_points`` the outbox spools the
oldest batches and they are sent from there, still in order. A batch the server refuses
(other 4xx) is split into single events to find the bad one, which is kept under
``spool/rejected/`` and counted. When idle, the ``OrphanAdopter`` sends what dead processes
spooled. Nothing here raises into the training loop.

Locking: one lock per sender, shared with its outbox, guards the queue, the runs' counters
and the thread's start and stop (the registry of senders has its own). Starting the thread
under it also means the new thread's first collect waits until ``register``/``wake`` return.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from runstream.client import notices
from runstream.client.batches import Batch
from runstream.client.config import ClientConfig
from runstream.client.delivery import Outcome, fill_experiment, merge_tokens, post_events
from runstream.client.orphans import OrphanAdopter
from runstream.client.outbox import Outbox, RunLink, experiment_of
from runstream.client.retries import RetryClock
from runstream.client.spool import SpoolWriter, read_file, reject_file
from runstream.client.transport import Transport

__all__ = ["RunLink", "Sender"]

logger = logging.getLogger(__name__)


class Sender:
    """Sends the batches of every run of this process that logs to one server."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.transport = Transport(config.url, config.request_timeout, dict(config.headers))
        self._lock = threading.Condition()
        self.outbox = Outbox(
            config.url,
            config.batch_points,
            config.max_queue_points,
            SpoolWriter(config.spool_dir),
            self._lock,
        )
        self.retries = RetryClock(config.max_backoff)
        self.orphans = OrphanAdopter(config, self.transport, lambda: self.outbox.writer.path)
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.stopping = False

    # -- runs -------------------------------------------------------------------------------

    def register(self, link: RunLink) -> None:
        self.outbox.register(link)
        self._ensure_thread()

    def wake(self) -> None:
        self._ensure_thread()
        self._wake.set()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self.stopping:
                    return
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="runstream-sender", daemon=True
                    )
                    self._thread.start()

    def _alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def flush(self, link: RunLink, timeout: float) -> bool:
        """Wait until everything logged to ``link`` so far is settled; False on timeout."""
        target = link.buffer.seal()
        self.retries.hurry()
        self.wake()  # a thread that sleeps in a backoff is woken so it collects new items
        return self.outbox.wait_settled(link, target, timeout, self._alive)

    def close_run(self, link: RunLink, timeout: float) -> bool:
        """Flush a run that has ended; what is not delivered in ``timeout`` is spooled.

        Returns True when everything was delivered. The last run to close stops the thread
        and gives the spool directory up for ``runstream sync`` or a later sender.
        """
        delivered = self.flush(link, timeout)
        last = self.outbox.end(link)
        if not delivered:
            self.outbox.collect()
            self.outbox.spool_run(link)
        if last:
            self.stop(timeout=0.0 if not delivered else 1.0)
        return delivered

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread; spool what is still queued; release the spool directory."""
        with self._lock:
            self.stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.outbox.collect()
        self.outbox.spill_all()
        self.outbox.close()
        self.transport.close()

    def after_fork_child(self) -> None:
        """This object in a forked child: no thread, no connection, no spool directory."""
        self._thread = None
        self.stopping = True
        self.outbox.writer.forget()
        self.transport.forget()

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.config.flush_interval
        while True:
            self._wake.clear()
            try:
                self.outbox.collect()
            except Exception:
                logger.exception("runstream: collecting buffered points failed")
            if self.stopping:
                return
            head = self.outbox.head()
            wait = self.retries.wait_left()
            if wait > 0:
                self._wake.wait(min(wait, interval))
                continue
            if head is None:
                if self.retries.failing or not self.orphans.adopt(self._interrupted):
                    self._wake.wait(interval)
                continue
            try:
                self._send(head)
            except Exception as exc:  # never let the thread die
                logger.exception("runstream: sending a batch failed unexpectedly")
                self._retry(head, Outcome("retry", f"unexpected: {exc!r}"))

    def _interrupted(self) -> bool:
        return self.stopping or self._wake.is_set()

    def _send(self, batch: Batch) -> None:
        link = self.outbox.link(batch.run_id)
        events = batch.events
        if events is None:
            assert batch.spool_path is not None
            try:
                events = read_file(batch.spool_path).events
            except (OSError, ValueError) as exc:
                # Sent and deleted by ``runstream sync`` meanwhile, or damaged: nothing to do.
                logger.warning("runstream: spooled batch unreadable: %s", exc)
                self.outbox.dropped(batch)
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
                link.experiment_id = experiment_of(events)
                link.experiment_name = None
            if self.retries.succeeded():
                notices.forget(self.config.url)
            self.outbox.delivered(batch, outcome.token, merge_tokens)
        elif outcome.kind == "retry":
            self._retry(batch, outcome)
        else:
            self._reject(batch, events, outcome.error)

    def _retry(self, batch: Batch, outcome: Outcome) -> None:
        delay = self.retries.failed(outcome.retry_after)
        self.outbox.retrying(batch, outcome.error)
        failing = self.retries.failing
        if failing == 1 and outcome.status == 0:
            notices.no_server(self.config.url, self.config.spool_dir, outcome.error)
        if failing == 1 or failing % 20 == 0:
            logger.warning(
                "runstream: sending to %s failed (%s); retrying in %.1fs",
                self.config.url,
                outcome.error,
                delay,
                extra={"action": "send_retry"},
            )

    def _reject(self, batch: Batch, events: list[dict[str, Any]], error: str) -> None:
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
                    started_in=batch.started_in if event.get("type") == "run_created" else None,
                )
                for i, event in enumerate(events)
            ]
            self.outbox.replace_head(batch, parts)
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
        self.outbox.refused(batch, error)


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
        started_in=batch.started_in,
    )
