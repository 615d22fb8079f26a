"""Which experiment a run, a logged model or an experiment name belongs to.

Read from the write-side model in Redis first (it knows a run the moment ingest accepted it,
before the projector has applied it), then from PostgreSQL's read tables. A run or model never
changes experiment, so an answer is cached for the life of the process (bounded); a name can
be renamed, so name lookups are not cached.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
import redis.asyncio as aioredis

from runstream.schemas import constants as c
from runstream.schemas import sharding

CACHE_LIMIT = 200_000
"""Run and model ids remembered; past it the memo starts again empty."""


class Resolver:
    def __init__(self, redis: aioredis.Redis, pool: asyncpg.Pool, prefix: str, shards: int) -> None:
        self.redis = redis
        self.pool = pool
        self.prefix = prefix
        self.shards = shards
        self._runs: dict[str, str] = {}
        self._models: dict[str, str] = {}

    async def experiments_of_runs(self, run_ids: Iterable[str]) -> dict[str, str]:
        """run id -> experiment id for the runs that exist."""
        wanted = set(run_ids)
        found = {r: self._runs[r] for r in wanted if r in self._runs}
        missing = [r for r in wanted if r not in found]
        if missing:
            async with self.redis.pipeline(transaction=False) as pipe:
                for run_id in missing:
                    shard = sharding.shard_of_run(run_id, self.shards)
                    pipe.hget(c.run_state_key(self.prefix, shard, run_id), "exp")
                answers = await pipe.execute()
            for run_id, exp in zip(missing, answers, strict=True):
                if exp is not None:
                    found[run_id] = exp.decode() if isinstance(exp, bytes) else str(exp)
            rest = [r for r in missing if r not in found]
            if rest:
                rows = await self.pool.fetch(
                    "SELECT run_id, experiment_id FROM runs WHERE run_id = ANY($1)", rest
                )
                found.update({r["run_id"]: str(r["experiment_id"]) for r in rows})
            _remember(self._runs, {r: found[r] for r in missing if r in found})
        return found

    async def experiment_of_model(self, model_id: str) -> str | None:
        if model_id in self._models:
            return self._models[model_id]
        shard = sharding.shard_of_model(model_id, self.shards)
        raw = await self.redis.get(c.logged_model_key(self.prefix, shard, model_id))
        experiment_id: str | None = None
        if raw:
            experiment_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        else:
            value = await self.pool.fetchval(
                "SELECT experiment_id FROM logged_models WHERE model_id = $1", model_id
            )
            experiment_id = None if value is None else str(value)
        if experiment_id is not None:
            _remember(self._models, {model_id: experiment_id})
        return experiment_id

    async def experiment_named(self, name: str) -> str | None:
        raw = await self.redis.get(c.experiment_name_key(self.prefix, name))
        if raw:
            return raw.decode() if isinstance(raw, bytes) else str(raw)
        value = await self.pool.fetchval(
            "SELECT experiment_id FROM experiments WHERE name = $1", name
        )
        return None if value is None else str(value)


def _remember(memo: dict[str, str], new: dict[str, str]) -> None:
    if len(memo) + len(new) > CACHE_LIMIT:
        memo.clear()
    memo.update(new)
