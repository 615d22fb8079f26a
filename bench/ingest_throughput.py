"""A driver of ingest at its ceiling: pre-encoded msgpack batches of packed metric points,
posted over HTTP with a few requests in flight (``drive``), and the request bodies
(``batch_body``, ``post``). Used by ``bench/write_workloads.py`` (``ingest_acceptance``,
``end_to_end``'s latency) against a server ``bench.harness`` started.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import msgpack

from runstream.schemas import codec
from runstream.schemas import runs as rn
from runstream.schemas.metrics import MetricSeries, MetricsLogged

EVENTS = "/api/runstream/v1/events"


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


async def drive(
    url: str, seconds: float, points: int = 10_000, keys: int = 10, concurrency: int = 8
) -> dict[str, Any]:
    """Post ``points``-point batches over ``keys`` series from ``concurrency`` loops for
    ``seconds``; returns points/s accepted and the request latencies."""
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(url + "/nothing"):
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        runs = [uuid.uuid4().hex for _ in range(concurrency)]
        for run_id in runs:
            created = rn.RunCreated(run_id, "0", "bench", "bench", int(time.time() * 1000), "")
            await post(
                session,
                url,
                msgpack.packb({"events": [codec.event_to_obj(created)]}, use_bin_type=True),
            )
        bodies = [batch_body(r, points, keys, 0) for r in runs]
        accepted = 0
        requests = 0
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

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
        "points_per_request": points,
        "series_per_request": keys,
        "concurrency": concurrency,
        "body_bytes": len(bodies[0]),
        "requests": requests,
        "points": accepted,
        "seconds": round(elapsed, 3),
        "points_per_second": round(accepted / elapsed),
        "requests_per_second": round(requests / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
    }
