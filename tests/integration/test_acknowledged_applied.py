"""Acknowledged means applied (issue 14): refused whole or applied whole, never lost.

Real Redis and PostgreSQL; the projector runs with ``project_until_idle``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgpack
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from runstream.ingest import create_app
from runstream.projector.dead_letters import list_dead, operate
from runstream.projector.service import project_until_idle
from runstream.schemas import codec
from runstream.schemas import constants as c
from runstream.schemas import runs as rn
from runstream.schemas.codec import Event
from runstream.schemas.sharding import shard_of_run
from runstream.settings import Settings

EVENTS = "/api/runstream/v1/events"
GET_OR_CREATE = "/api/runstream/v1/experiments/get-or-create"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(max_deliveries=2)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def post(client: Client, events: list[Event]) -> Any:
    body = msgpack.packb({"events": [codec.event_to_obj(e) for e in events]}, use_bin_type=True)
    return await client.post(EVENTS, data=body, headers={"Content-Type": "application/msgpack"})


async def stream_state(redis: aioredis.Redis, settings: Settings) -> list[tuple[int, Any]]:
    out = []
    for s in range(settings.shards):
        out.append(
            (
                await redis.xlen(c.stream_key(settings.stream_prefix, s)),
                await redis.get(c.tail_key(settings.stream_prefix, s)),
            )
        )
    return out


def runs_on_two_shards(shards: int) -> tuple[str, str]:
    first = uuid.uuid4().hex
    while True:
        other = uuid.uuid4().hex
        if shard_of_run(other, shards) != shard_of_run(first, shards):
            return first, other


def created(run_id: str) -> rn.RunCreated:
    return rn.RunCreated(run_id, "0", "me", "r", 1, "")


async def project(settings: Settings) -> None:
    async with asyncio.timeout(30):
        await project_until_idle(settings)


async def test_request_spanning_shards_with_an_unknown_run_writes_nothing(
    client: Client, redis: aioredis.Redis, settings: Settings
) -> None:
    known, unknown = runs_on_two_shards(settings.shards)
    resp = await post(client, [created(known)])
    assert resp.status == 200
    before = await stream_state(redis, settings)

    resp = await post(
        client,
        [rn.ParamsLogged(known, (("lr", "0.1"),)), rn.ParamsLogged(unknown, (("lr", "0.2"),))],
    )
    assert resp.status == 404, await resp.text()
    assert await stream_state(redis, settings) == before
    # The known run's param was not reserved either: another value is accepted.
    resp = await post(client, [rn.ParamsLogged(known, (("lr", "0.3"),))])
    assert resp.status == 200, await resp.text()


async def test_request_spanning_shards_with_a_param_conflict_writes_nothing(
    client: Client, redis: aioredis.Redis, settings: Settings
) -> None:
    a, b = runs_on_two_shards(settings.shards)
    assert (await post(client, [created(a), created(b)])).status == 200
    assert (await post(client, [rn.ParamsLogged(b, (("lr", "1"),))])).status == 200
    before = await stream_state(redis, settings)
    resp = await post(client, [rn.RunTagsSet(a, (("t", "x"),)), rn.ParamsLogged(b, (("lr", "2"),))])
    assert resp.status == 400
    assert "Changing param values is not allowed" in (await resp.json())["message"]
    assert await stream_state(redis, settings) == before


@pytest.mark.parametrize(
    "events",
    [
        [rn.ParamsLogged("R", (("lr", "0.1\x00"),))],
        [rn.RunTagsSet("R", (("mlflow.note.content", "x\x00y"),))],
        [rn.RunUpdated("R", end_time=2**63)],
        [rn.RunUpdated("R", run_name="\x00")],
    ],
)
async def test_unstorable_writes_are_refused_with_nothing_appended(
    client: Client, redis: aioredis.Redis, settings: Settings, events: list[Event]
) -> None:
    run_id = uuid.uuid4().hex
    assert (await post(client, [created(run_id)])).status == 200
    before = await stream_state(redis, settings)
    resp = await post(client, [dataclasses.replace(e, run_id=run_id) for e in events])
    assert resp.status == 400, await resp.text()
    # The codec refuses an integer past int64 while decoding (MALFORMED_REQUEST).
    assert (await resp.json())["error_code"] in ("INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST")
    assert await stream_state(redis, settings) == before
    await project(settings)
    assert await list_dead(redis, settings.stream_prefix, settings.shards) == []


async def test_json_body_refuses_nul_in_experiment_name(
    client: Client, redis: aioredis.Redis, settings: Settings
) -> None:
    before = await stream_state(redis, settings)
    resp = await client.post(GET_OR_CREATE, json={"name": "exp\x00"})
    assert resp.status == 400
    assert await stream_state(redis, settings) == before


async def _refuse_in_postgres(database_url: str, table: str, column: str, bad: str) -> None:
    """A trigger that fails the projection of one value: a fault ingest cannot foresee."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            f"""
            CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.{column} = '{bad}' THEN RAISE EXCEPTION 'refused by test trigger'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_bad BEFORE INSERT ON {table}
                FOR EACH ROW EXECUTE FUNCTION refuse_bad();
            """
        )
    finally:
        await conn.close()


async def test_dead_param_is_released_and_the_operator_can_retry_it(
    client: Client, redis: aioredis.Redis, settings: Settings, database_url: str
) -> None:
    run_id = uuid.uuid4().hex
    assert (await post(client, [created(run_id)])).status == 200
    await project(settings)
    await _refuse_in_postgres(database_url, "params", "value", "doomed")
    assert (await post(client, [rn.ParamsLogged(run_id, (("lr", "doomed"),))])).status == 200
    await project(settings)

    dead = await list_dead(redis, settings.stream_prefix, settings.shards)
    assert len(dead) == 1 and "refused by test trigger" in dead[0].error
    # The reservation was released: another value is accepted, and is then readable.
    assert (await post(client, [rn.ParamsLogged(run_id, (("lr", "0.5"),))])).status == 200
    await project(settings)
    conn = await asyncpg.connect(database_url)
    try:
        value = await conn.fetchval(
            "SELECT value FROM params WHERE run_id = $1 AND key = 'lr'", run_id
        )
        assert value == "0.5"

        out = io.StringIO()
        args = (redis, settings.stream_prefix, settings.shards)
        assert await operate(*args, "list", None, None, out) == 0
        assert dead[0].dead_id in out.getvalue()
        out = io.StringIO()
        assert await operate(*args, "show", dead[0].shard, dead[0].dead_id, out) == 0
        assert "doomed" in out.getvalue()
        # Repaired (the trigger dropped): retry applies it (the first value stays, as MLflow).
        await conn.execute("DROP TRIGGER refuse_bad ON params")
        await conn.execute("DELETE FROM params WHERE run_id = $1", run_id)
        assert await operate(*args, "retry", dead[0].shard, dead[0].dead_id, io.StringIO()) == 0
        await project(settings)
        value = await conn.fetchval(
            "SELECT value FROM params WHERE run_id = $1 AND key = 'lr'", run_id
        )
        assert value == "doomed"
        assert await list_dead(redis, settings.stream_prefix, settings.shards) == []
    finally:
        await conn.close()


async def test_dead_experiment_frees_its_name(
    client: Client, redis: aioredis.Redis, settings: Settings, database_url: str
) -> None:
    await _refuse_in_postgres(database_url, "experiments", "name", "doomed-exp")
    resp = await client.post(GET_OR_CREATE, json={"name": "doomed-exp"})
    assert resp.status == 200
    await project(settings)
    dead = await list_dead(redis, settings.stream_prefix, settings.shards)
    assert len(dead) == 1
    out = io.StringIO()
    args = (redis, settings.stream_prefix, settings.shards)
    assert await operate(*args, "drop", dead[0].shard, dead[0].dead_id, out) == 0
    assert await list_dead(redis, settings.stream_prefix, settings.shards) == []

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP TRIGGER refuse_bad ON experiments")
    finally:
        await conn.close()
    # The name is free again: get-or-create makes a new experiment, which then exists.
    resp = await client.post(GET_OR_CREATE, json={"name": "doomed-exp"})
    body = await resp.json()
    assert resp.status == 200 and body["created"] is True
    await project(settings)
    conn = await asyncpg.connect(database_url)
    try:
        name = await conn.fetchval(
            "SELECT name FROM experiments WHERE experiment_id = $1", int(body["experiment_id"])
        )
    finally:
        await conn.close()
    assert name == "doomed-exp"
