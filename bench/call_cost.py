"""Per-call cost of the mlflow client against runstream, interleaved with a null server.

A development tool for the server side of issue 12 (the published figures come from
``python -m bench``): it starts ``runstream server`` on a fresh database and Redis prefix
(``bench.harness.start_runstream``) and a null aiohttp server that answers every MLflow call
at once with a canned reply, then times the same client call against both, alternating, and
prints the medians and their ratio::

    .venv/bin/python -m bench.call_cost --calls 300
    .venv/bin/python -m bench.call_cost --profile /tmp/server.prof   # the server under cProfile
    .venv/bin/python -m bench.call_cost --batch 1000 --clients 4      # points/s of log_batch

``--profile`` runs the server under ``cProfile`` counting CPU time (``bench/cpu_profile.py``;
slower in absolute terms: read the profile for *where* the time goes, the ratios without it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.harness import HOST, start_runstream

NULL_RUN: dict[str, Any] = {}
"""The run the null server answers get-run with (runstream's own answer, captured first)."""


def _null_app(run_json: bytes) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        body = run_json if request.path.endswith("/runs/get") else b"{}"
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def _serve_null(run_json: bytes, sock: socket.socket) -> None:
    async def serve() -> None:
        runner = web.AppRunner(_null_app(run_json), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


@contextlib.contextmanager
def null_server(run_json: bytes) -> Iterator[str]:
    """A server that does no work (the client's own floor), in its own process like a real
    server: a thread of the client's process would share its GIL."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    process = multiprocessing.get_context("fork").Process(
        target=_serve_null, args=(run_json, sock), daemon=True
    )
    process.start()
    sock.close()
    try:
        yield f"http://{HOST}:{port}"
    finally:
        process.terminate()
        process.join(5)


def _client(url: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


def interleaved(
    calls: int, real: Callable[[], object], null: Callable[[], object]
) -> tuple[float, float]:
    """Median seconds per call of ``real`` and ``null``, measured alternately."""
    real_times: list[float] = []
    null_times: list[float] = []
    for i in range(calls + 20):
        order = (real, null) if i % 2 else (null, real)
        for fn in order:
            started = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - started
            if i >= 20:  # warm-up
                (real_times if fn is real else null_times).append(elapsed)
    return statistics.median(real_times), statistics.median(null_times)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its living descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(stat[11]) + int(stat[12])) / tick
        frontier += [int(c) for c in children]
    return total


def call_costs(url: str, calls: int, server_pid: int) -> dict[str, Any]:
    from mlflow.entities import Metric

    rs = _client(url)
    experiment = rs.create_experiment(f"call-cost-{os.getpid()}-{time.time_ns()}")
    run_id = rs.create_run(experiment).info.run_id
    import urllib.request

    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/runs/get?run_id={run_id}") as resp:
        run_json = resp.read()
    out: dict[str, Any] = {}
    with null_server(run_json) as null_url:
        nl = _client(null_url)
        step = iter(range(10**9))

        def metric(client: Any) -> Callable[[], object]:
            return lambda: client.log_metric(run_id, "loss", 0.5, step=next(step))

        def batch(client: Any) -> Callable[[], object]:
            def call() -> None:
                now = int(time.time() * 1000)
                s = next(step)
                client.log_batch(
                    run_id, metrics=[Metric(f"m{k}", 0.1 * k, now, s) for k in range(5)]
                )

            return call

        def get(client: Any) -> Callable[[], object]:
            return lambda: client.get_run(run_id)

        for name, make in (("log_metric", metric), ("log_batch_5", batch), ("get_run", get)):
            cpu = cpu_seconds(server_pid)
            real_s, null_s = interleaved(calls, make(rs), make(nl))
            cpu = cpu_seconds(server_pid) - cpu
            out[name] = {
                "runstream_ms": round(real_s * 1000, 3),
                "null_ms": round(null_s * 1000, 3),
                "ratio": round(real_s / null_s, 3),
                # Includes the projector's work for writes: server CPU the call costs in all.
                "server_cpu_us_per_call": round(cpu / (calls + 20) * 1e6),
            }
    return out


def _batch_client(url: str, run_id: str, calls: int, size: int) -> float:
    from mlflow.entities import Metric

    client = _client(url)
    now = int(time.time() * 1000)
    batches = [
        [Metric(f"m{k % 10}", float(k), now, c * size + k) for k in range(size)]
        for c in range(calls)
    ]
    started = time.perf_counter()
    for metrics in batches:
        client.log_batch(run_id, metrics=metrics)
    return time.perf_counter() - started


def batch_throughput(url: str, clients: int, size: int, calls: int) -> dict[str, Any]:
    """Points/s of ``clients`` processes each sending ``calls`` log_batch of ``size``."""
    rs = _client(url)
    experiment = rs.create_experiment(f"batch-{time.time_ns()}")
    run_ids = [rs.create_run(experiment).info.run_id for _ in range(clients)]
    _batch_client(url, run_ids[0], 2, size)  # warm-up
    with ProcessPoolExecutor(clients) as pool:
        started = time.perf_counter()
        futures = [pool.submit(_batch_client, url, r, calls, size) for r in run_ids]
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - started
    points = clients * size * calls
    return {"points": points, "seconds": round(elapsed, 3), "points_per_s": round(points / elapsed)}


async def _raw_batches(url: str, run_ids: list[str], size: int, seconds: float) -> int:
    """Pre-encoded log-batch bodies posted by one task per run for ``seconds``; points sent."""
    import aiohttp
    import orjson

    now = int(time.time() * 1000)
    sent = 0

    async def one(session: aiohttp.ClientSession, run_id: str) -> None:
        nonlocal sent
        step = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            metrics = [
                {"key": f"m{k % 10}", "value": k * 0.5, "timestamp": now, "step": step + k}
                for k in range(size)
            ]
            body = orjson.dumps({"run_id": run_id, "metrics": metrics})
            step += size
            async with session.post(
                f"{url}/api/2.0/mlflow/runs/log-batch",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 200, await resp.text()
            sent += size

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, r) for r in run_ids))
    return sent


def raw_batch_throughput(url: str, server_pid: int, clients: int, size: int) -> dict[str, Any]:
    """The server's ceiling on log-batch: cheap aiohttp clients instead of mlflow's."""
    rs = _client(url)
    experiment = rs.create_experiment(f"raw-{time.time_ns()}")
    run_ids = [rs.create_run(experiment).info.run_id for _ in range(clients)]
    asyncio.run(_raw_batches(url, run_ids, size, 1.0))  # warm-up
    cpu = cpu_seconds(server_pid)
    started = time.perf_counter()
    points = asyncio.run(_raw_batches(url, run_ids, size, 5.0))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(server_pid) - cpu
    return {
        "points": points,
        "points_per_s": round(points / elapsed),
        "server_cpu_us_per_point": round(cpu / points * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--profile", help="run the server under cProfile, stats to this path")
    parser.add_argument("--batch", type=int, default=0, help="log_batch size for throughput")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch-calls", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-calls", action="store_true")
    parser.add_argument(
        "--raw-batch", type=int, default=0, help="log_batch size for aiohttp-client throughput"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    python = [sys.executable, "-m", "bench.cpu_profile", args.profile] if args.profile else None
    with start_runstream(workers=args.workers, python=python) as server:
        result: dict[str, Any] = {"workers": args.workers}
        if not args.skip_calls:
            result["calls"] = call_costs(server.url, args.calls, server.process.pid)
        if args.batch:
            result["batch"] = batch_throughput(
                server.url, args.clients, args.batch, args.batch_calls
            )
        if args.raw_batch:
            result["raw_batch"] = raw_batch_throughput(
                server.url, server.process.pid, args.clients, args.raw_batch
            )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
