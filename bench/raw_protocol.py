"""MLflow's REST protocol without the mlflow client: the servers' own capacity on log-batch.

``mlflow_log_batch_4proc`` (bench/mlflow_protocol.py) is bounded by the mlflow client: it
builds a ``Metric`` object and its protobuf JSON per point, which costs more CPU than
runstream's server spends on the point. This workload sends the same requests, the same
route and the same JSON (``POST /api/2.0/mlflow/runs/log-batch``, 1,000 metrics: 10 keys x
100 steps), from 4 client processes that build their bodies with orjson before the clock
starts and post them over one keep-alive connection each (aiohttp), against both servers in
the same run. It is the MLflow protocol (any HTTP client of MLflow's REST API sends these
bytes), not runstream's native one; the mlflow-client row stays the one users of
``MlflowClient`` see.

Every point is counted back: after the clock stops, each process reads its run's history of
every key through ``MlflowClient.get_metric_history`` and compares count and values with what
it sent.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.mlflow_protocol import SECTION
from bench.processes import barrier, in_processes_lined_up, mlflow_env
from bench.report import Context, Result, Target

KEYS = 10
STEPS = 100
PROCESSES = 4


def _bodies(run_id: str, calls: int) -> list[bytes]:
    import orjson

    now = int(time.time() * 1000)

    def metric(c: int, s: int, k: int) -> dict[str, Any]:
        return {"key": f"metric_{k}", "value": c + s * 0.5, "timestamp": now, "step": c * STEPS + s}

    def body(c: int) -> bytes:
        metrics = [metric(c, s, k) for s in range(STEPS) for k in range(KEYS)]
        return orjson.dumps({"run_id": run_id, "metrics": metrics})

    return [body(c) for c in range(calls)]


def _raw_child(url: str, calls: int, folder: str, parties: int) -> dict[str, Any]:
    """Child: one run, ``calls`` pre-built log-batch bodies posted one after another."""
    import asyncio

    import aiohttp

    mlflow_env(url)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    experiment = client.create_experiment(f"bench-raw-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    bodies = _bodies(run_id, calls)

    async def post_all() -> tuple[float, float]:
        async with aiohttp.ClientSession() as session:
            route = f"{url}/api/2.0/mlflow/runs/log-batch"
            headers = {"Content-Type": "application/json"}
            # One warm-up request on the same connection, then the clock.
            async with session.post(route, data=b'{"run_id": "%s"}' % run_id.encode(),
                                    headers=headers) as resp:  # fmt: skip
                assert resp.status == 200, await resp.text()
            barrier(folder, parties)
            started = time.time()
            for body in bodies:
                async with session.post(route, data=body, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
            return started, time.time()

    started, done = asyncio.run(post_all())
    expected = {(c * STEPS + s, c + s * 0.5) for c in range(calls) for s in range(STEPS)}
    readable = all(
        {(m.step, m.value) for m in client.get_metric_history(run_id, f"metric_{k}")} == expected
        for k in range(KEYS)
    )
    return {"started": started, "done": done, "points": calls * KEYS * STEPS,
            "body_bytes": sum(len(b) for b in bodies), "all_readable": readable}  # fmt: skip


def raw_log_batch_rate(url: str, calls: int) -> tuple[float, dict[str, Any]]:
    """Points/s of ``PROCESSES`` raw clients each posting ``calls`` bodies of 1,000 metrics."""
    outs = in_processes_lined_up(_raw_child, [(url, calls)] * PROCESSES)
    seconds = max(o["done"] for o in outs) - min(o["started"] for o in outs)
    points = sum(o["points"] for o in outs)
    return points / seconds, {
        "points": points,
        "seconds": round(seconds, 3),
        "body_bytes": sum(o["body_bytes"] for o in outs),
        "all_readable": all(o["all_readable"] for o in outs),
    }


def mlflow_log_batch_raw(ctx: Context) -> list[Result]:
    """log-batch of 1,000 metrics from 4 processes of pre-built JSON: both servers."""
    calls = ctx.size(3, 50)
    rate, detail = raw_log_batch_rate(ctx.runstream().url, calls)
    ml = ctx.mlflow()
    mlflow_rate: float | None = None
    details = {"runstream": detail}
    if ml is not None:
        mlflow_rate, details["mlflow"] = raw_log_batch_rate(ml.url, max(1, calls // 4))
    note = "" if all(d["all_readable"] for d in details.values()) else "points missing"
    return [
        Result(
            "mlflow_log_batch_raw",
            SECTION,
            f"POST runs/log-batch of 1,000 metrics (MLflow's REST protocol and JSON), pre-built "
            f"bodies from {PROCESSES} processes x {calls} calls (MLflow: x {max(1, calls // 4)}),"
            " no mlflow client: the servers' own capacity",
            rate,
            "points/s",
            target=Target(">=", 30.0, on_ratio=True),
            mlflow_value=mlflow_rate,
            detail=details,
            note=note or ("" if ml is not None or not ctx.with_mlflow else "MLflow did not start"),
        )
    ]


WORKLOADS = {"mlflow_log_batch_raw": mlflow_log_batch_raw}
