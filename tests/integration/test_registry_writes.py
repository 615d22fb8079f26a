"""The model registry through the real Ingestor, Redis and the projector into PostgreSQL:
write-side checks (unique names, version numbers, live versions), projection, replay, and
the write-side model rebuilt from PostgreSQL when Redis has lost it."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from runstream.ingest.ingestor import Ingestor
from runstream.projector import project_until_idle, replay
from runstream.schemas import constants as c
from runstream.schemas import registry as rg
from runstream.schemas import runs as ru
from runstream.schemas.errors import (
    InvalidParameterValue,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from runstream.settings import Settings

RUN = "a" * 32


TABLES = {
    "registered_models": "SELECT * FROM registered_models ORDER BY name",
    "registered_model_tags": "SELECT * FROM registered_model_tags ORDER BY name, key",
    "model_versions": "SELECT * FROM model_versions ORDER BY name, version",
    "model_version_tags": "SELECT * FROM model_version_tags ORDER BY name, version, key",
    "registered_model_aliases": "SELECT * FROM registered_model_aliases ORDER BY name, alias",
}


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    async with pool.acquire() as conn:
        return {t: [tuple(r) for r in await conn.fetch(sql)] for t, sql in TABLES.items()}


async def new_version(ingestor: Ingestor, name: str, time: int, **kw: Any) -> int:
    event = rg.ModelVersionCreated(name, 0, time, f"runs:/{RUN}/model", run_id=RUN, **kw)
    _, appended = await ingestor.append_registry([event])
    created = appended[0]
    assert isinstance(created, rg.ModelVersionCreated)
    return created.version


async def scenario(ingestor: Ingestor) -> None:
    await ingestor.append([ru.RunCreated(RUN, "0", "u", "run", 1, "mlflow-artifacts:/0/r")])
    await ingestor.append_registry(
        [rg.RegisteredModelCreated("fraud", 10, "first", (("team", "risk"), ("team", "ml")))]
    )
    assert await new_version(ingestor, "fraud", 11, tags=(("k", "v"),)) == 1
    assert await new_version(ingestor, "fraud", 12) == 2
    assert await new_version(ingestor, "fraud", 13) == 3
    await ingestor.append_registry(
        [
            rg.RegisteredModelAliasSet("fraud", "champion", 1),
            rg.ModelVersionStageTransitioned("fraud", 1, "Production", 14),
            rg.ModelVersionStageTransitioned("fraud", 2, "Production", 15, True),
            rg.ModelVersionTagSet("fraud", 2, "checked", "yes"),
            rg.ModelVersionDeleted("fraud", 1, 16),
            rg.RegisteredModelRenamed("fraud", "fraud-v2", 17),
            rg.RegisteredModelAliasSet("fraud-v2", "champion", 3),
            rg.RegisteredModelCreated("scratch", 18),
            rg.RegisteredModelDeleted("scratch", 19),
        ]
    )


async def drain(settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
    async with asyncio.timeout(30):
        await project_until_idle(settings, pool, redis)


async def test_registry_projects_as_mlflow_stores_it(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, ingestor: Ingestor
) -> None:
    await scenario(ingestor)
    await drain(settings, pool, redis)
    tables = await snapshot(pool)
    assert tables["registered_models"] == [("fraud-v2", 10, 17, "first")]
    assert tables["registered_model_tags"] == [("fraud-v2", "team", "ml")]
    stages = [(r[1], r[6], r[3]) for r in tables["model_versions"]]
    # v1 was archived by v2's transition, then deleted (redacted, number kept); the rename
    # touched every version.
    assert stages == [(1, "Deleted_Internal", 17), (2, "Production", 17), (3, "None", 17)]
    deleted = tables["model_versions"][0]
    assert (deleted[7], deleted[9]) == ("REDACTED-SOURCE-PATH", "REDACTED-RUN-ID")
    assert tables["model_version_tags"] == [
        ("fraud-v2", 1, "k", "v"),
        ("fraud-v2", 2, "checked", "yes"),
    ]
    assert tables["registered_model_aliases"] == [("fraud-v2", "champion", 3)]


async def test_replay_rebuilds_identical_registry_tables(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, ingestor: Ingestor
) -> None:
    settings = settings.replace(projector_batch=1)
    await scenario(ingestor)
    await drain(settings, pool, redis)
    before = await snapshot(pool)
    assert before["model_versions"]
    await replay(settings, batch=2)
    assert await snapshot(pool) == before


async def test_write_side_refusals_are_mlflows(ingestor: Ingestor) -> None:
    await ingestor.append_registry([rg.RegisteredModelCreated("m", 1)])
    with pytest.raises(ResourceAlreadyExists, match=r"Registered Model \(name=m\) already"):
        await ingestor.append_registry([rg.RegisteredModelCreated("m", 2)])
    with pytest.raises(ResourceDoesNotExist, match="Registered Model with name=nope not found"):
        await ingestor.append_registry([rg.RegisteredModelTagSet("nope", "k", "v")])
    with pytest.raises(ResourceDoesNotExist, match=r"Model Version \(name=m, version=1\)"):
        await ingestor.append_registry([rg.RegisteredModelAliasSet("m", "a", 1)])
    await ingestor.append_registry([rg.RegisteredModelCreated("other", 3)])
    with pytest.raises(ResourceAlreadyExists, match=r"\(name=other\)"):
        await ingestor.append_registry([rg.RegisteredModelRenamed("m", "other", 4)])
    with pytest.raises(InvalidParameterValue, match="'latest' alias name"):
        await ingestor.append_registry([rg.RegisteredModelAliasSet("m", "Latest", 1)])
    with pytest.raises(InvalidParameterValue, match="cannot be mixed"):
        await ingestor.append_registry(
            [rg.RegisteredModelCreated("x", 5), ru.RunDeleted(RUN, 5)]  # type: ignore[list-item]
        )


async def test_concurrent_versions_get_distinct_numbers(ingestor: Ingestor) -> None:
    await ingestor.append_registry([rg.RegisteredModelCreated("race", 1)])
    numbers = await asyncio.gather(*(new_version(ingestor, "race", 2) for _ in range(12)))
    assert sorted(numbers) == list(range(1, 13))


async def test_concurrent_creates_of_one_name_accept_exactly_one(ingestor: Ingestor) -> None:
    results = await asyncio.gather(
        *(ingestor.append_registry([rg.RegisteredModelCreated("dup", i)]) for i in range(8)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, ResourceAlreadyExists)]
    assert len(refused) == 7


async def test_write_model_is_rebuilt_from_postgresql(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, ingestor: Ingestor
) -> None:
    await scenario(ingestor)
    await drain(settings, pool, redis)
    prefix = settings.stream_prefix
    # Redis lost the registry state: the marker and every model's hash.
    await redis.delete(c.registry_loaded_key(prefix), c.registered_model_key(prefix, "fraud-v2"))
    with pytest.raises(ResourceAlreadyExists):
        await ingestor.append_registry([rg.RegisteredModelCreated("fraud-v2", 30)])
    # Numbers continue after the highest ever allocated; deleted version 1 stays deleted.
    assert await new_version(ingestor, "fraud-v2", 31) == 4
    with pytest.raises(ResourceDoesNotExist):
        await ingestor.append_registry([rg.ModelVersionTagSet("fraud-v2", 1, "k", "v")])
    # A deleted model's name is free, and its numbers start again.
    await ingestor.append_registry([rg.RegisteredModelCreated("scratch", 32)])
    assert await new_version(ingestor, "scratch", 33) == 1
