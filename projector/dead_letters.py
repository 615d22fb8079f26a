"""Dead letters: releasing what a dead entry reserved on the write side, and the operator's view.

An entry the projector cannot apply goes to its shard's dead-letter stream. Ingest had already
recorded its effects in the write-side model when it appended it (a param's value, a reserved
experiment name, a run or a logged model that now "exists"); left there, they would refuse
writes that are valid (a param "already logged" with a value nobody can read) or accept writes
to a run that is not in PostgreSQL. ``release_reservations`` removes those records, so the
next write reloads the truth from PostgreSQL (``ingest.model``). Values are compared before
they are removed: a reservation that a later write made again is kept.

Every key a dead entry of shard ``s`` touches carries the hash tag of ``s`` (experiment events
travel on shard 0, whose slot holds the experiment keys), so one script call releases them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import msgpack
import redis.asyncio as aioredis

from runstream.schemas import constants as c
from runstream.schemas import entries as stream_entries
from runstream.schemas import experiments as ex
from runstream.schemas import models as mo
from runstream.schemas import runs as rn
from runstream.schemas.codec import Event
from runstream.schemas.errors import EventDecodeError, RunstreamError
from runstream.schemas.sharding import format_entry_id, parse_entry_id
from runstream.schemas.validation import check_storable_all

logger = logging.getLogger(__name__)

Release = tuple[str, str, str, str]
"""(op, key, field, value): ``hdel_if`` a hash field holding value, ``del_if`` a string key
holding value, ``del`` a key (field and value unused)."""

_RELEASE = """
for i = 1, #ARGV, 4 do
  local op, k, f, v = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if op == 'hdel_if' then
    if redis.call('HGET', k, f) == v then redis.call('HDEL', k, f) end
  elseif op == 'del_if' then
    if redis.call('GET', k) == v then redis.call('DEL', k) end
  else
    redis.call('DEL', k)
  end
end
return #ARGV / 4
"""


def releases(prefix: str, shard: int, events: Sequence[Event]) -> list[Release]:
    """What the write side recorded for ``events`` (appended on ``shard``), to undo."""
    out: list[Release] = []
    for event in events:
        if isinstance(event, rn.ParamsLogged):
            key = c.run_params_key(prefix, shard, event.run_id)
            out += [("hdel_if", key, k, v) for k, v in event.params]
        elif isinstance(event, rn.RunCreated):
            out.append(("del", c.run_state_key(prefix, shard, event.run_id), "", ""))
            out.append(("del", c.run_params_key(prefix, shard, event.run_id), "", ""))
        elif isinstance(event, rn.RunDeleted | rn.RunRestored):
            out.append(("del", c.run_state_key(prefix, shard, event.run_id), "", ""))
        elif isinstance(event, ex.ExperimentCreated | ex.ExperimentRenamed):
            name_key = c.experiment_name_key(prefix, event.name)
            out.append(("del_if", name_key, "", event.experiment_id))
            out.append(("del", c.experiment_state_key(prefix, event.experiment_id), "", ""))
        elif isinstance(event, ex.ExperimentDeleted | ex.ExperimentRestored):
            out.append(("del", c.experiment_state_key(prefix, event.experiment_id), "", ""))
            out.append(("del", c.deleted_experiments_key(prefix), "", ""))
        elif isinstance(event, mo.LoggedModelCreated):
            out.append(("del", c.logged_model_key(prefix, shard, event.model_id), "", ""))
    return out


async def release_reservations(
    redis: aioredis.Redis, prefix: str, shard: int, payload: bytes
) -> int:
    """Undo the write-side records of a dead entry; the number of records looked at."""
    try:
        events = stream_entries.decode_entry(payload).events
    except EventDecodeError:
        return 0  # ingest never appends what does not decode: nothing of it was recorded
    ops = releases(prefix, shard, events)
    if not ops:
        return 0
    keys = sorted({op[1] for op in ops})
    args = [part for op in ops for part in op]
    await redis.eval(_RELEASE, len(keys), *keys, *args)
    return len(ops)


# -- the operator's view (``runstream dead-letters``) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadEntry:
    shard: int
    dead_id: str
    """Id of the dead letter in the dead-letter stream."""
    entry_id: str
    """Id the entry had in its shard's stream."""
    error: str
    deliveries: int
    payload: bytes

    def summary(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "id": self.dead_id,
            "entry_id": self.entry_id,
            "deliveries": self.deliveries,
            "error": self.error,
            "bytes": len(self.payload),
        }

    def events(self) -> list[dict[str, Any]]:
        """The entry's events as maps (packed metric columns shown by their byte length)."""
        try:
            obj = msgpack.unpackb(self.payload, raw=False)
        except Exception as exc:
            return [{"undecodable": str(exc)}]
        events = obj.get("ev") if isinstance(obj, dict) else None
        return [_printable(e) for e in events] if isinstance(events, list) else [_printable(obj)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _printable(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def _dead_entry(shard: int, dead_id: Any, fields: Any) -> DeadEntry:
    return DeadEntry(
        shard=shard,
        dead_id=_text(dead_id),
        entry_id=fields.get(b"id", b"").decode(),
        error=fields.get(b"error", b"").decode(errors="replace"),
        deliveries=int(fields.get(b"deliveries", b"0") or 0),
        payload=fields.get(b"e", b""),
    )


async def list_dead(
    redis: aioredis.Redis, prefix: str, shards: int, count: int = 100
) -> list[DeadEntry]:
    """The oldest ``count`` dead letters of each shard."""
    out: list[DeadEntry] = []
    for shard in range(shards):
        rows: Any = await redis.xrange(c.dead_letter_key(prefix, shard), count=count)
        out += [_dead_entry(shard, i, f) for i, f in rows]
    return out


async def get_dead(redis: aioredis.Redis, prefix: str, shard: int, dead_id: str) -> DeadEntry:
    parse_entry_id(dead_id)  # refuses a malformed id before Redis does
    rows: Any = await redis.xrange(c.dead_letter_key(prefix, shard), min=dead_id, max=dead_id)
    if not rows:
        raise LookupError(f"no dead letter {dead_id} on shard {shard}")
    return _dead_entry(shard, rows[0][0], rows[0][1])


async def drop_dead(redis: aioredis.Redis, prefix: str, shard: int, dead_id: str) -> None:
    """Forget a dead letter (its write-side reservations were released when it died)."""
    entry = await get_dead(redis, prefix, shard, dead_id)
    await redis.xdel(c.dead_letter_key(prefix, shard), entry.dead_id)


async def retry_dead(redis: aioredis.Redis, prefix: str, shard: int, dead_id: str) -> str:
    """Append a dead letter's entry to its shard's stream again; the new entry id.

    For an entry that failed for a reason since repaired (a schema fixed, a store restored).
    An entry that the shared validation refuses is not retried: it would only die again.
    """
    entry = await get_dead(redis, prefix, shard, dead_id)
    try:
        check_storable_all(stream_entries.decode_entry(entry.payload).events)
    except RunstreamError as exc:
        raise ValueError(f"dead letter {dead_id} cannot be applied: {exc.message}") from exc
    new_id = _text(await redis.xadd(c.stream_key(prefix, shard), {"e": entry.payload}))
    await redis.set(c.tail_key(prefix, shard), new_id)
    await redis.xdel(c.dead_letter_key(prefix, shard), entry.dead_id)
    logger.info(
        "dead letter %s of shard %d appended again as %s",
        dead_id,
        shard,
        new_id,
        extra={"action": "dead_letter_retry"},
    )
    return format_entry_id(parse_entry_id(new_id))


async def operate(
    redis: aioredis.Redis,
    prefix: str,
    shards: int,
    action: str,
    shard: int | None,
    dead_id: str | None,
    out: TextIO,
) -> int:
    """``runstream dead-letters list|show|retry|drop``: print, act, return the exit code."""
    if action == "list":
        found = await list_dead(redis, prefix, shards)
        for entry in found:
            if shard is None or entry.shard == shard:
                print(json.dumps(entry.summary()), file=out)
        return 0
    if shard is None or dead_id is None:
        print(f"dead-letters {action}: --shard and --id are required", file=out)
        return 2
    try:
        if action == "show":
            entry = await get_dead(redis, prefix, shard, dead_id)
            print(json.dumps({**entry.summary(), "events": entry.events()}, indent=2), file=out)
        elif action == "retry":
            new_id = await retry_dead(redis, prefix, shard, dead_id)
            print(f"appended again to shard {shard} as {new_id}", file=out)
        elif action == "drop":
            await drop_dead(redis, prefix, shard, dead_id)
            print(f"dropped dead letter {dead_id} of shard {shard}", file=out)
        else:
            print(f"unknown action {action!r}", file=out)
            return 2
    except (LookupError, ValueError, EventDecodeError) as exc:
        print(f"dead-letters {action}: {exc}", file=out)
        return 1
    return 0
