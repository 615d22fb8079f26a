"""The projector against real PostgreSQL and Redis: every event type, exactly-once, dead
letters and replay. Entries are XADDed as ingest writes them (ingest is not needed)."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from runstream.projector import project_until_idle, replay
from runstream.projector.store import StreamEntry, apply_entries
from runstream.projector.streams import ShardStream, finish_script
from runstream.schemas import codec, entries
from runstream.schemas import constants as c
from runstream.schemas import experiments as ex
from runstream.schemas import metrics as me
from runstream.schemas import runs as ru
from runstream.schemas.metrics import MetricSeries
from runstream.schemas.sharding import parse_entry_id
from runstream.settings import Settings

RUN_A = "a" * 32
RUN_B = "b" * 32
NAN_PAYLOAD = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


async def xadd(
    redis: aioredis.Redis, settings: Settings, shard: int, payload: bytes
) -> tuple[int, int]:
    entry_id = await redis.xadd(c.stream_key(settings.stream_prefix, shard), {"e": payload})
    return parse_entry_id(entry_id)


async def add_events(
    redis: aioredis.Redis, settings: Settings, shard: int, events: Sequence[codec.Event], at: int
) -> tuple[int, int]:
    return await xadd(redis, settings, shard, entries.encode_entry(at, events))


async def table(conn: asyncpg.Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await conn.fetch(sql)]


async def snapshot(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every read table, ordered by natural keys; series ids replaced by (run_id, key)."""
    return {
        "experiments": await table(conn, "SELECT * FROM experiments ORDER BY experiment_id"),
        "experiment_tags": await table(
            conn, "SELECT * FROM experiment_tags ORDER BY experiment_id, key"
        ),
        "runs": await table(conn, "SELECT * FROM runs ORDER BY run_id"),
        "run_tags": await table(conn, "SELECT * FROM run_tags ORDER BY run_id, key"),
        # seq's values differ between live batches and replay; a run's order of them may not.
        "params": await table(
            conn,
            "SELECT run_id, key, value, experiment_id,"
            " rank() OVER (PARTITION BY run_id ORDER BY seq) AS logged_order"
            " FROM params ORDER BY run_id, key",
        ),
        "metric_series": await table(
            conn,
            "SELECT run_id, key, point_count, chunk_count, tail_count, latest_step,"
            " latest_timestamp, float8send(latest_value), min_value, max_value, experiment_id"
            " FROM metric_series ORDER BY run_id, key",
        ),
        "metric_chunks": await table(
            conn,
            "SELECT s.run_id, s.key, c.chunk_no, c.n, c.min_step, c.max_step, c.first_step,"
            " c.last_step, c.min_value, c.max_value, float8send(c.first_value),"
            " float8send(c.last_value), c.steps, c.timestamps, c.vals"
            " FROM metric_chunks c JOIN metric_series s USING (series_id)"
            " ORDER BY s.run_id, s.key, c.chunk_no",
        ),
    }


async def history(conn: asyncpg.Connection, run_id: str, key: str) -> tuple[bytes, bytes, bytes]:
    rows = await conn.fetch(
        "SELECT c.n, c.steps, c.timestamps, c.vals FROM metric_chunks c"
        " JOIN metric_series s USING (series_id) WHERE s.run_id = $1 AND s.key = $2"
        " ORDER BY c.chunk_no",
        run_id,
        key,
    )
    for r in rows:
        assert len(r["steps"]) == len(r["timestamps"]) == len(r["vals"]) == 8 * r["n"]
    return (
        b"".join(r["steps"] for r in rows),
        b"".join(r["timestamps"] for r in rows),
        b"".join(r["vals"] for r in rows),
    )


def series(key: str, points: Sequence[tuple[int, int, float]]) -> MetricSeries:
    return MetricSeries.from_lists(
        key, [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]
    )


SPECIAL_POINTS = [
    (0, 1000, 1.5),
    (I64_MAX, I64_MIN, math.nan),
    (I64_MIN, I64_MAX, math.inf),
    (3, 0, -math.inf),
    (3, 0, -0.0),
    (3, 0, NAN_PAYLOAD),
    (1, 5, 2.0),
    (1, 5, 2.0),  # an exact duplicate is kept, as logged
]


async def load_everything(redis: aioredis.Redis, settings: Settings) -> list[tuple[int, int]]:
    """One of every event type, across shards and several entries; returns the entry ids."""
    ids = []
    ids.append(
        await add_events(
            redis,
            settings,
            0,
            [
                ex.ExperimentCreated("1", "first", "mlflow-artifacts:/1", 100, (("team", "a"),)),
                ex.ExperimentCreated("2", "second", "s3://b/2", 110),
                ex.ExperimentRenamed("2", "second-renamed", 120),
                ex.ExperimentTagSet("2", "k", "v"),
                ex.ExperimentTagSet("1", "team", "b"),
                ex.ExperimentTagSet("1", "gone", "x"),
            ],
            at=100,
        )
    )
    for run_id, exp in ((RUN_A, "1"), (RUN_B, "2")):
        ids.append(
            await add_events(
                redis,
                settings,
                1,
                [
                    ru.RunCreated(
                        run_id,
                        exp,
                        "ann",
                        f"run-{run_id[0]}",
                        130,
                        f"art/{run_id}",
                        (("src", "nb"),),
                    ),
                    ru.ParamsLogged(run_id, (("lr", "0.1"), ("bs", "32"))),
                    ru.RunTagsSet(run_id, (("t", "1"), ("t", "2"), ("del", "x"))),
                ],
                at=130,
            )
        )
    ids.append(
        await add_events(
            redis,
            settings,
            1,
            [
                me.MetricsLogged(RUN_A, (series("loss", SPECIAL_POINTS[:5]),)),
                me.MetricsLogged(RUN_B, (series("acc", [(i, i, i / 10) for i in range(12)]),)),
            ],
            at=140,
        )
    )
    ids.append(
        await add_events(
            redis,
            settings,
            1,
            [
                me.MetricsLogged(
                    RUN_A,
                    (series("loss", SPECIAL_POINTS[5:]), series("only-nan", [(0, 0, math.nan)])),
                ),
                ru.RunTagDeleted(RUN_A, "del"),
                ru.ParamsLogged(RUN_A, (("lr", "0.1"),)),
                ru.RunUpdated(RUN_A, "FINISHED", 200, "renamed-a"),
                ru.RunDeleted(RUN_B, 210),
            ],
            at=150,
        )
    )
    ids.append(
        await add_events(
            redis,
            settings,
            0,
            [
                ex.ExperimentTagDeleted("1", "gone"),
                ex.ExperimentDeleted("1", 300),
            ],
            at=300,
        )
    )
    ids.append(
        await add_events(
            redis,
            settings,
            1,
            [me.MetricsLogged(RUN_B, (series("acc", [(12, 12, 9.5)]),))],
            at=310,
        )
    )
    return ids


async def test_every_event_type_projected(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    settings = settings.replace(chunk_points=5, projector_batch=2)
    await load_everything(redis, settings)
    stats = await project_until_idle(settings, pool, redis)
    assert (stats.entries, stats.duplicates, stats.dead) == (7, 0, 0)

    async with pool.acquire() as conn:
        snap = await snapshot(conn)
        default = snap["experiments"][0]
        assert default[:4] == (0, "Default", "mlflow-artifacts:/0", "active")
        assert snap["experiments"][1:] == [
            (1, "first", "mlflow-artifacts:/1", "deleted", 100, 300, 300),
            (2, "second-renamed", "s3://b/2", "active", 110, 120, None),
        ]
        assert snap["experiment_tags"] == [(1, "team", "b"), (2, "k", "v")]
        assert snap["runs"] == [
            # Deleting experiment 1 deleted its run (MLflow cascades).
            (RUN_A, 1, "renamed-a", "ann", "FINISHED", 130, 200, "deleted", f"art/{RUN_A}", 300),
            (RUN_B, 2, "run-b", "ann", "RUNNING", 130, None, "deleted", f"art/{RUN_B}", 210),
        ]
        # The last column is the run's experiment (migration 0006, for search).
        assert snap["run_tags"] == [
            (RUN_A, "mlflow.runName", "renamed-a", 1),
            (RUN_A, "src", "nb", 1),
            (RUN_A, "t", "2", 1),
            (RUN_B, "del", "x", 2),
            (RUN_B, "mlflow.runName", "run-b", 2),
            (RUN_B, "src", "nb", 2),
            (RUN_B, "t", "2", 2),
        ]
        # (run, key, value, experiment, logged order): lr was logged before bs.
        assert snap["params"] == [
            (RUN_A, "bs", "32", 1, 2),
            (RUN_A, "lr", "0.1", 1, 1),
            (RUN_B, "bs", "32", 2, 2),
            (RUN_B, "lr", "0.1", 2, 1),
        ]
        series_rows = {(r[0], r[1]): r[2:] for r in snap["metric_series"]}
        # loss: 8 points in chunks of 5; latest = greatest step I64_MAX (value NaN).
        loss = series_rows[(RUN_A, "loss")]
        assert loss[:5] == (8, 2, 3, I64_MAX, I64_MIN)
        assert math.isnan(struct.unpack(">d", loss[5])[0])
        assert loss[6:] == (-math.inf, math.inf, 1)
        acc = series_rows[(RUN_B, "acc")]
        assert acc[:5] == (13, 3, 3, 12, 12)
        assert struct.unpack(">d", acc[5])[0] == 9.5
        assert acc[6:] == (0.0, 9.5, 2)
        only_nan = series_rows[(RUN_A, "only-nan")]
        assert only_nan[:5] == (1, 1, 1, 0, 0) and only_nan[6:] == (None, None, 1)

        steps, stamps, vals = await history(conn, RUN_A, "loss")
        assert steps == me.pack_int64(p[0] for p in SPECIAL_POINTS)
        assert stamps == me.pack_int64(p[1] for p in SPECIAL_POINTS)
        assert vals == me.pack_float64(p[2] for p in SPECIAL_POINTS)  # bit-exact, NaN payload too
        chunks = [r for r in snap["metric_chunks"] if r[:2] == (RUN_A, "loss")]
        assert [r[2:10] for r in chunks] == [
            (0, 5, I64_MIN, I64_MAX, 0, 3, -math.inf, math.inf),
            (1, 3, 1, 3, 3, 1, 2.0, 2.0),
        ]
        acc_chunks = [r for r in snap["metric_chunks"] if r[:2] == (RUN_B, "acc")]
        assert [r[2:8] for r in acc_chunks] == [
            (0, 5, 0, 4, 0, 4),
            (1, 5, 5, 9, 5, 9),
            (2, 3, 10, 12, 10, 12),  # tail filled by a later entry
        ]
        steps, stamps, vals = await history(conn, RUN_B, "acc")
        assert list(me.unpack_float64(vals)) == [i / 10 for i in range(12)] + [9.5]

        log = await conn.fetch("SELECT shard, accepted_at FROM event_log ORDER BY accepted_at")
        assert [(r[0], r[1]) for r in log] == [
            (0, 100), (1, 130), (1, 130), (1, 140), (1, 150), (0, 300), (1, 310),
        ]  # fmt: skip

    # The stream is trimmed once applied; the watermark is the last entry of each shard.
    for shard in range(2):
        pending = await redis.xpending(
            c.stream_key(settings.stream_prefix, shard), c.CONSUMER_GROUP
        )
        assert pending["pending"] == 0
        assert await redis.xlen(c.stream_key(settings.stream_prefix, shard)) <= 1
        assert await redis.get(c.watermark_key(settings.stream_prefix, shard)) is not None


async def test_replay_rebuilds_identical_tables(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    settings = settings.replace(chunk_points=3, projector_batch=1)
    await load_everything(redis, settings)
    # More entries on top, applied in tiny live batches, so live and replay batch differently.
    run_c = "c" * 32
    await add_events(
        redis, settings, 3, [ru.RunCreated(run_c, "2", "bo", "c", 400, "art/c")], at=400
    )
    for i in range(20):
        await add_events(
            redis,
            settings,
            1,
            [
                me.MetricsLogged(RUN_A, (series("loss", [(100 + i, i, i * 0.5)]),)),
                me.MetricsLogged(RUN_B, (series(f"k{i % 4}", [(i, i, -i * 1.0)] * (i % 5)),)),
            ],
            at=400 + i,
        )
        await add_events(
            redis,
            settings,
            3,
            [me.MetricsLogged(run_c, (series("m", [(i, i, math.nan if i % 3 else i)] * 4),))],
            at=400 + i,
        )
    await add_events(redis, settings, 0, [ex.ExperimentRestored("1", 500)], at=500)
    await project_until_idle(settings, pool, redis)
    async with pool.acquire() as conn:
        before = await snapshot(conn)
    assert before["runs"][0][7] == "active"  # restored with its experiment

    stats = await replay(settings, batch=4)
    assert stats.entries == 49
    async with pool.acquire() as conn:
        after = await snapshot(conn)
    assert after == before


async def test_rows_applied_before_their_run_get_its_experiment(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    # Entries of one run on two shards (a changed shard count): its metrics, params and tags
    # may be applied before its creation. They are kept, and get the experiment once the run
    # row arrives, so search finds them as it would after a replay in stream order.
    settings = settings.replace(projector_batch=1)
    await add_events(redis, settings, 0, [ex.ExperimentCreated("7", "seven", "loc", 1)], at=1)
    await add_events(
        redis,
        settings,
        2,
        [
            me.MetricsLogged(RUN_A, (series("x", [(1, 1, 1.0)]),)),
            ru.ParamsLogged(RUN_A, (("lr", "0.1"),)),
            ru.RunTagsSet(RUN_A, (("t", "1"),)),
        ],
        at=2,
    )
    await project_until_idle(settings, pool, redis)
    count = (
        "SELECT (SELECT count(*) FROM params WHERE experiment_id = $1)"
        " + (SELECT count(*) FROM run_tags WHERE experiment_id = $1)"
        " + (SELECT count(*) FROM metric_series WHERE experiment_id = $1)"
    )
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM metric_series") == 1
        assert await conn.fetchval(count, 7) == 0
    await add_events(redis, settings, 3, [ru.RunCreated(RUN_A, "7", "ann", "a", 3, "art/a")], at=3)
    await project_until_idle(settings, pool, redis)
    async with pool.acquire() as conn:
        assert await conn.fetchval(count, 7) == 4  # the mlflow.runName tag is new


async def test_same_entry_applied_once(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    payload = entries.encode_entry(
        5, [me.MetricsLogged(RUN_A, (series("x", [(1, 1, 1.0), (2, 2, 2.0)]),))]
    )
    entry = StreamEntry(1, (5, 0), payload, entries.decode_entry(payload))
    async with pool.acquire() as conn:
        first = await apply_entries(conn, [entry], settings.chunk_points)
        second = await apply_entries(conn, [entry, entry], settings.chunk_points)
        assert (first.applied, first.duplicates, first.points) == ([(5, 0)], [], 2)
        assert (second.applied, second.duplicates) == ([], [(5, 0), (5, 0)])
        assert await conn.fetchval("SELECT point_count FROM metric_series") == 2
        assert await conn.fetchval("SELECT count(*) FROM event_log") == 1


async def test_a_metrics_batch_partly_applied_before_applies_its_new_entries_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # Batches of metrics alone record and read their series in one statement; a redelivered
    # batch holding entries applied before must still apply only the others.
    def entry(at: int, key: str, points: list[tuple[int, int, float]]) -> StreamEntry:
        payload = entries.encode_entry(at, [me.MetricsLogged(RUN_A, (series(key, points),))])
        return StreamEntry(1, (at, 0), payload, entries.decode_entry(payload))

    old = entry(5, "x", [(1, 1, 1.0), (2, 2, 2.0)])
    new_x = entry(6, "x", [(3, 3, 3.0)])
    new_y = entry(7, "y", [(1, 1, -1.0)])
    async with pool.acquire() as conn:
        first = await apply_entries(conn, [old], settings.chunk_points)
        again = await apply_entries(conn, [old, new_x, new_y], settings.chunk_points)
        assert (first.applied, first.points) == ([(5, 0)], 2)
        assert (again.applied, again.duplicates, again.points) == ([(6, 0), (7, 0)], [(5, 0)], 2)
        counts = await table(conn, "SELECT key, point_count FROM metric_series ORDER BY key")
        assert counts == [("x", 3), ("y", 1)]
        steps, stamps, vals = await history(conn, RUN_A, "x")
        assert steps == me.pack_int64([1, 2, 3]) and stamps == me.pack_int64([1, 2, 3])
        assert vals == me.pack_float64([1.0, 2.0, 3.0])
        assert await history(conn, RUN_A, "y") == (
            me.pack_int64([1]),
            me.pack_int64([1]),
            me.pack_float64([-1.0]),
        )
        assert await conn.fetchval("SELECT count(*) FROM event_log") == 3


async def test_redelivered_entry_after_crash_before_ack_is_applied_once(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    entry_id = await add_events(
        redis,
        settings,
        2,
        [me.MetricsLogged(RUN_A, (series("x", [(i, i, float(i)) for i in range(7)]),))],
        at=5,
    )
    # A consumer reads and commits the entry, then dies before XACK.
    dead = ShardStream(redis, settings.stream_prefix, 2, "dead-consumer", finish_script(redis))
    await dead.ensure_group()
    ((got_id, fields),) = await dead.read_new(10, None)
    assert got_id == entry_id
    async with pool.acquire() as conn:
        decoded = entries.decode_entry(fields[b"e"])
        await apply_entries(conn, [StreamEntry(2, got_id, fields[b"e"], decoded)], 1024)

    # Another consumer claims it once idle (XAUTOCLAIM), finds it recorded, and acknowledges.
    stats = await project_until_idle(settings, pool, redis, consumer="survivor")
    assert (stats.entries, stats.duplicates) == (0, 1)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT point_count FROM metric_series") == 7
        assert await conn.fetchval("SELECT sum(n) FROM metric_chunks") == 7
    pending = await redis.xpending(c.stream_key(settings.stream_prefix, 2), c.CONSUMER_GROUP)
    assert pending["pending"] == 0
    watermark = await redis.get(c.watermark_key(settings.stream_prefix, 2))
    assert watermark == f"{entry_id[0]}-{entry_id[1]}".encode()


async def test_poison_entries_go_to_dead_letters_and_the_shard_moves_on(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    settings = settings.replace(max_deliveries=3)
    good1 = await add_events(
        redis, settings, 0, [ex.ExperimentCreated("5", "five", "loc", 1)], at=1
    )
    garbage = await xadd(redis, settings, 0, b"\xc1 not msgpack")
    # Decodes, but cannot be applied: an experiment id that is not a number.
    bad = await add_events(redis, settings, 0, [ex.ExperimentCreated("x", "x", "loc", 2)], at=2)
    good2 = await add_events(redis, settings, 0, [ex.ExperimentTagSet("5", "k", "v")], at=3)

    stats = await project_until_idle(settings, pool, redis)
    assert (stats.entries, stats.dead) == (2, 2)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT name FROM experiments WHERE experiment_id = 5") == "five"
        assert await conn.fetchval("SELECT value FROM experiment_tags") == "v"
        assert await conn.fetchval("SELECT count(*) FROM event_log") == 2

    letters = await redis.xrange(c.dead_letter_key(settings.stream_prefix, 0))
    by_id = {f[b"id"].decode(): f for _, f in letters}
    garbage_letter = by_id[f"{garbage[0]}-{garbage[1]}"]
    assert garbage_letter[b"e"] == b"\xc1 not msgpack"
    assert garbage_letter[b"deliveries"] == b"1"
    assert b"msgpack" in garbage_letter[b"error"]
    bad_letter = by_id[f"{bad[0]}-{bad[1]}"]
    assert bad_letter[b"deliveries"] == b"3"
    assert b"ValueError" in bad_letter[b"error"]
    assert entries.decode_entry(bad_letter[b"e"]).events[0] == ex.ExperimentCreated(
        "x", "x", "loc", 2
    )
    pending = await redis.xpending(c.stream_key(settings.stream_prefix, 0), c.CONSUMER_GROUP)
    assert pending["pending"] == 0
    watermark = await redis.get(c.watermark_key(settings.stream_prefix, 0))
    assert watermark == f"{good2[0]}-{good2[1]}".encode()
    assert good1 < garbage < bad < good2
