"""The registry's write path: checks, version numbers and the append, in one Redis script.

MLflow's registry refuses synchronously a name that exists, a model or version that does not,
and gives each new version the next number. The state those answers need (every registered
model name, its highest version number ever allocated, its live versions) is small, so it is
kept whole in Redis, without a TTL, in one hash per model under shard 0's hash tag; the
script ``registry.lua`` checks it, updates it and XADDs the entry atomically.

A marker key says the state is complete. When it is absent (a fresh Redis, or one that lost
its data), no registry write is accepted until the state is loaded from PostgreSQL, after the
projector has caught up with the registry shard, so the read tables hold every registry
event appended before.

A new version's number is read first and checked by the script (compare and set); when
another writer took it meanwhile the script says so and the write is rebuilt with the next.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from importlib import resources

import asyncpg
import msgpack
import redis.asyncio as aioredis

from runstream.ingest import registry_commands as rc
from runstream.ingest.backlog import BacklogGauge
from runstream.schemas import constants as c
from runstream.schemas import registry as rg
from runstream.schemas.entries import encode_entries
from runstream.schemas.errors import TemporarilyUnavailable
from runstream.schemas.sharding import WriteToken, parse_entry_id

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
"""Script calls per write: version races and one load each cost one."""
CATCH_UP_POLL_SECONDS = 0.01

LOAD_SQL = """
SELECT m.name,
       COALESCE(max(v.version), 0) AS top,
       COALESCE(array_agg(v.version) FILTER (WHERE v.current_stage <> 'Deleted_Internal'),
                '{}') AS live
FROM registered_models m LEFT JOIN model_versions v ON v.name = m.name
GROUP BY m.name
"""


def _lua(name: str) -> str:
    return resources.files("runstream.ingest").joinpath(name).read_text()


class RegistryWriter:
    def __init__(
        self,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        prefix: str,
        backlog: BacklogGauge,
        catch_up_timeout: float,
    ) -> None:
        self.redis = redis
        self.pool = pool
        self.prefix = prefix
        self.backlog = backlog
        self.catch_up_timeout = catch_up_timeout
        self._script = redis.register_script(_lua("registry.lua"))
        self._load = redis.register_script(_lua("registry_load.lua"))

    async def append(
        self, events: Sequence[rg.RegistryEvent]
    ) -> tuple[WriteToken, list[rg.RegistryEvent]]:
        """Append ``events``; ``model_version_created`` with version 0 gets the next number.

        Returns the token and the events as appended (with their version numbers).
        """
        shard = rg.REGISTRY_SHARD
        await self.backlog.check([shard])
        taken: dict[str, int] = {}
        for _ in range(MAX_ATTEMPTS):
            prepared = await self._number_versions(events, taken)
            keys, header = rc.script_args(self.prefix, prepared)
            entries = encode_entries(_now_ms(), prepared)
            outcome = rc.read_reply(await self._script(keys=keys, args=[header, *entries]))
            if isinstance(outcome, rc.NotLoaded):
                await self.load()
            elif isinstance(outcome, rc.VersionTaken):
                taken[outcome.name] = outcome.top
            else:
                self.backlog.note_appended(shard, len(outcome))
                return WriteToken(((shard, parse_entry_id(outcome[-1])),)), prepared
        raise TemporarilyUnavailable("The model registry kept changing during this write; retry.")

    async def _number_versions(
        self, events: Sequence[rg.RegistryEvent], taken: dict[str, int]
    ) -> list[rg.RegistryEvent]:
        """Give each new version the number after the model's highest (as last seen)."""
        tops: dict[str, int] = {}
        out: list[rg.RegistryEvent] = []
        for event in events:
            if isinstance(event, rg.RegisteredModelCreated):
                tops[event.name] = 0
            elif isinstance(event, rg.ModelVersionCreated) and event.version == 0:
                if event.name not in tops:
                    tops[event.name] = taken.get(event.name) or await self._top(event.name)
                tops[event.name] += 1
                event = dataclasses.replace(event, version=tops[event.name])
            out.append(event)
        return out

    async def _top(self, name: str) -> int:
        raw = await self.redis.hget(c.registered_model_key(self.prefix, name), "top")
        return int(raw) if raw is not None else 0

    async def load(self) -> None:
        """Fill the registry's write-side model from PostgreSQL, once the projector caught up."""
        await self._catch_up()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(LOAD_SQL)
        keys = [c.registry_loaded_key(self.prefix)]
        args = []
        for row in rows:
            keys.append(c.registered_model_key(self.prefix, row["name"]))
            args.append(msgpack.packb([int(row["top"]), *sorted(row["live"])]))
        loaded = await self._load(keys=keys, args=args)
        logger.info(
            "loaded the registry write model from PostgreSQL (%d models, loaded=%s)",
            len(rows),
            loaded,
            extra={"action": "registry_load"},
        )

    async def _catch_up(self) -> None:
        """Wait until the registry shard's watermark reaches its tail (bounded)."""
        shard = rg.REGISTRY_SHARD
        deadline = time.monotonic() + self.catch_up_timeout
        while True:
            tail, mark = await self.redis.mget(
                c.tail_key(self.prefix, shard), c.watermark_key(self.prefix, shard)
            )
            if tail is None or (mark is not None and parse_entry_id(mark) >= parse_entry_id(tail)):
                return
            if time.monotonic() > deadline:
                raise TemporarilyUnavailable(
                    "The projector has not caught up with the model registry yet; retry."
                )
            await asyncio.sleep(CATCH_UP_POLL_SECONDS)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
