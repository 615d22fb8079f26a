"""MLflow's run routes: create, get, update, delete, restore, search, set-tag, delete-tag.

Semantics are MLflow's SQL store's: a run without a name gets a generated one and the
``mlflow.runName`` tag; renaming (``update`` with ``run_name``, or setting that tag) changes
both the name and the tag; a run's artifact URI is ``<experiment location>/<run id>/artifacts``
(the ``Ingestor`` fills it in from the experiment it checks).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Sequence

import asyncpg
from aiohttp import web

from runstream.api import queries, views
from runstream.api.mlflow import messages as rq
from runstream.api.mlflow import search
from runstream.api.mlflow.handler_io import catch_up, read_caught_up, request_fields, write
from runstream.api.mlflow.names import random_run_name
from runstream.api.mlflow.search_store import SEARCH_STORE, SearchStore
from runstream.api.reads import require_active_run, run_not_found
from runstream.resources import PG_POOL
from runstream.schemas import constants as c
from runstream.schemas import runs as rn
from runstream.schemas.codec import Event
from runstream.schemas.errors import ResourceDoesNotExist
from runstream.web import Visibility, json_response, visibility_of


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def load_run(request: web.Request, run_id: str) -> views.JsonDict:
    row = await queries.run(request.app[PG_POOL], run_id)
    if row is None:
        raise run_not_found(run_id)
    return views.run_row_to_json(row)


def tag_events(run_id: str, tags: Sequence[tuple[str, str]]) -> list[Event]:
    """Tags as events; a non-empty ``mlflow.runName`` also renames the run (MLflow's set_tag)."""
    events: list[Event] = []
    if tags:
        events.append(rn.RunTagsSet(run_id, tuple(tags)))
    names = [value for key, value in tags if key == c.RUN_NAME_TAG and value]
    if names:
        events.append(rn.RunUpdated(run_id, run_name=names[-1]))
    return events


async def create_run(request: web.Request) -> web.Response:
    req = rq.parse_create_run(await request_fields(request))
    run_name, tags = rq.resolve_run_name(req.run_name, req.tags, random_run_name)
    run_id = uuid.uuid4().hex
    event = rn.RunCreated(
        run_id=run_id,
        experiment_id=str(req.experiment_id),
        user_id=req.user_id,
        run_name=run_name,
        start_time=req.start_time,
        artifact_uri="",
        tags=tags,
    )
    await write(request, [event], wait=True)
    return json_response({"run": await load_run(request, run_id)})


async def get_run(request: web.Request) -> web.Response:
    run_id = rq.parse_run_ref(await request_fields(request))
    row = await read_caught_up(request, [run_id], lambda: queries.run(request.app[PG_POOL], run_id))
    if row is None:
        raise run_not_found(run_id)
    return json_response({"run": views.run_row_to_json(row)})


async def update_run(request: web.Request) -> web.Response:
    req = rq.parse_update_run(await request_fields(request))
    events: list[Event] = [rn.RunUpdated(req.run_id, req.status, req.end_time, req.run_name)]
    if req.run_name:
        events.append(rn.RunTagsSet(req.run_id, ((c.RUN_NAME_TAG, req.run_name),)))
    await write(request, events, wait=True)
    run = await load_run(request, req.run_id)
    return json_response({"run_info": run["info"]})


async def delete_run(request: web.Request) -> web.Response:
    run_id = rq.parse_run_ref(await request_fields(request), alias=False)
    await write(request, [rn.RunDeleted(run_id, now_ms())])
    return json_response({})


async def restore_run(request: web.Request) -> web.Response:
    run_id = rq.parse_run_ref(await request_fields(request), alias=False)
    await write(request, [rn.RunRestored(run_id, now_ms())])
    return json_response({})


async def set_tag(request: web.Request) -> web.Response:
    req = rq.parse_set_tag(await request_fields(request))
    if req.key == c.RUN_NAME_TAG and not req.value:
        # MLflow's store renames through update_run_info, which ignores an empty name.
        events: list[Event] = [rn.RunUpdated(req.run_id)]
    else:
        events = tag_events(req.run_id, [(req.key, req.value)])
    await write(request, events)
    return json_response({})


async def delete_tag(request: web.Request) -> web.Response:
    req = rq.parse_delete_tag(await request_fields(request))
    await catch_up(request, [req.run_id])
    row = require_active_run(req.run_id, await queries.run(request.app[PG_POOL], req.run_id))
    if not any(key == req.key for key, _ in row["tags"]):
        raise ResourceDoesNotExist(f"No tag with name: {req.key} in run with id {req.run_id}")
    await write(request, [rn.RunTagDeleted(req.run_id, req.key)])
    return json_response({})


async def search_run_rows(
    store: SearchStore, req: rq.SearchRuns, visible: Visibility | None = None
) -> tuple[list[asyncpg.Record], str | None]:
    """The matching runs' rows in order and the next page token; only in the experiments
    ``visible`` allows (auth: what the caller may read)."""
    if visible is not None:
        allowed = tuple(e for e in req.experiment_ids if visible.allows(e.strip()))
        req = dataclasses.replace(req, experiment_ids=allowed)
    async with store.connection() as conn:
        return await search.search_run_rows(conn, req, sizes=store.sizes, modes=store.modes)


async def search_runs(request: web.Request) -> web.Response:
    req = rq.parse_search_runs(
        await request_fields(request, repeated=("experiment_ids", "order_by"))
    )
    # Every search catches up on every shard (docs/design-decisions.md, read-your-writes).
    visible = visibility_of(request)
    rows, token = await read_caught_up(
        request, (), lambda: search_run_rows(request.app[SEARCH_STORE], req, visible)
    )
    out: views.JsonDict = {}
    if rows:
        out["runs"] = [views.run_row_to_json(row) for row in rows]
    if token:
        out["next_page_token"] = token
    return json_response(out)
