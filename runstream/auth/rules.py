"""The permission table: (method, route path) -> the rule the auth middleware applies.

One row per route the server can have, written from MLflow 3.17's basic-auth app (its
before-request validators keyed by path and method): which resource a request names, where
its id is (path, query, JSON body), and what the request does to it. The model registry rows
are here before its routes (MLflow's paths and ``name`` field), so they are enforced when they
land. ``tests/unit/test_auth_rules.py`` fails for any route of ``build_app`` without a row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from runstream.auth.permissions import Action


class Access(Enum):
    PUBLIC = "public"
    """No credentials needed (health, static files, server-info), as in MLflow."""
    AUTHENTICATED = "authenticated"
    """Any verified user (searches are then filtered to what the caller may read)."""
    ADMIN = "admin"
    RESOURCE = "resource"
    """The caller's permission on the named resource must allow ``action``."""
    CREATE = "create"
    """Any verified user may create; the creator is granted MANAGE on what was made."""
    HANDLER = "handler"
    """Authenticated here; the handler checks what only it knows (``runstream.web.require``)."""


class After(Enum):
    """What a successful request changes in the grants (MLflow's after-request hooks)."""

    RENAME_MODEL = "rename_model"
    """Grants on a registered model follow it to ``new_name``."""
    FORGET_MODEL = "forget_model"
    """A deleted registered model's grants go, so a new model of that name starts clean."""


class Target(Enum):
    EXPERIMENT = "experiment"
    EXPERIMENT_NAME = "experiment_name"
    RUN = "run"
    LOGGED_MODEL = "logged_model"
    REGISTERED_MODEL = "registered_model"
    ARTIFACT_PATH = "artifact_path"
    """A proxied artifact path: ``<experiment id>/...`` below the artifact root."""


class Where(Enum):
    PATH = "path"
    QUERY = "query"
    BODY = "body"
    PARAMS = "params"
    """MLflow's request fields: the query string of a GET (else its JSON body), the JSON body
    of a POST/PATCH, the JSON body or query string of a DELETE."""


@dataclass(frozen=True, slots=True)
class Locator:
    """Where a request carries the id(s) of its resource."""

    field: str
    where: Where = Where.PARAMS
    many: bool = False
    """A repeated query parameter or a JSON list."""
    item: str | None = None
    """With ``many``: the key inside each list element (``series[].run_id``)."""
    comma: bool = False
    """A comma-separated query value (``?runs=a,b``)."""
    alias: str | None = None
    """Another accepted name (MLflow's ``run_uuid`` for ``run_id``)."""


@dataclass(frozen=True, slots=True)
class Rule:
    access: Access
    target: Target | None = None
    locator: Locator | None = None
    action: Action | None = None
    created: Target | None = None
    """With CREATE: what the response names (``experiment_id`` or a model ``name``)."""
    filtered: bool = False
    """Results are filtered to what the caller may read."""
    after: After | None = None
    note: str = ""


def public(note: str = "") -> Rule:
    return Rule(Access.PUBLIC, note=note)


def authenticated(note: str = "", filtered: bool = False) -> Rule:
    return Rule(Access.AUTHENTICATED, filtered=filtered, note=note)


def admin(note: str = "") -> Rule:
    return Rule(Access.ADMIN, note=note)


def handler(note: str) -> Rule:
    return Rule(Access.HANDLER, note=note)


def on(target: Target, action: Action, locator: Locator) -> Rule:
    return Rule(Access.RESOURCE, target, locator, action)


def creates(target: Target, note: str = "") -> Rule:
    return Rule(Access.CREATE, created=target, note=note)


def in_experiment(action: Action, field: str = "experiment_id") -> Rule:
    return on(Target.EXPERIMENT, action, Locator(field))


RUN_ID = Locator("run_id", alias="run_uuid")


def on_run(action: Action, locator: Locator = RUN_ID) -> Rule:
    return on(Target.RUN, action, locator)


def on_model(action: Action) -> Rule:
    return on(Target.REGISTERED_MODEL, action, Locator("name"))


LOGGED_MODEL = Locator("model_id", Where.PATH)
READ, UPDATE, DELETE, MANAGE = Action.READ, Action.UPDATE, Action.DELETE, Action.MANAGE

MLFLOW_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
MLFLOW3_PREFIXES = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")
ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
NATIVE = "/api/runstream/v1"

TRACKING: tuple[tuple[str, str, Rule], ...] = (
    ("POST", "/experiments/create", creates(Target.EXPERIMENT)),
    ("GET", "/experiments/get", in_experiment(READ)),
    (
        "GET",
        "/experiments/get-by-name",
        on(Target.EXPERIMENT_NAME, READ, Locator("experiment_name")),
    ),
    ("GET", "/experiments/search", authenticated(filtered=True)),
    ("POST", "/experiments/search", authenticated(filtered=True)),
    ("POST", "/experiments/update", in_experiment(UPDATE)),
    ("POST", "/experiments/delete", in_experiment(DELETE)),
    ("POST", "/experiments/restore", in_experiment(DELETE)),
    ("POST", "/experiments/set-experiment-tag", in_experiment(UPDATE)),
    ("POST", "/experiments/delete-experiment-tag", in_experiment(UPDATE)),
    ("POST", "/runs/create", in_experiment(UPDATE)),
    ("GET", "/runs/get", on_run(READ)),
    ("POST", "/runs/update", on_run(UPDATE)),
    ("POST", "/runs/delete", on_run(DELETE)),
    ("POST", "/runs/restore", on_run(DELETE)),
    ("POST", "/runs/search", authenticated(filtered=True)),
    ("POST", "/runs/set-tag", on_run(UPDATE)),
    ("POST", "/runs/delete-tag", on_run(UPDATE)),
    ("POST", "/runs/log-metric", on_run(UPDATE)),
    ("POST", "/runs/log-parameter", on_run(UPDATE)),
    ("POST", "/runs/log-batch", on_run(UPDATE)),
    ("POST", "/runs/log-inputs", on_run(UPDATE)),
    ("POST", "/runs/outputs", on_run(UPDATE)),
    ("POST", "/runs/log-model", on_run(UPDATE)),
    ("GET", "/metrics/get-history", on_run(READ)),
    (
        "GET",
        "/metrics/get-history-bulk-interval",
        on_run(READ, Locator("run_ids", Where.QUERY, many=True)),
    ),
    ("GET", "/metrics/get-history-bulk", on_run(READ, Locator("run_id", Where.QUERY, many=True))),
    ("GET", "/artifacts/list", on_run(READ)),
    ("POST", "/logged-models", in_experiment(UPDATE)),
    ("POST", "/logged-models/search", authenticated(filtered=True)),
    ("GET", "/logged-models/{model_id}", on(Target.LOGGED_MODEL, READ, LOGGED_MODEL)),
    ("PATCH", "/logged-models/{model_id}", on(Target.LOGGED_MODEL, UPDATE, LOGGED_MODEL)),
    ("DELETE", "/logged-models/{model_id}", on(Target.LOGGED_MODEL, DELETE, LOGGED_MODEL)),
    ("PATCH", "/logged-models/{model_id}/tags", on(Target.LOGGED_MODEL, UPDATE, LOGGED_MODEL)),
    (
        "DELETE",
        "/logged-models/{model_id}/tags/{tag_key}",
        on(Target.LOGGED_MODEL, UPDATE, LOGGED_MODEL),
    ),
    ("POST", "/logged-models/{model_id}/params", on(Target.LOGGED_MODEL, UPDATE, LOGGED_MODEL)),
    (
        "GET",
        "/logged-models/{model_id}/artifacts/directories",
        on(Target.LOGGED_MODEL, READ, LOGGED_MODEL),
    ),
    (
        "GET",
        "/logged-models/{model_id}/artifacts/files",
        on(Target.LOGGED_MODEL, READ, LOGGED_MODEL),
    ),
    # Features runstream answers empty (api/ui EMPTY_ANSWERS): nothing to protect but identity.
    ("GET", "/traces", authenticated("empty answer")),
    ("POST", "/experiments/search-datasets", authenticated("empty answer")),
    ("GET", "/get-trace-artifact", authenticated("not served")),
    ("*", "/gateway-proxy", authenticated("no gateway")),
)
"""Below each of ``MLFLOW_PREFIXES``."""

REGISTRY: tuple[tuple[str, str, Rule], ...] = (
    ("POST", "/registered-models/create", creates(Target.REGISTERED_MODEL)),
    (
        "POST",
        "/registered-models/rename",
        dataclasses.replace(on_model(UPDATE), after=After.RENAME_MODEL),
    ),
    ("PATCH", "/registered-models/update", on_model(UPDATE)),
    (
        "DELETE",
        "/registered-models/delete",
        dataclasses.replace(on_model(DELETE), after=After.FORGET_MODEL),
    ),
    ("GET", "/registered-models/get", on_model(READ)),
    ("GET", "/registered-models/search", authenticated(filtered=True)),
    ("POST", "/registered-models/search", authenticated(filtered=True)),
    ("POST", "/registered-models/get-latest-versions", on_model(READ)),
    ("GET", "/registered-models/get-latest-versions", on_model(READ)),
    ("POST", "/registered-models/set-tag", on_model(UPDATE)),
    ("DELETE", "/registered-models/delete-tag", on_model(UPDATE)),
    ("POST", "/registered-models/alias", on_model(UPDATE)),
    ("DELETE", "/registered-models/alias", on_model(DELETE)),
    ("GET", "/registered-models/alias", on_model(READ)),
    ("POST", "/model-versions/create", on_model(UPDATE)),
    ("PATCH", "/model-versions/update", on_model(UPDATE)),
    ("POST", "/model-versions/transition-stage", on_model(UPDATE)),
    ("DELETE", "/model-versions/delete", on_model(DELETE)),
    ("GET", "/model-versions/get", on_model(READ)),
    ("GET", "/model-versions/search", authenticated(filtered=True)),
    ("POST", "/model-versions/search", authenticated(filtered=True)),
    ("GET", "/model-versions/get-download-uri", on_model(READ)),
    ("POST", "/model-versions/set-tag", on_model(UPDATE)),
    ("DELETE", "/model-versions/delete-tag", on_model(DELETE)),
    ("GET", "/model-versions/get-by-alias", on_model(READ)),
)
"""MLflow's registry routes (``mlflow.server.handlers``), below each of ``MLFLOW_PREFIXES``;
MLflow's permission per route: reads READ, changes EDIT, deletes (of a model, a version, an
alias, a version tag) MANAGE."""

MLFLOW3: tuple[tuple[str, str, Rule], ...] = (
    ("GET", "/server-info", public("server configuration, as MLflow")),
    ("POST", "/traces/search", authenticated("empty answer")),
    ("POST", "/traces/metrics", authenticated("empty answer")),
    ("GET", "/assistant/config", authenticated("empty answer")),
    ("GET", "/assistant/providers", authenticated("empty answer")),
    ("GET", "/ui-telemetry", authenticated("telemetry is off")),
    ("POST", "/ui-telemetry", authenticated("telemetry is off")),
    ("GET", "/get-trace-artifact", authenticated("not served")),
    ("POST", "/demo/generate", authenticated("not served")),
    ("POST", "/demo/delete", authenticated("not served")),
    # Logged datasets: the handlers keep to the experiments the caller may read.
    ("GET", "/datasets/search", authenticated(filtered=True)),
    ("POST", "/datasets/search", authenticated(filtered=True)),
    ("GET", "/datasets/{dataset_id}", authenticated(filtered=True)),
    ("GET", "/datasets/{dataset_id}/records", authenticated(filtered=True)),
    ("GET", "/datasets/{dataset_id}/experiment-ids", authenticated(filtered=True)),
    # MLflow's user and permission API (runstream/auth/routes.py checks as MLflow does).
    ("GET", "/users/current/permissions", authenticated("the caller's own")),
    ("GET", "/users/permissions/list", handler("admin or the user themself")),
    ("POST", "/users/permissions/grant", handler("admin or MANAGE on the resource")),
    ("POST", "/users/permissions/revoke", handler("admin or MANAGE on the resource")),
    ("GET", "/users/permissions/get", handler("admin or the user themself")),
)

USERS: tuple[tuple[str, str, Rule], ...] = (
    ("POST", "/users/create", admin()),
    ("GET", "/users/get", handler("admin or the user themself")),
    ("GET", "/users/current", authenticated("the caller's own")),
    ("GET", "/users/list", authenticated("as MLflow without workspaces")),
    ("PATCH", "/users/update-password", handler("admin or the user themself")),
    ("PATCH", "/users/update-admin", admin()),
    ("DELETE", "/users/delete", admin()),
)
"""Below each of ``MLFLOW_PREFIXES``."""

ARTIFACT_PATH = Locator("path", Where.PATH)
ARTIFACTS: tuple[tuple[str, str, Rule], ...] = (
    ("GET", "/artifacts", on(Target.ARTIFACT_PATH, READ, Locator("path", Where.QUERY))),
    ("GET", "/artifacts/{path}", on(Target.ARTIFACT_PATH, READ, ARTIFACT_PATH)),
    ("PUT", "/artifacts/{path}", on(Target.ARTIFACT_PATH, UPDATE, ARTIFACT_PATH)),
    ("DELETE", "/artifacts/{path}", on(Target.ARTIFACT_PATH, MANAGE, ARTIFACT_PATH)),
    ("POST", "/mpu/create/{path}", on(Target.ARTIFACT_PATH, UPDATE, ARTIFACT_PATH)),
    ("POST", "/mpu/complete/{path}", on(Target.ARTIFACT_PATH, UPDATE, ARTIFACT_PATH)),
    ("POST", "/mpu/abort/{path}", on(Target.ARTIFACT_PATH, UPDATE, ARTIFACT_PATH)),
)
"""Below each of ``ARTIFACT_PREFIXES``; MLflow: read READ, write EDIT, delete MANAGE."""

OTHERS: tuple[tuple[str, str, Rule], ...] = (
    ("GET", "/health", public("orchestrators' health checks")),
    ("GET", "/static-files/{path}", public("the UI's built files")),
    ("GET", "/", authenticated("the UI's page")),
    ("GET", "/version", authenticated("as MLflow")),
    ("GET", "/metrics", authenticated("Prometheus counters, no tenant data: scrape with a token")),
    ("GET", "/get-artifact", on_run(READ)),
    ("GET", "/model-versions/get-artifact", on_model(READ)),
    ("GET", "/graphql", handler("each query checks its experiment or runs")),
    ("POST", "/graphql", handler("each query checks its experiment or runs")),
    # Native routes (docs/architecture.md).
    ("POST", f"{NATIVE}/events", handler("every run and experiment the events touch: EDIT")),
    ("POST", f"{NATIVE}/experiments/get-or-create", creates(Target.EXPERIMENT)),
    ("GET", f"{NATIVE}/experiments", authenticated(filtered=True)),
    (
        "GET",
        f"{NATIVE}/experiments/{{experiment_id}}",
        on(Target.EXPERIMENT, READ, Locator("experiment_id", Where.PATH)),
    ),
    (
        "GET",
        f"{NATIVE}/experiments/{{experiment_id}}/runs",
        on(Target.EXPERIMENT, READ, Locator("experiment_id", Where.PATH)),
    ),
    ("GET", f"{NATIVE}/runs/{{run_id}}", on_run(READ, Locator("run_id", Where.PATH))),
    ("GET", f"{NATIVE}/runs/{{run_id}}/history", on_run(READ, Locator("run_id", Where.PATH))),
    (
        "POST",
        f"{NATIVE}/history/bulk",
        on_run(READ, Locator("series", Where.BODY, many=True, item="run_id")),
    ),
    ("GET", f"{NATIVE}/live", on_run(READ, Locator("runs", Where.QUERY, comma=True))),
    # runstream's own auth routes (tokens, audit).
    ("POST", f"{NATIVE}/tokens", handler("the caller's own; admins for anyone")),
    ("GET", f"{NATIVE}/tokens", handler("the caller's own; admins all")),
    ("DELETE", f"{NATIVE}/tokens/{{token_id}}", handler("the caller's own; admins any")),
    ("GET", f"{NATIVE}/audit", admin()),
)


def _rows() -> Iterator[tuple[str, str, Rule]]:
    for prefix in MLFLOW_PREFIXES:
        for method, path, rule in (*TRACKING, *REGISTRY, *USERS):
            yield method, prefix + path, rule
    for prefix in MLFLOW3_PREFIXES:
        for method, path, rule in MLFLOW3:
            yield method, prefix + path, rule
    for prefix in ARTIFACT_PREFIXES:
        for method, path, rule in ARTIFACTS:
            yield method, prefix + path, rule
    yield from OTHERS


def build_table(rows: Iterable[tuple[str, str, Rule]]) -> dict[tuple[str, str], Rule]:
    table: dict[tuple[str, str], Rule] = {}
    for method, path, rule in rows:
        if (method, path) in table:
            raise ValueError(f"two rules for {method} {path}")
        table[(method, path)] = rule
    return table


RULES = build_table(_rows())


def rule_for(method: str, canonical: str) -> Rule | None:
    """The rule of a route (HEAD is GET's; a ``*`` route's rule covers every method)."""
    method = "GET" if method == "HEAD" else method
    return RULES.get((method, canonical)) or RULES.get(("*", canonical))
