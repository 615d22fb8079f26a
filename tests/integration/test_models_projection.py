"""Logged models, datasets and run inputs/outputs through the real Ingestor, Redis streams and
the projector into PostgreSQL: write-side checks, projection, exactly-once and replay."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from runstream.ingest.ingestor import Ingestor
from runstream.projector import project_until_idle, replay
from runstream.projector.store import StreamEntry, apply_entries
from runstream.schemas import codec, entries
from runstream.schemas import inputs as inp
from runstream.schemas import models as mo
from runstream.schemas import runs as ru
from runstream.schemas.errors import InvalidParameterValue, ResourceDoesNotExist
from runstream.settings import Settings

RUN_A = "a" * 32
RUN_B = "b" * 32
MODEL_1 = "m-" + "1" * 32


TABLES = {
    "logged_models": "SELECT * FROM logged_models ORDER BY model_id",
    "logged_model_tags": "SELECT * FROM logged_model_tags ORDER BY model_id, key",
    "logged_model_params": "SELECT * FROM logged_model_params ORDER BY model_id, key",
    "logged_model_metrics": "SELECT * FROM logged_model_metrics ORDER BY model_id, key, step",
    "datasets": "SELECT * FROM datasets ORDER BY experiment_id, name, digest",
    "run_dataset_inputs": "SELECT * FROM run_dataset_inputs ORDER BY run_id, name, digest",
    "run_dataset_input_tags": "SELECT * FROM run_dataset_input_tags ORDER BY run_id, name, key",
    "run_model_inputs": "SELECT * FROM run_model_inputs ORDER BY run_id, model_id",
    "run_model_outputs": "SELECT * FROM run_model_outputs ORDER BY run_id, model_id, step",
    "run_tags": "SELECT * FROM run_tags ORDER BY run_id, key",
}


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    async with pool.acquire() as conn:
        return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in TABLES.items()}


def dataset(run_id: str, name: str, digest: str, at: int, **kw: Any) -> inp.DatasetInputLogged:
    fields: dict[str, Any] = {"source_type": "local", "source": '{"uri": "/data"}', **kw}
    return inp.DatasetInputLogged(run_id=run_id, name=name, digest=digest, time=at, **fields)


async def load_scenario(ingestor: Ingestor) -> str:
    """Two runs, a model made by one and used by the other, datasets shared; returns a model."""
    await ingestor.append(
        [
            ru.RunCreated(RUN_A, "0", "u", "a", 100, ""),
            ru.RunCreated(RUN_B, "0", "u", "b", 101, ""),
        ]
    )
    await ingestor.append(
        [
            mo.LoggedModelCreated(
                model_id=MODEL_1,
                experiment_id="0",
                name="model",
                creation_time=200,
                source_run_id=RUN_A,
                tags=(("t", "1"), ("gone", "x")),
                params=(("p", "first"),),
            )
        ]
    )
    created = mo.LoggedModelCreated(model_id="", experiment_id="0", name="auto", creation_time=210)
    await ingestor.append([created])
    await ingestor.append(
        [
            mo.LoggedModelParamsLogged(MODEL_1, (("p", "second"), ("q", "2"))),
            mo.LoggedModelTagsSet(MODEL_1, (("t", "2"),)),
            mo.LoggedModelTagDeleted(MODEL_1, "gone"),
            mo.LoggedModelFinalized(MODEL_1, "READY", 300),
        ]
    )
    await ingestor.append(
        [
            dataset(RUN_A, "train", "d1", 400, tags=(("mlflow.data.context", "training"),)),
            dataset(RUN_A, "train", "d1", 401, tags=(("mlflow.data.context", "again"),)),
            dataset(RUN_A, "eval", "d2", 402, schema='{"s": 1}', profile='{"n": 3}'),
            inp.ModelOutputLogged(RUN_A, MODEL_1, 0, 403),
            mo.LoggedModelMetricLogged(RUN_A, MODEL_1, "rmse", 0.5, 404, 0, "eval", "d2"),
        ]
    )
    await ingestor.append(
        [
            # Same experiment, name and digest: the dataset row of run A is reused.
            dataset(RUN_B, "train", "d1", 500, source_type="http"),
            inp.ModelInputLogged(RUN_B, MODEL_1, 501),
        ]
    )
    return MODEL_1


async def drain(settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
    async with asyncio.timeout(30):
        await project_until_idle(settings, pool, redis)


async def test_models_and_inputs_are_projected_as_mlflow_stores_them(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, ingestor: Ingestor
) -> None:
    await load_scenario(ingestor)
    await drain(settings, pool, redis)
    got = await snapshot(pool)
    models = {r[0]: r for r in got["logged_models"]}
    assert set(models) >= {MODEL_1}
    auto = next(r for r in got["logged_models"] if r[2] == "auto")
    assert mo.MODEL_ID_PATTERN.match(auto[0])
    assert auto[3] == f"mlflow-artifacts:/0/models/{auto[0]}/artifacts"
    assert auto[6] == "PENDING"
    one = models[MODEL_1]
    assert one[1:] == (
        0,
        "model",
        f"mlflow-artifacts:/0/models/{MODEL_1}/artifacts",
        200,
        300,
        "READY",
        "active",
        None,
        RUN_A,
        None,
    )
    assert got["logged_model_tags"] == [(MODEL_1, "t", "2")]
    assert got["logged_model_params"] == [(MODEL_1, "p", "first"), (MODEL_1, "q", "2")]
    assert got["logged_model_metrics"] == [(MODEL_1, "rmse", 404, 0, RUN_A, 0.5, "eval", "d2")]
    assert got["datasets"] == [
        (0, "eval", "d2", "local", '{"uri": "/data"}', '{"s": 1}', '{"n": 3}', 402, RUN_A),
        (0, "train", "d1", "local", '{"uri": "/data"}', None, None, 400, RUN_A),
    ]
    assert got["run_dataset_inputs"] == [
        (RUN_A, 0, "eval", "d2", 402),
        (RUN_A, 0, "train", "d1", 400),
        (RUN_B, 0, "train", "d1", 500),
    ]
    assert got["run_dataset_input_tags"] == [
        (RUN_A, 0, "train", "d1", "mlflow.data.context", "training")
    ]
    assert got["run_model_inputs"] == [(RUN_B, MODEL_1, 501)]
    assert got["run_model_outputs"] == [(RUN_A, MODEL_1, 0, 403)]

    await ingestor.append([mo.LoggedModelDeleted(MODEL_1, 600)])
    await drain(settings, pool, redis)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT lifecycle_stage, last_updated_timestamp_ms FROM logged_models"
            " WHERE model_id = $1",
            MODEL_1,
        )
    assert tuple(row) == ("deleted", 600)


async def test_replay_rebuilds_identical_model_tables(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, ingestor: Ingestor
) -> None:
    settings = settings.replace(projector_batch=1)
    await load_scenario(ingestor)
    await drain(settings, pool, redis)
    before = await snapshot(pool)
    assert before["logged_models"] and before["run_dataset_inputs"]
    await replay(settings, batch=3)
    assert await snapshot(pool) == before


async def test_redelivered_entry_changes_nothing(settings: Settings, pool: asyncpg.Pool) -> None:
    events: list[codec.Event] = [
        ru.RunCreated(RUN_A, "0", "u", "a", 100, "art"),
        mo.LoggedModelCreated(MODEL_1, "0", "m", 5, "loc", tags=(("k", "v"),)),
        dataset(RUN_A, "train", "d1", 6, tags=(("x", "y"),)),
        inp.ModelOutputLogged(RUN_A, MODEL_1, 0, 7),
    ]
    payload = entries.encode_entry(5, events)
    entry = StreamEntry(1, (5, 0), payload, entries.decode_entry(payload))
    async with pool.acquire() as conn:
        first = await apply_entries(conn, [entry], settings.chunk_points)
        before = await snapshot(pool)
        second = await apply_entries(conn, [entry], settings.chunk_points)
    assert first.applied == [(5, 0)] and second.duplicates == [(5, 0)]
    assert await snapshot(pool) == before
    assert before["run_dataset_input_tags"] == [(RUN_A, 0, "train", "d1", "x", "y")]


async def test_write_side_checks_refuse_unknown_models_runs_and_experiments(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, ingestor: Ingestor
) -> None:
    unknown = "m-" + "9" * 32
    with pytest.raises(ResourceDoesNotExist, match=f"Logged model with ID '{unknown}' not found."):
        await ingestor.append([mo.LoggedModelFinalized(unknown, "READY", 1)])
    with pytest.raises(ResourceDoesNotExist, match="No Experiment with id=42 exists"):
        await ingestor.append([mo.LoggedModelCreated("", "42", "m", 1)])
    with pytest.raises(ResourceDoesNotExist, match=f"Run with id={RUN_A} not found"):
        await ingestor.append([dataset(RUN_A, "n", "d", 1)])
    with pytest.raises(InvalidParameterValue, match="Invalid model name"):
        await ingestor.append([mo.LoggedModelCreated("", "0", "a/b", 1)])

    await ingestor.append([ru.RunCreated(RUN_A, "0", "u", "a", 1, ""), ru.RunDeleted(RUN_A, 2)])
    with pytest.raises(InvalidParameterValue, match="must be in the 'active' state"):
        await ingestor.append([inp.ModelOutputLogged(RUN_A, unknown, 0, 3)])

    # A model created through ingest is known at once, before the projector has run...
    await ingestor.append([mo.LoggedModelCreated(MODEL_1, "0", "m", 1)])
    await ingestor.append([mo.LoggedModelTagsSet(MODEL_1, (("a", "b"),))])
    # ... and after its Redis fact has gone, from PostgreSQL.
    await drain(settings, pool, redis)
    await redis.delete(*[k async for k in redis.scan_iter(f"{settings.stream_prefix}:model:*")])
    await ingestor.append([mo.LoggedModelDeleted(MODEL_1, 9)])
    await drain(settings, pool, redis)
    async with pool.acquire() as conn:
        stage = await conn.fetchval(
            "SELECT lifecycle_stage FROM logged_models WHERE model_id = $1", MODEL_1
        )
    assert stage == "deleted"
