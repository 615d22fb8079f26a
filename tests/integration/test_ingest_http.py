"""The native ingest endpoints on a real Redis and PostgreSQL.

The projector is not running here: the stream itself is the output, read back with XRANGE and
``entries.decode_entry``; read-table rows the write side needs are inserted directly.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgpack
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from runstream.ingest import create_app
from runstream.schemas import codec
from runstream.schemas import constants as c
from runstream.schemas import experiments as ex
from runstream.schemas import runs as rn
from runstream.schemas.codec import Event
from runstream.schemas.entries import Entry, decode_entry
from runstream.schemas.metrics import MetricSeries, MetricsLogged
from runstream.schemas.sharding import WriteToken, parse_entry_id, shard_of_run
from runstream.settings import Settings

EVENTS = "/api/runstream/v1/events"
GET_OR_CREATE = "/api/runstream/v1/experiments/get-or-create"
MSGPACK = {"Content-Type": "application/msgpack"}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


def new_run_id() -> str:
    return uuid.uuid4().hex


async def entries(redis: aioredis.Redis, settings: Settings) -> dict[int, list[Entry]]:
    out: dict[int, list[Entry]] = {}
    for shard in range(settings.shards):
        rows = await redis.xrange(c.stream_key(settings.stream_prefix, shard))
        if rows:
            out[shard] = [decode_entry(fields[b"e"]) for _, fields in rows]  # type: ignore[index]
    return out


async def stream_lengths(redis: aioredis.Redis, settings: Settings) -> list[int]:
    return [
        await redis.xlen(c.stream_key(settings.stream_prefix, s)) for s in range(settings.shards)
    ]


async def post(client: Client, events: list[Event], **kw: Any) -> Any:
    body = msgpack.packb({"events": [codec.event_to_obj(e) for e in events]}, use_bin_type=True)
    headers = {**MSGPACK, **kw.pop("headers", {})}
    return await client.post(EVENTS, data=body, headers=headers, **kw)


def run_created(run_id: str, experiment_id: str = "0", **kw: Any) -> rn.RunCreated:
    return rn.RunCreated(
        run_id=run_id,
        experiment_id=experiment_id,
        user_id="me",
        run_name="r",
        start_time=1,
        artifact_uri=kw.pop("artifact_uri", ""),
        **kw,
    )


def metrics(run_id: str, key: str = "loss", n: int = 3) -> MetricsLogged:
    return MetricsLogged(
        run_id,
        (MetricSeries.from_lists(key, range(n), [10] * n, [0.5 * i for i in range(n)]),),
    )


async def create_run(client: Client, run_id: str | None = None) -> str:
    run_id = run_id or new_run_id()
    resp = await post(client, [run_created(run_id)])
    assert resp.status == 200, await resp.text()
    return run_id


async def test_every_event_type_lands_in_its_shard(
    client: Client, redis: aioredis.Redis, settings: Settings
) -> None:
    resp = await client.post(GET_OR_CREATE, json={"name": "exp-a"})
    assert resp.status == 200
    body = await resp.json()
    assert body["created"] is True
    exp_id = body["experiment_id"]
    assert exp_id == "1"  # the counter starts after Default (0)

    run_a, run_b = new_run_id(), new_run_id()
    events: list[Event] = [
        ex.ExperimentCreated("", "exp-b", "", 5),
        ex.ExperimentRenamed(exp_id, "exp-a2", 6),
        ex.ExperimentTagSet(exp_id, "team", "x"),
        ex.ExperimentTagDeleted(exp_id, "team"),
        run_created(run_a, exp_id),
        run_created(run_b, exp_id, artifact_uri="s3://b/x"),
        rn.RunTagsSet(run_a, (("k", "v"),)),
        rn.RunTagDeleted(run_a, "k"),
        rn.ParamsLogged(run_a, (("lr", "0.1"), ("bs", "32"))),
        metrics(run_a),
        metrics(run_b, "acc", 5),
        rn.RunUpdated(run_a, status="FINISHED", end_time=9),
        rn.RunDeleted(run_b, 10),
        rn.RunRestored(run_b, 11),
    ]
    resp = await post(client, events)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["events"] == len(events)
    assert answer["points"] == 8

    got = await entries(redis, settings)
    shard_a, shard_b = shard_of_run(run_a, 4), shard_of_run(run_b, 4)
    expected_shards = {0, shard_a, shard_b}
    # One XADD per shard and request (shard 0 also got the first get-or-create entry).
    assert {s: len(v) for s, v in got.items()} == {s: 1 + (s == 0) for s in expected_shards}
    token = WriteToken.parse(answer["token"])
    assert sorted(s for s, _ in token.positions) == sorted(expected_shards)

    experiment_events = [e for e in got[0][-1].events if not hasattr(e, "run_id")]
    assert [type(e) for e in experiment_events] == [
        ex.ExperimentCreated,
        ex.ExperimentRenamed,
        ex.ExperimentTagSet,
        ex.ExperimentTagDeleted,
    ]
    created = experiment_events[0]
    assert isinstance(created, ex.ExperimentCreated)
    assert created.experiment_id == "2"
    assert created.artifact_location == "mlflow-artifacts:/2"

    of_a = [e for e in got[shard_a][-1].events if getattr(e, "run_id", None) == run_a]
    assert [type(e) for e in of_a] == [
        rn.RunCreated,
        rn.RunTagsSet,
        rn.RunTagDeleted,
        rn.ParamsLogged,
        MetricsLogged,
        rn.RunUpdated,
    ]
    assert isinstance(of_a[0], rn.RunCreated)
    assert of_a[0].artifact_uri == f"mlflow-artifacts:/1/{run_a}/artifacts"
    assert of_a[4] == metrics(run_a)
    of_b = [e for e in got[shard_b][-1].events if getattr(e, "run_id", None) == run_b]
    assert isinstance(of_b[0], rn.RunCreated)
    assert of_b[0].artifact_uri == "s3://b/x"


async def test_json_body_with_lists(
    client: Client, redis: aioredis.Redis, settings: Settings
) -> None:
    run_id = await create_run(client)
    body = {
        "events": [
            {
                "type": "metrics_logged",
                "run_id": run_id,
                "series": [
                    {"key": "m", "steps": [1, 2], "timestamps": [5, 6], "values": [1.5, "NaN"]}
                ],
            }
        ]
    }
    resp = await client.post(
        EVENTS, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["points"] == 2
    shard = shard_of_run(run_id, 4)
    last = (await entries(redis, settings))[shard][-1].events[0]
    assert isinstance(last, MetricsLogged)
    assert [p[:2] for p in last.series[0].points()] == [(1, 5), (2, 6)]


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"\xc1\xff", "application/msgpack", "not valid msgpack"),
        (b'{"events": [', "application/json", "not valid JSON"),
        (b'{"events": 3}', "application/json", "'events'"),
        (b'{"events": [{"type": "nope"}]}', "application/json", "events[0].type"),
        (
            b'{"events": [{"type": "run_deleted", "v": 9, "run_id": "a", "time": 1}]}',
            "application/json",
            "events[0].v",
        ),
        (
            b'{"events": [{"type": "run_deleted", "run_id": 5, "time": 1}]}',
            "application/json",
            "events[0].run_id",
        ),
        (
            b'{"events": [{"type": "params_logged", "run_id": "RUN",'
            b' "params": [["a/../b", "1"]]}]}',
            "application/json",
            "events[0].params[0].key",
        ),
        (
            b'{"events": [{"type": "metrics_logged", "run_id": "RUN", "series": [{"key": "m",'
            b' "steps": [1, 2], "timestamps": [1], "values": [1.0]}]}]}',
            "application/json",
            "events[0].series[0]",
        ),
        (
            b'{"events": [{"type": "run_updated", "run_id": "RUN", "status": "DONE"}]}',
            "application/json",
            "events[0].status",
        ),
    ],
)
async def test_malformed_bodies_append_nothing(
    client: Client,
    redis: aioredis.Redis,
    settings: Settings,
    body: bytes,
    content_type: str,
    fragment: str,
) -> None:
    run_id = await create_run(client)
    before = await stream_lengths(redis, settings)
    # A valid event first: the bad one after it must still keep the whole request out.
    good = {"type": "run_tags_set", "run_id": run_id, "tags": [["a", "b"]]}
    body = body.replace(b'"RUN"', b'"' + run_id.encode() + b'"')
    if content_type == "application/json" and body.startswith(b'{"events": [{'):
        body = body.replace(b'{"events": [', b'{"events": [' + orjson.dumps(good) + b", ", 1)
        fragment = fragment.replace("events[0]", "events[1]")
    resp = await client.post(EVENTS, data=body, headers={"Content-Type": content_type})
    assert resp.status == 400, await resp.text()
    error = await resp.json()
    assert fragment in error["message"]
    assert error["error_code"] in ("MALFORMED_REQUEST", "INVALID_PARAMETER_VALUE")
    assert await stream_lengths(redis, settings) == before


async def test_idempotent_retry_appends_once(
    client: Client, redis: aioredis.Redis, settings: Settings
) -> None:
    run_id = await create_run(client)
    events = [metrics(run_id), rn.ParamsLogged(run_id, (("a", "1"),))]
    headers = {"Idempotency-Key": "req-1"}
    first = await post(client, events, headers=headers)
    before = await stream_lengths(redis, settings)
    second = await post(client, events, headers=headers)
    assert first.status == second.status == 200
    assert (await first.json())["token"] == (await second.json())["token"]
    assert await stream_lengths(redis, settings) == before
    third = await post(client, events, headers={"Idempotency-Key": "req-2"})
    assert third.status == 200
    assert sum(await stream_lengths(redis, settings)) == sum(before) + 1


async def test_param_conflict_sequential(
    client: Client, redis: aioredis.Redis, settings: Settings
) -> None:
    run_id = await create_run(client)
    assert (await post(client, [rn.ParamsLogged(run_id, (("lr", "0.1"),))])).status == 200
    assert (await post(client, [rn.ParamsLogged(run_id, (("lr", "0.1"),))])).status == 200
    before = await stream_lengths(redis, settings)
    resp = await post(client, [rn.ParamsLogged(run_id, (("lr", "0.2"),))])
    assert resp.status == 400
    assert await resp.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": (
            "Changing param values is not allowed. Param with key='lr' was already logged with"
            f" value='0.1' for run ID='{run_id}'. Attempted logging new value '0.2'."
        ),
        "sqlstate": "KAM00",
        "error_class": "INVALID_PARAMETER_VALUE",
    }
    resp = await post(client, [rn.ParamsLogged(run_id, (("lr", "0.3"), ("new", "1")))])
    assert resp.status == 400
    message = (await resp.json())["message"]
    assert message == (
        "Changing param values is not allowed. Params were already logged="
        "'[{'key': 'lr', 'old_value': '0.1', 'new_value': '0.3'}]'"
        f" for run ID='{run_id}'."
    )
    assert await stream_lengths(redis, settings) == before
    # The refused request recorded nothing: "new" is still free to take any value.
    assert (await post(client, [rn.ParamsLogged(run_id, (("new", "2"),))])).status == 200


async def test_param_conflict_race_one_wins(client: Client) -> None:
    run_id = await create_run(client)
    for round_ in range(5):
        key = f"p{round_}"
        responses = await asyncio.gather(
            post(client, [rn.ParamsLogged(run_id, ((key, "x"),))]),
            post(client, [rn.ParamsLogged(run_id, ((key, "y"),))]),
        )
        assert sorted(r.status for r in responses) == [200, 400]


async def test_unknown_run_and_experiment(client: Client) -> None:
    ghost = new_run_id()
    resp = await post(client, [metrics(ghost)])
    assert resp.status == 404
    assert await resp.json() == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": f"Run with id={ghost} not found",
        "sqlstate": "KAM00",
        "error_class": "RESOURCE_NOT_FOUND",
    }
    resp = await post(client, [run_created(new_run_id(), "777")])
    assert resp.status == 404
    assert (await resp.json())["message"] == "No Experiment with id=777 exists"
    resp = await post(client, [ex.ExperimentDeleted("778", 1)])
    assert resp.status == 404


async def test_duplicate_run_refused(client: Client) -> None:
    run_id = await create_run(client)
    resp = await post(client, [run_created(run_id)])
    assert resp.status == 400
    assert (await resp.json())["error_code"] == "RESOURCE_ALREADY_EXISTS"


async def test_deleted_run_refused_until_restored(client: Client) -> None:
    run_id = await create_run(client)
    assert (await post(client, [rn.RunDeleted(run_id, 5)])).status == 200
    expected = {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": (f"The run {run_id} must be in the 'active' state. Current state is deleted."),
        "sqlstate": "KAM00",
        "error_class": "INVALID_PARAMETER_VALUE",
    }
    for event in (
        metrics(run_id),
        rn.ParamsLogged(run_id, (("a", "1"),)),
        rn.RunTagsSet(run_id, (("a", "1"),)),
        rn.RunUpdated(run_id, status="FAILED"),
    ):
        resp = await post(client, [event])
        assert (resp.status, await resp.json()) == (400, expected)
    assert (await post(client, [rn.RunRestored(run_id, 6)])).status == 200
    assert (await post(client, [metrics(run_id)])).status == 200


async def test_runs_of_deleted_experiment_refused(client: Client) -> None:
    resp = await client.post(GET_OR_CREATE, json={"name": "doomed"})
    exp_id = (await resp.json())["experiment_id"]
    run_id = new_run_id()
    assert (await post(client, [run_created(run_id, exp_id)])).status == 200
    assert (await post(client, [ex.ExperimentDeleted(exp_id, 3)])).status == 200
    resp = await post(client, [metrics(run_id)])
    assert resp.status == 400
    resp = await post(client, [run_created(new_run_id(), exp_id)])
    assert resp.status == 400
    assert (await resp.json())["message"] == (
        f"The experiment {exp_id} must be in the 'active' state. Current state is deleted."
    )
    assert (await post(client, [ex.ExperimentRestored(exp_id, 4)])).status == 200
    assert (await post(client, [metrics(run_id)])).status == 200


async def test_duplicate_experiment_name(client: Client) -> None:
    first = await client.post(GET_OR_CREATE, json={"name": "same"})
    second = await client.post(GET_OR_CREATE, json={"name": "same"})
    a, b = await first.json(), await second.json()
    assert a["created"] is True and b == {"experiment_id": a["experiment_id"], "created": False}
    resp = await post(client, [ex.ExperimentCreated("", "same", "", 1)])
    assert resp.status == 400
    assert await resp.json() == {
        "error_code": "RESOURCE_ALREADY_EXISTS",
        "message": "Experiment(name=same) already exists.",
        "sqlstate": "KAM00",
        "error_class": "RESOURCE_ALREADY_EXISTS",
    }
    # "Default" lives only in PostgreSQL: the name check loads it.
    resp = await post(client, [ex.ExperimentCreated("", "Default", "", 1)])
    assert resp.status == 400
    other = await client.post(GET_OR_CREATE, json={"name": "other"})
    other_id = (await other.json())["experiment_id"]
    resp = await post(client, [ex.ExperimentRenamed(other_id, "same", 2)])
    assert resp.status == 400
    assert (await resp.json())["error_code"] == "BAD_REQUEST"
    resp = await client.post(GET_OR_CREATE, json={"name": ""})
    assert resp.status == 400
    racing = await asyncio.gather(
        *(client.post(GET_OR_CREATE, json={"name": "raced"}) for _ in range(4))
    )
    answers = [await r.json() for r in racing]
    assert len({a["experiment_id"] for a in answers}) == 1
    assert sorted(a["created"] for a in answers) == [False, False, False, True]


async def test_oversize_body_is_413(settings: Settings, redis: aioredis.Redis) -> None:
    small = settings.replace(max_body_bytes=1000)
    async with TestClient(TestServer(create_app(small))) as client:
        resp = await client.post(EVENTS, data=b"x" * 2000, headers=MSGPACK)
        assert resp.status == 413
        assert (await resp.json())["error_code"] == "RESOURCE_EXHAUSTED"
    assert sum(await stream_lengths(redis, settings)) == 0


async def test_too_many_events_is_400(client: Client) -> None:
    run_id = new_run_id()
    events = [rn.RunTagDeleted(run_id, "k")] * (c.MAX_EVENTS_PER_REQUEST + 1)
    resp = await post(client, events)
    assert resp.status == 400
    assert "at most" in (await resp.json())["message"]


async def test_backlog_limit_is_429(settings: Settings, redis: aioredis.Redis) -> None:
    tiny = settings.replace(backlog_limit=2)
    async with TestClient(TestServer(create_app(tiny))) as client:
        run_id = await create_run(client)
        statuses = []
        for _ in range(6):
            resp = await post(client, [metrics(run_id)])
            statuses.append(resp.status)
            if resp.status == 429:
                assert resp.headers["Retry-After"] == "1"
                assert (await resp.json())["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert statuses[:2] == [200, 200]
        assert 429 in statuses


async def test_write_model_rebuilt_from_postgres(
    client: Client, redis: aioredis.Redis, db: asyncpg.Connection, settings: Settings
) -> None:
    run_id, deleted_run = new_run_id(), new_run_id()
    await db.execute(
        "INSERT INTO experiments (experiment_id, name, artifact_location, creation_time,"
        " last_update_time) VALUES (5, 'old', 's3://bucket/5', 1, 1)"
    )
    await db.execute(
        "INSERT INTO runs (run_id, experiment_id, status, lifecycle_stage) VALUES"
        " ($1, 5, 'RUNNING', 'active'), ($2, 5, 'RUNNING', 'deleted')",
        run_id,
        deleted_run,
    )
    await db.execute("INSERT INTO params (run_id, key, value) VALUES ($1, 'lr', '0.1')", run_id)

    assert (await post(client, [rn.ParamsLogged(run_id, (("lr", "0.1"),))])).status == 200
    resp = await post(client, [rn.ParamsLogged(run_id, (("lr", "0.5"),))])
    assert resp.status == 400
    assert "already logged with value='0.1'" in (await resp.json())["message"]
    assert (await post(client, [metrics(deleted_run)])).status == 400

    # Drop the whole write model: the next writes rebuild it and still refuse the same things.
    keys = [k async for k in redis.scan_iter(match=f"{settings.stream_prefix}:*")]
    model = [k for k in keys if b":events:" not in k]
    assert model
    await redis.delete(*model)
    resp = await post(client, [rn.ParamsLogged(run_id, (("lr", "0.5"),))])
    assert resp.status == 400
    assert (await post(client, [metrics(deleted_run)])).status == 400
    ttl = await redis.ttl(c.run_params_key(settings.stream_prefix, shard_of_run(run_id, 4), run_id))
    assert 0 < ttl <= c.WRITE_MODEL_TTL_SECONDS

    # The experiment's artifact location comes from PostgreSQL too; its id counter as well.
    new_run = new_run_id()
    assert (await post(client, [run_created(new_run, "5")])).status == 200
    got = await entries(redis, settings)
    created = got[shard_of_run(new_run, 4)][-1].events[0]
    assert isinstance(created, rn.RunCreated)
    assert created.artifact_uri == f"s3://bucket/5/{new_run}/artifacts"
    resp = await client.post(GET_OR_CREATE, json={"name": "fresh"})
    assert (await resp.json())["experiment_id"] == "6"
    resp = await client.post(GET_OR_CREATE, json={"name": "old"})
    assert await resp.json() == {"experiment_id": "5", "created": False}


async def test_wait_for_watermark(
    client: Client, redis: aioredis.Redis, settings: Settings
) -> None:
    run_id = await create_run(client)

    async def fake_projector() -> None:
        # Publish the watermark of every entry that appears, as the projector does after commit.
        shard = shard_of_run(run_id, 4)
        key = c.stream_key(settings.stream_prefix, shard)
        for _ in range(200):
            rows: Any = await redis.xrange(key)
            if len(rows) >= 2:
                entry_id = rows[-1][0].decode()
                await redis.set(c.watermark_key(settings.stream_prefix, shard), entry_id)
                await redis.publish(
                    c.watermark_channel(settings.stream_prefix), f"{shard} {entry_id}"
                )
                return
            await asyncio.sleep(0.01)

    task = asyncio.create_task(fake_projector())
    resp = await post(client, [metrics(run_id)], params={"wait": "1"})
    assert resp.status == 200, await resp.text()
    await task


async def test_redis_down_is_503(settings: Settings) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    down = settings.replace(redis_url=f"redis://127.0.0.1:{dead_port}/0")
    async with TestClient(TestServer(create_app(down))) as client:
        resp = await post(client, [metrics(new_run_id())])
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error_code"] == "TEMPORARILY_UNAVAILABLE"


async def test_append_records_the_shard_tail(
    client: Client, redis: aioredis.Redis, settings: Settings
) -> None:
    run_id = new_run_id()
    resp = await post(client, [run_created(run_id, "0")])
    token = WriteToken.parse((await resp.json())["token"])
    ((shard, position),) = token.positions
    tail = await redis.get(c.tail_key(settings.stream_prefix, shard))
    assert parse_entry_id(tail) == position
