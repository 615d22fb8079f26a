"""MLflow 3's logged-model routes: create, get, finalize, delete, search, tags, params, artifacts.

Writes are logged-model events through the ``Ingestor`` (which assigns nothing here: the route
makes the model id, ingest checks the experiment and that a changed model exists) and answer
once the projector has applied them, so the next read sees them. Reads come from the read
tables (``logged_model_queries``) shaped by ``logged_model_views``.
"""

from __future__ import annotations

import dataclasses
import time

from aiohttp import web

from runstream.api.artifacts.store import clean_path
from runstream.api.mlflow import logged_model_queries as lmq
from runstream.api.mlflow import logged_model_requests as mr
from runstream.api.mlflow import logged_model_search as lms
from runstream.api.mlflow import pagination
from runstream.api.mlflow.artifacts import listing
from runstream.api.mlflow.handler_io import request_fields, write
from runstream.api.mlflow.logged_model_views import logged_model_to_json
from runstream.api.mlflow.names import random_run_name
from runstream.api.views import JsonDict
from runstream.ingest.logged_models import model_not_found, new_model_id
from runstream.resources import PG_POOL
from runstream.schemas import models as mo
from runstream.schemas.errors import ResourceDoesNotExist
from runstream.web import json_response, visibility_of


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def load_model(request: web.Request, model_id: str, *, allow_deleted: bool) -> JsonDict:
    row = await lmq.model(request.app[PG_POOL], model_id)
    if row is None or (row["lifecycle_stage"] == "deleted" and not allow_deleted):
        raise model_not_found(model_id)
    return logged_model_to_json(row)


async def create_logged_model(request: web.Request) -> web.Response:
    """``POST /logged-models`` → ``{"model": ...}`` (status PENDING)."""
    req = mr.parse_create_logged_model(await request_fields(request))
    model_id = new_model_id()
    event = mo.LoggedModelCreated(
        model_id=model_id,
        experiment_id=req.experiment_id,
        name=req.name or random_run_name(),
        creation_time=now_ms(),
        source_run_id=req.source_run_id,
        model_type=req.model_type,
        tags=req.tags,
        params=req.params,
    )
    await write(request, [event], wait=True)
    return json_response({"model": await load_model(request, model_id, allow_deleted=True)})


async def get_logged_model(request: web.Request) -> web.Response:
    """``GET /logged-models/{model_id}[?allow_deleted=true]``."""
    allow_deleted = request.query.get("allow_deleted", "false").lower() == "true"
    model_id = request.match_info["model_id"]
    return json_response(
        {"model": await load_model(request, model_id, allow_deleted=allow_deleted)}
    )


async def finalize_logged_model(request: web.Request) -> web.Response:
    """``PATCH /logged-models/{model_id}`` with ``status`` → ``{"model": ...}``."""
    fields = await request_fields(request)
    model_id = request.match_info["model_id"]
    status = mr.parse_status(fields)
    await write(request, [mo.LoggedModelFinalized(model_id, status, now_ms())], wait=True)
    return json_response({"model": await load_model(request, model_id, allow_deleted=True)})


async def delete_logged_model(request: web.Request) -> web.Response:
    """``DELETE /logged-models/{model_id}``: MLflow's soft delete."""
    await write(request, [mo.LoggedModelDeleted(request.match_info["model_id"], now_ms())])
    return json_response({})


async def set_logged_model_tags(request: web.Request) -> web.Response:
    """``PATCH /logged-models/{model_id}/tags`` with ``tags``."""
    fields = await request_fields(request)
    tags = mr.parse_tags(fields)
    model_id = request.match_info["model_id"]
    await write(request, [mo.LoggedModelTagsSet(model_id, tags)])
    return json_response({})


async def delete_logged_model_tag(request: web.Request) -> web.Response:
    """``DELETE /logged-models/{model_id}/tags/{tag_key}``."""
    model_id = request.match_info["model_id"]
    key = request.match_info["tag_key"]
    pool = request.app[PG_POOL]
    # Read-your-writes puts the client's own tags in the read tables; ingest still checks
    # that the model exists when the tag is not found here.
    if await lmq.model(pool, model_id) is None:
        raise model_not_found(model_id)
    if not await lmq.model_tag_exists(pool, model_id, key):
        raise ResourceDoesNotExist(f"No tag with key {key!r} found for model with ID {model_id!r}.")
    await write(request, [mo.LoggedModelTagDeleted(model_id, key)])
    return json_response({})


async def log_logged_model_params(request: web.Request) -> web.Response:
    """``POST /logged-models/{model_id}/params`` with ``params``."""
    fields = await request_fields(request)
    params = mr.parse_params(fields)
    model_id = request.match_info["model_id"]
    if params:
        await write(request, [mo.LoggedModelParamsLogged(model_id, params)])
    elif await lmq.model(request.app[PG_POOL], model_id) is None:
        raise model_not_found(model_id)
    return json_response({})


async def search_logged_models(request: web.Request) -> web.Response:
    """``POST /logged-models/search`` → ``{"models": [...], "next_page_token"?}``."""
    req = mr.parse_search_logged_models(await request_fields(request, repeated=("experiment_ids",)))
    visible = visibility_of(request)
    if visible is not None:  # auth: only the experiments the caller may read
        allowed = tuple(e for e in req.experiment_ids if visible.allows(e.strip()))
        req = dataclasses.replace(req, experiment_ids=allowed)
    bounds = lms.page_token_bounds(req)
    offset = pagination.decode(req.page_token, bounds).offset
    rows, token = pagination.page(
        await lmq.search(request.app[PG_POOL], req, offset), offset, req.max_results, bounds
    )
    out: JsonDict = {}
    if rows:
        out["models"] = [logged_model_to_json(r) for r in rows]
    if token:
        out["next_page_token"] = token
    return json_response(out)


async def list_logged_model_artifacts(request: web.Request) -> web.Response:
    """``GET /logged-models/{model_id}/artifacts/directories[?artifact_directory_path=...]``."""
    model_id = request.match_info["model_id"]
    raw_path = request.query.get("artifact_directory_path")
    relative = clean_path(raw_path) if raw_path else ""
    row = await lmq.model(request.app[PG_POOL], model_id)
    if row is None or row["lifecycle_stage"] == "deleted":
        raise model_not_found(model_id)
    return json_response(await listing(request, row["artifact_location"], relative))
