"""Bytes per point on disk, counting everything: every table of the server's database, with
its indexes and TOAST (``pg_total_relation_size``, after ``VACUUM ANALYZE``).

The same points go to a fresh runstream server and a fresh MLflow server through the same
``mlflow`` client calls (``log_batch`` of 1,000 metrics, 4 processes), and each database is
measured once every point is readable. For runstream that counts the read tables, their
indexes and the event log (the source of truth, kept in PostgreSQL); for MLflow its
``metrics`` and ``latest_metrics`` and every other table. The schema's size when empty is
in the row's detail: it is part of the total, and negligible at the full size.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.harness import Server, table_bytes
from bench.processes import in_processes, mlflow_env
from bench.report import Context, Result, Target

SECTION = "Storage: bytes per point, everything counted"
PROCESSES = 4
BATCH = 1000
READ_DEADLINE = 300.0


def _fill_child(url: str, runs: int, keys: int, steps: int) -> dict[str, Any]:
    """Child: ``runs`` runs of ``keys`` series of ``steps`` points, logged by ``log_batch``
    of 1,000 metrics; returns once every series reads back whole."""
    mlflow_env(url)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    experiment = client.create_experiment(f"bench-bytes-{uuid.uuid4().hex[:8]}")
    now = int(time.time() * 1000)
    points = [
        (f"metric_{k}", 1.0 / (s + 1) + k, now + s * 10, s)
        for s in range(steps)
        for k in range(keys)
    ]
    run_ids = []
    for _ in range(runs):
        run_id = client.create_run(experiment).info.run_id
        run_ids.append(run_id)
        for i in range(0, len(points), BATCH):
            client.log_batch(run_id, metrics=[Metric(*p) for p in points[i : i + BATCH]])
        client.set_terminated(run_id)
    deadline = time.monotonic() + READ_DEADLINE
    for run_id in run_ids:
        for k in range(keys):
            while len(client.get_metric_history(run_id, f"metric_{k}")) < steps:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url}: points of {run_id} not readable in time")
                time.sleep(0.1)
    return {"points": runs * keys * steps}


def _measure(server: Server, runs: int, keys: int, steps: int) -> dict[str, Any]:
    empty = table_bytes(server.database_url)
    share = [runs // PROCESSES + (p < runs % PROCESSES) for p in range(PROCESSES)]
    outs = in_processes(_fill_child, [(server.url, n, keys, steps) for n in share if n])
    tables = table_bytes(server.database_url)
    points = sum(o["points"] for o in outs)
    total = sum(tables.values())
    biggest = dict(sorted(tables.items(), key=lambda kv: -kv[1])[:8])
    return {
        "points": points,
        "bytes": total,
        "bytes_per_point": total / points,
        "empty_schema_bytes": sum(empty.values()),
        "tables": len(tables),
        "largest_tables": biggest,
    }


def storage_bytes(ctx: Context) -> list[Result]:
    """Bytes per point of the same points logged to both servers, every table counted."""
    runs, keys, steps = ctx.size(4, 10), 10, ctx.size(500, 2_000)
    measured: dict[str, dict[str, Any]] = {}
    with ctx.fresh_runstream() as server:
        measured["runstream"] = _measure(server, runs, keys, steps)
    note = ""
    if ctx.with_mlflow:
        try:
            with ctx.fresh_mlflow() as ml:
                measured["mlflow"] = _measure(ml, runs, keys, steps)
        except Exception as exc:
            note = f"MLflow side failed: {exc!r}"[:300]
    points = measured["runstream"]["points"]
    ml_side = measured.get("mlflow")
    return [
        Result(
            "storage_bytes",
            SECTION,
            f"bytes per point on disk, every table with its indexes and TOAST (runstream: "
            f"read tables + event log), {points:,} points in {runs * keys} series logged "
            "through the mlflow client's log_batch",
            measured["runstream"]["bytes_per_point"],
            "B",
            better="lower",
            target=Target(">=", 3, on_ratio=True),
            mlflow_value=ml_side["bytes_per_point"] if ml_side else None,
            detail=measured,
            note=note,
        )
    ]


WORKLOADS: dict[str, Callable[[Context], list[Result]]] = {"storage_bytes": storage_bytes}
