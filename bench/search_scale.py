"""Search at scale: populate runs x params x metrics with COPY, then time MLflow searches.

    .venv/bin/python bench/search_scale.py [--runs 100000] [--small 1000] [--explain]

Builds (or reuses, when already populated) database ``rs_search_bench`` next to
RUNSTREAM_TEST_DATABASE_URL's (default postgresql://postgres@127.0.0.1:5432/postgres),
migrated like production: experiment 1 holds ``--runs`` runs, experiment 2 ``--small`` runs,
each with 10 params (p0..p9, 10 values each), 10 latest metrics (m0..m9, uniform [0, 1), 1%
NaN, 3% missing) and 3 tags; 5% of the runs are deleted. Prints one JSON line per
measurement (median and p90 over ``--repeat`` calls of ``search_runs``, warm connection).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from runstream.api.mlflow.search import PLANNER_SETTINGS, search_runs
from runstream.api.mlflow.search_filter import parse_runs_filter, parse_runs_order_by
from runstream.api.mlflow.search_sql import runs_query, view_stages
from runstream.projector.migrations import migrate_dsn

NAME = "rs_search_bench"
QUERIES: list[tuple[str, str, list[str]]] = [
    ("metric_param_filter_metric_order",
     "metrics.m0 > 0.5 and params.p0 = '3'", ["metrics.m1 DESC"]),
    ("metric_filter_metric_order", "metrics.m0 > 0.9", ["metrics.m1 DESC"]),
    ("metric_order", "", ["metrics.m2 ASC"]),
    ("param_tag_filter", "params.p1 = '7' and tags.team = 't2'", []),
    ("default_order", "", []),
    ("status_like_filter_param_order",
     "attributes.status = 'FINISHED' and params.p3 LIKE '1%'", ["params.p4 DESC"]),
]  # fmt: skip


def database_url(name: str) -> tuple[str, str]:
    admin = os.environ.get(
        "RUNSTREAM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    return admin, urlunsplit(urlsplit(admin)._replace(path="/" + name))


@dataclass
class SearchData:
    """Rows of a search population, in runstream's column order (see ``populate``)."""

    experiments: dict[int, str]
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    params: list[tuple[Any, ...]] = field(default_factory=list)
    metrics: list[tuple[Any, ...]] = field(default_factory=list)
    tags: list[tuple[Any, ...]] = field(default_factory=list)


def generate(sizes: dict[int, int], seed: int, first: int = 1) -> SearchData:
    """``sizes[experiment_id]`` runs each: 10 params, 10 latest metrics, 3 tags (module doc).

    Run ids are ``f"{n:032x}"`` counting from ``first``."""
    rnd = random.Random(seed)
    data = SearchData({e: f"bench-{e}" for e in sizes})
    runs, params, metrics, tags = data.runs, data.params, data.metrics, data.tags
    n = first - 1
    for experiment_id, count in sizes.items():
        for _ in range(count):
            n += 1
            rid = f"{n:032x}"
            stage = "deleted" if rnd.random() < 0.05 else "active"
            status = "FAILED" if rnd.random() < 0.1 else "FINISHED"
            start = 1_700_000_000_000 + (n - first + 1) * 1000
            runs.append((rid, experiment_id, f"run-{n}", "bench", status, start, start + 500,
                         stage, f"s3://bench/{rid}"))  # fmt: skip
            for k in range(10):
                params.append((rid, experiment_id, f"p{k}", str(rnd.randrange(10))))
                if rnd.random() < 0.97:
                    value = float("nan") if rnd.random() < 0.01 else rnd.random()
                    metrics.append((rid, experiment_id, f"m{k}", 100, 99, start, value))
            tags.append((rid, experiment_id, "mlflow.runName", f"run-{n}"))
            tags.append((rid, experiment_id, "mlflow.user", "bench"))
            tags.append((rid, experiment_id, "team", f"t{rnd.randrange(5)}"))
    return data


async def populate(conn: asyncpg.Connection, sizes: dict[int, int], seed: int) -> None:
    await load_runstream(conn, generate(sizes, seed))


async def load_runstream(conn: asyncpg.Connection, data: SearchData) -> None:
    """COPY a population into runstream's tables (migrated like production)."""
    for experiment_id, name in data.experiments.items():
        await conn.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, creation_time,"
            " last_update_time) VALUES ($1, $2, '', 0, 0) ON CONFLICT DO NOTHING",
            experiment_id,
            name,
        )
    await conn.copy_records_to_table(
        "runs",
        records=data.runs,
        columns=["run_id", "experiment_id", "name", "user_id", "status", "start_time",
                 "end_time", "lifecycle_stage", "artifact_uri"],
    )  # fmt: skip
    # experiment_id as the projector writes it (migration 0006): the run's experiment.
    keyed = ["run_id", "experiment_id", "key", "value"]
    await conn.copy_records_to_table("params", records=data.params, columns=keyed)
    await conn.copy_records_to_table("run_tags", records=data.tags, columns=keyed)
    await conn.copy_records_to_table(
        "metric_series",
        records=data.metrics,
        columns=["run_id", "experiment_id", "key", "point_count", "latest_step",
                 "latest_timestamp", "latest_value"],
    )  # fmt: skip


async def load_mlflow(conn: asyncpg.Connection, data: SearchData) -> dict[int, int]:
    """COPY the same population into MLflow's tables (a database ``mlflow db upgrade`` or
    ``mlflow server`` migrated): experiments, runs, params, tags, latest_metrics and one
    ``metrics`` row per latest value, NaN stored as MLflow does (0 with ``is_nan``).
    Returns MLflow's experiment id for each of ``data``'s (MLflow's ids are a serial)."""
    ids: dict[int, int] = {}
    for experiment_id, name in data.experiments.items():
        ids[experiment_id] = int(
            await conn.fetchval(
                "INSERT INTO experiments (name, artifact_location, lifecycle_stage,"
                " creation_time, last_update_time) VALUES ($1, 'x', 'active', 0, 0)"
                " RETURNING experiment_id",
                f"{name}-{uuid.uuid4().hex[:8]}",
            )
        )
    await conn.copy_records_to_table(
        "runs",
        records=[(rid, name, "LOCAL", "", "", user, status, start, end, "", stage, uri,
                  ids[e], start if stage == "deleted" else None)
                 for rid, e, name, user, status, start, end, stage, uri in data.runs],
        columns=["run_uuid", "name", "source_type", "source_name", "entry_point_name",
                 "user_id", "status", "start_time", "end_time", "source_version",
                 "lifecycle_stage", "artifact_uri", "experiment_id", "deleted_time"],
    )  # fmt: skip
    keyed = ["run_uuid", "key", "value"]
    await conn.copy_records_to_table(
        "params", records=[(r, k, v) for r, _, k, v in data.params], columns=keyed
    )
    await conn.copy_records_to_table(
        "tags", records=[(r, k, v) for r, _, k, v in data.tags], columns=keyed
    )
    points = [
        (r, k, 0.0 if math.isnan(v) else v, ts, step, math.isnan(v))
        for r, _, k, _count, step, ts, v in data.metrics
    ]
    columns = ["run_uuid", "key", "value", "timestamp", "step", "is_nan"]
    await conn.copy_records_to_table("latest_metrics", records=points, columns=columns)
    await conn.copy_records_to_table("metrics", records=points, columns=columns)
    return ids


async def prepare(admin: str, url: str, sizes: dict[int, int], rebuild: bool) -> None:
    conn = await asyncpg.connect(admin)
    try:
        if rebuild:
            await conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", NAME):
            await conn.execute(f'CREATE DATABASE "{NAME}"')
    finally:
        await conn.close()
    await migrate_dsn(url)
    conn = await asyncpg.connect(url)
    try:
        have = await conn.fetchval("SELECT count(*) FROM runs")
        if have == sum(sizes.values()):
            return
        await conn.execute("TRUNCATE runs, params, run_tags, metric_series")
        started = time.perf_counter()
        await populate(conn, sizes, seed=42)
        loaded = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE")
        print(json.dumps({"populate_s": round(loaded, 1),
                          "vacuum_analyze_s": round(time.perf_counter() - started - loaded, 1),
                          "runs": sum(sizes.values())}))  # fmt: skip
    finally:
        await conn.close()


async def measure(url: str, sizes: dict[int, int], repeat: int, explain: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        for experiment_id, count in sizes.items():
            for label, filter_string, order_by in QUERIES:
                kw: dict[str, Any] = {"experiment_ids": [str(experiment_id)],
                                      "filter_string": filter_string, "order_by": order_by,
                                      "max_results": 100}  # fmt: skip
                found, _ = await search_runs(conn, **kw)  # warm-up (plan, cache)
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    await search_runs(conn, **kw)
                    times.append((time.perf_counter() - started) * 1000)
                times.sort()
                print(json.dumps({
                    "query": label, "runs_in_experiment": count, "filter": filter_string,
                    "order_by": order_by, "max_results": 100, "returned": len(found),
                    "median_ms": round(statistics.median(times), 2),
                    "p90_ms": round(times[int(len(times) * 0.9) - 1], 2),
                }))  # fmt: skip
                if explain:
                    q = runs_query(
                        experiment_ids=[experiment_id], stages=view_stages("ACTIVE_ONLY"),
                        filters=parse_runs_filter(filter_string),
                        order_by=parse_runs_order_by(order_by), limit=101,
                    )  # fmt: skip
                    async with conn.transaction():
                        await conn.execute(PLANNER_SETTINGS)
                        plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + q.sql, *q.args)
                    print("\n".join(r[0] for r in plan))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rebuild", action="store_true", help="drop and repopulate")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE plans")
    args = parser.parse_args()
    admin, url = database_url(NAME)
    sizes = {1: args.runs, 2: args.small}
    asyncio.run(prepare(admin, url, sizes, args.rebuild))
    asyncio.run(measure(url, sizes, args.repeat, args.explain))


if __name__ == "__main__":
    main()
