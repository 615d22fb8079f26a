"""The read path (issue 6), runstream beside a real ``mlflow server`` on the same data.

Each workload is ``fn(ctx) -> list[Result]``, named in ``WORKLOADS``. Data is loaded
directly into both servers' databases by ``bench/loaders.py`` (runstream's chunks by COPY as
the projector lays them out; MLflow's ``metrics``/``latest_metrics``/``runs`` rows by COPY,
as its SQL store writes them), then both servers answer over HTTP, after the same warm-up.
Loading 10^6 points through MLflow's API would take hours; its server reads the rows all the
same. (The reads measured through the real ``mlflow`` client, after writing through it, are
``bench/mlflow_protocol.py``'s.)

- ``read_history``: whole history of one series, via the MLflow route (``get-history``,
  following page tokens of 25,000 points as ``MlflowClient.get_metric_history`` does) on both
  servers, and runstream's native msgpack route. MLflow calls over ``MLFLOW_CAP`` seconds are
  reported as "> cap".
- ``read_downsample``: 1,000 points of a long series (runstream's ``?points=1000``; MLflow's
  closest, ``get-history-bulk-interval`` with ``max_results=1000``).
- ``read_bulk``: 50 runs x 5 keys, whole (runstream's bulk route vs 250 ``get-history``
  calls) and 500 points per series (vs 5 ``get-history-bulk-interval`` calls of 50 runs).
- ``read_live``: SSE latency with 100 connected clients (runstream only).

Every loop is bounded by a count and a deadline; only loopback servers are used.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import msgpack
import numpy as np
import orjson

from bench import loaders
from bench.harness import Server
from bench.report import Context, Result, Target, median, missing, percentile, summarize

SECTION = "Read path: runstream vs MLflow's server (issue 6)"
MLFLOW_CAP = 120.0
"""Seconds an MLflow read may take before it is reported as "> cap" (it is abandoned)."""
PAGE = 25_000
"""``GET_METRIC_HISTORY_MAX_RESULTS``: the page size of ``MlflowClient.get_metric_history``."""
MAX_PAGES = 1_000
V1 = "/api/runstream/v1"
HISTORY = "/api/2.0/mlflow/metrics/get-history"
BULK_INTERVAL = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"

_loaded: dict[tuple[str, str, int], str] = {}
"""(server url, key, points) -> run id of a series already loaded into that server's
database during this process (history and downsample share their long series)."""


class CapExceeded(Exception):
    """An MLflow read ran past ``MLFLOW_CAP``."""


# -- helpers -------------------------------------------------------------------------------


async def sample(fn: Callable[[], Awaitable[Any]], repeats: int, budget: float) -> list[float]:
    """Seconds per call: one warm-up, then up to ``repeats`` calls within ``budget`` s.

    A call slower than half the budget is measured once (its warm-up is the sample)."""
    t0 = time.perf_counter()
    await fn()
    first = time.perf_counter() - t0
    if first * 2 > budget:
        return [first]
    deadline = time.perf_counter() + budget
    out: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return out


async def capped(fn: Callable[[], Awaitable[Any]], repeats: int, budget: float) -> list[float]:
    """``sample`` for MLflow: raises ``CapExceeded`` when one call passes ``MLFLOW_CAP``."""
    try:
        return await asyncio.wait_for(sample(fn, repeats, budget), MLFLOW_CAP + budget)
    except TimeoutError as exc:
        raise CapExceeded from exc


async def history_pages(
    http: aiohttp.ClientSession, url: str, run_id: str, key: str, deadline: float
) -> int:
    """Every point of ``key`` via MLflow's ``get-history``, page by page; returns the count."""
    token: str | None = None
    count = 0
    for _ in range(MAX_PAGES):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CapExceeded
        params = {"run_id": run_id, "metric_key": key, "max_results": str(PAGE)}
        if token:
            params["page_token"] = token
        try:
            async with http.get(
                url + HISTORY, params=params, timeout=aiohttp.ClientTimeout(total=remaining)
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url}{HISTORY}: {resp.status} {body[:200]!r}")
        except TimeoutError as exc:
            raise CapExceeded from exc
        page = orjson.loads(body)
        count += len(page.get("metrics", ()))
        token = page.get("next_page_token")
        if not token:
            return count
    raise RuntimeError(f"{url}{HISTORY}: more than {MAX_PAGES} pages")


async def native_history(
    http: aiohttp.ClientSession, url: str, run_id: str, key: str, **params: str
) -> int:
    """runstream's history route in msgpack (packed columns), decoded; returns the bytes."""
    async with http.get(
        f"{url}{V1}/runs/{run_id}/history",
        params={"key": key, **params},
        headers={"Accept": "application/msgpack"},
    ) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"history: {resp.status} {body[:200]!r}")
    msgpack.unpackb(body)
    return len(body)


async def bulk_interval(
    http: aiohttp.ClientSession,
    url: str,
    run_ids: list[str],
    key: str,
    points: int,
    deadline: float,
) -> int:
    """MLflow's ``get-history-bulk-interval`` (the UI's sampled read); returns the count."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise CapExceeded
    params = [("metric_key", key), ("max_results", str(points))]
    params += [("run_ids", r) for r in run_ids]
    try:
        async with http.get(
            url + BULK_INTERVAL, params=params, timeout=aiohttp.ClientTimeout(total=remaining)
        ) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url}{BULK_INTERVAL}: {resp.status} {body[:200]!r}")
    except TimeoutError as exc:
        raise CapExceeded from exc
    return len(orjson.loads(body).get("metrics", ()))


def history_call(
    http: aiohttp.ClientSession, url: str, run_id: str, key: str, n: int, cap: float
) -> Callable[[], Awaitable[None]]:
    """One whole-history read via ``get-history`` pages, checked to return ``n`` points."""

    async def call() -> None:
        got = await history_pages(http, url, run_id, key, time.monotonic() + cap)
        if got != n:
            raise RuntimeError(f"{url}: get-history returned {got} of {n} points")

    return call


def mlflow_bulk_call(
    http: aiohttp.ClientSession, url: str, run_ids: list[str], keys: int, points: int | None
) -> Callable[[], Awaitable[None]]:
    """MLflow's way to read many series: one ``get-history`` (all pages) per run and key,
    or, sampled, one ``get-history-bulk-interval`` per key over all the runs."""

    async def call() -> None:
        deadline = time.monotonic() + MLFLOW_CAP
        for k in range(keys):
            if points is None:
                for r in run_ids:
                    await history_pages(http, url, r, f"k{k}", deadline)
            else:
                await bulk_interval(http, url, run_ids, f"k{k}", points, deadline)

    return call


async def warm(http: aiohttp.ClientSession, url: str, run_id: str = "") -> None:
    """Rounds of concurrent cheap calls, so every worker of the server has served requests
    (MLflow's uvicorn workers import lazily: their first calls take seconds longer). Both
    servers get the same calls before each measurement (``warm_both``)."""

    async def one(i: int) -> None:
        if run_id and i % 2:
            query = {"run_id": run_id, "metric_key": "absent", "max_results": "10"}
            async with http.get(url + HISTORY, params=query) as resp:
                await resp.read()
        else:
            body = {"max_results": 1}
            async with http.post(url + "/api/2.0/mlflow/experiments/search", json=body) as resp:
                await resp.read()

    for _ in range(3):
        await asyncio.gather(*(one(i) for i in range(8)))


async def warm_both(
    http: aiohttp.ClientSession,
    rs_url: str,
    rs_run: str,
    ml_server: Server | None,
    ml_run: str | None,
) -> None:
    """The same warm-up on both servers before a measurement (issue 12's "warmed alike")."""
    await warm(http, rs_url, rs_run)
    if ml_server is not None:
        await warm(http, ml_server.url, ml_run or "")


def _ms(samples: list[float]) -> float:
    return median(samples) * 1000


def _detail(samples: list[float]) -> dict[str, Any]:
    return {k: v * 1000 if k not in ("n",) else v for k, v in summarize(samples).items()}


async def _runstream_series(server: Server, n: int) -> str:
    """A run with series ``m<n>`` (``n`` points) in runstream's database; cached per server."""
    cached = _loaded.get((server.url, "m", n))
    if cached:
        return cached
    run_id = uuid.uuid4().hex
    conn = await asyncpg.connect(server.database_url)
    try:
        await loaders.insert_run(conn, run_id)
        await loaders.load_series(conn, run_id, f"m{n}", loaders.training_curve(n, n))
        await conn.execute("VACUUM ANALYZE metric_chunks")
        await conn.execute("VACUUM ANALYZE metric_series")
    finally:
        await conn.close()
    _loaded[(server.url, "m", n)] = run_id
    return run_id


async def _mlflow_series(server: Server, n: int) -> str:
    """The same series in MLflow's tables (``metrics`` + ``latest_metrics``); cached."""
    cached = _loaded.get((server.url, "m", n))
    if cached:
        return cached
    run_id = uuid.uuid4().hex
    conn = await asyncpg.connect(server.database_url)
    try:
        experiment = await loaders.mlflow_experiment(conn, f"bench-read-{run_id[:8]}")
        await loaders.insert_mlflow_run(conn, run_id, experiment)
        await loaders.load_mlflow_series(conn, run_id, f"m{n}", loaders.training_curve(n, n))
        await conn.execute("VACUUM ANALYZE metrics")
        await conn.execute("VACUUM ANALYZE latest_metrics")
    finally:
        await conn.close()
    _loaded[(server.url, "m", n)] = run_id
    return run_id


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=MLFLOW_CAP + 60),
    )


def _servers(ctx: Context) -> tuple[Server, Server | None]:
    """Both shared servers, started before the workload's event loop (the harness runs its
    own ``asyncio.run`` to create databases)."""
    return ctx.runstream(), ctx.mlflow()


def _budget(ctx: Context) -> tuple[int, float]:
    """(repeats, seconds) per measured operation: at most ``repeats`` calls after the
    warm-up one, stopping once ``seconds`` have passed (MLflow's slow reads bound the
    published run's length: 20 s each keeps it within ~20 minutes)."""
    return (5, 8.0) if ctx.quick else (9, 20.0)


# -- history -------------------------------------------------------------------------------


def read_history(ctx: Context) -> list[Result]:
    """Whole history via the MLflow route (both servers) and runstream's msgpack route."""
    sizes = (10_000, 100_000) if ctx.quick else (100_000, 1_000_000)
    return asyncio.run(_read_history(ctx, *_servers(ctx), sizes))


async def _read_history(
    ctx: Context, rs_server: Server, ml_server: Server | None, sizes: tuple[int, ...]
) -> list[Result]:
    repeats, budget = _budget(ctx)
    results: list[Result] = []
    async with _session() as http:
        for n in sizes:
            t0 = time.perf_counter()
            run_id = await _runstream_series(rs_server, n)
            ml_run = await _mlflow_series(ml_server, n) if ml_server else None
            load_s = time.perf_counter() - t0
            key = f"m{n}"
            await warm_both(http, rs_server.url, run_id, ml_server, ml_run)
            route = await sample(
                history_call(http, rs_server.url, run_id, key, n, 60.0), repeats, budget
            )
            size = 0

            async def binary(run_id: str = run_id, key: str = key) -> None:
                nonlocal size
                size = await native_history(http, rs_server.url, run_id, key)

            native = await sample(binary, repeats, budget)
            ml_ms: float | None = None
            ml_detail: dict[str, Any] = {}
            note = ""
            if ml_server and ml_run:
                mlflow_read = history_call(http, ml_server.url, ml_run, key, n, MLFLOW_CAP)
                try:
                    ml = await capped(mlflow_read, repeats, budget)
                    ml_ms, ml_detail = _ms(ml), _detail(ml)
                except CapExceeded:
                    ml_ms = MLFLOW_CAP * 1000
                    note = f"MLflow > {MLFLOW_CAP:.0f} s cap: its figure and the ratio are bounds"
                    ml_detail = {"capped_s": MLFLOW_CAP}
            elif ctx.with_mlflow:
                note = "MLflow's server did not start"
            pages = -(-n // PAGE)
            results.append(
                Result(
                    f"read_history_{n // 1000}k_mlflow_route",
                    SECTION,
                    f"whole history of {n:,} points via MLflow's get-history, {pages} page(s) "
                    f"of {PAGE:,} (JSON)",
                    _ms(route),
                    "ms",
                    better="lower",
                    target=Target("<=", 200) if n == 100_000 else None,
                    mlflow_value=ml_ms,
                    detail={
                        "runstream": _detail(route),
                        "mlflow": ml_detail,
                        "load_s": load_s,
                    },
                    note=note,
                )
            )
            results.append(
                Result(
                    f"read_history_{n // 1000}k_native",
                    SECTION,
                    f"whole history of {n:,} points, runstream's native route (msgpack, "
                    f"{size / n:.1f} bytes/point); MLflow column: its get-history",
                    _ms(native),
                    "ms",
                    better="lower",
                    target=Target("<=", 200) if n == 1_000_000 else None,
                    mlflow_value=ml_ms,
                    detail={"runstream": _detail(native), "bytes": size},
                    note=note,
                )
            )
    return results


# -- downsample ----------------------------------------------------------------------------


def read_downsample(ctx: Context) -> list[Result]:
    """1,000 points of a long series: runstream's ?points=1000 vs MLflow's bulk-interval."""
    n = ctx.size(100_000, 1_000_000)
    return asyncio.run(_read_downsample(ctx, *_servers(ctx), n))


async def _read_downsample(
    ctx: Context, rs_server: Server, ml_server: Server | None, n: int
) -> list[Result]:
    from runstream.api.native import bulk

    repeats, budget = _budget(ctx)
    repeats *= 4
    key = f"m{n}"
    run_id = await _runstream_series(rs_server, n)
    ml_run = await _mlflow_series(ml_server, n) if ml_server else None
    async with _session() as http:
        await warm_both(http, rs_server.url, run_id, ml_server, ml_run)
        http_s = await sample(
            lambda: native_history(http, rs_server.url, run_id, key, points="1000"),
            repeats,
            budget,
        )
        pool = await asyncpg.create_pool(rs_server.database_url, min_size=1, max_size=2)
        try:
            window = bulk.Window(points=1000)
            native_s = await sample(
                lambda: bulk.read_series(pool, [(run_id, key)], window), repeats, budget
            )
        finally:
            await pool.close()
        ml_ms: float | None = None
        ml_detail: dict[str, Any] = {}
        note = ""
        if ml_server and ml_run:
            ml_url = ml_server.url

            async def interval(ml_run: str = ml_run) -> None:
                deadline = time.monotonic() + MLFLOW_CAP
                ml_detail["points"] = await bulk_interval(
                    http, ml_url, [ml_run], key, 1000, deadline
                )

            try:
                ml = await capped(interval, repeats, budget)
                ml_ms = _ms(ml)
                ml_detail |= _detail(ml)
            except CapExceeded:
                ml_ms = MLFLOW_CAP * 1000
                note = f"MLflow > {MLFLOW_CAP:.0f} s cap"
    metric = f"1,000 points of a {n:,}-point series"
    return [
        Result(
            "read_downsample_http",
            SECTION,
            metric + " over HTTP (?points=1000, msgpack); MLflow column: "
            "get-history-bulk-interval, max_results=1000",
            _ms(http_s),
            "ms",
            better="lower",
            target=Target("<=", 20),
            mlflow_value=ml_ms,
            detail={"runstream": _detail(http_s), "mlflow": ml_detail},
            note=note,
        ),
        Result(
            "read_downsample_native",
            SECTION,
            metric + ", runstream's read function (api.bulk.read_series) on a pool",
            _ms(native_s),
            "ms",
            better="lower",
            target=Target("<=", 20),
            detail={"runstream": _detail(native_s)},
        ),
    ]


# -- bulk ----------------------------------------------------------------------------------


def read_bulk(ctx: Context) -> list[Result]:
    """50 runs x 5 keys: runstream's bulk route vs 250 get-history / 5 bulk-interval calls."""
    return asyncio.run(_read_bulk(ctx, *_servers(ctx), 50, 5, ctx.size(1_000, 10_000)))


async def _read_bulk(
    ctx: Context, rs_server: Server, ml_server: Server | None, runs: int, keys: int, n: int
) -> list[Result]:
    repeats, budget = _budget(ctx)
    run_ids = [uuid.uuid4().hex for _ in range(runs)]
    t0 = time.perf_counter()
    conn = await asyncpg.connect(rs_server.database_url)
    try:
        for i, run_id in enumerate(run_ids):
            await loaders.insert_run(conn, run_id)
            for k in range(keys):
                await loaders.load_series(
                    conn, run_id, f"k{k}", loaders.training_curve(n, i * keys + k)
                )
        await conn.execute("VACUUM ANALYZE metric_chunks")
    finally:
        await conn.close()
    if ml_server:
        conn = await asyncpg.connect(ml_server.database_url)
        try:
            experiment = await loaders.mlflow_experiment(conn, f"bench-bulk-{run_ids[0][:8]}")
            for i, run_id in enumerate(run_ids):
                await loaders.insert_mlflow_run(conn, run_id, experiment)
                for k in range(keys):
                    values = loaders.training_curve(n, i * keys + k)
                    await loaders.load_mlflow_series(conn, run_id, f"k{k}", values)
            await conn.execute("VACUUM ANALYZE metrics")
        finally:
            await conn.close()
    load_s = time.perf_counter() - t0
    series = [{"run_id": r, "key": f"k{k}"} for r in run_ids for k in range(keys)]
    results: list[Result] = []
    async with _session() as http:
        await warm_both(http, rs_server.url, run_ids[0], ml_server, run_ids[0])
        for points in (None, 500):
            body = {"series": series} | ({"points": points} if points else {})
            size = 0

            async def post(body: dict[str, Any] = body) -> None:
                nonlocal size
                async with http.post(
                    f"{rs_server.url}{V1}/history/bulk",
                    json=body,
                    headers={"Accept": "application/msgpack"},
                ) as resp:
                    data = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"bulk: {resp.status} {data[:200]!r}")
                msgpack.unpackb(data)
                size = len(data)

            ours = await sample(post, repeats, budget)
            ml_ms: float | None = None
            ml_detail: dict[str, Any] = {}
            note = ""
            if ml_server:
                theirs = mlflow_bulk_call(http, ml_server.url, run_ids, keys, points)
                try:
                    ml = await capped(theirs, max(1, repeats // 2), budget)
                    ml_ms, ml_detail = _ms(ml), _detail(ml)
                except CapExceeded:
                    ml_ms = MLFLOW_CAP * 1000
                    note = f"MLflow > {MLFLOW_CAP:.0f} s cap"
            what = "whole" if points is None else f"{points} points each"
            mlflow_how = (
                f"{runs * keys} get-history calls"
                if points is None
                else f"{keys} get-history-bulk-interval calls of {runs} runs"
            )
            results.append(
                Result(
                    "read_bulk_whole" if points is None else f"read_bulk_{points}_points",
                    SECTION,
                    f"history of {runs} runs x {keys} keys x {n:,} points, {what}: runstream's "
                    f"bulk route (msgpack, {size / 1e6:.1f} MB); MLflow column: {mlflow_how}",
                    _ms(ours),
                    "ms",
                    better="lower",
                    mlflow_value=ml_ms,
                    detail={
                        "runstream": _detail(ours),
                        "mlflow": ml_detail,
                        "bytes": size,
                        "load_s": load_s,
                    },
                    note=note,
                )
            )
    return results


# -- live ----------------------------------------------------------------------------------


def read_live(ctx: Context) -> list[Result]:
    """SSE latency, ingest's 200 to each of 100 clients' event (runstream only)."""
    return asyncio.run(_read_live(ctx.runstream(), 100, ctx.size(20, 50)))


async def _read_live(server: Server, clients: int, writes: int) -> list[Result]:
    async with _session() as http:
        latencies = await live_latencies(http, server.url, clients, writes, 0.05)
    if len(latencies) < clients * writes:
        return [missing("read_live_p99", SECTION, "live latency", "ms",
                        f"{len(latencies)} of {clients * writes} deliveries")]  # fmt: skip
    detail = _detail(latencies)
    metric = f"ms from ingest's answer to the SSE event, {clients} clients x {writes} writes"
    return [
        Result("read_live_p50", SECTION, metric + ", p50", percentile(latencies, 50) * 1000,
               "ms", better="lower", detail=detail),
        Result("read_live_p99", SECTION, metric + ", p99", percentile(latencies, 99) * 1000,
               "ms", better="lower", target=Target("<=", 200), detail=detail),
    ]  # fmt: skip


async def live_latencies(
    http: aiohttp.ClientSession, url: str, clients: int = 100, writes: int = 50, gap: float = 0.05
) -> list[float]:
    """Seconds from ingest's 200 to each SSE client's event, for every (write, client)."""
    run_id = uuid.uuid4().hex
    created = {"type": "run_created", "run_id": run_id, "experiment_id": "0", "user_id": "b",
               "run_name": "live", "start_time": 1, "artifact_uri": "", "tags": []}  # fmt: skip
    await _post(http, url, [created], wait=True)
    accepted: dict[int, float] = {}
    latencies: list[float] = []
    ready = 0
    all_ready = asyncio.Event()

    async def client() -> None:
        nonlocal ready
        async with http.get(
            f"{url}{V1}/live",
            params={"runs": run_id, "keys": "loss"},
            timeout=aiohttp.ClientTimeout(total=None),
        ) as resp:
            seen = 0
            data = b""
            async for raw in resp.content:
                line = raw.rstrip(b"\n")
                if line.startswith(b"event: ready"):
                    ready += 1
                    if ready == clients:
                        all_ready.set()
                elif line.startswith(b"data: ") and b'"steps"' in line:
                    data = line[6:]
                    now = time.perf_counter()
                    for step in orjson.loads(data)["steps"]:
                        latencies.append(now - accepted[step])
                        seen += 1
                    if seen >= writes:
                        return

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.wait_for(all_ready.wait(), 60)
    for step in range(writes):
        values = np.array([step], "<i8")
        event = {"type": "metrics_logged", "run_id": run_id, "series": [{
            "key": "loss", "steps": values.tobytes(), "timestamps": values.tobytes(),
            "values": values.astype("<f8").tobytes()}]}  # fmt: skip
        await _post(
            http,
            url,
            [event],
            wait=False,
            on_accept=functools.partial(_stamp, accepted, step),
        )
        await asyncio.sleep(gap)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return latencies


def _stamp(accepted: dict[int, float], step: int) -> None:
    accepted[step] = time.perf_counter()


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    events: list[dict[str, Any]],
    wait: bool,
    on_accept: Callable[[], None] | None = None,
) -> None:
    async with http.post(
        f"{url}{V1}/events",
        data=msgpack.packb({"events": events}, use_bin_type=True),
        params={"wait": "1"} if wait else {},
        headers={"Content-Type": "application/msgpack"},
    ) as resp:
        if on_accept is not None:
            on_accept()
        if resp.status != 200:
            raise RuntimeError(f"events: {resp.status} {await resp.text()}")


# -- opt-in: runstream's search function over six queries ---------------------------------------

SEARCH_QUERIES: list[tuple[str, str, list[str]]] = [
    ("metric_param_filter_metric_order",
     "metrics.m0 > 0.5 and params.p0 = '3'", ["metrics.m1 DESC"]),
    ("metric_filter_metric_order", "metrics.m0 > 0.9", ["metrics.m1 DESC"]),
    ("metric_order", "", ["metrics.m2 ASC"]),
    ("param_tag_filter", "params.p1 = '7' and tags.team = 't2'", []),
    ("default_order", "", []),
    ("status_like_filter_param_order",
     "attributes.status = 'FINISHED' and params.p3 LIKE '1%'", ["params.p4 DESC"]),
]  # fmt: skip


def search_queries(ctx: Context) -> list[Result]:
    """runstream's ``search_runs()`` (SQL only, warm connection) for six query shapes over
    ``loaders.generate``'s population (5 % deleted), in a server's fresh database."""
    sizes = {1: ctx.size(10_000, 100_000), 2: 1_000}
    with ctx.fresh_runstream() as server:
        return asyncio.run(_search_queries(ctx, server.database_url, sizes))


async def _search_queries(ctx: Context, database_url: str, sizes: dict[int, int]) -> list[Result]:
    from runstream.api.mlflow.search import SEARCH_SESSION, search_runs

    repeats, budget = _budget(ctx)
    # The session of the server's search pool (api/mlflow/search_store.py).
    conn = await asyncpg.connect(database_url, server_settings=SEARCH_SESSION)
    results = []
    try:
        await loaders.load_runstream(conn, loaders.generate(sizes, seed=42))
        await conn.execute("VACUUM ANALYZE")
        for experiment_id, count in sizes.items():
            for label, filter_string, order_by in SEARCH_QUERIES:

                async def call(
                    e: int = experiment_id, f: str = filter_string, o: list[str] = order_by
                ) -> None:
                    await search_runs(conn, experiment_ids=[str(e)], filter_string=f,
                                      order_by=o, max_results=100)  # fmt: skip

                took = await sample(call, repeats * 2, budget)
                results.append(
                    Result(
                        f"search_{label}_{count // 1000}k",
                        "runstream's search function (opt-in diagnostic)",
                        f"search_runs() over {count:,} runs: filter {filter_string!r}, "
                        f"order {order_by}, top 100",
                        _ms(took),
                        "ms",
                        better="lower",
                        detail=_detail(took),
                    )
                )
    finally:
        await conn.close()
    return results


WORKLOADS: dict[str, Callable[[Context], list[Result]]] = {
    "read_history": read_history,
    "read_downsample": read_downsample,
    "read_bulk": read_bulk,
    "read_live": read_live,
}

OPT_IN: dict[str, Callable[[Context], list[Result]]] = {"search_queries": search_queries}
