"""``GET /metrics`` of one process (``runstream server``'s app in the test process): the values
move with real traffic. The several-process case is in tests/e2e/test_server_workers.py."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import orjson

MLFLOW = "/api/2.0/mlflow"


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], pattern: str) -> float:
    return sum(v for k, v in samples.items() if re.fullmatch(pattern, k))


async def post(http: aiohttp.ClientSession, url: str, path: str, body: Any) -> Any:
    async with http.post(
        url + MLFLOW + path, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_metrics_move_with_traffic(server: str, http: aiohttp.ClientSession) -> None:
    before = await scrape(http, server)
    experiment = await post(http, server, "/experiments/create", {"name": "metrics"})
    run = await post(http, server, "/runs/create", {"experiment_id": experiment["experiment_id"]})
    run_id = run["run"]["info"]["run_id"]
    metrics = [{"key": f"k{i % 3}", "value": i / 2, "timestamp": 5, "step": i} for i in range(30)]
    await post(http, server, "/runs/log-batch", {"run_id": run_id, "metrics": metrics})
    async with http.get(f"{server}{MLFLOW}/runs/get", params={"run_id": run_id}) as resp:
        assert resp.status == 200  # caught up: the projector applied every write
    async with http.get(f"{server}{MLFLOW}/no/such/route") as resp:
        assert resp.status == 404
    after = await scrape(http, server)

    def moved(pattern: str) -> float:
        return total(after, pattern) - total(before, pattern)

    assert moved(r"runstream_points_accepted_total\{.*\}") == len(metrics)
    assert moved(r"runstream_events_accepted_total\{.*\}") >= 3
    batch = r'route="/api/2.0/mlflow/runs/log-batch",status="2xx"'
    assert moved(r'runstream_http_request_duration_seconds_count\{method="POST",' + batch + r"\}")
    assert moved(r'runstream_http_request_duration_seconds_count\{.*route="unmatched".*\}') == 1
    assert moved(r"runstream_projector_batch_duration_seconds_count\{.*\}") >= 1
    assert moved(r"runstream_projector_entries_applied_total\{.*\}") >= 3
    # Read from Redis at scrape time: one sample per shard; nothing left unapplied or dead.
    assert len([k for k in after if k.startswith("runstream_stream_length{")]) == 4
    assert total(after, r"runstream_stream_length\{.*\}") >= 0
    assert total(after, r"runstream_projector_lag\{.*\}") == 0
    assert total(after, r"runstream_dead_letters\{.*\}") == 0
