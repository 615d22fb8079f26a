"""Every route of runstream's own read API, in one table (``ROUTES``), and ``add_routes``.

To add an endpoint, append a row; ``api.app.setup`` calls ``add_routes`` once. GET routes
answer HEAD too (aiohttp's ``add_get``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from runstream.api import health, reads
from runstream.api.native import bulk, live, live_hub
from runstream.web import Handler

API_PREFIX = "/api/runstream/v1"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler


ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", health.health),
    Route("GET", f"{API_PREFIX}/experiments", reads.list_experiments),
    Route("GET", f"{API_PREFIX}/experiments/{{experiment_id}}", reads.get_experiment),
    Route("GET", f"{API_PREFIX}/experiments/{{experiment_id}}/runs", reads.list_runs),
    Route("GET", f"{API_PREFIX}/runs/{{run_id}}", reads.get_run),
    Route("GET", f"{API_PREFIX}/runs/{{run_id}}/history", bulk.get_history),
    Route("POST", f"{API_PREFIX}/history/bulk", bulk.post_bulk_history),
    Route("GET", f"{API_PREFIX}/live", live.get_live),  # its hub: live_hub.use_live
)


def add_routes(app: web.Application) -> None:
    """The native routes, and the live-stream hub ``/live`` serves from."""
    live_hub.use_live(app)
    for route in ROUTES:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
