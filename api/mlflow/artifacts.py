"""``GET /api/2.0/mlflow/artifacts/list``: a run's artifacts, listed from the proxied store.

MLflow's server lists a run whose artifact URI is proxied (``mlflow-artifacts:``, or an
``http(s)`` URI of an ``mlflow-artifacts`` server) from its artifact destination; that is the
store the ``mlflow-artifacts`` routes serve (``api.artifacts``), so the same paths resolve.
Runs whose artifacts live elsewhere (``s3://`` chosen by the client, ...) are listed by the
client itself; this server answers NOT_IMPLEMENTED for them rather than guess.
"""

from __future__ import annotations

import posixpath
from urllib.parse import urlsplit

from aiohttp import web

from runstream.api import queries
from runstream.api.artifacts.proxy import ARTIFACT_STORE
from runstream.api.artifacts.store import clean_path
from runstream.api.mlflow import messages as rq
from runstream.api.mlflow.handler_io import request_fields
from runstream.api.reads import run_not_found
from runstream.resources import PG_POOL
from runstream.schemas.errors import FeatureNotImplemented
from runstream.web import json_response

PROXY_PATH_PREFIX = "/api/2.0/mlflow-artifacts/artifacts"


def proxied_root(artifact_uri: str) -> str | None:
    """The store path of a proxied run artifact root, or None when it is not proxied."""
    parts = urlsplit(artifact_uri)
    if parts.scheme == "mlflow-artifacts":
        return clean_path(parts.path.lstrip("/"))
    if parts.scheme in ("http", "https") and parts.path.startswith(PROXY_PATH_PREFIX):
        return clean_path(parts.path[len(PROXY_PATH_PREFIX) :].lstrip("/"))
    return None


async def list_artifacts(request: web.Request) -> web.Response:
    req = rq.parse_list_artifacts(await request_fields(request))
    relative = clean_path(req.path) if req.path is not None else ""
    row = await queries.run(request.app[PG_POOL], req.run_id)
    if row is None:
        raise run_not_found(req.run_id)
    return json_response(await listing(request, row["artifact_uri"], relative))


async def listing(request: web.Request, root_uri: str, relative: str) -> dict[str, object]:
    """MLflow's ``{"root_uri", "files"}`` for ``relative`` below an artifact root, read
    through the proxy's store; roots the proxy does not serve are refused."""
    root = proxied_root(root_uri)
    if root is None or ARTIFACT_STORE not in request.app:
        raise FeatureNotImplemented(
            f"Listing artifacts of {root_uri!r} is not served by this server; the client "
            "lists them from their store directly."
        )
    target = posixpath.join(root, relative) if relative else root
    files = []
    for info in await request.app[ARTIFACT_STORE].list(target):
        name = posixpath.basename(info.path)
        entry: dict[str, object] = {
            "path": posixpath.join(relative, name) if relative else name,
            "is_dir": info.is_dir,
        }
        if info.file_size is not None:
            entry["file_size"] = info.file_size
        files.append(entry)
    out: dict[str, object] = {"root_uri": root_uri}
    if files:
        out["files"] = files
    return out
