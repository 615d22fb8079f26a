"""The benchmark harness end to end: the servers it starts and one ``python -m bench`` run.

Real processes on free loopback ports: a dedicated Redis with AOF, the null server with the
real ``mlflow`` client against it, and a short ``python -m bench`` run (runstream and the
null server, no MLflow server: its start-up alone takes a minute) writing its JSON and its
markdown to a temporary folder. PostgreSQL is the session's (``pg_admin_url``); runstream's
Redis is always the harness's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import redis

from bench import __main__ as bench_main
from bench.harness import (
    BenchStores,
    runstream_has_workers_flag,
    start_null_server,
    start_redis,
    start_runstream,
)
from bench.null_server import EXPERIMENT_ID, HISTORY_POINTS, history_points

ROOT = Path(__file__).resolve().parents[2]


def test_redis_persists_as_deployed() -> None:
    with start_redis() as server:
        assert not server.url.endswith(":6379/0")
        client = redis.Redis.from_url(server.url)
        try:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            client.set("k", "v")
            assert client.get("k") == b"v"
        finally:
            client.close()
    assert server.persistence == "appendonly yes, appendfsync everysec"


def test_null_server_answers_the_real_mlflow_client() -> None:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    with start_null_server() as null:
        client = MlflowClient(tracking_uri=null.url)
        assert client.create_experiment(f"x-{uuid.uuid4().hex}") == EXPERIMENT_ID
        run_id = uuid.uuid4().hex
        client.log_metric(run_id, "loss", 0.5, step=1)
        client.log_batch(run_id, metrics=[Metric(f"m{k}", 1.0, 1, 1) for k in range(5)])
        run = client.get_run(run_id)
        assert run.info.run_id == run_id
        assert run.info.experiment_id == EXPERIMENT_ID
        assert run.data.metrics == {} and run.data.tags == {}
        # The per-call benchmark gives it runstream's run data: the client parses the same run.
        data = {
            "metrics": [{"key": "loss", "value": 0.5, "timestamp": 7, "step": 1}],
            "params": [{"key": "lr", "value": "0.1"}],
            "tags": [{"key": "mlflow.runName", "value": "r"}],
        }
        urllib.request.urlopen(
            urllib.request.Request(
                f"{null.url}/bench/run-data", data=json.dumps(data).encode(), method="PUT"
            )
        ).read()
        run = client.get_run(run_id)
        assert run.info.run_id == run_id
        assert (run.data.metrics, run.data.params) == ({"loss": 0.5}, {"lr": "0.1"})
        assert run.data.tags == {"mlflow.runName": "r"}
        client.set_terminated(run_id)
    assert null.process.poll() is not None


def test_null_server_answers_the_benchmarks_reads_as_runstream_shapes_them() -> None:
    """The floors of mlflow_search_* and mlflow_history_*: a search page of as many runs as
    the experiment id names, each with 10 params and 2 tags; the canned series whole through
    the client (one 25,000-point page) and paged by ``max_results`` over raw HTTP."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    import requests
    from mlflow.tracking import MlflowClient

    expected = history_points()
    with start_null_server() as null:
        client = MlflowClient(tracking_uri=null.url)
        for size in (12, 100):
            runs = client.search_runs([str(size)], "metrics.m0 > 0.5", max_results=100)
            assert len(runs) == size
            assert all(len(r.data.params) == 10 and len(r.data.tags) == 2 for r in runs)
            assert (runs.token is not None) == (size == 100)
        history = client.get_metric_history(uuid.uuid4().hex, "loss")
        assert len(history) == HISTORY_POINTS
        assert [m.step for m in history] == expected.steps.tolist()
        assert [m.value for m in history] == expected.values.tolist()
        endpoint = f"{null.url}/api/2.0/mlflow/metrics/get-history"
        steps: list[int] = []
        token = None
        with requests.Session() as session:
            while True:
                query = {"run_id": "r", "metric_key": "loss", "max_results": 7_000}
                answer = session.get(
                    endpoint, params={**query, **({"page_token": token} if token else {})}
                ).json()
                steps += [m["step"] for m in answer["metrics"]]
                token = answer.get("next_page_token")
                if token is None:
                    break
        assert steps == expected.steps.tolist()


def test_every_published_workload_has_a_unique_name() -> None:
    published, opt_in = bench_main.PUBLISHED, bench_main.OPT_IN
    assert not set(published) & set(opt_in)
    issue12 = {"mlflow_call_latency", "mlflow_log_batch_4proc", "mlflow_search",
               "mlflow_history", "mlflow_sweep", "workers_curve", "storage_bytes"}  # fmt: skip
    assert issue12 <= set(published)
    assert {"mlflow_proof", "sdk_hot_path", "search_queries"} <= set(opt_in)


def test_quick_run_writes_json_and_markdown(tmp_path: Path, pg_admin_url: str) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nintro\n")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-mlflow",
         "--only", "mlflow_call_latency", "--runstream-workers", "1", "--pg", pg_admin_url,
         "--results-dir", str(tmp_path), "--docs", str(docs)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 600
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["name"] for r in lines] == [
        "mlflow_call_log_metric",
        "mlflow_call_log_batch_5",
        "mlflow_call_get_run",
    ]
    for row in lines:
        assert row["value"] > 0 and row["floor_value"] > 0, row
        assert row["detail"]["runstream"]["n"] == 30 and row["detail"]["null"]["n"] == 30
        assert row["mlflow_value"] is None and row["passed"] is not None
    (saved,) = tmp_path.glob("*.json")
    data = json.loads(saved.read_text())
    assert data["mode"] == "quick" and data["results"] == lines
    assert "appendfsync everysec" in data["machine"]["redis"]
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n")
    assert "`mlflow_call_log_metric`" in text and saved.name in text
    assert "| null server | runstream ÷ null | MLflow ÷ null |" in text


def test_runstream_workers_passed_on_only_when_the_server_has_the_flag(pg_admin_url: str) -> None:
    with start_runstream(BenchStores(pg_admin_url), workers=2) as server:
        argv = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().split(b"\0")
        if runstream_has_workers_flag():
            assert server.workers == 2 and b"--workers" in argv
        else:
            assert server.workers == 1 and b"--workers" not in argv
            assert "lacks" in server.extra["workers_note"]
        with urllib.request.urlopen(server.url + "/health", timeout=10) as resp:
            assert resp.status == 200
