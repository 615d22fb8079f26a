"""`runstream server --workers N`: N processes on one port, one projector, one /metrics.

Runs the real command as a subprocess against the test's PostgreSQL database and Redis prefix.
Every request goes on a new connection (``Connection: close``), so the kernel spreads them
over the workers; ``X-Runstream-Pid`` says which process answered.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.test_server_embedded import (
    START_TIMEOUT,
    alive,
    children_of,
    clean_environ,
    free_port,
    start,
    wait_gone,
    wait_healthy,
)

pytestmark = pytest.mark.slow

MLFLOW = "/api/2.0/mlflow"
PID = "X-Runstream-Pid"


def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any, int]:
    """(status, JSON, answering pid), on a connection of its own."""
    data = None if body is None else orjson.dumps(body)
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Connection": "close"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, orjson.loads(resp.read() or b"null"), int(resp.headers[PID])


def pids_answering(url: str, want: int, timeout: float = START_TIMEOUT) -> set[int]:
    """Poll until ``want`` distinct processes answered (workers start after the parent).

    A connection the kernel had queued on a worker that was just killed is reset (a limit
    of SO_REUSEPORT: each socket has its own accept queue), so resets are retried here.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        try:
            seen.add(call(url + "/health")[2])
        except ConnectionError:
            time.sleep(0.05)
    return seen


def scrape(url: str) -> dict[str, float]:
    """Every sample of ``/metrics`` as ``name{labels}`` -> value."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], pattern: str) -> float:
    return sum(v for k, v in samples.items() if re.fullmatch(pattern, k))


@pytest.fixture
def workers_server(
    database_url: str, redis_url: str, stream_prefix: str, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    log = tmp_path / "server.log"
    env = clean_environ(
        RUNSTREAM_DATABASE_URL=database_url,
        RUNSTREAM_REDIS_URL=redis_url,
        RUNSTREAM_STREAM_PREFIX=stream_prefix,
        RUNSTREAM_SHARDS="4",
        RUNSTREAM_HOME=str(tmp_path / "data"),
        RUNSTREAM_WORKERS="2",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = start(["server", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log, START_TIMEOUT)
        yield url, process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in children_of(process.pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_two_workers_serve_writes_and_reads_with_read_your_writes(
    workers_server: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    url, _, log = workers_server
    assert len(pids_answering(url, 2)) == 2, log.read_text()
    before = scrape(url)

    _, created, _ = call(url + f"{MLFLOW}/experiments/create", "POST", {"name": "workers"})
    _, run, _ = call(
        url + f"{MLFLOW}/runs/create",
        "POST",
        {"experiment_id": created["experiment_id"], "start_time": 1},
    )
    run_id = run["run"]["info"]["run_id"]
    writers: set[int] = set()
    readers: set[int] = set()
    sent: list[tuple[int, float]] = []
    for step in range(40):
        value = step / 4
        metrics = [{"key": "loss", "value": value, "timestamp": 1000 + step, "step": step}]
        status, _, writer = call(
            url + f"{MLFLOW}/runs/log-batch", "POST", {"run_id": run_id, "metrics": metrics}
        )
        assert status == 200
        sent.append((step, value))
        writers.add(writer)
        # The next read, on another connection and maybe another process, sees the write.
        _, history, reader = call(
            url + f"{MLFLOW}/metrics/get-history?run_id={run_id}&metric_key=loss"
        )
        readers.add(reader)
        assert [(m["step"], m["value"]) for m in history["metrics"]] == sent
        _, got, reader = call(url + f"{MLFLOW}/runs/get?run_id={run_id}")
        readers.add(reader)
        assert got["run"]["data"]["metrics"] == [
            {"key": "loss", "value": value, "timestamp": 1000 + step, "step": step}
        ]
    assert len(writers) == 2 and len(readers) == 2

    # /metrics merges every process: whichever worker answers, all requests are counted.
    for _ in range(4):
        after = scrape(url)
        accepted = total(after, r"runstream_points_accepted_total\{.*\}") - total(
            before, r"runstream_points_accepted_total\{.*\}"
        )
        assert accepted == len(sent)
        batches = total(
            after,
            r'runstream_http_request_duration_seconds_count\{method="POST",'
            r'route="/api/2.0/mlflow/runs/log-batch",status="2xx"\}',
        ) - total(
            before,
            r'runstream_http_request_duration_seconds_count\{method="POST",'
            r'route="/api/2.0/mlflow/runs/log-batch",status="2xx"\}',
        )
        assert batches == len(sent)
    assert total(after, r"runstream_projector_entries_applied_total\{.*\}") >= len(sent) + 2
    assert total(after, r"runstream_stream_length\{.*\}") >= 0
    assert total(after, r"runstream_projector_lag\{.*\}") == 0  # every read caught up
    assert total(after, r"runstream_dead_letters\{.*\}") == 0


def test_a_killed_worker_is_replaced_and_sigterm_stops_every_process(
    workers_server: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    url, process, log = workers_server
    pids = pids_answering(url, 2)
    # The parent runs the projector and supervises; only its worker processes answer.
    assert process.pid not in pids and pids <= set(children_of(process.pid))
    worker = min(pids)
    os.kill(worker, signal.SIGKILL)
    replaced = pids_answering(url, 2, timeout=30)
    assert worker not in replaced and pids - {worker} <= replaced and len(replaced) == 2

    children = children_of(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, log.read_text()
    assert wait_gone(children, 10) == []


def test_workers_die_with_a_killed_parent(
    workers_server: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    url, process, _ = workers_server
    pids_answering(url, 2)
    children = children_of(process.pid)
    assert children
    process.kill()
    process.wait()
    assert wait_gone(children, 15) == []
