"""MLflow's registered-model routes: create, get, rename, update, delete, search,
get-latest-versions, tags and aliases.

Writes are registry events through the ``Ingestor`` (its registry script refuses a name that
exists or a model that does not, atomically with the append). Routes that answer with the
model wait until the projector applied their write, then read it back; the others answer
once the event is in the stream. Reads catch up first (``routes.Route.catches_up``).
"""

from __future__ import annotations

import time

from aiohttp import web

from runstream.api.mlflow import pagination
from runstream.api.mlflow import registry_queries as q
from runstream.api.mlflow import registry_requests as rq
from runstream.api.mlflow.handler_io import request_fields, wait_for
from runstream.api.mlflow.registry_views import model_version_to_json, registered_model_to_json
from runstream.api.views import JsonDict
from runstream.ingest import registry_rules as rr
from runstream.ingest.app_keys import INGESTOR
from runstream.ingest.registry_commands import model_not_found
from runstream.resources import PG_POOL
from runstream.schemas import registry as rg
from runstream.schemas.errors import InvalidParameterValue, ResourceDoesNotExist
from runstream.schemas.sharding import WriteToken
from runstream.web import json_response


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def append(
    request: web.Request, events: list[rg.RegistryEvent], *, wait: bool = False
) -> tuple[WriteToken, list[rg.RegistryEvent]]:
    """Append registry events; ``wait`` until the projector applied them (read-your-writes)."""
    token, appended = await request.app[INGESTOR].append_registry(events)
    if wait:
        await wait_for(request, token)
    return token, appended


async def model_json(request: web.Request, name: str) -> JsonDict:
    pool = request.app[PG_POOL]
    row = await q.model(pool, name)
    if row is None:
        raise model_not_found(name)
    latest = await q.latest_versions(pool, [name])
    return registered_model_to_json(row, latest[name])


async def create_registered_model(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    event = rg.RegisteredModelCreated(
        name=name, time=now_ms(), description=rq.description(fields), tags=rq.tags(fields)
    )
    await append(request, [event], wait=True)
    return json_response({"registered_model": await model_json(request, name)})


async def get_registered_model(request: web.Request) -> web.Response:
    name = rq.model_name(await request_fields(request))
    return json_response({"registered_model": await model_json(request, name)})


async def rename_registered_model(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    new_name = rq.model_name(fields, "new_name")
    await append(request, [rg.RegisteredModelRenamed(name, new_name, now_ms())], wait=True)
    return json_response({"registered_model": await model_json(request, new_name)})


async def update_registered_model(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    event = rg.RegisteredModelUpdated(name, rq.description(fields), now_ms())
    await append(request, [event], wait=True)
    return json_response({"registered_model": await model_json(request, name)})


async def delete_registered_model(request: web.Request) -> web.Response:
    name = rq.model_name(await request_fields(request))
    await append(request, [rg.RegisteredModelDeleted(name, now_ms())])
    return json_response({})


async def search_registered_models(request: web.Request) -> web.Response:
    fields = await request_fields(request, repeated=("order_by",))
    search = rq.parse_search(
        fields, default=rq.DEFAULT_MODELS_PER_PAGE, limit=rq.MAX_MODELS_PER_PAGE
    )
    pool = request.app[PG_POOL]
    rows = await q.search_models(pool, search)
    page = rows[: search.max_results]
    latest = await q.latest_versions(pool, [r["name"] for r in page])
    out: JsonDict = {}
    if page:
        out["registered_models"] = [registered_model_to_json(r, latest[r["name"]]) for r in page]
    if len(rows) > search.max_results:
        out["next_page_token"] = pagination.encode(search.offset + search.max_results)
    return json_response(out)


async def get_latest_versions(request: web.Request) -> web.Response:
    fields = await request_fields(request, repeated=("stages",))
    name = rq.model_name(fields)
    wanted = set(rq.stages(fields)) or set(rg.STAGES)
    pool = request.app[PG_POOL]
    if not await q.model_exists(pool, name):
        raise model_not_found(name)
    latest = (await q.latest_versions(pool, [name]))[name]
    versions = [model_version_to_json(v) for v in latest if v["current_stage"] in wanted]
    return json_response({"model_versions": versions} if versions else {})


async def set_registered_model_tag(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    key, value = rq.tag(fields)
    await append(request, [rg.RegisteredModelTagSet(name, key, value)])
    return json_response({})


async def delete_registered_model_tag(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    key = rq.tag_key(fields)
    # MLflow answers OK for a tag that is not there; the script still checks the model.
    await append(request, [rg.RegisteredModelTagDeleted(name, key)])
    return json_response({})


async def set_registered_model_alias(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    alias = rq.alias(fields, reserved=True)
    version = rq.version_number(fields)
    await append(request, [rg.RegisteredModelAliasSet(name, alias, version)])
    return json_response({})


async def delete_registered_model_alias(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    alias = rq.alias(fields, reserved=False)
    await append(request, [rg.RegisteredModelAliasDeleted(name, alias)])
    return json_response({})


async def get_model_version_by_alias(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    alias = rq.alias(fields, reserved=False)
    pool = request.app[PG_POOL]
    if alias.lower() == rr.LATEST_ALIAS:
        latest = (await q.latest_versions(pool, [name])).get(name) or []
        if not latest:
            if not await q.model_exists(pool, name):
                raise model_not_found(name)
            raise ResourceDoesNotExist(f"Latest version not found for model {name}.")
        newest = max(latest, key=lambda v: int(v["version"]))
        row = await q.version(pool, name, newest["version"])
    else:
        row = await q.version_by_alias(pool, name, alias)
        if row is None:
            if not await q.model_exists(pool, name):
                raise model_not_found(name)
            raise InvalidParameterValue(f"Registered model alias {alias} not found.")
    assert row is not None
    return json_response({"model_version": model_version_to_json(row)})
