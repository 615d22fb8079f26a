"""MLflow 3.17's user and permission API (``AuthServiceClient``), plus runstream's tokens and
audit routes.

Paths, request fields, answers and error codes are MLflow's (``mlflow/server/auth``); who may
call each route is in ``rules`` and, where it depends on the request, checked here as MLflow's
validators do (the user themself or an admin; MANAGE on a resource to grant on it).
Without roles (docs/auth.md), a user's grants are listed as MLflow lists direct grants: on the
user's own synthetic role ``__user_<id>__``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from runstream.auth import credentials as cr
from runstream.auth import permissions as perm
from runstream.auth.guard import AUTH, PRINCIPAL, Auth, denied
from runstream.auth.permissions import Principal
from runstream.auth.rules import MLFLOW3_PREFIXES, MLFLOW_PREFIXES, NATIVE
from runstream.auth.store import User, parse_expiry
from runstream.schemas.errors import BadRequest, InvalidParameterValue
from runstream.web import json_response, read_json_body

DEFAULT_WORKSPACE = "default"


async def _params(request: web.Request) -> dict[str, Any]:
    """MLflow's request fields: query of a GET, JSON body of a POST/PATCH, either for DELETE."""
    if request.method == "GET" or (
        request.method == "DELETE" and request.content_type != "application/json"
    ):
        return dict(request.query)
    auth = request.app[AUTH]
    body = await read_json_body(request, auth.max_json_bytes, auth.max_json_items)
    return body if isinstance(body, dict) else {}


def _param(params: dict[str, Any], name: str) -> Any:
    if name not in params:
        raise InvalidParameterValue(
            f"Missing value for required parameter '{name}'. "
            "See the API docs for more information about request parameters."
        )
    return params[name]


def _caller(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def _self_or_admin(request: web.Request, username: object) -> None:
    caller = _caller(request)
    if not caller.is_admin and caller.username != username:
        raise denied()


def _auth(request: web.Request) -> Auth:
    return request.app[AUTH]


async def _changed(request: web.Request) -> None:
    _auth(request).cache.clear()


# -- users ----------------------------------------------------------------------------------------


async def create_user(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        raise BadRequest("Invalid content type. Must be application/json")
    params = await _params(request)
    username, password = params.get("username"), params.get("password")
    if not username or not password:
        raise InvalidParameterValue("Username and password cannot be empty.")
    user = await _auth(request).store.create_user(
        _caller(request).username, cr.check_username(username), cr.check_password(password)
    )
    return json_response({"user": user.to_json()})


async def get_user(request: web.Request) -> web.Response:
    username = _param(await _params(request), "username")
    _self_or_admin(request, username)
    user = await _auth(request).store.user(str(username))
    return json_response({"user": user.to_json()})


async def list_users(request: web.Request) -> web.Response:
    users = await _auth(request).store.users()
    return json_response({"users": [{**u.to_json(), "roles": []} for u in users]})


async def current_user(request: web.Request) -> web.Response:
    user = await _auth(request).store.user(_caller(request).username)
    return json_response({"user": user.to_json(), "is_basic_auth": True})


async def update_password(request: web.Request) -> web.Response:
    params = await _params(request)
    username, password = _param(params, "username"), _param(params, "password")
    _self_or_admin(request, username)
    store = _auth(request).store
    if _caller(request).username == username:
        current = params.get("current_password")
        if not current:
            raise InvalidParameterValue(
                "Current password is required when changing your own password."
            )
        found = await store.password_hash(str(username))
        if found is None or not await asyncio.to_thread(cr.verify_password, found[1], str(current)):
            raise InvalidParameterValue("Current password does not match.")
        if password == current:
            raise InvalidParameterValue("New password must differ from the current password.")
    await store.update_password(
        _caller(request).username, str(username), cr.check_password(password)
    )
    await _changed(request)
    return json_response({})


async def update_admin(request: web.Request) -> web.Response:
    params = await _params(request)
    username, is_admin = _param(params, "username"), _param(params, "is_admin")
    flag = is_admin if isinstance(is_admin, bool) else str(is_admin).lower() == "true"
    await _auth(request).store.update_admin(_caller(request).username, str(username), flag)
    await _changed(request)
    return json_response({})


async def delete_user(request: web.Request) -> web.Response:
    username = _param(await _params(request), "username")
    if username == _caller(request).username:
        raise BadRequest(
            "Users cannot delete their own account. Ask another admin to delete this user instead."
        )
    await _auth(request).store.delete_user(_caller(request).username, str(username))
    await _changed(request)
    return json_response({})


# -- permissions ----------------------------------------------------------------------------------


def _grant_rows(user: User, grants: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "role_id": user.user_id,
            "role_name": f"__user_{user.user_id}__",
            "workspace": DEFAULT_WORKSPACE,
            "resource_type": g["resource_type"],
            "resource_pattern": g["resource_id"],
            "permission": g["permission"],
        }
        for g in grants
    ]


async def _permissions_of(request: web.Request, username: str) -> web.Response:
    store = _auth(request).store
    user = await store.user(username)
    rows = _grant_rows(user, await store.grants_of(username))
    return json_response({"is_admin": user.is_admin, "permissions": rows})


async def current_user_permissions(request: web.Request) -> web.Response:
    return await _permissions_of(request, _caller(request).username)


async def list_user_permissions(request: web.Request) -> web.Response:
    username = _param(await _params(request), "username")
    _self_or_admin(request, username)
    return await _permissions_of(request, str(username))


async def _resource(request: web.Request, params: dict[str, Any]) -> tuple[str, str, str]:
    """(username, resource type, resource id) of a grant request, the user checked to exist."""
    username = str(_param(params, "username"))
    kind = perm.resource_type(_param(params, "resource_type"))
    resource_id = _param(params, "resource_id")
    if not isinstance(resource_id, str | int) or isinstance(resource_id, bool) or resource_id == "":
        raise InvalidParameterValue("resource_id must be a non-empty string")
    if resource_id == "*":
        raise InvalidParameterValue(
            "Wildcard ('*') grants are not supported: set RUNSTREAM_DEFAULT_PERMISSION instead."
        )
    await _auth(request).store.user(username)
    return username, kind, str(resource_id)


def _require_manage(request: web.Request, kind: str, resource_id: str) -> None:
    auth = _auth(request)
    if not _caller(request).may(perm.Action.MANAGE, kind, resource_id, auth.default):
        raise denied(f"MANAGE on {kind} {resource_id}")


async def grant_permission(request: web.Request) -> web.Response:
    params = await _params(request)
    username, kind, resource_id = await _resource(request, params)
    permission = perm.grantable(_param(params, "permission"))
    _require_manage(request, kind, resource_id)
    await _auth(request).store.grant(
        _caller(request).username, username, kind, resource_id, permission
    )
    await _changed(request)
    return json_response({})


async def revoke_permission(request: web.Request) -> web.Response:
    params = await _params(request)
    username, kind, resource_id = await _resource(request, params)
    _require_manage(request, kind, resource_id)
    await _auth(request).store.revoke(_caller(request).username, username, kind, resource_id)
    await _changed(request)
    return json_response({})


async def get_permission(request: web.Request) -> web.Response:
    params = await _params(request)
    username, kind, resource_id = await _resource(request, params)
    _self_or_admin(request, username)
    auth = _auth(request)
    user = await auth.store.user(username)
    if user.is_admin:
        effective = perm.MANAGE
    else:
        granted = await auth.store.grant_of(username, kind, resource_id)
        effective = auth.default if granted is None else perm.BY_NAME[granted]
    return json_response({"allowed": effective.can_use, "permission": effective.name})


# -- tokens and audit (runstream's own) -----------------------------------------------------------


async def issue_token(request: web.Request) -> web.Response:
    params = await _params(request)
    caller = _caller(request)
    username = params.get("username") or caller.username
    _self_or_admin(request, username)
    name = params.get("name") or "token"
    if not isinstance(name, str) or len(name) > 200:
        raise InvalidParameterValue("name must be a string of at most 200 characters")
    expires_at = parse_expiry(params.get("expires_at"))
    info, token = await _auth(request).store.issue_token(
        caller.username, str(username), name, expires_at
    )
    return json_response({"token": token, "token_info": info.to_json()})


async def list_tokens(request: web.Request) -> web.Response:
    caller = _caller(request)
    username = request.query.get("username") or (None if caller.is_admin else caller.username)
    if username is not None:
        _self_or_admin(request, username)
    tokens = await _auth(request).store.tokens(username)
    return json_response({"tokens": [t.to_json() for t in tokens]})


async def revoke_token(request: web.Request) -> web.Response:
    caller = _caller(request)
    try:
        token_id = int(request.match_info["token_id"])
    except ValueError as exc:
        raise InvalidParameterValue("token id must be an integer") from exc
    await _auth(request).store.revoke_token(
        caller.username, token_id, None if caller.is_admin else caller.username
    )
    await _changed(request)
    return json_response({})


async def audit(request: web.Request) -> web.Response:
    try:
        limit = min(int(request.query.get("limit", "100")), 1000)
        before = request.query.get("before")
        before_ms = int(before) if before else None
    except ValueError as exc:
        raise InvalidParameterValue("limit and before must be integers") from exc
    entries = await _auth(request).store.audit(limit, before_ms)
    return json_response({"entries": entries})


def add_auth_routes(app: web.Application) -> None:
    for prefix in MLFLOW_PREFIXES:
        app.router.add_post(f"{prefix}/users/create", create_user)
        app.router.add_get(f"{prefix}/users/get", get_user)
        app.router.add_get(f"{prefix}/users/current", current_user)
        app.router.add_get(f"{prefix}/users/list", list_users)
        app.router.add_patch(f"{prefix}/users/update-password", update_password)
        app.router.add_patch(f"{prefix}/users/update-admin", update_admin)
        app.router.add_delete(f"{prefix}/users/delete", delete_user)
    for prefix in MLFLOW3_PREFIXES:
        app.router.add_get(f"{prefix}/users/current/permissions", current_user_permissions)
        app.router.add_get(f"{prefix}/users/permissions/list", list_user_permissions)
        app.router.add_post(f"{prefix}/users/permissions/grant", grant_permission)
        app.router.add_post(f"{prefix}/users/permissions/revoke", revoke_permission)
        app.router.add_get(f"{prefix}/users/permissions/get", get_permission)
    app.router.add_post(f"{NATIVE}/tokens", issue_token)
    app.router.add_get(f"{NATIVE}/tokens", list_tokens)
    app.router.add_delete(f"{NATIVE}/tokens/{{token_id}}", revoke_token)
    app.router.add_get(f"{NATIVE}/audit", audit)
