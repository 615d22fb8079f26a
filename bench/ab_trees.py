"""A/B of two (or more) checkouts of runstream on one machine, interleaved, CPU time first.

A development tool (issue 10, item 4: "nothing may get slower"): the published figures of
two runs of ``python -m bench`` days apart differ by more than the code does on a shared
2-core machine, and the harness itself changed between them. This runs the *same*
measurement against each tree in turn (A B A B ...), each time in a fresh interpreter whose
``PYTHONPATH`` is that tree, so the server (``python -m runstream server``) and the SDK are
the tree's own, on the same PostgreSQL and Redis::

    python -m bench.ab_trees --tree /work/wt/base --tree . --rounds 3 sdk ingest e2e reads live
    python -m bench.ab_trees --tree . --flags '--workers 1' --tree . live   # same tree, flags

Besides wall-clock figures, every measurement reports CPU time, which other people's work on
the machine disturbs much less: the server's (utime + stime of its process tree, from
``/proc/<pid>/stat``, around the measured phase only, after the server has settled) and the
client's (``time.thread_time`` of the logging thread, ``time.process_time`` of the SDK
process). The child part of this file imports nothing of ``bench``: an older tree need not
have it. It only uses what every tree since the first published run has: the SDK
(``start_run``, ``run.log``, ``flush``, ``write_token``, ``Client.get_run(wait_for=)``), the
native ``events``/``history``/``live`` routes and MLflow's ``get-history``.

Groups: ``sdk`` (ns per ``run.log`` of 4 and 16 keys, idle sender), ``ingest`` (one SDK
process, 16 keys per call, no projector), ``e2e`` (one SDK process until queryable, then
1,000-point flushes until readable), ``reads`` (get-history of 100,000 points by MLflow's
route, 1,000,000 by the native route, a 1,000-point downsample), ``live`` (100 SSE clients x
50 writes). One JSON line per (tree, group, round) on stdout; medians per tree at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

PG_ADMIN = os.environ.get("RUNSTREAM_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AB_REDIS", "redis://127.0.0.1:6379/0")
HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")
GROUPS = ("sdk", "ingest", "e2e", "reads", "live")


# -- the child: one tree, one group ------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and every live descendant (worker processes included)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(name)] = fields
        children.setdefault(int(fields[1]), []).append(int(name))
    total, frontier = 0, [pid]
    while frontier:
        p = frontier.pop()
        if p in stats:
            total += int(stats[p][11]) + int(stats[p][12])
        frontier += children.get(p, [])
    return total / TICKS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _psql(sql: str) -> None:
    subprocess.run(["psql", "-q", "-d", PG_ADMIN, "-c", sql], check=True)


class TreeServer:
    """``python -m runstream server`` of the tree on ``PYTHONPATH``, own database and prefix."""

    def __init__(self, projector: bool = True) -> None:
        token = uuid.uuid4().hex[:10]
        self.db = f"rs_ab_{token}"
        self.prefix = f"rsab{token}"
        _psql(f"CREATE DATABASE {self.db}")
        parts = urllib.parse.urlsplit(PG_ADMIN)
        self.database_url = urllib.parse.urlunsplit(parts._replace(path="/" + self.db))
        self.url = f"http://{HOST}:{_free_port()}"
        self.workdir = Path(tempfile.mkdtemp(prefix="rs-ab-"))
        profile = os.environ.get("AB_PROFILE")  # bench/cpu_profile.py's output file
        wrap = [str(Path(__file__).with_name("cpu_profile.py")), profile] if profile else []
        argv = [
            sys.executable, *wrap, "-m", "runstream", "server",
            "--database-url", self.database_url, "--redis-url", REDIS_URL,
            "--stream-prefix", self.prefix, "--host", HOST,
            "--port", self.url.rsplit(":", 1)[1], "--data-dir", str(self.workdir / "data"),
            "--log-level", "WARNING", "--run-projector" if projector else "--no-run-projector",
            *os.environ.get("AB_FLAGS", "").split(),
        ]  # fmt: skip
        with open(self.workdir / "server.log", "wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.workdir / "server.log").read_text()[-3000:])
            time.sleep(0.2)
        # Worker processes finish importing after /health answers: measure a settled server.
        for _ in range(30):
            before = self.cpu()
            time.sleep(0.5)
            if self.cpu() - before < 0.03:
                break

    def cpu(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def close(self) -> None:
        import redis

        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        _psql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()
        subprocess.run(["rm", "-rf", str(self.workdir)], check=False)


def log_points(url: str, experiment: str, calls: int, keys: int) -> tuple[str, str, float, float]:
    """One run, ``calls`` x ``keys`` points, flushed: (run id, token, wall s, process CPU s)."""
    import runstream

    run = runstream.start_run(experiment=experiment, url=url)
    metrics = {f"metric_{k}": 0.0 for k in range(keys)}
    log = run.log
    t0, c0 = time.time(), time.process_time()
    for i in range(calls):
        metrics["metric_0"] = i * 1e-3
        log(metrics, step=i)
    run.flush(timeout=300)
    wall, cpu = time.time() - t0, time.process_time() - c0
    run_id, token = run.run_id, run.write_token
    run.finish(timeout=120)
    return run_id, token, wall, cpu


def wait_queryable(url: str, run_id: str, token: str) -> None:
    import runstream

    with runstream.Client(url) as client:
        while True:
            try:
                client.get_run(run_id, wait_for=token)
                return
            except runstream.HTTPError as exc:
                if exc.status != 503:
                    raise


def group_sdk() -> dict[str, float]:
    import runstream

    server = TreeServer(projector=False)
    try:
        run = runstream.start_run(experiment="ab-sdk", url=server.url)
        out: dict[str, float] = {}
        calls = 200_000
        for keys in (4, 16):
            metrics = {f"metric_{k}": 0.5 + k for k in range(keys)}
            walls, cpus = [], []
            for rep in range(3):
                log = run.log
                c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
                for i in range(rep * calls, (rep + 1) * calls):
                    log(metrics, step=i)
                walls.append((time.perf_counter_ns() - t0) / calls)
                cpus.append((time.thread_time_ns() - c0) / calls)
                run.flush(timeout=120)
            out[f"log{keys}_wall_ns"] = statistics.median(walls)
            out[f"log{keys}_thread_cpu_ns"] = statistics.median(cpus)
        run.finish(timeout=60)
        return out
    finally:
        server.close()


def group_ingest() -> dict[str, float]:
    server = TreeServer(projector=False)
    try:
        log_points(server.url, "warm", 5_000, 16)
        c0 = server.cpu()
        _, _, wall, cpu = log_points(server.url, "ab-ingest", 300_000, 16)
        points = 300_000 * 16
        return {
            "ingest_points_per_s": points / wall,
            "ingest_server_cpu_ns_per_point": (server.cpu() - c0) * 1e9 / points,
            "ingest_sdk_cpu_ns_per_point": cpu * 1e9 / points,
        }
    finally:
        server.close()


def group_e2e() -> dict[str, float]:
    import runstream

    server = TreeServer()
    try:
        run_id, token, _, _ = log_points(server.url, "warm", 5_000, 10)
        wait_queryable(server.url, run_id, token)
        c0 = server.cpu()
        t0 = time.time()
        run_id, token, _, _ = log_points(server.url, "ab-e2e", 400_000, 10)
        wait_queryable(server.url, run_id, token)
        points = 400_000 * 10
        out = {
            "e2e_points_per_s": points / (time.time() - t0),
            "e2e_server_cpu_ns_per_point": (server.cpu() - c0) * 1e9 / points,
        }
        # Acceptance to readable: a 1,000-point flush, then a read that waits for its token.
        run = runstream.start_run(experiment="ab-latency", url=server.url)
        latencies = []
        with runstream.Client(server.url) as client:
            for batch in range(150):
                for i in range(1000):
                    run.log({"loss": float(i)}, step=batch * 1000 + i)
                run.flush(timeout=60)
                t = time.perf_counter()
                client.get_run(run.run_id, wait_for=run.write_token)
                latencies.append((time.perf_counter() - t) * 1000)
                time.sleep(0.02)
        run.finish(timeout=60)
        out["e2e_latency_p50_ms"] = _percentile(latencies, 50)
        out["e2e_latency_p99_ms"] = _percentile(latencies, 99)
        return out
    finally:
        server.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def group_reads() -> dict[str, float]:
    import msgpack
    import orjson

    import runstream

    server = TreeServer()
    try:
        run = runstream.start_run(experiment="ab-read", url=server.url)
        for i in range(1_000_000):
            run.log({"big": i * 0.5}, step=i)
        for i in range(100_000):
            run.log({"mid": i * 0.5}, step=i)
        run.flush(timeout=300)
        run_id, token = run.run_id, run.write_token
        run.finish(timeout=120)
        wait_queryable(server.url, run_id, token)

        def get(path: str, accept: str | None = None) -> bytes:
            headers = {"Accept": accept} if accept else {}
            request = urllib.request.Request(server.url + path, headers=headers)
            with urllib.request.urlopen(request, timeout=120) as resp:
                body: bytes = resp.read()
                return body

        def mlflow_history() -> None:
            page_token, count = None, 0
            while True:
                query = {"run_id": run_id, "metric_key": "mid", "max_results": "25000"}
                if page_token:
                    query["page_token"] = page_token
                path = "/api/2.0/mlflow/metrics/get-history?" + urllib.parse.urlencode(query)
                page = orjson.loads(get(path))
                count += len(page.get("metrics", ()))
                page_token = page.get("next_page_token")
                if not page_token:
                    break
            assert count == 100_000, count

        def native(key: str, **params: str) -> Callable[[], None]:
            query = urllib.parse.urlencode({"key": key, **params})
            path = f"/api/runstream/v1/runs/{run_id}/history?{query}"
            return lambda: msgpack.unpackb(get(path, "application/msgpack"))

        out: dict[str, float] = {}
        reads: list[tuple[str, Callable[[], None], int]] = [
            ("history_100k_mlflow_route", mlflow_history, 15),
            ("history_1m_native", native("big"), 15),
            ("downsample_1m_to_1000", native("big", points="1000"), 40),
        ]
        for name, read, repeats in reads:
            read()
            read()
            walls, cpus = [], []
            for _ in range(repeats):
                c0, t0 = server.cpu(), time.perf_counter()
                read()
                walls.append((time.perf_counter() - t0) * 1000)
                cpus.append((server.cpu() - c0) * 1000)
            out[name + "_ms"] = statistics.median(walls)
            out[name + "_server_cpu_ms"] = statistics.fmean(cpus)  # ticks of 10 ms: a mean
        return out
    finally:
        server.close()


async def _live(server: TreeServer, clients: int = 100, writes: int = 50) -> dict[str, float]:
    import aiohttp
    import msgpack
    import numpy as np
    import orjson

    v1 = f"{server.url}/api/runstream/v1"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(events: list[dict[str, Any]], wait: bool) -> float:
            async with http.post(
                f"{v1}/events",
                data=msgpack.packb({"events": events}, use_bin_type=True),
                params={"wait": "1"} if wait else {},
                headers={"Content-Type": "application/msgpack"},
            ) as resp:
                answered = time.perf_counter()
                if resp.status != 200:
                    raise RuntimeError(await resp.text())
                return answered

        run_id = uuid.uuid4().hex
        created = {"type": "run_created", "run_id": run_id, "experiment_id": "0",
                   "user_id": "ab", "run_name": "live", "start_time": 1, "artifact_uri": "",
                   "tags": []}  # fmt: skip
        await post([created], True)
        accepted: dict[int, float] = {}
        latencies: list[float] = []
        ready = 0
        all_ready = asyncio.Event()

        async def client() -> None:
            nonlocal ready
            async with http.get(
                f"{v1}/live",
                params={"runs": run_id, "keys": "loss"},
                timeout=aiohttp.ClientTimeout(total=None),
            ) as resp:
                seen = 0
                async for raw in resp.content:
                    line = raw.rstrip(b"\n")
                    if line.startswith(b"event: ready"):
                        ready += 1
                        if ready == clients:
                            all_ready.set()
                    elif line.startswith(b"data: ") and b'"steps"' in line:
                        now = time.perf_counter()
                        for step in orjson.loads(line[6:])["steps"]:
                            latencies.append((now - accepted[step]) * 1000)
                            seen += 1
                        if seen >= writes:
                            return

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        await asyncio.wait_for(all_ready.wait(), 60)
        c0 = server.cpu()
        for step in range(writes):
            column = np.array([step], "<i8")
            event = {"type": "metrics_logged", "run_id": run_id, "series": [{"key": "loss",
                     "steps": column.tobytes(), "timestamps": column.tobytes(),
                     "values": column.astype("<f8").tobytes()}]}  # fmt: skip
            accepted[step] = await post([event], False)
            await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return {
            "live_p50_ms": _percentile(latencies, 50),
            "live_p99_ms": _percentile(latencies, 99),
            "live_server_cpu_ms_per_write": (server.cpu() - c0) * 1000 / writes,
        }


def group_live() -> dict[str, float]:
    server = TreeServer()
    try:
        return asyncio.run(_live(server))
    finally:
        server.close()


def child(group: str) -> None:
    measure: Callable[[], dict[str, float]] = {
        "sdk": group_sdk,
        "ingest": group_ingest,
        "e2e": group_e2e,
        "reads": group_reads,
        "live": group_live,
    }[group]
    out: dict[str, Any] = dict(measure())
    out["load_average"] = os.getloadavg()[0]
    print(json.dumps(out), flush=True)


# -- the parent: trees interleaved -----------------------------------------------------------


def run_child(tree: str, flags: str, group: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": tree, "AB_FLAGS": flags}
    done = subprocess.run(
        # -P: not bench/ first on sys.path; the tree's runstream, as its own users import it
        [sys.executable, "-P", str(Path(__file__).resolve()), "--child", group],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help=f"of {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--tree", action="append", default=[], help="a checkout (repeat)")
    parser.add_argument(
        "--flags",
        action="append",
        default=[],
        help="extra runstream server flags of the tree at the same position",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    groups = args.groups or list(GROUPS)
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups: {', '.join(sorted(unknown))}")
    if not args.tree:
        parser.error("--tree is required (twice or more)")
    trees = [str(Path(t).resolve()) for t in args.tree]
    flags = args.flags + [""] * (len(trees) - len(args.flags))
    labels = [f"{t} {f}".strip() for t, f in zip(trees, flags, strict=True)]
    samples: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.rounds):
        for group in groups:
            for label, tree, flag in zip(labels, trees, flags, strict=True):
                result = run_child(tree, flag, group)
                print(json.dumps({"tree": label, "group": group, **result}), flush=True)
                for name, value in result.items():
                    if isinstance(value, float):
                        samples.setdefault(name, {}).setdefault(label, []).append(value)
    print("\nmedians (samples in the JSON lines above)")
    for name, by_tree in samples.items():
        cells = [f"{statistics.median(by_tree[t]):.4g}" if t in by_tree else "-" for t in labels]
        print(f"{name:36}", *(f"{c:>12}" for c in cells))
    print("trees:", *(f"[{i}] {t}" for i, t in enumerate(labels)))


if __name__ == "__main__":
    main()
