"""What ``run.log`` costs a training loop: ns per call, and the slowdown while the sender works.

Prints one JSON line per measurement::

    .venv/bin/python bench/sdk_overhead.py                 # hot path only, no server
    .venv/bin/python bench/sdk_overhead.py --server        # + a real runstream server

``hot_path``: ``run.log`` with 1, 4 and 16 keys into a run whose sender has nothing to do
(best of several repetitions, auto steps and explicit steps). ``training_loop``: a loop doing
a fixed amount of pure-Python work per step, first without logging, then logging 4 or 16
keys per step to a ``runstream server`` (started by ``bench.harness``, real PostgreSQL and
Redis) while the sender thread encodes and posts the batches; the slowdown is what the
sender's share of the GIL and the log calls cost the loop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import runstream
from runstream.client.config import ClientConfig
from runstream.client.run import Run


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def idle_run(spool: Path) -> Run:
    config = ClientConfig(
        url="http://127.0.0.1:9",
        spool_dir=spool,
        flush_interval=3600.0,
        batch_points=10**9,
        max_buffer_points=10**9,
    )
    return Run("0" * 32, config, experiment_id="0")


def hot_path(calls: int, repeats: int, spool: Path) -> None:
    for keys in (1, 4, 16):
        metrics = {f"metric_{i}": 0.5 + i for i in range(keys)}
        for mode in ("auto_step", "explicit_step"):
            run = idle_run(spool)
            run.log(metrics)  # first call validates and creates the columns
            best = best_cpu = float("inf")
            for _ in range(repeats):
                start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
                if mode == "auto_step":
                    for _ in range(calls):
                        run.log(metrics)
                else:
                    for step in range(calls):
                        run.log(metrics, step=step)
                best = min(best, (time.perf_counter_ns() - start) / calls)
                best_cpu = min(best_cpu, (time.thread_time_ns() - start_cpu) / calls)
                run._buffer.take()
            emit(
                bench="hot_path",
                keys=keys,
                mode=mode,
                ns_per_call=round(best),
                cpu_ns_per_call=round(best_cpu),
                ns_per_point=round(best / keys),
                calls=calls,
                repeats=repeats,
            )
    empty = range(calls)
    start = time.perf_counter_ns()
    for _ in empty:
        pass
    emit(
        bench="hot_path",
        keys=0,
        mode="empty_loop",
        ns_per_call=round((time.perf_counter_ns() - start) / calls),
    )


def work(units: int) -> float:
    total = 0.0
    for i in range(units):
        total += i * 0.5
    return total


def training_loop(steps: int, units: int, keys: int, run: runstream.Run | None) -> float:
    metrics = {f"metric_{i}": 0.0 for i in range(keys)}
    start = time.perf_counter()
    for step in range(steps):
        loss = work(units)
        if run is not None:
            metrics["metric_0"] = loss / (step + 1)
            run.log(metrics)
    return time.perf_counter() - start


def with_server(steps: int, units: int) -> None:
    from bench.harness import start_runstream

    with start_runstream() as server:
        base = min(training_loop(steps, units, 0, None) for _ in range(3))
        emit(bench="training_loop", keys=0, steps=steps, us_per_step=round(base / steps * 1e6, 2))
        for keys in (4, 16):
            run = runstream.start_run(experiment="sdk-overhead", url=server.url)
            sender = run._sender
            assert sender is not None and sender._thread is not None
            clock = time.pthread_getcpuclockid(sender._thread.ident or 0)
            sender_cpu = time.clock_gettime(clock)
            loop_cpu = time.thread_time()
            elapsed = training_loop(steps, units, keys, run)
            loop_cpu = time.thread_time() - loop_cpu
            flush_start = time.perf_counter()
            delivered = run.flush(timeout=120)
            flush_s = time.perf_counter() - flush_start
            sender_cpu = time.clock_gettime(clock) - sender_cpu
            run.finish(timeout=120)
            stats = run.stats()
            emit(
                bench="training_loop",
                keys=keys,
                steps=steps,
                us_per_step=round(elapsed / steps * 1e6, 2),
                slowdown_pct=round((elapsed / base - 1) * 100, 1),
                loop_cpu_us_per_step=round(loop_cpu / steps * 1e6, 2),
                sender_cpu_ns_per_point=round(sender_cpu / stats.points_logged * 1e9),
                points=stats.points_logged,
                points_per_s_logged=round(stats.points_logged / elapsed),
                batches=stats.batches_sent,
                flush_s=round(flush_s, 3),
                delivered=delivered,
                retries=stats.retries,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--server", action="store_true", help="also measure against a server")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=200, help="work per training step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as spool:
        os.environ["RUNSTREAM_SPOOL_DIR"] = spool
        hot_path(args.calls, args.repeats, Path(spool))
        if args.server:
            with_server(args.steps, args.units)


if __name__ == "__main__":
    main()
