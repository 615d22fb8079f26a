"""A server that does no work: MLflow's tracking routes answered at once with canned bodies.

The floor of the per-call benchmark (issue 12): the same ``mlflow`` client calls against it
cost what the client, its HTTP stack and the loopback cost, and nothing of a server. Run as
its own process (``python -m bench.null_server --port N``) so it never shares the client's
GIL; ``bench.harness.start_null_server`` starts and stops it.

Writes answer ``{}`` (what MLflow's server answers to ``log-metric``/``log-batch``), reads
answer a valid run whose id is the one asked for, with the data last put at
``/bench/run-data`` (none until then); nothing is stored or validated. The reads
the benchmarks time answer canned bodies shaped and sized like runstream's answers, so the
same client work happens on them:

- ``runs/search``: a page of runs of ``bench.loaders.generate``'s population (10 params, up
  to 10 latest metrics, 2 tags each), rendered by runstream's own ``run_to_json``, with a
  next page token as runstream sends when more runs match. How many: the first experiment
  id asked for, when it is a number up to ``MAX_SEARCH_PAGE`` (the benchmark asks for as many
  as runstream returned to the same search), else ``SEARCH_PAGE_RUNS``;
- ``metrics/get-history``: a ``HISTORY_POINTS``-point series, paged by ``max_results`` and
  ``page_token`` as runstream pages it (``history.page``, ``pagination``), rendered by
  runstream's ``metrics_json_array``.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from bench import loaders
from runstream.api.mlflow import pagination
from runstream.api.mlflow.history import Points, metrics_json_array, page
from runstream.api.views import run_to_json

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
EXPERIMENT_ID = "1"
SEARCH_PAGE_RUNS = 100
MAX_SEARCH_PAGE = 1000
HISTORY_POINTS = 20_000


def run_info(run_id: str) -> dict[str, Any]:
    """The ``RunInfo`` fields the mlflow client reads (``Run.from_proto``)."""
    return {
        "run_id": run_id,
        "run_uuid": run_id,
        "run_name": "null",
        "experiment_id": EXPERIMENT_ID,
        "user_id": "bench",
        "status": "RUNNING",
        "start_time": 1,
        "artifact_uri": f"mlflow-artifacts:/{EXPERIMENT_ID}/{run_id}/artifacts",
        "lifecycle_stage": "active",
    }


def run_body(run_id: str, data: dict[str, Any] | None = None) -> bytes:
    data = data or {"metrics": [], "params": [], "tags": []}
    return orjson.dumps({"run": {"info": run_info(run_id), "data": data, "inputs": {}}})


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


EMPTY = b"{}"
NULL_RUN_ID = "0" * 32


RUN_DATA = web.AppKey("run_data", dict)


async def get_run(request: web.Request) -> web.Response:
    run_id = request.query.get("run_id") or NULL_RUN_ID
    return _json(run_body(run_id, request.app[RUN_DATA].get("data")))


async def put_run_data(request: web.Request) -> web.Response:
    """``PUT /bench/run-data``: the ``data`` (metrics, params, tags) ``runs/get`` answers from
    now on. The per-call benchmark copies runstream's answer for its run here, so that the
    client parses the same run from both servers (like with like)."""
    request.app[RUN_DATA]["data"] = orjson.loads(await request.read())
    return _json(EMPTY)


async def create_run(request: web.Request) -> web.Response:
    await request.read()
    return _json(run_body(NULL_RUN_ID))


async def update_run(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read() or b"{}")
    run_id = str(body.get("run_id") or NULL_RUN_ID)
    return _json(orjson.dumps({"run_info": run_info(run_id)}))


async def create_experiment(request: web.Request) -> web.Response:
    await request.read()
    return _json(orjson.dumps({"experiment_id": EXPERIMENT_ID}))


async def empty(request: web.Request) -> web.Response:
    """Every other route: ``{}`` at once (log-metric, log-batch, set-tag, ...)."""
    await request.read()
    return _json(EMPTY)


@functools.cache
def search_page(runs: int = SEARCH_PAGE_RUNS) -> bytes:
    """A ``runs/search`` answer of ``runs`` runs, as runstream renders them."""
    data = loaders.generate({int(EXPERIMENT_ID): runs}, seed=42)
    params: dict[str, list[tuple[str, str]]] = {}
    metrics: dict[str, list[tuple[str, float, int, int]]] = {}
    tags: dict[str, list[tuple[str, str]]] = {}
    for rid, _, key, value in data.params:
        params.setdefault(rid, []).append((key, value))
    for rid, _, key, _count, step, ts, number in data.metrics:
        metrics.setdefault(rid, []).append((key, number, ts, step))
    for rid, _, key, value in data.tags:
        if key != "mlflow.user":  # the runName and one user tag: two per run
            tags.setdefault(rid, []).append((key, value))
    rendered = []
    for rid, experiment, name, user, status, start, end, stage, uri in data.runs:
        row = {"run_id": rid, "experiment_id": experiment, "name": name, "user_id": user,
               "status": status, "start_time": start, "end_time": end, "artifact_uri": uri,
               "lifecycle_stage": stage}  # fmt: skip
        rendered.append(
            run_to_json(row, params.get(rid, []), tags.get(rid, []), metrics.get(rid, []))
        )
    answer: dict[str, Any] = {"runs": rendered}
    if runs >= SEARCH_PAGE_RUNS:  # a full page of the benchmark's max_results: more match
        answer["next_page_token"] = pagination.encode(runs)
    return orjson.dumps(answer)


def history_points(points: int = HISTORY_POINTS) -> Points:
    """A training curve of ``points`` points, one per step, 10 ms apart."""
    steps = np.arange(points, dtype=np.int64)
    return Points(steps, 1_700_000_000_000 + steps * 10, loaders.training_curve(points, seed=7))


def search_size(body: bytes) -> int:
    """The page size a search asks of the null server (module doc)."""
    ids = orjson.loads(body or b"{}").get("experiment_ids") or [""]
    asked = str(ids[0])
    if asked.isdigit() and 0 <= int(asked) <= MAX_SEARCH_PAGE:
        return int(asked)
    return SEARCH_PAGE_RUNS


HISTORY = web.AppKey("history", Points)


async def search_runs(request: web.Request) -> web.Response:
    return _json(search_page(search_size(await request.read())))


async def get_history(request: web.Request) -> web.Response:
    """The canned series, one page of it as runstream pages (``max_results``, token)."""
    query = request.query
    limit = int(query["max_results"]) if "max_results" in query else None
    offset = pagination.decode(query.get("page_token")).offset
    chosen, next_offset = page(request.app[HISTORY], offset, limit)
    fields = [b'"metrics":' + metrics_json_array(query.get("metric_key", "m"), chosen)]
    if next_offset is not None:
        fields.append(b'"next_page_token":' + orjson.dumps(pagination.encode(next_offset)))
    return _json(b"{" + b",".join(fields) + b"}")


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


def create_app() -> web.Application:
    app = web.Application()
    search_page()  # built before the first request, as the other canned bodies
    app[HISTORY] = history_points()
    app[RUN_DATA] = {}
    app.router.add_get("/health", health)
    app.router.add_put("/bench/run-data", put_run_data)
    for prefix in PREFIXES:
        app.router.add_post(prefix + "/runs/search", search_runs)
        app.router.add_get(prefix + "/metrics/get-history", get_history)
        app.router.add_get(prefix + "/runs/get", get_run)
        app.router.add_post(prefix + "/runs/create", create_run)
        app.router.add_post(prefix + "/runs/update", update_run)
        app.router.add_post(prefix + "/experiments/create", create_experiment)
        app.router.add_route("*", prefix + "/{tail:.*}", empty)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(create_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
