"""The auth middleware: who is asking (``AuthCache``), then the route's rule (``rules``).

Order per request: a PUBLIC route passes; anything else needs verified credentials (401 with
``WWW-Authenticate: Basic`` otherwise); admins pass every rule; a route without a rule is
refused (fail closed). A rule names the resource of the request and where its id is; the
id is resolved to what grants are kept on (a run's and a logged model's experiment, an
artifact path's experiment) and the caller's permission on it must allow the rule's action.
Searches are narrowed inside their handlers (``runstream.web.Visibility``); handlers that
only know their resources late (native events, GraphQL) ask the ``Gate``.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from runstream.auth.cache import AuthCache
from runstream.auth.permissions import (
    EXPERIMENT,
    MANAGE,
    REGISTERED_MODEL,
    Action,
    Permission,
    Principal,
)
from runstream.auth.resolver import Resolver
from runstream.auth.rules import Access, After, Locator, Rule, Target, Where, rule_for
from runstream.auth.store import AuthStore
from runstream.schemas.errors import InvalidParameterValue, PermissionDenied
from runstream.web import (
    CACHED_BODY,
    GATE,
    PARSED_BODY,
    VISIBILITY,
    Handler,
    ParsedBody,
    Visibility,
    parse_json_body,
    read_body,
)

logger = logging.getLogger(__name__)

PRINCIPAL = "runstream.principal"
"""Request key of the verified caller (``Principal``)."""


@dataclass
class Auth:
    """Everything the middleware and the auth routes share in one app."""

    store: AuthStore
    cache: AuthCache
    resolver: Resolver
    default: Permission
    max_json_bytes: int
    max_json_items: int


AUTH = web.AppKey("auth", Auth)


def principal_of(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def denied(what: str = "") -> PermissionDenied:
    return PermissionDenied(f"Permission denied{': ' + what if what else ''}")


_ACTIONS = {"read": Action.READ, "update": Action.UPDATE, "delete": Action.DELETE}


class RequestGate:
    """``runstream.web.Gate`` for one non-admin caller."""

    def __init__(self, auth: Auth, principal: Principal) -> None:
        self.auth = auth
        self.principal = principal

    async def require(
        self,
        action: str,
        run_ids: Collection[str] = (),
        experiment_ids: Collection[str] = (),
        model_ids: Collection[str] = (),
    ) -> None:
        if action == "admin":
            raise denied("admin only")
        act = _ACTIONS[action]
        experiments = set(experiment_ids)
        for model_id in model_ids:
            experiment_id = await self.auth.resolver.experiment_of_model(model_id)
            if experiment_id is None:
                raise denied(f"{action} on logged model {model_id}")
            experiments.add(experiment_id)
        if run_ids:
            found = await self.auth.resolver.experiments_of_runs(run_ids)
            unknown = set(run_ids) - set(found)
            if unknown:
                raise denied(f"{action} on run {sorted(unknown)[0]}")
            experiments.update(found.values())
        for experiment_id in sorted(experiments):
            if not self.principal.may(act, EXPERIMENT, experiment_id, self.auth.default):
                raise denied(f"{act.name} on experiment {experiment_id}")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else None
    rule = rule_for(request.method, canonical) if canonical is not None else None
    if rule is not None and rule.access is Access.PUBLIC:
        return await handler(request)
    auth = request.app[AUTH]
    principal = await auth.cache.principal(request.headers.get("Authorization"))
    request[PRINCIPAL] = principal
    if canonical is None:  # no route: the handler answers 404/405 to the authenticated
        return await handler(request)
    if rule is None:
        if not principal.is_admin:
            raise denied(f"no permission rule for {request.method} {canonical}")
    elif not principal.is_admin:
        await _check(request, auth, principal, rule)
    response = await handler(request)
    if rule is not None and response.status == 200:
        if rule.access is Access.CREATE and rule.created is not None:
            await _grant_creator(auth, principal, rule.created, response)
        elif rule.after is not None:
            await _follow_model(request, auth, principal, rule.after)
        elif rule.filtered and not principal.is_admin and rule.target is None:
            _filter_registry(request, auth, principal, response)
    return response


async def _check(request: web.Request, auth: Auth, principal: Principal, rule: Rule) -> None:
    if rule.access is Access.ADMIN:
        raise denied("admin only")
    request[VISIBILITY] = Visibility(
        auth.default.can_read, principal.readable_exceptions(EXPERIMENT, auth.default)
    )
    request[GATE] = RequestGate(auth, principal)
    if rule.access is not Access.RESOURCE:
        return
    assert rule.target is not None and rule.locator is not None and rule.action is not None
    ids = await _ids(request, auth, rule.locator)
    for named, kind, resource_id in await _resolve(auth, rule.target, ids):
        # The message names what the caller named, and an unknown run or model reads like a
        # denied one (as MLflow: no oracle of which ids exist, nor of their experiment).
        if resource_id is None or not principal.may(rule.action, kind, resource_id, auth.default):
            raise denied(f"{rule.action.name} on {rule.target.value} {named}")


async def _resolve(auth: Auth, target: Target, ids: list[str]) -> list[tuple[str, str, str | None]]:
    """(id as named, kind, id grants are kept on) per id; None for what cannot be placed."""
    if target is Target.EXPERIMENT:
        return [(i, EXPERIMENT, i) for i in ids]
    if target is Target.REGISTERED_MODEL:
        return [(i, REGISTERED_MODEL, i) for i in ids]
    if target is Target.EXPERIMENT_NAME:
        # An unknown name: the default decides ("" has no grant), and the handler answers 404.
        return [(n, EXPERIMENT, await auth.resolver.experiment_named(n) or "") for n in ids]
    if target is Target.RUN:
        runs = await auth.resolver.experiments_of_runs(ids)
        return [(r, EXPERIMENT, runs.get(r)) for r in ids]
    if target is Target.LOGGED_MODEL:
        return [(m, EXPERIMENT, await auth.resolver.experiment_of_model(m)) for m in ids]
    assert target is Target.ARTIFACT_PATH
    return [(path, EXPERIMENT, artifact_experiment(path)) for path in ids]


def artifact_experiment(path: str) -> str | None:
    """The experiment of a proxied artifact path (``<experiment id>/<run id>/artifacts/...``);
    None for a path outside any experiment (admins only)."""
    clean = posixpath.normpath("/" + path).lstrip("/")
    first = clean.split("/", 1)[0]
    return str(int(first)) if first.isdigit() else None


async def _ids(request: web.Request, auth: Auth, locator: Locator) -> list[str]:
    where = locator.where
    if where is Where.PARAMS:
        if request.method == "GET":
            where = Where.QUERY if request.query or not request.can_read_body else Where.BODY
        elif request.method == "DELETE" and not _is_json(request):
            where = Where.QUERY
        else:
            where = Where.BODY
    values: list[Any]
    if where is Where.PATH:
        values = [request.match_info.get(locator.field)]
    elif where is Where.QUERY:
        names = (locator.field, locator.alias) if locator.alias else (locator.field,)
        values = []
        for name in names:
            values = list(request.query.getall(name, []))
            if values:
                break
        if locator.comma:
            values = [v for value in values for v in value.split(",") if v]
        if not locator.many and not locator.comma:
            values = values[:1]
    else:
        body = await _json_body(request, auth)
        value = body.get(locator.field) if isinstance(body, dict) else None
        if value is None and locator.alias and isinstance(body, dict):
            value = body.get(locator.alias)
        if locator.many:
            items = value if isinstance(value, list) else []
            if locator.item:
                items = [i.get(locator.item) if isinstance(i, dict) else None for i in items]
            values = items
        else:
            values = [value]
    ids = [
        str(v) for v in values if isinstance(v, str | int) and not isinstance(v, bool) and v != ""
    ]
    if len(ids) != len(values) or (not ids and not (locator.many or locator.comma)):
        raise InvalidParameterValue(
            f"Missing value for required parameter '{locator.field}'. "
            "See the API docs for more information about request parameters."
        )
    return ids


def _is_json(request: web.Request) -> bool:
    return request.content_type == "application/json"


async def _json_body(request: web.Request, auth: Auth) -> Any:
    # The guard parses before the route does, so it applies the routes' JSON bounds: a looser
    # limit here would let a body the route refuses hold the loop first. Parsed once: the
    # route and the after-hooks take the parsed value (``read_json_body``).
    parsed: ParsedBody | None = request.get(PARSED_BODY)
    if parsed is not None:
        return parsed.value
    body = await read_body(request, auth.max_json_bytes)
    request[CACHED_BODY] = body
    value = parse_json_body(body, auth.max_json_items)
    request[PARSED_BODY] = ParsedBody(value, auth.max_json_items)
    return value


async def _grant_creator(
    auth: Auth, principal: Principal, created: Target, response: web.StreamResponse
) -> None:
    """MLflow's after-request hook: the creator manages what they made."""
    body = _response_json(response)
    if not isinstance(body, dict):
        return
    if created is Target.EXPERIMENT:
        if body.get("created") is False:  # get-or-create found an existing experiment:
            existing = str(body.get("experiment_id"))  # its id only for who may read it
            if not principal.may(Action.READ, EXPERIMENT, existing, auth.default):
                raise denied(f"READ on experiment {existing}")
            return
        kind, resource_id = EXPERIMENT, body.get("experiment_id")
    else:
        model = body.get("registered_model")
        kind, resource_id = REGISTERED_MODEL, model.get("name") if isinstance(model, dict) else None
    if not isinstance(resource_id, str) or not resource_id:
        return
    if principal.grants.get((kind, resource_id)) == MANAGE.name:
        return
    await auth.store.grant("runstream", principal.username, kind, resource_id, MANAGE.name)
    auth.cache.clear()


async def _follow_model(
    request: web.Request, auth: Auth, principal: Principal, after: After
) -> None:
    body = await _json_body(request, auth) if request.can_read_body else dict(request.query)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return
    name = body["name"]
    if after is After.RENAME_MODEL and isinstance(body.get("new_name"), str):
        await auth.store.rename_resource(
            principal.username, REGISTERED_MODEL, name, body["new_name"]
        )
    elif after is After.FORGET_MODEL:
        await auth.store.forget_resource(principal.username, REGISTERED_MODEL, name)
    auth.cache.clear()


def _response_json(response: web.StreamResponse) -> Any:
    if not isinstance(response, web.Response) or response.body is None:
        return None
    raw = response.body
    if not isinstance(raw, bytes | bytearray):
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


_REGISTRY_LISTS = {"registered_models": "name", "model_versions": "name"}


def _filter_registry(
    request: web.Request, auth: Auth, principal: Principal, response: web.StreamResponse
) -> None:
    """Registry searches, answered by the registry's handlers: drop the models the caller may
    not read (MLflow's after-request filter). Experiment and run searches filter in SQL."""
    if (
        "registered-models/search" not in request.path
        and "model-versions/search" not in request.path
    ):
        return
    body = _response_json(response)
    if not isinstance(body, dict) or not isinstance(response, web.Response):
        return
    for field, key in _REGISTRY_LISTS.items():
        items = body.get(field)
        if isinstance(items, list):
            body[field] = [
                item
                for item in items
                if isinstance(item, dict)
                and principal.may(Action.READ, REGISTERED_MODEL, str(item.get(key)), auth.default)
            ]
    response.body = orjson.dumps(body)
