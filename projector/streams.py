"""Redis side of the projector: reading a shard's stream, and finishing a batch atomically.

Finishing a batch is one Lua call per batch (one round trip, atomic, sent the short way:
``runstream/lean_script.py``): dead letters are
added, the batch's entries acknowledged, the watermark raised (never lowered) and announced,
what the batch changed announced to live streams (``projector/changes.py``), and the stream
trimmed below the oldest entry still pending in the group. Every key it
touches carries the shard's hash tag, so it runs on one Redis Cluster slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from runstream.lean_script import LeanScript
from runstream.schemas import constants as c
from runstream.schemas.sharding import format_entry_id, parse_entry_id

EntryId = tuple[int, int]
RawEntry = tuple[EntryId, dict[bytes, bytes]]
"""An entry id and its fields (empty when the entry was deleted while pending)."""

DEAD_LETTER_MAXLEN = 100_000
"""Dead letters kept per shard (approximate trim): bounded, like every stream."""

_FINISH = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local stream, watermark, dead = KEYS[1], KEYS[2], KEYS[3]
local group, channel, shard = ARGV[1], ARGV[2], ARGV[3]
local new_mark, trim_to, maxlen = ARGV[4], ARGV[5], ARGV[6]
local n_ack, n_dead = tonumber(ARGV[7]), tonumber(ARGV[8])
local changes_channel, changes = ARGV[9], ARGV[10]
local i = 11
for _ = 1, n_dead do
  redis.call('XADD', dead, 'MAXLEN', '~', maxlen, '*', 'e', ARGV[i], 'id', ARGV[i + 1],
             'error', ARGV[i + 2], 'deliveries', ARGV[i + 3])
  i = i + 4
end
local acked = 0
while n_ack > 0 do
  local take = math.min(n_ack, 1000)
  acked = acked + redis.call('XACK', stream, group, unpack(ARGV, i, i + take - 1))
  i = i + take
  n_ack = n_ack - take
end
if new_mark ~= '' then
  local current = redis.call('GET', watermark)
  if (not current) or less(current, new_mark) then
    redis.call('SET', watermark, new_mark)
    redis.call('PUBLISH', channel, shard .. ' ' .. new_mark)
  end
end
if changes ~= '' then
  redis.call('PUBLISH', changes_channel, changes)
end
if trim_to ~= '' then
  local pending = redis.call('XPENDING', stream, group)
  local min_id = trim_to
  if pending[1] > 0 and less(pending[2], min_id) then min_id = pending[2] end
  redis.call('XTRIM', stream, 'MINID', min_id)
end
return acked
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entry_id: EntryId
    payload: bytes
    error: str
    deliveries: int


def finish_script(redis: aioredis.Redis) -> LeanScript:
    """The script that finishes a batch, on connections of its own: one per projector, shared
    by its shards (each sends one call at a time). ``aclose`` it when the projector stops."""
    return LeanScript(redis, _FINISH)


class ShardStream:
    """One shard's stream as seen by one consumer of the projector group."""

    def __init__(
        self, redis: aioredis.Redis, prefix: str, shard: int, consumer: str, finisher: LeanScript
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.shard = shard
        self.consumer = consumer
        self.key = c.stream_key(prefix, shard)
        self._finish = finisher

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.key, c.CONSUMER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_own_pending(self, after: EntryId, count: int) -> list[RawEntry]:
        """Entries this consumer was given and has not acknowledged, after ``after``."""
        reply = await self.redis.xreadgroup(
            c.CONSUMER_GROUP, self.consumer, {self.key: format_entry_id(after)}, count=count
        )
        return _entries(reply)

    async def read_new(self, count: int, block_ms: int | None) -> list[RawEntry]:
        reply = await self.redis.xreadgroup(
            c.CONSUMER_GROUP, self.consumer, {self.key: ">"}, count=count, block=block_ms
        )
        return _entries(reply)

    async def claim_idle(
        self, start: EntryId, idle_ms: int, count: int
    ) -> tuple[EntryId | None, list[RawEntry]]:
        """XAUTOCLAIM entries idle for ``idle_ms`` from other consumers; next cursor or None."""
        reply: Any = await self.redis.xautoclaim(
            self.key,
            c.CONSUMER_GROUP,
            self.consumer,
            idle_ms,
            start_id=format_entry_id(start),
            count=count,
        )
        cursor = parse_entry_id(reply[0])
        return (None if cursor == (0, 0) else cursor), [_raw(i, f) for i, f in reply[1]]

    async def pending_summary(self) -> tuple[int, dict[str, int]]:
        """Pending entries in the group, and per consumer."""
        info: Any = await self.redis.xpending(self.key, c.CONSUMER_GROUP)
        per = {_text(x["name"]): int(x["pending"]) for x in info.get("consumers") or []}
        return int(info["pending"]), per

    async def deliveries(self, ids: Sequence[EntryId]) -> dict[EntryId, int]:
        """How many times each (pending) entry has been delivered."""
        out: dict[EntryId, int] = {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                text = format_entry_id(entry_id)
                pipe.xpending_range(self.key, c.CONSUMER_GROUP, min=text, max=text, count=1)
            replies = await pipe.execute()
        for entry_id, reply in zip(ids, replies, strict=True):
            out[entry_id] = int(reply[0]["times_delivered"]) if reply else 0
        return out

    async def finish(
        self,
        acked: Sequence[EntryId],
        dead: Sequence[DeadLetter],
        watermark: EntryId | None,
        trim_below: EntryId | None,
        changes: bytes = b"",
    ) -> int:
        """Dead-letter, XACK, raise the watermark, announce ``changes`` (a message of
        ``projector.changes``, or nothing) and trim, atomically; returns entries acked.

        The announcement rides on this call rather than a PUBLISH of its own: a batch of one
        MLflow call is mostly round trips (docs/performance.md).
        """
        args: list[bytes | str | int] = [
            c.CONSUMER_GROUP,
            c.watermark_channel(self.prefix),
            self.shard,
            format_entry_id(watermark) if watermark else "",
            format_entry_id(trim_below) if trim_below else "",
            DEAD_LETTER_MAXLEN,
            len(acked) + len(dead),
            len(dead),
            c.changes_channel(self.prefix),
            changes,
        ]
        for d in dead:
            args += [d.payload, format_entry_id(d.entry_id), d.error, d.deliveries]
        args += [format_entry_id(i) for i in acked]
        args += [format_entry_id(d.entry_id) for d in dead]
        keys = [
            self.key,
            c.watermark_key(self.prefix, self.shard),
            c.dead_letter_key(self.prefix, self.shard),
        ]
        return int(await self._finish(keys, args))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _raw(entry_id: bytes, fields: dict[bytes, bytes] | None) -> RawEntry:
    return parse_entry_id(entry_id), fields or {}


def _entries(reply: Any) -> list[RawEntry]:
    if not reply:
        return []
    return [_raw(i, f) for _, entries in reply for i, f in entries]


def next_id(entry_id: EntryId) -> EntryId:
    return (entry_id[0], entry_id[1] + 1)
