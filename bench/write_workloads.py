"""The write path (issue 5), and MLflow's client calls against runstream and MLflow's server.

Each workload is ``fn(ctx) -> list[Result]``; ``WORKLOADS`` names them for ``python -m bench
--only``. Client processes are spawned (a fresh interpreter each, as a training script is)
and every loop is bounded by a count and a deadline.

Sizes are ``ctx.size(quick, full)``: quick mode is for development on a busy machine (every
workload in seconds); the full sizes are what the published figures use.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bench.harness import Server
from bench.processes import (
    ClientProcesses,
    barrier,
    children_returned,
    in_processes,
    mlflow_env,
    pool,
)
from bench.report import Context, Result, Target, median, missing, percentile, summarize

SDK = "Write path: native SDK and ingest (issue 5)"
SIDE = "MLflow client calls: runstream vs MLflow's server (issue 5)"
WAIT_DEADLINE = 300.0
"""Longest a workload waits for its points to become queryable (seconds)."""


# -- helpers -------------------------------------------------------------------------------


def wait_queryable(url: str, pairs: Iterable[tuple[str, str]], deadline: float) -> float:
    """Read each run with ``wait_for=<token>`` until it answers; returns when the last did.

    A 503 (the projector is further behind than the server's read-your-writes timeout) is
    retried until ``deadline`` (``time.monotonic``).
    """
    import runstream

    with runstream.Client(url) as client:
        for run_id, token in pairs:
            while True:
                try:
                    client.get_run(run_id, wait_for=token or None)
                    break
                except runstream.HTTPError as exc:
                    if exc.status != 503 or time.monotonic() > deadline:
                        raise
    return time.time()


def _mlflow_route_ready(url: str) -> str | None:
    """None when ``url`` serves MLflow's tracking API, else why not."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(
            url + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=10
        ) as resp:
            return None if resp.status == 200 else f"MLflow route answered {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"MLflow routes not served yet (HTTP {exc.code})"
    except OSError as exc:
        return f"MLflow routes unreachable ({exc})"


# -- 1. SDK call cost ------------------------------------------------------------------------


def _busy(n: int) -> int:
    """Stand-in for a training step: pure-Python arithmetic holding the GIL."""
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def _calibrate(target_s: float) -> int:
    n = 1000
    for _ in range(20):
        t0 = time.perf_counter()
        _busy(n)
        took = time.perf_counter() - t0
        if took > 0.002:
            break
        n *= 2
    return max(1, int(n * target_s / took))


def sdk_call_cost(ctx: Context) -> list[Result]:
    """ns per ``run.log`` (1, 4, 16 keys) and a CPU-bound loop's slowdown while logging."""
    import runstream

    calls = ctx.size(100_000, 200_000)
    repeats = ctx.size(3, 7)
    results: list[Result] = []
    # Ingest-only server: the points are accepted (the sender is really busy) but nothing
    # is projected, so the millions of points do not load the machine for what follows.
    with ctx.fresh_runstream(run_projector=False) as server:
        run = runstream.start_run(experiment="bench-sdk-cost", url=server.url)
        try:
            for keys in (1, 4, 16):
                metrics = {f"metric_{k}": 0.5 + k for k in range(keys)}
                samples = []
                for rep in range(repeats):
                    log = run.log
                    step0 = rep * calls
                    t0 = time.perf_counter_ns()
                    for i in range(step0, step0 + calls):
                        log(metrics, step=i)
                    samples.append((time.perf_counter_ns() - t0) / calls)
                    run.flush(timeout=120)
                results.append(
                    Result(
                        f"sdk_log_{keys}_keys",
                        SDK,
                        f"ns per run.log({keys} keys), median of {repeats} x {calls:,} calls",
                        median(samples),
                        "ns",
                        better="lower",
                        target=Target("<=", 2000) if keys == 4 else None,
                        detail={
                            "samples_ns": samples,
                            "points_per_s": keys * 1e9 / median(samples),
                        },
                    )
                )
            results += _training_slowdown(ctx, run)
        finally:
            run.finish(timeout=60)
    return results


def _training_slowdown(ctx: Context, run: Any) -> list[Result]:
    """Iterations/s of a ~100 µs pure-Python step, without and with ``run.log`` of 4 keys."""
    # Short slices, alternated: load from other processes shifts both sides alike.
    seconds = ctx.size(0.5, 1.0)
    rounds = ctx.size(4, 10)
    work = _calibrate(100e-6)
    metrics = {"loss": 0.0, "acc": 0.0, "lr": 0.001, "grad_norm": 1.0}
    rates: dict[bool, list[float]] = {False: [], True: []}
    step = 10**9  # past the steps of the call-cost loops
    for _ in range(rounds):
        for logging in (False, True):
            iterations = 0
            t0 = time.perf_counter()
            deadline = t0 + seconds
            while True:
                value = _busy(work)
                if logging:
                    metrics["loss"] = float(value & 0xFF)
                    run.log(metrics, step=step)
                    step += 1
                iterations += 1
                if iterations % 64 == 0 and time.perf_counter() >= deadline:
                    break
            rates[logging].append(iterations / (time.perf_counter() - t0))
    run.flush(timeout=60)
    plain, logged = median(rates[False]), median(rates[True])
    slowdown = 100.0 * (1 - logged / plain)
    return [
        Result(
            "sdk_training_slowdown",
            SDK,
            f"slowdown of a CPU-bound {1e6 / plain:.0f} µs step logging 4 keys per step "
            f"({plain:,.0f} → {logged:,.0f} it/s)",
            slowdown,
            "%",
            better="lower",
            detail={
                "iterations_per_s_plain": rates[False],
                "iterations_per_s_logging": rates[True],
            },
        )
    ]


# -- 2. ingest acceptance --------------------------------------------------------------------


def _sdk_writer(
    url: str, experiment: str, calls: int, keys: int, flush_timeout: float
) -> dict[str, Any]:
    """Child process: one run, ``calls`` x ``keys`` points as fast as the SDK takes them."""
    import runstream

    run = runstream.start_run(experiment=experiment, url=url)
    metrics = {f"metric_{k}": 0.0 for k in range(keys)}
    log = run.log
    started = time.time()
    for i in range(calls):
        metrics["metric_0"] = i * 1e-3
        log(metrics, step=i)
    logged = time.time()
    delivered = run.flush(timeout=flush_timeout)
    flushed = time.time()
    token = run.write_token
    stats = run.stats()
    run.finish(timeout=flush_timeout)
    return {
        "run_id": run.run_id,
        "token": token,
        "started": started,
        "logged": logged,
        "flushed": flushed,
        "delivered": delivered,
        "points": calls * keys,
        "points_sent": stats.points_sent,
        "points_dropped": stats.points_dropped,
        "retries": stats.retries,
    }


def ingest_acceptance(ctx: Context) -> list[Result]:
    """Points/s ingest accepts: from SDK processes, and from raw pre-encoded HTTP batches."""
    results: list[Result] = []
    keys = 16
    with ctx.fresh_runstream(run_projector=False) as server:
        for processes in (1, 4):
            calls = ctx.size(100_000, 400_000) // processes
            outs = in_processes(
                _sdk_writer,
                [(server.url, "bench-ingest", calls, keys, 300.0)] * processes,
            )
            start = min(o["started"] for o in outs)
            end = max(o["flushed"] for o in outs)
            sent = sum(o["points_sent"] for o in outs)
            results.append(
                Result(
                    f"ingest_accept_sdk_{processes}proc",
                    SDK,
                    f"points/s accepted by ingest from {processes} SDK process(es), "
                    f"{keys} keys per log call (no projector)",
                    sent / (end - start),
                    "points/s",
                    target=Target(">=", 1_000_000),
                    detail={
                        "points": sent,
                        "seconds": end - start,
                        "log_loop_s": [o["logged"] - o["started"] for o in outs],
                        "retries": sum(o["retries"] for o in outs),
                        "dropped": sum(o["points_dropped"] for o in outs),
                    },
                )
            )
        results.append(_ingest_http(ctx, server))
    return results


def _ingest_http(ctx: Context, server: Server) -> Result:
    """Reuses ``bench/ingest_throughput.py``: pre-encoded 10,000-point batches, 8 in flight."""
    from bench import ingest_throughput

    out = asyncio.run(ingest_throughput.drive(server.url, ctx.size(3, 10)))
    return Result(
        "ingest_accept_http",
        SDK,
        "points/s accepted by ingest, pre-encoded msgpack batches of 10,000 points, "
        "8 requests in flight (bench/ingest_throughput.py)",
        float(out["points_per_second"]),
        "points/s",
        target=Target(">=", 1_000_000),
        detail=out,
    )


# -- 3. end to end ---------------------------------------------------------------------------


def end_to_end(ctx: Context) -> list[Result]:
    """SDK processes log as fast as they can; clock stops when every point is queryable."""
    server = ctx.runstream()
    results: list[Result] = []
    keys = 10
    for processes in (1, 4):
        calls = ctx.size(40_000, 400_000) // processes
        args = [(server.url, f"bench-e2e-{processes}", calls, keys, 300.0)] * processes
        with children_returned(_sdk_writer, args) as outs:
            start = min(o["started"] for o in outs)
            done = wait_queryable(
                server.url,
                [(o["run_id"], o["token"]) for o in outs],
                time.monotonic() + WAIT_DEADLINE,
            )
        total = sum(o["points"] for o in outs)
        import runstream

        with runstream.Client(server.url) as client:
            stored = len(client.history(outs[0]["run_id"], "metric_1"))
        note = "" if stored == calls else f"stored {stored} of {calls} points of a series"
        results.append(
            Result(
                f"e2e_throughput_{processes}proc",
                SDK,
                f"points/s from {processes} SDK process(es) until all are queryable "
                f"({total:,} points)",
                total / (done - start),
                "points/s",
                target=Target(">=", 250_000),
                detail={
                    "points": total,
                    "seconds": done - start,
                    "flushed_after_s": max(o["flushed"] for o in outs) - start,
                },
                note=note,
            )
        )
    results += _latency(ctx, server)
    return results


def _latency(ctx: Context, server: Server) -> list[Result]:
    rate = 50_000
    per_batch = 1_000
    seconds = ctx.size(5, 30)
    out = asyncio.run(_paced_latency(server.url, rate, per_batch, seconds))
    lat = out.pop("latencies_ms")
    return [
        Result(
            f"e2e_latency_{q}",
            SDK,
            f"ms from ingest acceptance to readable (wait_for read), {q} at {rate:,} points/s "
            f"offered ({per_batch:,}-point batches)",
            percentile(lat, 50 if q == "p50" else 99),
            "ms",
            better="lower",
            target=Target("<=", 100) if q == "p99" else None,
            detail={**out, "latency_ms": summarize(lat)} if q == "p99" else {},
        )
        for q in ("p50", "p99")
    ]


async def _paced_latency(url: str, rate: int, per_batch: int, seconds: float) -> dict[str, Any]:
    import aiohttp
    import msgpack

    from bench.ingest_throughput import batch_body, post
    from runstream.schemas import codec
    from runstream.schemas import runs as rn

    run_id = uuid.uuid4().hex
    interval = per_batch / rate
    batches = int(seconds / interval)
    latencies: list[float] = []
    accept_ms: list[float] = []
    late = 0
    async with aiohttp.ClientSession() as session:
        created = rn.RunCreated(run_id, "0", "bench", "latency", int(time.time() * 1000), "")
        await post(
            session,
            url,
            msgpack.packb({"events": [codec.event_to_obj(created)]}, use_bin_type=True),
        )
        bodies = [batch_body(run_id, per_batch, 10, i * (per_batch // 10)) for i in range(batches)]

        async def one(body: bytes) -> None:
            t0 = time.perf_counter()
            answer = await post(session, url, body)
            accepted = time.perf_counter()
            accept_ms.append(1000 * (accepted - t0))
            async with session.get(
                f"{url}/api/runstream/v1/runs/{run_id}", params={"wait_for": answer["token"]}
            ) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"read with wait_for answered {resp.status}")
            latencies.append(1000 * (time.perf_counter() - accepted))

        tasks = []
        started = time.perf_counter()
        for i, body in enumerate(bodies):
            delay = started + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -interval:
                late += 1
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_DEADLINE)
        elapsed = time.perf_counter() - started
    return {
        "latencies_ms": latencies,
        "batches": batches,
        "offered_points_per_s": rate,
        "achieved_points_per_s": batches * per_batch / elapsed,
        "late_sends": late,
        "accept_ms": summarize(accept_ms),
    }


# -- 4. MLflow client calls, both servers ------------------------------------------------------


def _mlflow_async(url: str, calls: int) -> dict[str, Any]:
    """Child: ``mlflow.log_metric(..., synchronous=False)``, then wait for the queue."""
    mlflow_env(url)
    import mlflow

    mlflow.set_experiment(f"bench-async-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run():
        t0 = time.perf_counter()
        for i in range(calls):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i, synchronous=False)
        t_calls = time.perf_counter()
        mlflow.flush_async_logging()
        t_done = time.perf_counter()
    return {"call_s": (t_calls - t0) / calls, "total_s": t_done - t0, "points": calls}


def _ray_style_sweep(
    url: str,
    experiment: str,
    trials: Sequence[int],
    steps: int,
    metrics: int,
    folder: str,
    parties: int,
) -> dict[str, Any]:
    """Child: what Ray Tune's ``MLflowLoggerCallback`` does for its trials, interleaved.

    Uses Ray's own ``_MLflowLoggerUtil`` (ray/air/_internal/mlflow.py) as the callback does:
    ``start_run`` (create_run) and ``log_params`` per trial, ``log_metrics(run_id, result,
    step=iteration)`` per result (a ``get_run`` then one ``log_metric`` per key), and
    ``end_run`` per trial.
    """
    mlflow_env(url)
    from ray.air._internal.mlflow import _MLflowLoggerUtil

    util = _MLflowLoggerUtil()  # type: ignore[no-untyped-call]
    util.setup_mlflow(tracking_uri=url, experiment_name=experiment)
    barrier(folder, parties)
    started = time.time()
    runs = {}
    for t in trials:
        run = util.start_run(run_name=f"trial_{t:05d}", tags={"trial_name": f"trial_{t:05d}"})
        runs[t] = run.info.run_id
        util.log_params(run_id=runs[t], params_to_log={"lr": 0.001 * (t + 1), "layers": t % 4})
    for step in range(1, steps + 1):
        for t in trials:
            result = {f"metric_{k}": t + step * 0.001 + k for k in range(metrics)}
            util.log_metrics(run_id=runs[t], metrics_to_log=result, step=step)
    for t in trials:
        util.end_run(run_id=runs[t], status="FINISHED")
    return {"started": started, "done": time.time(), "points": len(trials) * steps * metrics}


def native_sweep_child(
    url: str,
    experiment: str,
    trials: Sequence[int],
    steps: int,
    metrics: int,
    folder: str,
    parties: int,
) -> dict[str, Any]:
    """Child: the same sweep through the native SDK (one ``run.log`` per result)."""
    import runstream

    barrier(folder, parties)
    started = time.time()
    runs = {
        t: runstream.start_run(
            experiment=experiment,
            url=url,
            name=f"trial_{t:05d}",
            params={"lr": 0.001 * (t + 1), "layers": t % 4},
        )
        for t in trials
    }
    for step in range(1, steps + 1):
        for t in trials:
            runs[t].log({f"metric_{k}": t + step * 0.001 + k for k in range(metrics)}, step=step)
    pairs = []
    for run in runs.values():
        run.flush(timeout=300)
        pairs.append((run.run_id, run.write_token))
        run.finish(timeout=300)
    return {
        "started": started,
        "flushed": time.time(),
        "pairs": pairs,
        "points": len(trials) * steps * metrics,
    }


class _Trial:
    """What a Ray Tune logger callback reads of a trial."""

    def __init__(self, number: int, config: dict[str, Any], local_path: str) -> None:
        self.trial_id = f"{number:05d}"
        self.config = config
        self.local_path = local_path
        self.logdir = local_path
        self.experiment_tag = self.trial_id
        self.evaluated_params = config
        self.experiment_dir_name = "bench-sweep"
        self.trainable_name = "bench"

    def __str__(self) -> str:
        return f"trial_{self.trial_id}"

    def __repr__(self) -> str:
        return str(self)


def _ray_native_sweep(
    url: str,
    experiment: str,
    trials: Sequence[int],
    steps: int,
    metrics: int,
    folder: str,
    parties: int,
) -> dict[str, Any]:
    """Child: the sweep through ``RunstreamLoggerCallback``, driven as Tune drives a callback."""
    import inspect
    import tempfile

    from runstream.integrations.ray import RunstreamLoggerCallback

    params = inspect.signature(RunstreamLoggerCallback).parameters
    kwargs: dict[str, Any] = {}
    for names, value in (
        (("url", "tracking_uri"), url),
        (("experiment", "experiment_name"), experiment),
    ):
        for name in names:
            if name in params:
                kwargs[name] = value
                break
    callback = RunstreamLoggerCallback(**kwargs)
    callback.setup()
    barrier(folder, parties)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        objs: list[Any] = [_Trial(t, {"lr": 0.001 * (t + 1), "layers": t % 4}, tmp) for t in trials]
        for trial in objs:
            callback.log_trial_start(trial)
        for step in range(1, steps + 1):
            for t, trial in zip(trials, objs, strict=True):
                result = {f"metric_{k}": t + step * 0.001 + k for k in range(metrics)}
                result["training_iteration"] = step
                callback.log_trial_result(step, trial, result)
        for trial in objs:
            callback.log_trial_end(trial, failed=False)
        callback.on_experiment_end(objs)
    return {"started": started, "done": time.time(), "points": len(trials) * steps * metrics}


def wait_sweep_points(url: str, experiment: str, runs: int, steps: int, deadline: float) -> float:
    """Poll until ``runs`` runs of ``experiment`` each hold ``steps`` points of ``metric_0``."""
    import runstream
    from runstream.client.transport import Transport

    transport = Transport(url, 30.0, {})
    try:
        found = transport.request_json(
            "POST", "/api/runstream/v1/experiments/get-or-create", {"name": experiment}
        )
        experiment_id = found["experiment_id"]
        with runstream.Client(url) as client:
            while time.monotonic() < deadline:
                listed = transport.request_json(
                    "GET",
                    f"/api/runstream/v1/experiments/{experiment_id}/runs",
                    query={"max_results": str(runs + 50)},
                )
                ids = [r["info"]["run_id"] for r in listed.get("runs", [])]
                complete = 0
                for run_id in ids:  # the callback's parent runs hold no metrics: not counted
                    try:
                        complete += len(client.history(run_id, "metric_0")) >= steps
                    except runstream.HTTPError:
                        pass
                if complete >= runs:
                    return time.time()
                time.sleep(0.05)
    finally:
        transport.close()
    raise TimeoutError(f"{experiment}: points not all queryable in time")


def run_sweep(
    child: Callable[..., dict[str, Any]], url: str, runs: int, steps: int, processes: int
) -> dict[str, Any]:
    """Points/s of a sweep by ``child`` from ``processes`` processes against ``url``.

    The clock starts when the children, imports and set-up done, pass their barrier
    together, and stops when the last returned or, for runstream's own clients, when every
    point is queryable; the children's exit is not counted (``children_returned``).
    """
    experiment = f"bench-sweep-{uuid.uuid4().hex[:8]}"
    if child is _ray_style_sweep:
        # Created once up front: four callbacks racing to create it would collide.
        _create_experiment(url, experiment)
    shares = [list(range(p, runs, processes)) for p in range(processes)]
    args = [(url, experiment, share, steps, 5) for share in shares]
    with children_returned(child, args, lined_up=True) as outs:
        start = min(o["started"] for o in outs)
        if child is native_sweep_child:
            pairs = [pair for o in outs for pair in o["pairs"]]
            end = wait_queryable(url, pairs, time.monotonic() + WAIT_DEADLINE)
        elif child is _ray_native_sweep:
            end = wait_sweep_points(url, experiment, runs, steps, time.monotonic() + WAIT_DEADLINE)
        else:
            end = max(o["done"] for o in outs)
    points = sum(o["points"] for o in outs)
    return {"points": points, "seconds": end - start, "points_per_s": points / (end - start)}


def _create_experiment(url: str, name: str) -> None:
    with pool(1) as executor:
        executor.submit(_create_experiment_child, url, name).result(timeout=120)


def _create_experiment_child(url: str, name: str) -> dict[str, Any]:
    mlflow_env(url)
    from mlflow.tracking import MlflowClient

    return {"experiment_id": MlflowClient(url).create_experiment(name)}


def sweep_shape(ctx: Context) -> dict[str, int]:
    """The sweep every sweep workload runs: runs x steps x 5 metrics from 4 processes.

    Full size is bounded by MLflow's server on the Ray-style sweep (~60 points/s here): 8 x
    100 x 5 = 4,000 points is about a minute of it."""
    return {"runs": ctx.size(4, 8), "steps": ctx.size(10, 100), "processes": 4}


def mlflow_side_by_side(ctx: Context) -> list[Result]:
    """The ``mlflow`` client's async logging and Ray's MLflow callback, on both servers,
    and the same sweep through runstream's own SDK (a different protocol, labelled so)."""
    runstream_url = ctx.runstream().url
    not_ready = _mlflow_route_ready(runstream_url)
    ml = ctx.mlflow()
    mlflow_url = ml.url if ml is not None else None
    urls = {"runstream": None if not_ready else runstream_url, "mlflow": mlflow_url}
    sides = {side: url for side, url in {**urls, "null": ctx.null().url}.items() if url}

    def each(measure: Callable[[str], float]) -> tuple[dict[str, float], str]:
        """The figure on each server (the null one is the client's own floor)."""
        values: dict[str, float] = {}
        errors = []
        for side, url in sides.items():
            try:
                values[side] = measure(url)
            except Exception as exc:  # one side failing keeps the others' figures
                errors.append(f"{side} failed: {exc!r}"[:300])
        return values, "; ".join(errors)

    async_calls = ctx.size(300, 2_000)
    sweep = sweep_shape(ctx)
    details: dict[str, dict[str, Any]] = {}

    def async_(url: str) -> float:
        out = clients.run(url, _mlflow_async, url, async_calls)
        details.setdefault("mlflow_log_metric_async", {})[url] = out
        return float(out["points"] / out["total_s"])

    def ray(url: str) -> float:
        out = run_sweep(_ray_style_sweep, url, **sweep)
        details.setdefault("mlflow_ray_sweep", {})[url] = out
        return float(out["points_per_s"])

    note = f"runstream: {not_ready}" if not_ready else ""
    if mlflow_url is None:
        note = (note + "; " if note else "") + "MLflow server not run"
    shape = f"{sweep['runs']} runs x {sweep['steps']} steps x 5 metrics, 4 processes"
    results = []
    with ClientProcesses() as clients:
        for name, metric, unit, target, fn in (
            ("mlflow_log_metric_async", "mlflow.log_metric(synchronous=False) until flushed",
             "points/s", None, async_),
            ("mlflow_ray_sweep", f"Ray MLflowLoggerCallback calls: {shape}", "points/s",
             20, ray),
        ):  # fmt: skip
            values, errors = each(fn)
            results.append(
                Result(
                    name,
                    SIDE,
                    metric,
                    values.get("runstream"),
                    unit,
                    target=Target(">=", target, on_ratio=True) if target else None,
                    mlflow_value=values.get("mlflow"),
                    floor_value=values.get("null"),
                    detail={side: details.get(name, {}).get(url) for side, url in sides.items()},
                    note="; ".join(n for n in (note, errors) if n),
                )
            )
    results += _native_sweeps(ctx, runstream_url, sweep, results[-1].mlflow_value, shape)
    return results


def _native_sweeps(
    ctx: Context, url: str, sweep: dict[str, int], mlflow_value: float | None, shape: str
) -> list[Result]:
    """The Ray-style sweep through runstream's own callback (native protocol), compared with
    Ray's MLflow callback on MLflow's server. (The native SDK's plain sweep is
    ``bench/mlflow_protocol.py``'s ``native_sdk_sweep``.)"""
    metric = "runstream.integrations.ray.RunstreamLoggerCallback, same sweep"
    try:
        import runstream.integrations.ray  # noqa: F401
    except ImportError:
        return [missing("native_ray_callback_sweep", SIDE, metric, "points/s",
                        "RunstreamLoggerCallback not present")]  # fmt: skip
    try:
        out = run_sweep(_ray_native_sweep, url, **sweep)
    except Exception as exc:
        return [missing("native_ray_callback_sweep", SIDE, metric, "points/s",
                        f"failed: {exc!r}"[:300])]  # fmt: skip
    return [
        Result(
            "native_ray_callback_sweep",
            SIDE,
            f"RunstreamLoggerCallback (runstream's native protocol, not MLflow's), same sweep "
            f"({shape}), until queryable; MLflow column: MLflowLoggerCallback calls against "
            "MLflow's server",
            out["points_per_s"],
            "points/s",
            target=Target(">=", 100, on_ratio=True),
            mlflow_value=mlflow_value,
            detail=out,
        )
    ]


# -- opt-in: run.log's hot path alone ----------------------------------------------------------


def sdk_hot_path(ctx: Context) -> list[Result]:
    """ns per ``run.log`` into a run whose sender never sends (nothing but the call: the
    buffer append), 1/4/16 keys, auto and explicit steps; best of the repetitions."""
    import tempfile
    from pathlib import Path

    from runstream.client.config import ClientConfig
    from runstream.client.run import Run

    calls, repeats = ctx.size(50_000, 200_000), ctx.size(3, 5)
    results = []
    with tempfile.TemporaryDirectory() as spool:
        config = ClientConfig(
            url="http://127.0.0.1:9",  # never contacted: the sender's interval is an hour
            spool_dir=Path(spool),
            flush_interval=3600.0,
            batch_points=10**9,
            max_buffer_points=10**9,
        )
        for keys in (1, 4, 16):
            metrics = {f"metric_{i}": 0.5 + i for i in range(keys)}
            for mode in ("auto_step", "explicit_step"):
                run = Run("0" * 32, config, experiment_id="0")
                run.log(metrics)  # the first call validates the keys and creates the columns
                best = math.inf
                for _ in range(repeats):
                    t0 = time.perf_counter_ns()
                    if mode == "auto_step":
                        for _ in range(calls):
                            run.log(metrics)
                    else:
                        for step in range(calls):
                            run.log(metrics, step=step)
                    best = min(best, (time.perf_counter_ns() - t0) / calls)
                    run._buffer.take()
                results.append(
                    Result(
                        f"sdk_hot_path_{keys}_keys_{mode}",
                        SDK,
                        f"ns per run.log({keys} keys, {mode.replace('_', ' ')}), idle sender, "
                        f"best of {repeats} x {calls:,} calls",
                        best,
                        "ns",
                        better="lower",
                    )
                )
    return results


WORKLOADS: dict[str, Callable[[Context], list[Result]]] = {
    "sdk_call_cost": sdk_call_cost,
    "ingest_acceptance": ingest_acceptance,
    "end_to_end": end_to_end,
    "mlflow_side_by_side": mlflow_side_by_side,
}

OPT_IN: dict[str, Callable[[Context], list[Result]]] = {"sdk_hot_path": sdk_hot_path}
