"""The write-side model in Redis, rebuilt from PostgreSQL's read tables when a key is gone.

The append script records runs, params and experiments as it accepts them, with a TTL that
each use refreshes; when it reports a key missing, this module reads the rows and writes
them with ``load.lua``, which only fills keys that are still absent (anything the script
recorded meanwhile is newer than the read tables). What PostgreSQL does not have is
reported back as ``Absent`` so the next script call can say "no such run".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg
import msgpack
import redis.asyncio as aioredis

from runstream.ingest.commands import Absent, Missing
from runstream.schemas import constants as c
from runstream.schemas.errors import InvalidParameterValue, ResourceDoesNotExist

logger = logging.getLogger(__name__)

DELETED_SET_CACHE_SECONDS = 0.1


def _lua(name: str) -> str:
    return resources.files("runstream.ingest").joinpath(name).read_text()


@dataclass(frozen=True, slots=True)
class ExperimentInfo:
    experiment_id: str
    name: str
    lifecycle: str
    artifact_location: str


class WriteModel:
    """Loads model keys from PostgreSQL and reads experiment facts for ``run_created``."""

    def __init__(self, redis: aioredis.Redis, pool: asyncpg.Pool, prefix: str, shards: int) -> None:
        self.redis = redis
        self.pool = pool
        self.prefix = prefix
        self.shards = shards
        self._load = redis.register_script(_lua("load.lua"))
        self._deleted: tuple[float, tuple[str, ...]] | None = None

    async def load(self, shard: int, missing: Missing) -> Absent:
        """Fill the missing keys of one shard from PostgreSQL; return what does not exist."""
        absent_runs: set[str] = set()
        absent_exps: set[str] = set()
        absent_names: set[str] = set()
        items: list[list[Any]] = []
        keys: list[str] = []

        def key(name: str) -> int:
            keys.append(name)
            return len(keys)

        ttl = c.WRITE_MODEL_TTL_SECONDS
        if missing.runs:
            runs = await self._fetch_runs(missing.runs)
            for run_id in missing.runs:
                row = runs.get(run_id)
                if row is None:
                    absent_runs.add(run_id)
                    continue
                experiment_id, lifecycle, params = row
                items.append(
                    [
                        "h",
                        key(c.run_state_key(self.prefix, shard, run_id)),
                        ttl,
                        *("exp", experiment_id, "life", lifecycle),
                    ]
                )
                flat: list[str] = ["", ""]
                for k, v in params:
                    flat += (k, v)
                items.append(["h", key(c.run_params_key(self.prefix, shard, run_id)), ttl, *flat])
        if missing.experiments or missing.names:
            found = await self._fetch_experiments(missing.experiments, missing.names)
            by_id = {e.experiment_id: e for e in found}
            by_name = {e.name: e for e in found}
            absent_exps = {i for i in missing.experiments if i not in by_id}
            absent_names = {n for n in missing.names if n not in by_name}
            for info in found:
                items.append(_experiment_item(key(self._exp_key(info)), info))
                items.append(
                    [
                        "s",
                        key(c.experiment_name_key(self.prefix, info.name)),
                        ttl,
                        info.experiment_id,
                    ]
                )
        if items:
            await self._load(keys=keys, args=[msgpack.packb(items, use_bin_type=False)])
        logger.debug(
            "loaded write model of shard %d from PostgreSQL: %s",
            shard,
            missing,
            extra={"action": "write_model_load"},
        )
        return Absent(frozenset(absent_runs), frozenset(absent_exps), frozenset(absent_names))

    def _exp_key(self, info: ExperimentInfo) -> str:
        return c.experiment_state_key(self.prefix, info.experiment_id)

    async def active_experiments(self, ids: Sequence[str]) -> dict[str, ExperimentInfo]:
        """``experiments``, refused with MLflow's errors when one is unknown or not active."""
        infos = await self.experiments(ids)
        for experiment_id in ids:
            info = infos.get(experiment_id)
            if info is None:
                raise ResourceDoesNotExist(f"No Experiment with id={experiment_id} exists")
            if info.lifecycle != "active":
                raise InvalidParameterValue(
                    f"The experiment {experiment_id} must be in the 'active' state. "
                    f"Current state is {info.lifecycle}."
                )
        return infos

    async def experiments(self, ids: Sequence[str]) -> dict[str, ExperimentInfo]:
        """Facts about experiments (from Redis, else PostgreSQL); unknown ids are left out."""
        pipe = self.redis.pipeline(transaction=False)
        for experiment_id in ids:
            pipe.hmget(c.experiment_state_key(self.prefix, experiment_id), "name", "life", "art")
        replies = await pipe.execute()
        out: dict[str, ExperimentInfo] = {}
        missing = []
        for experiment_id, (name, life, art) in zip(ids, replies, strict=True):
            if name is None or life is None or art is None:
                missing.append(experiment_id)
            else:
                out[experiment_id] = ExperimentInfo(
                    experiment_id, _text(name), _text(life), _text(art)
                )
        if missing:
            await self.load(c.EXPERIMENT_SHARD, Missing(experiments=tuple(missing)))
            for info in await self._fetch_experiments(missing, ()):
                out[info.experiment_id] = info
        return out

    async def experiment_id_of(self, name: str) -> str | None:
        raw = await self.redis.get(c.experiment_name_key(self.prefix, name))
        if raw is not None:
            return _text(raw)
        found = await self._fetch_experiments((), (name,))
        if not found:
            return None
        await self.load(c.EXPERIMENT_SHARD, Missing(names=(name,)))
        return found[0].experiment_id

    async def deleted_experiments(self) -> tuple[str, ...]:
        """Ids of deleted experiments, read at most every 100 ms (runs of them are deleted)."""
        now = time.monotonic()
        if self._deleted is not None and now - self._deleted[0] < DELETED_SET_CACHE_SECONDS:
            return self._deleted[1]
        key = c.deleted_experiments_key(self.prefix)
        members = await self.redis.smembers(key)
        if b"" not in members:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT experiment_id FROM experiments WHERE lifecycle_stage = 'deleted'"
                )
            ids = [str(r["experiment_id"]) for r in rows]
            item = ["m", 1, "", *ids]
            await self._load(keys=[key], args=[msgpack.packb([item], use_bin_type=False)])
            members = await self.redis.smembers(key)
        deleted = tuple(sorted(_text(m) for m in members if m))
        self._deleted = (time.monotonic(), deleted)
        return deleted

    def forget_deleted_experiments(self) -> None:
        """This process changed an experiment's lifecycle: read the set afresh next time."""
        self._deleted = None

    async def next_experiment_id(self) -> str:
        key = c.experiment_counter_key(self.prefix)
        if not await self.redis.exists(key):
            async with self.pool.acquire() as conn:
                top = await conn.fetchval("SELECT coalesce(max(experiment_id), 0) FROM experiments")
            await self.redis.set(key, int(top), nx=True)
        return str(await self.redis.incr(key))

    async def _fetch_runs(
        self, run_ids: Sequence[str]
    ) -> dict[str, tuple[str, str, list[tuple[str, str]]]]:
        async with self.pool.acquire() as conn:
            runs = await conn.fetch(
                "SELECT run_id, experiment_id, lifecycle_stage FROM runs WHERE run_id = ANY($1)",
                list(run_ids),
            )
            params = await conn.fetch(
                "SELECT run_id, key, value FROM params WHERE run_id = ANY($1)", list(run_ids)
            )
        out: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
            r["run_id"]: (str(r["experiment_id"]), r["lifecycle_stage"], []) for r in runs
        }
        for p in params:
            if p["run_id"] in out:
                out[p["run_id"]][2].append((p["key"], p["value"]))
        return out

    async def _fetch_experiments(
        self, ids: Sequence[str], names: Sequence[str]
    ) -> list[ExperimentInfo]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT experiment_id, name, lifecycle_stage, artifact_location"
                " FROM experiments WHERE experiment_id = ANY($1) OR name = ANY($2)",
                [int(i) for i in ids],
                list(names),
            )
        return [
            ExperimentInfo(
                str(r["experiment_id"]), r["name"], r["lifecycle_stage"], r["artifact_location"]
            )
            for r in rows
        ]


def _experiment_item(index: int, info: ExperimentInfo) -> list[Any]:
    return [
        "h",
        index,
        c.WRITE_MODEL_TTL_SECONDS,
        "name",
        info.name,
        "life",
        info.lifecycle,
        "art",
        info.artifact_location,
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
