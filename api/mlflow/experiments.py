"""MLflow's experiment routes: create, get, get-by-name, search, update, delete, restore, tags.

Writes become experiment events through the ``Ingestor`` (which refuses a taken name, an
unknown or inactive experiment atomically with the append); reads come from the read tables.
"""

from __future__ import annotations

import time

from aiohttp import web

from runstream.api import queries, views
from runstream.api.mlflow import messages as rq
from runstream.api.mlflow import search
from runstream.api.mlflow.handler_io import request_fields, write
from runstream.ingest.app_keys import INGESTOR
from runstream.resources import PG_POOL
from runstream.schemas import experiments as ex
from runstream.schemas.errors import InvalidParameterValue, ResourceDoesNotExist
from runstream.schemas.validation import experiment_not_found
from runstream.web import json_response, visibility_of


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def create_experiment(request: web.Request) -> web.Response:
    req = rq.parse_create_experiment(await request_fields(request))
    experiment_id = await request.app[INGESTOR].create_experiment(
        req.name, req.artifact_location, req.tags
    )
    return json_response({"experiment_id": experiment_id})


async def get_experiment(request: web.Request) -> web.Response:
    experiment_id = rq.parse_experiment_ref(await request_fields(request))
    row = await queries.experiment_by_id(request.app[PG_POOL], experiment_id)
    if row is None:
        raise experiment_not_found(experiment_id)
    return json_response({"experiment": views.experiment_row_to_json(row)})


async def get_experiment_by_name(request: web.Request) -> web.Response:
    name = rq.parse_experiment_name(await request_fields(request))
    row = await queries.experiment_by_name(request.app[PG_POOL], name)
    if row is None:
        raise ResourceDoesNotExist(f"Could not find experiment with name '{name}'")
    return json_response({"experiment": views.experiment_row_to_json(row)})


async def search_experiments(request: web.Request) -> web.Response:
    req = rq.parse_search_experiments(await request_fields(request, repeated=("order_by",)))
    pool = request.app[PG_POOL]
    async with pool.acquire() as conn:
        rows, token = await search.search_experiments(
            conn,
            view_type=req.view_type,
            max_results=req.max_results,
            filter_string=req.filter_string,
            order_by=req.order_by,
            page_token=req.page_token,
            visible=visibility_of(request),
        )
        ids = [row["experiment_id"] for row in rows]
        full = {row["experiment_id"]: row for row in await queries.experiments_by_ids(conn, ids)}
    out: views.JsonDict = {}
    if ids:  # protobuf's JSON leaves out an empty repeated field, as MLflow's answer does
        out["experiments"] = [views.experiment_row_to_json(full[i]) for i in ids if i in full]
    if token:
        out["next_page_token"] = token
    return json_response(out)


async def update_experiment(request: web.Request) -> web.Response:
    req = rq.parse_update_experiment(await request_fields(request))
    await write(request, [ex.ExperimentRenamed(str(req.experiment_id), req.new_name, now_ms())])
    return json_response({})


async def delete_experiment(request: web.Request) -> web.Response:
    experiment_id = rq.parse_experiment_ref(await request_fields(request))
    await write(request, [ex.ExperimentDeleted(str(experiment_id), now_ms())])
    return json_response({})


async def restore_experiment(request: web.Request) -> web.Response:
    experiment_id = rq.parse_experiment_ref(await request_fields(request))
    await write(request, [ex.ExperimentRestored(str(experiment_id), now_ms())])
    return json_response({})


async def set_experiment_tag(request: web.Request) -> web.Response:
    req = rq.parse_set_experiment_tag(await request_fields(request))
    await write(request, [ex.ExperimentTagSet(str(req.experiment_id), req.key, req.value)])
    return json_response({})


async def delete_experiment_tag(request: web.Request) -> web.Response:
    req = rq.parse_delete_experiment_tag(await request_fields(request))
    # The tag's existence is checked on the read tables: the writer's earlier writes are in
    # them (read-your-writes); the Ingestor still checks the experiment atomically.
    row = await queries.experiment_by_id(request.app[PG_POOL], req.experiment_id)
    if row is None:
        raise experiment_not_found(req.experiment_id)
    if row["lifecycle_stage"] != "active":
        raise InvalidParameterValue(
            f"The experiment {req.experiment_id} must be in the 'active' state. "
            f"Current state is {row['lifecycle_stage']}."
        )
    if not any(key == req.key for key, _ in row["tags"]):
        raise ResourceDoesNotExist(
            f"No tag with name: {req.key} in experiment with id {req.experiment_id}"
        )
    await write(request, [ex.ExperimentTagDeleted(str(req.experiment_id), req.key)])
    return json_response({})
