"""Native ingest throughput: msgpack batches of packed metric points, posted over HTTP.

Starts the ingest app in its own process (on a fresh, migrated database and its own Redis
prefix, both removed afterwards), then posts pre-encoded batches from this process with a few
requests in flight, and prints one JSON line per measurement:

    .venv/bin/python bench/ingest_throughput.py --seconds 5 --points 10000 --concurrency 8

No projector runs, so the stream only grows: keep runs short (every point is kept in Redis
until the prefix is deleted at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
import msgpack
import redis.asyncio as aioredis
from aiohttp import web

from runstream.ingest import create_app
from runstream.projector.migrations import migrate_dsn
from runstream.schemas import codec
from runstream.schemas import runs as rn
from runstream.schemas.metrics import MetricSeries, MetricsLogged
from runstream.settings import Settings

EVENTS = "/api/runstream/v1/events"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(settings: Settings) -> None:
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)


def batch_body(run_id: str, points: int, keys: int, step0: int) -> bytes:
    """One request: ``points`` points of one run over ``keys`` series, as packed columns."""
    per_key = points // keys
    now = int(time.time() * 1000)
    series = tuple(
        MetricSeries.from_lists(
            f"metric_{k}",
            range(step0, step0 + per_key),
            [now] * per_key,
            [float(i) * 0.001 for i in range(per_key)],
        )
        for k in range(keys)
    )
    event = MetricsLogged(run_id, series)
    return msgpack.packb({"events": [codec.event_to_obj(event)]}, use_bin_type=True)  # type: ignore[no-any-return]


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> dict[str, Any]:
    async with session.post(
        url + EVENTS, data=body, headers={"Content-Type": "application/msgpack"}
    ) as resp:
        answer: dict[str, Any] = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {answer}")
        return answer


async def drive(url: str, args: argparse.Namespace) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(url + "/nothing"):
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        runs = [uuid.uuid4().hex for _ in range(args.concurrency)]
        for run_id in runs:
            created = rn.RunCreated(run_id, "0", "bench", "bench", int(time.time() * 1000), "")
            await post(
                session,
                url,
                msgpack.packb({"events": [codec.event_to_obj(created)]}, use_bin_type=True),
            )
        bodies = [batch_body(r, args.points, args.keys, 0) for r in runs]
        accepted = 0
        requests = 0
        latencies: list[float] = []
        deadline = time.perf_counter() + args.seconds

        async def worker(body: bytes) -> None:
            nonlocal accepted, requests
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                answer = await post(session, url, body)
                latencies.append(time.perf_counter() - t0)
                accepted += answer["points"]
                requests += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(b) for b in bodies))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "bench": "ingest_throughput",
        "points_per_request": args.points,
        "series_per_request": args.keys,
        "concurrency": args.concurrency,
        "body_bytes": len(bodies[0]),
        "requests": requests,
        "points": accepted,
        "seconds": round(elapsed, 3),
        "points_per_second": round(accepted / elapsed),
        "requests_per_second": round(requests / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
    }


async def with_database(admin_url: str, name: str, create: bool) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def delete_prefix(redis_url: str, prefix: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=10, help="series per request")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    db_name = f"rs_bench_{uuid.uuid4().hex[:12]}"
    prefix = f"rsbench{uuid.uuid4().hex[:8]}"
    database_url = args.pg.rsplit("/", 1)[0] + "/" + db_name
    asyncio.run(with_database(args.pg, db_name, create=True))
    server = None
    try:
        asyncio.run(migrate_dsn(database_url))
        settings = Settings(
            database_url=database_url,
            redis_url=args.redis,
            stream_prefix=prefix,
            port=free_port(),
            backlog_limit=10**9,
        )
        server = multiprocessing.get_context("spawn").Process(target=serve, args=(settings,))
        server.start()
        result = asyncio.run(drive(f"http://127.0.0.1:{settings.port}", args))
        print(json.dumps(result), flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.join(10)
        asyncio.run(delete_prefix(args.redis, prefix))
        asyncio.run(with_database(args.pg, db_name, create=False))


if __name__ == "__main__":
    main()
