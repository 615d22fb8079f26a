"""The consumer of one shard: read a batch, apply it in PostgreSQL, then acknowledge it.

Order of reads, so that a run's events apply in stream order after any crash:

1. entries this consumer was given and has not acknowledged (its own pending list);
2. entries other (dead) consumers left pending, once idle for ``claim_idle_ms`` (XAUTOCLAIM);
   new entries are not read while any remain, or they would overtake them;
3. new entries (``>``), ``projector_batch`` per read, blocking ``projector_block_ms``.

A batch is acknowledged only after its transaction commits; then the watermark rises to the
newest entry below which everything is applied (or dead-lettered). An entry that fails stays
pending and is retried from step 1 until its delivery count reaches ``max_deliveries``;
then, or at once if it does not decode, it goes to the dead-letter stream and is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from runstream import telemetry
from runstream.projector import changes
from runstream.projector.dead_letters import release_reservations
from runstream.projector.statistics import SearchStatistics
from runstream.projector.store import StreamEntry, apply_entries
from runstream.projector.streams import DeadLetter, EntryId, RawEntry, ShardStream, next_id
from runstream.schemas.entries import decode_entry
from runstream.schemas.errors import EventDecodeError, InvalidParameterValue
from runstream.schemas.runs import RunCreated
from runstream.schemas.sharding import format_entry_id
from runstream.schemas.validation import check_storable_all
from runstream.settings import Settings

logger = logging.getLogger(__name__)

MAX_BACKOFF = 5.0
BATCH_BYTES = 64 * 1024 * 1024
"""Stream bytes a batch aims at. Entries reach ``MAX_ENTRY_BYTES`` (8 MiB), so a count of
entries alone does not bound memory: reads start small and grow while entries are small."""
FIRST_READ = 8
"""Seconds between attempts while Redis or PostgreSQL is unreachable."""


@dataclass(slots=True)
class ConsumerStats:
    entries: int = 0
    """Entries applied (first delivery that reached the event log)."""
    duplicates: int = 0
    dead: int = 0
    points: int = 0
    batches: int = 0

    @classmethod
    def total(cls, parts: Iterable[ConsumerStats]) -> ConsumerStats:
        out = cls()
        for p in parts:
            out.entries += p.entries
            out.duplicates += p.duplicates
            out.dead += p.dead
            out.points += p.points
            out.batches += p.batches
        return out


def _runs_created(entries: Sequence[StreamEntry], applied: Sequence[EntryId]) -> int:
    done = set(applied)
    return sum(
        isinstance(event, RunCreated)
        for e in entries
        if e.entry_id in done
        for event in e.entry.events
    )


class ShardConsumer:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        stream: ShardStream,
        still_held: Callable[[], bool] = lambda: True,
        statistics: SearchStatistics | None = None,
    ) -> None:
        self.settings = settings
        self.statistics = statistics
        self.pool = pool
        self.stream = stream
        self.shard = stream.shard
        self.still_held = still_held
        self.stats = ConsumerStats()
        self._own_cursor: EntryId | None = (0, 0)
        self._retry_own = False
        self._claimed_all = False
        self._claim_cursor: EntryId = (0, 0)
        self._held_back: set[EntryId] = set()
        self._applied_high: EntryId | None = None
        self._group_ready = False
        self._count = min(FIRST_READ, settings.projector_batch)

    def restart_recovery(self) -> None:
        """Read the own pending list and claim others' again (after an error)."""
        self._own_cursor = (0, 0)
        self._claimed_all = False
        self._claim_cursor = (0, 0)
        self._group_ready = False

    @property
    def recovering(self) -> bool:
        return self._own_cursor is not None or self._retry_own or not self._claimed_all

    async def step(self, block: bool = True) -> int:
        """Handle one batch; returns the entries it read (0: nothing to do right now)."""
        batch = self._count
        if not self._group_ready:
            await self.stream.ensure_group()
            self._group_ready = True
        if self._own_cursor is not None:
            raw = await self.stream.read_own_pending(self._own_cursor, batch)
            if raw:
                self._own_cursor = raw[-1][0]
                await self.process(raw)
                return len(raw)
            self._own_cursor = None
        if self._retry_own:
            self._retry_own = False
            self._own_cursor = (0, 0)
            return await self.step(block=False)
        if not self._claimed_all:
            total, per_consumer = await self.stream.pending_summary()
            if total - per_consumer.get(self.stream.consumer, 0) == 0:
                self._claimed_all = True
            else:
                cursor, raw = await self.stream.claim_idle(
                    self._claim_cursor, self.settings.claim_idle_ms, batch
                )
                self._claim_cursor = cursor or (0, 0)
                if raw:
                    await self.process(raw)
                    return len(raw)
                if cursor is None:
                    # Others' entries are not idle long enough yet: their consumer may be
                    # alive. Wait rather than overtake them.
                    await asyncio.sleep(min(self.settings.claim_idle_ms / 4000, 0.5))
                return 0
        raw = await self.stream.read_new(batch, self.settings.projector_block_ms if block else None)
        if raw:
            await self.process(raw)
        return len(raw)

    async def process(self, raw: list[RawEntry]) -> None:
        started = time.perf_counter()
        entries: list[StreamEntry] = []
        acked: list[EntryId] = []
        undecodable: dict[EntryId, tuple[bytes, str]] = {}
        for entry_id, fields in raw:
            if not fields:
                acked.append(entry_id)  # deleted from the stream while pending: nothing left
                continue
            payload = fields.get(b"e")
            if payload is None:
                undecodable[entry_id] = (b"", f"entry has no 'e' field (fields {sorted(fields)})")
                continue
            try:
                entry = decode_entry(payload)
                # The door's own check (schemas.validation): an entry that fails it would
                # fail in PostgreSQL; it goes to the dead letters now, not after retries.
                check_storable_all(entry.events, "ev")
            except (EventDecodeError, InvalidParameterValue) as exc:
                undecodable[entry_id] = (payload, str(exc))
                continue
            entries.append(StreamEntry(self.shard, entry_id, payload, entry))

        failed: dict[EntryId, str] = {}
        if entries:
            async with self.pool.acquire() as conn:
                result = await apply_entries(conn, entries, self.settings.chunk_points)
                if self.statistics is not None:
                    # Before the watermark: a read waiting for these runs gets their statistics.
                    await self.statistics.note(conn, _runs_created(entries, result.applied))
            acked += result.applied + result.duplicates
            failed = result.failed
            self.stats.entries += len(result.applied)
            self.stats.duplicates += len(result.duplicates)
            self.stats.points += result.points

        dead = await self._dead_letters(entries, undecodable, failed)
        handled = acked + [d.entry_id for d in dead]
        self._held_back.difference_update(handled)
        self._held_back.update(i for i in failed if i not in {d.entry_id for d in dead})
        self._retry_own = self._retry_own or bool(self._held_back)
        if handled:
            top = max(handled)
            if self._applied_high is None or top > self._applied_high:
                self._applied_high = top
        # Live streams (api/native/live_hub.py) hear what this batch changed.
        announced = changes.message(self.shard, (e for e in entries if e.entry_id not in failed))
        await self.stream.finish(
            acked, dead, self._watermark(handled), self._trim_below(), announced
        )
        for d in dead:
            await self._release(d)
        self.stats.batches += 1
        self._adapt_count(raw)
        self.stats.dead += len(dead)
        shard = str(self.shard)
        telemetry.PROJECTOR_BATCH_SECONDS.labels(shard).observe(time.perf_counter() - started)
        telemetry.PROJECTOR_ENTRIES.labels(shard).inc(len(handled))

    def _adapt_count(self, raw: list[RawEntry]) -> None:
        size = sum(len(fields.get(b"e", b"")) for _, fields in raw)
        fits = int(BATCH_BYTES * len(raw) // max(size, 1))
        self._count = max(1, min(self.settings.projector_batch, fits, 2 * self._count))

    def _watermark(self, handled: list[EntryId]) -> EntryId | None:
        if not self._held_back:
            return self._applied_high
        low = min(self._held_back)
        below = [i for i in handled if i < low]
        return max(below) if below else None

    def _trim_below(self) -> EntryId | None:
        return next_id(self._applied_high) if self._applied_high else None

    async def _dead_letters(
        self,
        entries: list[StreamEntry],
        undecodable: dict[EntryId, tuple[bytes, str]],
        failed: dict[EntryId, str],
    ) -> list[DeadLetter]:
        if not undecodable and not failed:
            return []
        counts = await self.stream.deliveries([*undecodable, *failed])
        dead = [
            DeadLetter(i, payload, error, counts.get(i, 1))
            for i, (payload, error) in undecodable.items()
        ]
        payloads = {e.entry_id: e.payload for e in entries}
        for entry_id, error in failed.items():
            deliveries = counts.get(entry_id, 1)
            if deliveries >= self.settings.max_deliveries:
                dead.append(DeadLetter(entry_id, payloads[entry_id], error, deliveries))
            else:
                logger.warning(
                    "shard %d entry %s failed (delivery %d of %d): %s",
                    self.shard,
                    format_entry_id(entry_id),
                    deliveries,
                    self.settings.max_deliveries,
                    error,
                    extra={"action": "projector_entry_failed"},
                )
        for d in dead:
            logger.error(
                "shard %d entry %s moved to the dead letters after %d deliveries: %s",
                self.shard,
                format_entry_id(d.entry_id),
                d.deliveries,
                d.error,
                extra={"action": "projector_dead_letter"},
            )
        return dead

    async def _release(self, dead: DeadLetter) -> None:
        """Undo the write-side records of a dead entry (projector/dead_letters.py).

        Best effort after the dead letter is stored: if Redis fails here, the records expire
        with the write model's TTL, and ``runstream dead-letters`` shows the entry.
        """
        try:
            await release_reservations(
                self.stream.redis, self.stream.prefix, self.shard, dead.payload
            )
        except Exception as exc:
            logger.error(
                "shard %d entry %s: could not release its write-side records: %s",
                self.shard,
                format_entry_id(dead.entry_id),
                exc,
                extra={"action": "dead_letter_release_failed"},
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set or the lease is lost; back off while a store is down."""
        backoff = 0.1
        while not stop.is_set() and self.still_held():
            try:
                await self.step(block=True)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "shard %d: %s: %s; retrying in %.1fs",
                    self.shard,
                    type(exc).__name__,
                    exc,
                    backoff,
                    exc_info=not _is_outage(exc),
                    extra={"action": "projector_backoff"},
                )
                self.restart_recovery()
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def drain(self) -> None:
        """Apply until the shard has nothing new and nothing pending (tests and tools)."""
        while True:
            read = await self.step(block=False)
            if read or self.recovering:
                continue
            total, _ = await self.stream.pending_summary()
            if total == 0:
                return
            self.restart_recovery()
            await asyncio.sleep(0.05)


def _is_outage(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from runstream.projector.store import is_systemic

    return isinstance(exc, RedisConnectionError | RedisTimeoutError) or is_systemic(exc)
