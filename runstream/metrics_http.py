"""``GET /metrics`` and the request-latency middleware of every runstream HTTP process.

The metrics themselves are in ``runstream.telemetry``; this module times requests and reads
the per-shard gauges from Redis at scrape time (one pipeline: XLEN and XINFO GROUPS of each
event stream, XLEN of each dead-letter stream).
"""

from __future__ import annotations

import os
import time

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from runstream import telemetry
from runstream.ingest.backlog import backlog_of
from runstream.resources import REDIS, SETTINGS
from runstream.schemas import constants as c
from runstream.web import Handler

PID_HEADER = "X-Runstream-Pid"
"""Which process answered: with ``--workers N``, N processes share the port."""
UNMATCHED_ROUTE = "unmatched"
"""The route label of requests no route matched (bounded label values)."""


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None:  # the router's 404/405 stand-ins have no resource
        return UNMATCHED_ROUTE
    return resource.canonical


@web.middleware
async def latency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Observe every request's time to its response per (method, route, status class), and
    say which process answered (``X-Runstream-Pid``)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:  # a streamed response has sent its headers already
            response.headers[PID_HEADER] = str(os.getpid())
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        telemetry.request_histogram(request.method, route_label(request), status // 100).observe(
            time.perf_counter() - started
        )


async def shard_readings(
    redis: aioredis.Redis, prefix: str, shards: int
) -> list[tuple[int, int, int, int]]:
    """(shard, stream length, projector lag, dead letters) of every shard."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(shards):
        stream = c.stream_key(prefix, shard)
        pipe.xlen(stream)
        pipe.xinfo_groups(stream)
        pipe.xlen(c.dead_letter_key(prefix, shard))
    replies = await pipe.execute(raise_on_error=False)
    readings = []
    for shard in range(shards):
        length, groups, dead = replies[3 * shard : 3 * shard + 3]
        length = int(length) if isinstance(length, int) else 0
        dead = int(dead) if isinstance(dead, int) else 0
        readings.append((shard, length, backlog_of(groups, length), dead))
    return readings


async def metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    try:
        readings = await shard_readings(request.app[REDIS], settings.stream_prefix, settings.shards)
    except (RedisError, OSError):
        readings = []  # the process's own metrics still answer while Redis is away
    return web.Response(
        body=telemetry.exposition(readings), headers={"Content-Type": telemetry.CONTENT_TYPE}
    )


def add_metrics_route(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
