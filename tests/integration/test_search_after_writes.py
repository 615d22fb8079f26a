"""The first search after runs were written: it sees them all, on fresh planner statistics.

``runstream server``'s app (ingest, api, projector) on the test's database and Redis prefix.
"""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import asyncpg
import orjson

from runstream.projector.statistics import MIN_RUNS, SEARCH_TABLES

MLFLOW = "/api/2.0/mlflow"


async def post(http: aiohttp.ClientSession, url: str, path: str, body: Any) -> Any:
    async with http.post(
        url + MLFLOW + path, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_first_search_after_writes_sees_them_on_analyzed_tables(
    server: str, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    rng = random.Random(12)
    created = await post(http, server, "/experiments/create", {"name": "fresh"})
    experiment_id = created["experiment_id"]
    sent: dict[str, tuple[float, float, str]] = {}
    for i in range(2 * MIN_RUNS):
        run = await post(
            http, server, "/runs/create", {"experiment_id": experiment_id, "start_time": i}
        )
        run_id = run["run"]["info"]["run_id"]
        m0, m1, p0 = rng.random(), rng.random(), str(rng.randrange(3))
        sent[run_id] = (m0, m1, p0)
        await post(
            http,
            server,
            "/runs/log-batch",
            {
                "run_id": run_id,
                "params": [{"key": "p0", "value": p0}],
                "metrics": [
                    {"key": "m0", "value": m0, "timestamp": 1, "step": 0},
                    {"key": "m1", "value": m1, "timestamp": 1, "step": 0},
                ],
            },
        )

    # Straight after the last write: the search catches up with every shard first.
    found = await post(
        http,
        server,
        "/runs/search",
        {
            "experiment_ids": [experiment_id],
            "filter": "metrics.m0 > 0.5 and params.p0 = '1'",
            "order_by": ["metrics.m1 DESC"],
        },
    )
    expected = sorted(
        (run_id for run_id, (m0, _, p0) in sent.items() if m0 > 0.5 and p0 == "1"),
        key=lambda run_id: -sent[run_id][1],
    )
    assert expected
    assert [r["info"]["run_id"] for r in found["runs"]] == expected

    # The projector analyzed the search tables as they grew, before autovacuum would have.
    rows = await pool.fetch(
        "SELECT c.relname, c.reltuples FROM pg_class c WHERE c.relname = ANY($1::text[])",
        list(SEARCH_TABLES),
    )
    assert {r["relname"]: r["reltuples"] >= MIN_RUNS for r in rows} == dict.fromkeys(
        SEARCH_TABLES, True
    )
