"""Every route of the api room, one function per feature.

A feature module adds its own ``add_<feature>_routes(app)`` here and appends it to
``ROUTE_GROUPS``; ``app.setup`` calls each group once.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from runstream.api import health, reads
from runstream.api.native import bulk, live, live_hub

API_PREFIX = "/api/runstream/v1"


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/health", health.health)


def add_read_routes(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/experiments", reads.list_experiments)
    app.router.add_get(f"{API_PREFIX}/experiments/{{experiment_id}}", reads.get_experiment)
    app.router.add_get(f"{API_PREFIX}/experiments/{{experiment_id}}/runs", reads.list_runs)
    app.router.add_get(f"{API_PREFIX}/runs/{{run_id}}", reads.get_run)


def add_history_routes(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/runs/{{run_id}}/history", bulk.get_history)


def add_bulk_history_routes(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/history/bulk", bulk.post_bulk_history)


def add_live_routes(app: web.Application) -> None:
    live_hub.use_live(app)
    app.router.add_get(f"{API_PREFIX}/live", live.get_live)


ROUTE_GROUPS: list[Callable[[web.Application], None]] = [
    add_health_routes,
    add_read_routes,
    add_history_routes,
    add_bulk_history_routes,
    add_live_routes,
]


def add_routes(app: web.Application) -> None:
    for add_group in ROUTE_GROUPS:
        add_group(app)
