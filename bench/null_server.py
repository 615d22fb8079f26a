"""A server that does no work: MLflow's tracking routes answered at once with canned bodies.

The floor of the per-call benchmark (issue 12): the same ``mlflow`` client calls against it
cost what the client, its HTTP stack and the loopback cost, and nothing of a server. Run as
its own process (``python -m bench.null_server --port N``) so it never shares the client's
GIL; ``bench.harness.start_null_server`` starts and stops it.

Writes answer ``{}`` (what MLflow's server answers to ``log-metric``/``log-batch``), reads
answer a valid run whose id is the one asked for; nothing is stored or validated.
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson
from aiohttp import web

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
EXPERIMENT_ID = "1"


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


def run_body(run_id: str) -> bytes:
    data: dict[str, list[Any]] = {"metrics": [], "params": [], "tags": []}
    return orjson.dumps({"run": {"info": run_info(run_id), "data": data, "inputs": {}}})


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


EMPTY = b"{}"
NULL_RUN_ID = "0" * 32


async def get_run(request: web.Request) -> web.Response:
    return _json(run_body(request.query.get("run_id") or NULL_RUN_ID))


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


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/health", health)
    for prefix in PREFIXES:
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
