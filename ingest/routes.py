"""The native ingest routes (docs/architecture.md, "Native HTTP surface")."""

from __future__ import annotations

from aiohttp import web

from runstream.ingest import handlers

PREFIX = "/api/runstream/v1"


def add_routes(app: web.Application) -> None:
    app.router.add_post(f"{PREFIX}/events", handlers.post_events)
    app.router.add_post(f"{PREFIX}/experiments/get-or-create", handlers.get_or_create_experiment)
