"""MLflow's model-version routes: create, get, update, delete, search, transition-stage,
get-download-uri, tags, and the version artifact download the UI uses.

A new version is a ``model_version_created`` event whose number the registry script
allocates with the append (``ingest.registry``); its source is checked first as MLflow's
handler does (``registry_sources``). Versions registered from an MLflow 3 logged model also
get the model's ``mlflow.modelVersions`` tag, as MLflow's tracking store sets it.
"""

from __future__ import annotations

import json
import posixpath
import urllib.parse

from aiohttp import web

from runstream.api.artifacts.proxy import ARTIFACT_STORE, send_artifact
from runstream.api.artifacts.store import clean_path
from runstream.api.mlflow import pagination
from runstream.api.mlflow import registry_queries as q
from runstream.api.mlflow import registry_requests as rq
from runstream.api.mlflow import registry_sources as src
from runstream.api.mlflow.artifacts import proxied_root
from runstream.api.mlflow.handler_io import request_fields, write
from runstream.api.mlflow.registered_models import append, now_ms
from runstream.api.mlflow.registry_views import model_version_to_json
from runstream.api.views import JsonDict
from runstream.ingest import registry_rules as rr
from runstream.ingest.registry_commands import model_not_found, version_not_found
from runstream.resources import PG_POOL
from runstream.schemas import models as mo
from runstream.schemas import registry as rg
from runstream.schemas.errors import (
    BadRequest,
    FeatureNotImplemented,
    InvalidParameterValue,
    RunstreamError,
)
from runstream.web import json_response

MODEL_VERSIONS_TAG = "mlflow.modelVersions"
"""The logged-model tag listing the registered versions made from it (MLflow's)."""


async def version_json(request: web.Request, name: str, version: int) -> JsonDict:
    row = await q.version(request.app[PG_POOL], name, version)
    if row is None:
        raise version_not_found(name, version)
    return model_version_to_json(row)


async def _registered_source(request: web.Request, uri: src.ModelsUri) -> JsonDict:
    """The version a ``models:/<name>/<version|stage|latest>`` or ``@alias`` source names."""
    pool = request.app[PG_POOL]
    name = uri.name or ""
    if not await q.model_exists(pool, name):
        raise model_not_found(name)
    row = None
    if uri.version is not None:
        row = await q.version(pool, name, uri.version)
    elif uri.alias is not None:
        row = await q.version_by_alias(pool, name, uri.alias)
    else:
        latest = (await q.latest_versions(pool, [name]))[name]
        if uri.stage is not None:
            stage = rr.canonical_stage(uri.stage)
            latest = [v for v in latest if v["current_stage"] == stage]
        row = max(latest, key=lambda v: int(v["version"])) if latest else None
    if row is None:
        raise InvalidParameterValue(f"Invalid model version source: no model version for {uri}.")
    return dict(row)


async def create_model_version(request: web.Request) -> web.Response:
    req = rq.parse_create_model_version(await request_fields(request))
    pool = request.app[PG_POOL]
    source, run_id, model_id = req.source, req.run_id, req.model_id
    storage_location = source
    if urllib.parse.urlparse(source).scheme == "models":
        if urllib.parse.urlparse(source).netloc:
            raise InvalidParameterValue(
                f"Invalid model version source: '{source}'. Registered model sources must use "
                "the active model registry."
            )
        parsed = src.parse_models_uri(source)
        if parsed.model_id is None:
            origin = await _registered_source(request, parsed)
            if (req.has_run_id and run_id != (origin["run_id"] or "")) or (
                req.has_model_id and model_id != (origin["model_id"] or "")
            ):
                raise InvalidParameterValue(
                    f"Invalid model version source: '{source}'. The run_id and model_id "
                    "request parameters must match the referenced model version."
                )
            source = f"models:/{origin['name']}/{origin['version']}"
            storage_location = origin["storage_location"] or origin["source"]
            run_id = run_id if req.has_run_id else origin["run_id"] or ""
            model_id = model_id if req.has_model_id else origin["model_id"] or ""
    model = await q.logged_model_location(pool, model_id) if model_id else None
    if model_id:
        src.check_model_source(source, model_id, model[0] if model else None)
    else:
        run_uri = await q.run_artifact_uri(pool, run_id) if run_id else None
        src.check_run_source(source, run_id, run_uri)
    if model is not None:
        if src.parse_models_uri_or_none(source) == model_id:
            storage_location = model[0]
        run_id = run_id or model[1] or ""
    event = rg.ModelVersionCreated(
        name=req.name,
        version=0,
        time=now_ms(),
        source=source,
        storage_location=storage_location,
        run_id=run_id,
        run_link=req.run_link,
        description=req.description,
        model_id=model_id,
        tags=req.tags,
    )
    _, appended = await append(request, [event], wait=True)
    created = appended[0]
    assert isinstance(created, rg.ModelVersionCreated)
    if model_id:
        await _tag_logged_model(request, model_id, req.name, created.version)
    return json_response({"model_version": await version_json(request, req.name, created.version)})


async def _tag_logged_model(request: web.Request, model_id: str, name: str, version: int) -> None:
    """Add the version to the logged model's ``mlflow.modelVersions`` (a JSON list)."""
    current = await q.logged_model_tag(request.app[PG_POOL], model_id, MODEL_VERSIONS_TAG)
    try:
        listed = json.loads(current) if current else []
    except ValueError:
        listed = []
    if not isinstance(listed, list):
        listed = []
    listed.append({"name": name, "version": version})
    await write(
        request, [mo.LoggedModelTagsSet(model_id, ((MODEL_VERSIONS_TAG, json.dumps(listed)),))]
    )


async def get_model_version(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    version = rq.version_number(fields)
    return json_response({"model_version": await version_json(request, name, version)})


async def update_model_version(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    version = rq.version_number(fields)
    event = rg.ModelVersionUpdated(name, version, rq.description(fields), now_ms())
    await append(request, [event], wait=True)
    return json_response({"model_version": await version_json(request, name, version)})


async def transition_model_version_stage(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    version = rq.version_number(fields)
    stage = rr.canonical_stage(rq.required_stage(fields))
    archive = rq.archive_flag(fields)
    if archive and stage not in rg.ACTIVE_STAGES:
        raise RunstreamError(rr.archive_refusal(rq.required_stage(fields)))
    event = rg.ModelVersionStageTransitioned(name, version, stage, now_ms(), archive)
    await append(request, [event], wait=True)
    return json_response({"model_version": await version_json(request, name, version)})


async def delete_model_version(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    version = rq.version_number(fields)
    await append(request, [rg.ModelVersionDeleted(name, version, now_ms())])
    return json_response({})


async def download_uri(request: web.Request, name: str, version: int) -> str:
    row = await q.version(request.app[PG_POOL], name, version)
    if row is None:
        raise version_not_found(name, version)
    uri: str = row["storage_location"] or row["source"]
    return uri


async def get_model_version_download_uri(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    version = rq.version_number(fields)
    return json_response({"artifact_uri": await download_uri(request, name, version)})


async def search_model_versions(request: web.Request) -> web.Response:
    fields = await request_fields(request, repeated=("order_by",))
    search = rq.parse_search(
        fields, default=rq.MAX_VERSIONS_PER_PAGE, limit=rq.MAX_VERSIONS_PER_PAGE
    )
    rows = await q.search_versions(request.app[PG_POOL], search)
    out: JsonDict = {}
    page = rows[: search.max_results]
    if page:
        out["model_versions"] = [model_version_to_json(r, aliases=False) for r in page]
    if len(rows) > search.max_results:
        out["next_page_token"] = pagination.encode(search.offset + search.max_results)
    return json_response(out)


async def set_model_version_tag(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    version = rq.version_number(fields)
    key, value = rq.tag(fields)
    await append(request, [rg.ModelVersionTagSet(name, version, key, value)])
    return json_response({})


async def delete_model_version_tag(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    name = rq.model_name(fields)
    version = rq.version_number(fields)
    key = rq.tag_key(fields)
    await append(request, [rg.ModelVersionTagDeleted(name, version, key)])
    return json_response({})


async def _files_root(request: web.Request, uri: str) -> str:
    """The artifact store path below which a version's files are."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "runs":
        run_id = src.runs_uri_run_id(uri)
        relative = parsed.path[1:].split("/", 1)[1] if "/" in parsed.path[1:] else ""
        run_root = await q.run_artifact_uri(request.app[PG_POOL], run_id)
        if run_root is None:
            raise version_source_missing(uri)
        uri = f"{run_root.rstrip('/')}/{relative}" if relative else run_root
    elif parsed.scheme == "models":
        model_id = src.parse_models_uri_or_none(uri)
        located = (
            await q.logged_model_location(request.app[PG_POOL], model_id) if model_id else None
        )
        if located is None:
            raise version_source_missing(uri)
        uri = located[0]
    root = proxied_root(uri)
    if root is None:
        raise FeatureNotImplemented(
            f"Artifacts under {uri!r} are not served by this server; open them from their "
            "store directly."
        )
    return root


def version_source_missing(uri: str) -> RunstreamError:
    return InvalidParameterValue(f"The files of model version source {uri!r} are not found.")


async def get_model_version_artifact(request: web.Request) -> web.StreamResponse:
    """``GET /model-versions/get-artifact?name=&version=&path=``: a file of a version."""
    fields = dict(request.query)
    name = rq.model_name(fields)
    version = rq.version_number(fields)
    raw_path = request.query.get("path")
    if not raw_path:
        raise BadRequest('Request must include the "path" query parameter.')
    relative = clean_path(raw_path)
    if ARTIFACT_STORE not in request.app:
        raise FeatureNotImplemented("This server does not serve artifacts.")
    root = await _files_root(request, await download_uri(request, name, version))
    return await send_artifact(request, request.app[ARTIFACT_STORE], posixpath.join(root, relative))
