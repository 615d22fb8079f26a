"""Every route of ``runstream server`` has a permission rule; the pure parts of auth."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from runstream.auth import credentials as cr
from runstream.auth import permissions as perm
from runstream.auth.guard import artifact_experiment
from runstream.auth.rules import RULES, Access, rule_for
from runstream.ingest.handlers import event_targets
from runstream.schemas import experiments as ex
from runstream.schemas import runs as rn
from runstream.schemas.errors import InvalidParameterValue
from runstream.server import build_app
from runstream.settings import Settings


def server_routes(auth: str) -> list[tuple[str, str]]:
    settings = Settings(
        database_url="postgresql://unused/none",
        redis_url="redis://unused:1/0",
        data_dir=Path("/nonexistent"),
        artifacts_url="/nonexistent/artifacts",
        auth=auth,
        admin_password="x" * 12,
    )
    app = build_app(settings)  # builds routes only: no store is contacted before start-up
    return [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    ]


@pytest.mark.parametrize("auth", ["basic", "none"])
def test_every_route_of_the_server_has_a_rule(auth: str) -> None:
    routes = server_routes(auth)
    assert len(routes) > 50
    missing = sorted({(m, p) for m, p in routes if rule_for(m, p) is None})
    assert missing == [], f"routes without a permission rule: {missing}"


def test_auth_routes_are_only_mounted_with_auth_on() -> None:
    assert ("POST", "/api/2.0/mlflow/users/create") in server_routes("basic")
    assert ("POST", "/api/2.0/mlflow/users/create") not in server_routes("none")


def test_open_routes_are_mlflows() -> None:
    public = sorted(path for (method, path), rule in RULES.items() if rule.access is Access.PUBLIC)
    assert public == [
        "/ajax-api/3.0/mlflow/server-info",
        "/api/3.0/mlflow/server-info",
        "/health",
        "/static-files/{path}",
    ]


def test_registry_rules_wait_for_the_registry_routes() -> None:
    rule = rule_for("DELETE", "/api/2.0/mlflow/registered-models/delete")
    assert rule is not None and rule.action is perm.Action.DELETE
    rule = rule_for("POST", "/ajax-api/2.0/mlflow/model-versions/create")
    assert rule is not None and rule.action is perm.Action.UPDATE
    assert rule.locator is not None and rule.locator.field == "name"


def test_levels_as_mlflow() -> None:
    assert [p.name for p in (perm.READ, perm.USE, perm.EDIT, perm.MANAGE)] == list(
        perm.GRANTABLE[:4]
    )
    assert perm.READ.can_read and not perm.READ.can_update
    assert perm.EDIT.can_update and not perm.EDIT.can_delete
    assert perm.MANAGE.can_manage
    assert not any(
        getattr(perm.DENY, f) for f in ("can_read", "can_use", "can_update", "can_delete")
    )
    with pytest.raises(InvalidParameterValue):
        perm.grantable("NO_PERMISSIONS")
    with pytest.raises(InvalidParameterValue):
        perm.resource_type("workspace")


def test_resolution_grant_else_default_admin_everything() -> None:
    alice = perm.Principal(
        1, "alice", False, {("experiment", "1"): "DENY", ("experiment", "2"): "EDIT"}
    )
    root = perm.Principal(2, "root", True, {("experiment", "1"): "DENY"})
    assert alice.permission_on("experiment", "1", perm.READ) is perm.DENY
    assert alice.permission_on("experiment", "2", perm.READ) is perm.EDIT
    assert alice.permission_on("experiment", "3", perm.READ) is perm.READ
    assert alice.permission_on("experiment", "3", perm.NO_PERMISSIONS) is perm.NO_PERMISSIONS
    assert root.permission_on("experiment", "1", perm.NO_PERMISSIONS) is perm.MANAGE
    assert alice.readable_exceptions("experiment", perm.READ) == {"1"}
    assert alice.readable_exceptions("experiment", perm.NO_PERMISSIONS) == {"2"}


def test_authorization_header_parsing() -> None:
    raw = base64.b64encode(b"alice:pa:ss word").decode()
    assert cr.parse_authorization(f"Basic {raw}") == cr.BasicCredentials("alice", "pa:ss word")
    assert cr.parse_authorization("Bearer rst_abc") == cr.BearerToken("rst_abc")
    assert cr.parse_authorization("Basic !!!") is None
    assert cr.parse_authorization("Digest x") is None
    assert cr.parse_authorization(None) is None


def test_passwords_and_tokens() -> None:
    stored = cr.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert cr.verify_password(stored, "correct horse battery")
    assert not cr.verify_password(stored, "correct horse battery!")
    with pytest.raises(InvalidParameterValue):
        cr.check_password("short")
    token = cr.new_token()
    assert token.startswith("rst_") and len(token) > 40
    assert cr.token_digest(token) == cr.token_digest(token) != cr.token_digest(cr.new_token())


def test_artifact_paths_name_their_experiment() -> None:
    assert artifact_experiment("12/abc/artifacts/model.pkl") == "12"
    assert artifact_experiment("/12/x") == "12"
    assert artifact_experiment("1/../2/abc/artifacts/x") == "2"
    assert artifact_experiment("../secrets") is None
    assert artifact_experiment("") is None
    assert artifact_experiment("models/x") is None


def test_event_targets() -> None:
    created = rn.RunCreated("a" * 32, "7", "u", "r", 1, "")
    events = [
        created,
        rn.RunTagsSet("a" * 32, (("k", "v"),)),
        rn.RunTagsSet("b" * 32, (("k", "v"),)),
        rn.RunDeleted("c" * 32, 1),
        ex.ExperimentTagSet("9", "k", "v"),
    ]
    targets = event_targets(events)  # type: ignore[arg-type]
    assert targets["update"] == ({"b" * 32}, {"7", "9"}, set())
    assert targets["delete"] == ({"c" * 32}, set(), set())
