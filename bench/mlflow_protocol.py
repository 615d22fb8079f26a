"""Issue 12's benchmarks: the real ``mlflow`` client against runstream and MLflow's server
(and, for per-call cost, a null server), side by side in one run.

Every figure is timed in the client process around the ``mlflow`` client's own call (from
before it builds and sends the request to after it parsed the answer), against both servers
in the same run after the same warm-up; nothing is loaded behind a server's back except
where a size makes the API impractical (``mlflow_search``'s large population, said so in its
row).

- ``mlflow_call_latency``: ``MlflowClient.log_metric``, ``log_batch`` of 5 metrics and
  ``get_run``, interleaved call by call (the order of the three servers rotates each round)
  against runstream, MLflow's server and the null server (``bench/null_server.py``): medians
  per call, and each server's cost as a multiple of the null server's.
- ``mlflow_log_batch_4proc``: ``log_batch`` of 1,000 metrics from 4 client processes at once
  (a file barrier lines their starts up): points/s, both servers; a history read afterwards
  checks every point is readable.

- ``mlflow_search``: ``MlflowClient.search_runs`` with a metric filter, a param filter and a
  metric order over (a) runs written through the client just before (the first search after
  the last write is reported on its own) and (b) a large population COPYed into both
  servers' schemas (``bench/loaders.py``); each also raw (one ``POST runs/search`` with the
  client's body, decoded by orjson, runs counted).
- ``mlflow_history``: ``MlflowClient.get_metric_history`` of a 20,000-point series logged
  through the client (first read after writing, then repeated), and the same series read raw:
  one ``GET .../metrics/get-history``, decoded by orjson, points counted.
- ``mlflow_sweep``: a 4-process sweep, ``mlflow.log_metrics`` per step (fluent API, one run
  per trial), both servers; and the same sweep through runstream's native SDK, labelled as
  the different protocol it is.
- ``workers_curve``: ``mlflow_log_batch_4proc``'s and ``mlflow_sweep``'s measurements on a
  fresh runstream server per ``--workers`` 1, 2, 4 (when the server has that flag).

Every workload above but ``workers_curve`` also measures the null server the same way in the
same run (its ``floor_value``): what the mlflow client itself can send or parse on this
machine, so each row shows runstream's figure over the floor next to the MLflow ratio.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from bench import loaders
from bench.harness import runstream_has_workers_flag, warm_up
from bench.processes import ClientProcesses, barrier, in_processes_lined_up, mlflow_env
from bench.report import Context, Result, Target, median, missing, summarize
from bench.write_workloads import native_sweep_child, run_sweep, sweep_shape

SECTION = "MLflow protocol: the mlflow client on runstream, MLflow's server and a null server"
SEARCH_FILTER = "metrics.m0 > 0.5 and params.p0 = '3'"
SEARCH_ORDER = ["metrics.m1 DESC"]
NULL_EXPERIMENT = "100"
"""A null-server search's experiment id: the page size it answers (``bench.null_server``)."""
OPS = ("log_metric", "log_batch_5", "get_run")
FLOOR_TARGETS = {"log_metric": 1.3, "log_batch_5": 1.3, "get_run": 1.5}
"""Issue 12: runstream's median within 1.3x (writes) and 1.5x (get_run) of the null server's."""


def _servers(ctx: Context) -> dict[str, str]:
    """Name -> URL of the tracking servers of this run (MLflow's when it started)."""
    urls = {"runstream": ctx.runstream().url}
    ml = ctx.mlflow()
    if ml is not None:
        urls["mlflow"] = ml.url
    return urls


def _ms(seconds: Sequence[float]) -> float:
    return median(seconds) * 1000


def _ms_detail(seconds: Sequence[float]) -> dict[str, float]:
    return {k: v if k == "n" else v * 1000 for k, v in summarize(seconds).items()}


def _mlflow_note(ctx: Context, urls: dict[str, str]) -> str:
    return "" if "mlflow" in urls or not ctx.with_mlflow else "MLflow's server did not start"


# -- (a) per-call latency, three servers interleaved -----------------------------------------


def _call_latency_child(urls: dict[str, str], calls: int, warmup: int) -> dict[str, Any]:
    """Child: every op against every server, round after round, the server order rotating."""
    mlflow_env(next(iter(urls.values())))
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    clients = {name: MlflowClient(tracking_uri=url) for name, url in urls.items()}
    runs: dict[str, str] = {}
    for name, client in clients.items():
        experiment = client.create_experiment(f"bench-calls-{uuid.uuid4().hex[:8]}")
        runs[name] = client.create_run(experiment).info.run_id
    names = list(clients)
    now = int(time.time() * 1000)
    seconds: dict[str, dict[str, list[float]]] = {op: {n: [] for n in names} for op in OPS}
    for i in range(warmup + calls):
        if i == warmup and "null" in clients and "runstream" in clients:
            _copy_run_data(urls["runstream"], runs["runstream"], urls["null"])
        batch = [Metric(f"m{k}", i + k * 0.1, now, i) for k in range(5)]
        shift = i % len(names)
        for op in OPS:
            for name in names[shift:] + names[:shift]:
                client, run_id = clients[name], runs[name]
                t0 = time.perf_counter()
                if op == "log_metric":
                    client.log_metric(run_id, "loss", 1.0 / (i + 1), timestamp=now, step=i)
                elif op == "log_batch_5":
                    client.log_batch(run_id, metrics=batch)
                else:
                    client.get_run(run_id)
                took = time.perf_counter() - t0
                if i >= warmup:
                    seconds[op][name].append(took)
    return {"seconds": seconds}


def _copy_run_data(url: str, run_id: str, null_url: str) -> None:
    """Give the null server runstream's answer to ``get_run`` (its metrics and tags after the
    warm-up), so that the client parses the same run from every server."""
    import requests

    answer = requests.get(f"{url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30)
    answer.raise_for_status()
    data = answer.json()["run"]["data"]
    requests.put(f"{null_url}/bench/run-data", json=data, timeout=30).raise_for_status()


def mlflow_call_latency(ctx: Context) -> list[Result]:
    """Median per call of log_metric / log_batch of 5 / get_run on three servers."""
    urls = {**_servers(ctx), "null": ctx.null().url}
    calls, warmup = ctx.size(30, 300), ctx.size(5, 30)
    with ClientProcesses() as clients:
        out = clients.run("calls", _call_latency_child, urls, calls, warmup)
    note = _mlflow_note(ctx, urls)
    what = {
        "log_metric": "MlflowClient.log_metric",
        "log_batch_5": "MlflowClient.log_batch of 5 metrics",
        "get_run": "MlflowClient.get_run",
    }
    results = []
    for op in OPS:
        by_server: dict[str, list[float]] = out["seconds"][op]
        results.append(
            Result(
                f"mlflow_call_{op}",
                SECTION,
                f"{what[op]}, median ms per call of {calls} interleaved with the other "
                f"servers' (after {warmup} warm-up rounds)",
                _ms(by_server["runstream"]),
                "ms",
                better="lower",
                target=Target("<=", FLOOR_TARGETS[op], on_floor=True),
                mlflow_value=_ms(by_server["mlflow"]) if "mlflow" in by_server else None,
                floor_value=_ms(by_server["null"]),
                detail={name: _ms_detail(s) for name, s in by_server.items()},
                note=note,
            )
        )
    return results


# -- (b) log_batch of 1,000 metrics from 4 processes -----------------------------------------


def _log_batch_child(url: str, calls: int, folder: str, parties: int) -> dict[str, Any]:
    """Child: one run, ``calls`` log_batch calls of 1,000 metrics (10 keys x 100 steps)."""
    mlflow_env(url)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    experiment = client.create_experiment(f"bench-batch-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    now = int(time.time() * 1000)
    batches = [
        [
            Metric(f"metric_{k}", c * 0.001 + s, now, c * 100 + s)
            for s in range(100)
            for k in range(10)
        ]
        for c in range(calls)
    ]
    barrier(folder, parties)
    started = time.time()
    for metrics in batches:
        client.log_batch(run_id, metrics=metrics)
    done = time.time()
    stored = len(client.get_metric_history(run_id, "metric_0"))
    client.set_terminated(run_id)
    return {"started": started, "done": done, "points": calls * 1000, "stored": stored,
            "expected": calls * 100}  # fmt: skip


def log_batch_rate(url: str, processes: int, calls: int) -> tuple[float, dict[str, Any]]:
    """Points/s of ``processes`` clients each making ``calls`` log_batch calls of 1,000."""
    outs = in_processes_lined_up(_log_batch_child, [(url, calls)] * processes)
    seconds = max(o["done"] for o in outs) - min(o["started"] for o in outs)
    points = sum(o["points"] for o in outs)
    readable = all(o["stored"] == o["expected"] for o in outs)
    return points / seconds, {"points": points, "seconds": seconds, "all_readable": readable}


def mlflow_log_batch_4proc(ctx: Context) -> list[Result]:
    """Points/s of log_batch(1,000 metrics) from 4 client processes, both servers."""
    urls = _servers(ctx)
    processes, calls = 4, ctx.size(2, 10)
    rates: dict[str, float] = {}
    detail: dict[str, Any] = {}
    errors = []
    for name, url in {**urls, "null": ctx.null().url}.items():
        try:
            rates[name], detail[name] = log_batch_rate(url, processes, calls)
        except Exception as exc:  # one side failing keeps the other's figure
            errors.append(f"{name} failed: {exc!r}"[:300])
    note = "; ".join(n for n in (_mlflow_note(ctx, urls), *errors) if n)
    # The null server stores nothing (its history is canned): only the real servers count.
    if any(not d["all_readable"] for n, d in detail.items() if n != "null"):
        note = (note + "; " if note else "") + "a history read after the batches missed points"
    return [
        Result(
            "mlflow_log_batch_4proc",
            SECTION,
            f"MlflowClient.log_batch of 1,000 metrics, {processes} processes x {calls} calls "
            "at once",
            rates.get("runstream"),
            "points/s",
            target=Target(">=", 30, on_ratio=True),
            mlflow_value=rates.get("mlflow"),
            floor_value=rates.get("null"),
            detail=detail,
            note=note,
        )
    ]


# -- (c) runs/search ---------------------------------------------------------------------------


def _search(client: Any, experiment_id: str) -> list[str]:
    runs = client.search_runs(
        [experiment_id], filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=100
    )
    return [str(r.info.run_name) for r in runs]


def _timed_searches(client: Any, url: str, experiment_id: str, repeats: int) -> dict[str, Any]:
    """The first search (cold), then ``repeats`` more; the run names the first returned; then
    ``repeats`` raw searches (``_raw_searches``)."""
    t0 = time.perf_counter()
    names = _search(client, experiment_id)
    first = time.perf_counter() - t0
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _search(client, experiment_id)
        seconds.append(time.perf_counter() - t0)
    raw, raw_counts = _raw_searches(url, experiment_id, repeats)
    return {"first_s": first, "seconds": seconds, "names": names, "raw_seconds": raw,
            "raw_counts": raw_counts}  # fmt: skip


def _raw_searches(url: str, experiment_id: str, repeats: int) -> tuple[list[float], list[int]]:
    """The same search as one ``POST runs/search`` each, the body the mlflow client sends
    (``_raw_reads``): what the servers cost without the client's ~40 us per run of protobuf
    parsing."""
    import orjson

    endpoint = f"{url}/api/2.0/mlflow/runs/search"
    body = orjson.dumps({"experiment_ids": [experiment_id], "filter": SEARCH_FILTER,
                         "run_view_type": "ACTIVE_ONLY", "max_results": 100,
                         "order_by": list(SEARCH_ORDER)})  # fmt: skip
    headers = {"Content-Type": "application/json"}

    def search(session: Any) -> Any:
        return session.post(endpoint, data=body, headers=headers)

    return _raw_reads("runs", repeats, search, search)


def _raw_reads(
    field: str, repeats: int, call: Callable[[Any], Any], warm: Callable[[Any], Any]
) -> tuple[list[float], list[int]]:
    """``repeats`` timed ``call(session)``s on one keep-alive ``requests`` session, after one
    untimed ``warm(session)``; each answer decoded by orjson and its ``field`` list counted.
    The standard library's decoder took 12-17 ms of the ~23 ms a raw 20,000-point history
    read cost against either runstream or the null server (2026-12-03): these rows measure
    the servers, so the client decodes as cheaply as a Python client can, the same for all."""
    import orjson
    import requests

    seconds, counts = [], []
    with requests.Session() as session:
        warm(session).raise_for_status()
        for _ in range(repeats):
            t0 = time.perf_counter()
            answer = call(session)
            answer.raise_for_status()
            counts.append(len(orjson.loads(answer.content).get(field, [])))
            seconds.append(time.perf_counter() - t0)
    return seconds, counts


def _search_written_child(url: str, runs: int, repeats: int) -> dict[str, Any]:
    """Child: write ``runs`` runs through the client (``loaders.generate``'s population,
    all active), then search at once (the first read after writing) and again."""
    mlflow_env(url)
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    data = loaders.generate({1: runs}, seed=42)
    params: dict[str, list[Param]] = {}
    metrics: dict[str, list[Metric]] = {}
    tags: dict[str, dict[str, str]] = {}
    for rid, _, key, value in data.params:
        params.setdefault(rid, []).append(Param(key, value))
    for rid, _, key, _count, step, ts, number in data.metrics:
        metrics.setdefault(rid, []).append(Metric(key, number, ts, step))
    for rid, _, key, value in data.tags:
        if not key.startswith("mlflow."):
            tags.setdefault(rid, {})[key] = value
    client = MlflowClient(url)
    experiment_id = client.create_experiment(f"bench-search-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    for rid, _, name, _user, status, start, end, _stage, _uri in data.runs:
        run_id = client.create_run(
            experiment_id, start_time=start, tags=tags.get(rid, {}), run_name=name
        ).info.run_id
        client.log_batch(
            run_id,
            metrics=metrics.get(rid, []),
            params=params.get(rid, []),
            tags=[RunTag("bench", "search")],
        )
        client.set_terminated(run_id, status=status, end_time=end)
    written = time.perf_counter() - started
    return {"write_s": written, **_timed_searches(client, url, experiment_id, repeats)}


def _search_reader_child(
    url: str, experiment_id: str, repeats: int, warm_url: str, warm_experiment: str
) -> dict[str, Any]:
    """Child: the searches, after one untimed search against the null server at
    ``warm_url``. The servers' readers run in the processes that wrote the 300 runs, but the
    null server's is a fresh one, whose first search would pay the client's own first-call
    costs (lazy imports, proto classes: ~0.5 s measured), not a server's; every reader warms
    the same way so that the first searches compare alike."""
    mlflow_env(url)
    from mlflow.tracking import MlflowClient

    _search(MlflowClient(warm_url), warm_experiment)
    return _timed_searches(MlflowClient(url), url, experiment_id, repeats)


def _population(runs: int) -> tuple[int, loaders.SearchData]:
    """``runs`` runs of one new experiment (its id in runstream's numbering) to COPY."""
    experiment = 2_000_000_000 + int(uuid.uuid4().hex[:6], 16) * 10
    data = loaders.generate({experiment: runs}, seed=42, first=int(uuid.uuid4().hex[:12], 16) << 40)
    return experiment, data


async def _load_population(
    ctx: Context, server: str, experiment: int, data: loaders.SearchData
) -> tuple[str, float]:
    """COPY the population into ``server``'s schema, VACUUM ANALYZE it and write the dirty
    pages out; that server's experiment id and the seconds it took."""
    t0 = time.perf_counter()
    target = ctx.runstream() if server == "runstream" else ctx.mlflow()
    assert target is not None
    conn = await asyncpg.connect(target.database_url)
    try:
        if server == "runstream":
            await loaders.load_runstream(conn, data)
            experiment_id = str(experiment)
        else:
            experiment_id = str((await loaders.load_mlflow(conn, data))[experiment])
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    await _checkpoint(target.database_url)
    return experiment_id, time.perf_counter() - t0


async def _checkpoint(database_url: str) -> None:
    """Write the loads' dirty pages out before any search: without it the first search
    evicts them itself (measured: ``EXPLAIN (ANALYZE, BUFFERS)`` of runstream's first search
    after the load showed ``read=5548 written=4601``, 105 ms against 15 ms repeated), a
    cost of the COPY charged to whichever server reads first. Pages that left PostgreSQL's
    buffers still have to be read back by both servers: that stays in the first search."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        pass  # not a superuser nor pg_checkpoint: the first searches pay for the writes
    finally:
        await conn.close()


def mlflow_search(ctx: Context) -> list[Result]:
    """search_runs over runs written through the client, and over a COPYed population."""
    import asyncio

    urls = _servers(ctx)
    written_runs, loaded_runs = 300, ctx.size(2_000, 100_000)
    repeats = ctx.size(5, 20)
    results: list[Result] = []
    outs: dict[str, dict[str, Any]] = {}
    with ClientProcesses() as clients:
        for name, url in urls.items():
            outs[name] = clients.run(
                name, _search_written_child, url, ctx.size(60, written_runs), repeats
            )
        null = _null_searches(ctx, clients, outs["runstream"], repeats)
        results += _search_rows(ctx, urls, outs, null, "written", ctx.size(60, written_runs),
                                "written through the client just before")  # fmt: skip
        # Each server's searches follow its own load at once: PostgreSQL's 128 MB of shared
        # buffers hold one population's pages, so loading both first left the last loaded
        # warm and the other's first search reading its pages back (runstream's, loaded
        # first: 133 ms first against 47 ms repeated, 2026-12-03).
        experiment, data = _population(loaded_runs)
        loaded: dict[str, dict[str, Any]] = {}
        warm = ctx.null().url
        for name, url in urls.items():
            experiment_id, load_s = asyncio.run(_load_population(ctx, name, experiment, data))
            loaded[name] = clients.run(
                name, _search_reader_child, url, experiment_id, repeats, warm, NULL_EXPERIMENT
            )
            loaded[name]["load_s"] = load_s
        null = _null_searches(ctx, clients, loaded["runstream"], repeats)
        results += _search_rows(ctx, urls, loaded, null, "loaded", loaded_runs,
                                "COPYed into both schemas (the API would take hours)")  # fmt: skip
    return results


def _null_searches(
    ctx: Context, clients: ClientProcesses, runstream: dict[str, Any], repeats: int
) -> dict[str, Any]:
    """The floor: the same searches against the null server, answering a canned page of as
    many runs as runstream returned (its experiment id names the page size)."""
    url = ctx.null().url
    size = str(len(runstream["names"]))
    # Warmed with the same page size: the null server renders a size on its first request.
    return clients.run("null", _search_reader_child, url, size, repeats, url, size)


def _search_rows(
    ctx: Context, urls: dict[str, str], outs: dict[str, dict[str, Any]],
    null: dict[str, Any], kind: str, runs: int, how: str,
) -> list[Result]:  # fmt: skip
    label = f"{runs // 1000}k" if runs >= 1000 else str(runs)
    query = f'filter "{SEARCH_FILTER}", order by {SEARCH_ORDER[0]}, top 100'
    same = None
    if "mlflow" in outs:
        same = outs["mlflow"]["names"] == outs["runstream"]["names"]
    note = _mlflow_note(ctx, urls)
    if same is False:
        note = (note + "; " if note else "") + "the servers returned different runs"
    detail: dict[str, Any] = {
        name: {
            "first_ms": o["first_s"] * 1000,
            "repeated": _ms_detail(o["seconds"]),
            "returned": len(o["names"]),
            **({"write_s": o["write_s"]} if "write_s" in o else {}),
            **({"load_s": o["load_s"]} if "load_s" in o else {}),
        }
        for name, o in outs.items()
    }
    detail["same_runs_in_order"] = same
    raw_note = note
    short = [
        n for n, o in {**outs, "null": null}.items() if set(o["raw_counts"]) != {len(o["names"])}
    ]
    if short:
        raw_note = (
            note + "; " if note else ""
        ) + f"{', '.join(short)}: raw and client counts differ"
    detail["null"] = {"first_ms": null["first_s"] * 1000, "repeated": _ms_detail(null["seconds"]),
                      "returned": len(null["names"])}  # fmt: skip
    ml = outs.get("mlflow")
    return [
        Result(
            f"mlflow_search_{label}_first",
            SECTION,
            f"MlflowClient.search_runs over {runs:,} runs {how}, {query}: the first search",
            outs["runstream"]["first_s"] * 1000,
            "ms",
            better="lower",
            target=Target(">=", 8, on_ratio=True),
            mlflow_value=ml["first_s"] * 1000 if ml else None,
            floor_value=null["first_s"] * 1000,
            detail=detail,
            note=note,
        ),
        Result(
            f"mlflow_search_{label}",
            SECTION,
            f"the same search repeated, median of {len(outs['runstream']['seconds'])}",
            _ms(outs["runstream"]["seconds"]),
            "ms",
            better="lower",
            target=Target(">=", 8, on_ratio=True),
            mlflow_value=_ms(ml["seconds"]) if ml else None,
            floor_value=_ms(null["seconds"]),
            note=note,
        ),
        _raw_result(
            f"mlflow_search_{label}_raw",
            "the same search raw: one POST .../runs/search with the client's body (requests, "
            "keep-alive), JSON decoded by orjson, runs counted; "
            f"median of {len(null['raw_seconds'])}",
            {**outs, "null": null},
            8,
            raw_note,
        ),
    ]


def _raw_result(
    name: str, metric: str, outs: dict[str, dict[str, Any]], target: float, note: str
) -> Result:
    """A raw row: every server's ``raw_seconds`` (``outs`` holds the null server's too)."""
    ml = outs.get("mlflow")
    return Result(
        name,
        SECTION,
        metric,
        _ms(outs["runstream"]["raw_seconds"]),
        "ms",
        better="lower",
        target=Target(">=", target, on_ratio=True),
        mlflow_value=_ms(ml["raw_seconds"]) if ml else None,
        floor_value=_ms(outs["null"]["raw_seconds"]),
        detail={server: _ms_detail(o["raw_seconds"]) for server, o in outs.items()},
        note=note,
    )


# -- (d) a 20,000-point history ------------------------------------------------------------------


def _history_child(url: str, points: int, repeats: int) -> dict[str, Any]:
    """Child: log ``points`` points of one key in batches of 1,000, then read them back."""
    mlflow_env(url)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    experiment = client.create_experiment(f"bench-history-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    now = int(time.time() * 1000)
    for start in range(0, points, 1000):
        metrics = [Metric("loss", 1.0 / (s + 1), now + s, s) for s in range(start, start + 1000)]
        client.log_batch(run_id, metrics=metrics)
    seconds = []
    counts = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        counts.append(len(client.get_metric_history(run_id, "loss")))
        seconds.append(time.perf_counter() - t0)
    raw, raw_counts = _raw_history_reads(url, run_id, "loss", repeats)
    return {"first_s": seconds[0], "seconds": seconds[1:], "counts": counts + raw_counts,
            "raw_seconds": raw}  # fmt: skip


def _raw_history_reads(
    url: str, run_id: str, key: str, repeats: int
) -> tuple[list[float], list[int]]:
    """``repeats`` raw reads of the whole series (``_raw_reads``): one ``GET
    metrics/get-history`` each, without ``max_results`` (every point in one answer, on both
    servers); the untimed first one asks for a single point."""
    endpoint = f"{url}/api/2.0/mlflow/metrics/get-history"
    query: dict[str, str | int] = {"run_id": run_id, "metric_key": key}
    return _raw_reads(
        "metrics",
        repeats,
        lambda session: session.get(endpoint, params=query),
        lambda session: session.get(endpoint, params={**query, "max_results": 1}),
    )


def mlflow_history(ctx: Context) -> list[Result]:
    """get_metric_history of a 20,000-point series logged through the client, both servers."""
    urls = _servers(ctx)
    points, repeats = 20_000, ctx.size(3, 10)
    outs: dict[str, dict[str, Any]] = {}
    with ClientProcesses() as clients:
        for name, url in {**urls, "null": ctx.null().url}.items():
            outs[name] = clients.run(name, _history_child, url, points, repeats)
    note = _mlflow_note(ctx, urls)
    short = [n for n, o in outs.items() if any(c != points for c in o["counts"])]
    if short:
        note = (note + "; " if note else "") + f"{', '.join(short)} returned fewer points"
    ml, null = outs.get("mlflow"), outs["null"]
    return [
        Result(
            "mlflow_history_20k",
            SECTION,
            f"MlflowClient.get_metric_history of {points:,} points logged through the client, "
            f"median of {repeats} (first read after writing in the detail)",
            _ms(outs["runstream"]["seconds"]),
            "ms",
            better="lower",
            target=Target(">=", 35, on_ratio=True),
            mlflow_value=_ms(ml["seconds"]) if ml else None,
            floor_value=_ms(null["seconds"]),
            detail={
                name: {"first_ms": o["first_s"] * 1000, "repeated": _ms_detail(o["seconds"])}
                for name, o in outs.items()
            },
            note=note,
        ),
        _raw_result(
            "mlflow_history_20k_raw",
            f"the same {points:,} points read raw: one GET .../metrics/get-history (requests, "
            f"keep-alive), JSON decoded by orjson, points counted; median of {repeats}",
            outs,
            35,
            note,
        ),
    ]


# -- (e) the sweep ---------------------------------------------------------------------------------


def _mlflow_sweep_child(
    url: str, experiment_id: str, trials: Sequence[int], steps: int, folder: str, parties: int
) -> dict[str, Any]:
    """Child: its trials one after another, ``mlflow.log_metrics`` of 5 metrics per step."""
    mlflow_env(url)
    import mlflow

    barrier(folder, parties)
    started = time.time()
    for t in trials:
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"trial_{t:05d}"):
            mlflow.log_params({"lr": 0.001 * (t + 1), "layers": t % 4})
            for step in range(1, steps + 1):
                mlflow.log_metrics({f"metric_{k}": t + step * 0.001 + k for k in range(5)},
                                   step=step)  # fmt: skip
    return {"started": started, "done": time.time(), "points": len(trials) * steps * 5}


def _create_experiment_child(url: str, name: str) -> dict[str, Any]:
    mlflow_env(url)
    from mlflow.tracking import MlflowClient

    return {"experiment_id": MlflowClient(url).create_experiment(name)}


def sweep_rate(url: str, shape: dict[str, int]) -> tuple[float, dict[str, Any]]:
    """Points/s of the sweep through the mlflow client against ``url``."""
    runs, steps, processes = shape["runs"], shape["steps"], shape["processes"]
    with ClientProcesses() as clients:
        experiment = clients.run(
            "setup", _create_experiment_child, url, f"bench-sweep-{uuid.uuid4().hex[:8]}"
        )["experiment_id"]
    shares = [list(range(p, runs, processes)) for p in range(processes)]
    outs = in_processes_lined_up(
        _mlflow_sweep_child, [(url, experiment, share, steps) for share in shares]
    )
    seconds = max(o["done"] for o in outs) - min(o["started"] for o in outs)
    points = sum(o["points"] for o in outs)
    return points / seconds, {"points": points, "seconds": seconds}


def mlflow_sweep(ctx: Context) -> list[Result]:
    """The 4-process sweep through the mlflow client on both servers; the native SDK's."""
    urls = _servers(ctx)
    shape = sweep_shape(ctx)
    runs, steps, processes = shape["runs"], shape["steps"], shape["processes"]
    rates: dict[str, float] = {}
    detail: dict[str, Any] = {}
    errors = []
    for name, url in {**urls, "null": ctx.null().url}.items():
        try:
            rates[name], detail[name] = sweep_rate(url, shape)
        except Exception as exc:  # one side failing keeps the other's figure
            errors.append(f"{name} failed: {exc!r}"[:300])
    text = f"{runs} runs x {steps} steps x 5 metrics, {processes} processes"
    note = "; ".join(n for n in (_mlflow_note(ctx, urls), *errors) if n)
    results = [
        Result(
            "mlflow_sweep",
            SECTION,
            f"sweep through the mlflow client (mlflow.log_metrics per step, one run per "
            f"trial): {text}",
            rates.get("runstream"),
            "points/s",
            mlflow_value=rates.get("mlflow"),
            floor_value=rates.get("null"),
            detail=detail,
            note=note,
        )
    ]
    try:
        native = run_sweep(native_sweep_child, urls["runstream"], **shape)
    except Exception as exc:
        results.append(
            missing("native_sdk_sweep", SECTION, "native SDK sweep", "points/s", f"{exc!r}"[:300])
        )
        return results
    results.append(
        Result(
            "native_sdk_sweep",
            SECTION,
            f"the same sweep through runstream's native SDK (its own protocol, not MLflow's; "
            f"one run.log per step), until queryable: {text}; MLflow column: the mlflow "
            "client's sweep on MLflow's server",
            native["points_per_s"],
            "points/s",
            mlflow_value=rates.get("mlflow"),
            detail=native,
        )
    )
    return results


# -- (f) the --workers curve ----------------------------------------------------------------------

CURVE_WORKERS = (1, 2, 4)
CURVE = "Scaling: runstream server --workers N (issue 12)"


def workers_curve(ctx: Context) -> list[Result]:
    """log_batch from 4 processes and the sweep, on a fresh runstream server per worker
    count, when ``runstream server`` has ``--workers`` (else one row saying it has not)."""
    if not runstream_has_workers_flag():
        return [
            missing("workers_curve", CURVE, "points/s by runstream server --workers N",
                    "points/s", "this runstream server has no --workers flag yet")
        ]  # fmt: skip
    calls, shape = ctx.size(2, 10), sweep_shape(ctx)
    results = []
    for workers in CURVE_WORKERS:
        with ctx.fresh_runstream(workers=workers) as server:
            warm_up(server.url)
            batch, batch_detail = log_batch_rate(server.url, 4, calls)
            sweep, sweep_detail = sweep_rate(server.url, shape)
        results += [
            Result(
                f"workers_{workers}_log_batch_4proc",
                CURVE,
                f"--workers {workers}: MlflowClient.log_batch of 1,000 metrics, 4 processes x "
                f"{calls} calls at once",
                batch,
                "points/s",
                detail=batch_detail,
            ),
            Result(
                f"workers_{workers}_sweep",
                CURVE,
                f"--workers {workers}: the mlflow client's sweep, {shape['runs']} runs x "
                f"{shape['steps']} steps x 5 metrics, 4 processes",
                sweep,
                "points/s",
                detail=sweep_detail,
            ),
        ]
    return results


WORKLOADS: dict[str, Callable[[Context], list[Result]]] = {
    "mlflow_call_latency": mlflow_call_latency,
    "mlflow_log_batch_4proc": mlflow_log_batch_4proc,
    "mlflow_search": mlflow_search,
    "mlflow_history": mlflow_history,
    "mlflow_sweep": mlflow_sweep,
    "workers_curve": workers_curve,
}
