"""Auth with the real ``mlflow`` client and its ``AuthServiceClient`` against runstream."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ADMIN, ADMIN_PASSWORD, Acting, AuthServer
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException, RestException
from mlflow.server import get_app_client

PASSWORD = "a-long-password-42"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def http(
    server: AuthServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    user: tuple[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json"}
    if user is not None:
        raw = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {raw}"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.uri + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request) as answer:
            text = answer.read()
            status, answer_headers = answer.status, dict(answer.headers)
    except urllib.error.HTTPError as error:
        text = error.read()
        status, answer_headers = error.code, dict(error.headers)
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text.decode()
    return status, answer_headers, parsed


def refused(call: Any, *args: Any, **kwargs: Any) -> MlflowException:
    with pytest.raises(MlflowException) as info:
        call(*args, **kwargs)
    return info.value


def assert_denied(error: MlflowException) -> None:
    assert isinstance(error, RestException), error
    assert error.error_code == "PERMISSION_DENIED", error
    assert error.get_http_status_code() == 403


def new_user(acting: Acting, uri: str) -> str:
    acting.admin()
    username = unique("user")
    user = get_app_client("basic-auth", uri).create_user(username, PASSWORD)
    assert user.username == username
    assert user.is_admin is False
    return username


def test_open_routes_and_the_challenge(auth_server: AuthServer) -> None:
    status, _, _ = http(auth_server, "GET", "/health")
    assert status == 200
    status, _, info = http(auth_server, "GET", "/api/3.0/mlflow/server-info")
    assert status == 200 and "store_type" in info
    status, headers, body = http(
        auth_server, "GET", "/api/2.0/mlflow/experiments/get?experiment_id=0"
    )
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert body["error_code"] == "UNAUTHENTICATED"
    status, headers, _ = http(
        auth_server,
        "GET",
        "/api/2.0/mlflow/experiments/get?experiment_id=0",
        user=(ADMIN, "wrong-password-123"),
    )
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    status, _, body = http(
        auth_server,
        "GET",
        "/api/2.0/mlflow/experiments/get?experiment_id=0",
        user=(ADMIN, ADMIN_PASSWORD),
    )
    assert status == 200 and body["experiment"]["experiment_id"] == "0"


def test_users_api_as_mlflow(auth_server: AuthServer, acting: Acting) -> None:
    auth = get_app_client("basic-auth", auth_server.uri)
    username = new_user(acting, auth_server.uri)
    assert auth.get_user(username).username == username
    error = refused(auth.create_user, username, PASSWORD)
    assert isinstance(error, RestException) and error.error_code == "RESOURCE_ALREADY_EXISTS"
    error = refused(auth.create_user, unique("short"), "too-short")
    assert isinstance(error, RestException) and error.error_code == "INVALID_PARAMETER_VALUE"
    error = refused(auth.get_user, unique("nobody"))
    assert isinstance(error, RestException) and error.error_code == "RESOURCE_DOES_NOT_EXIST"

    acting.user(username, PASSWORD)
    assert_denied(refused(auth.create_user, unique("other"), PASSWORD))  # a non-admin cannot
    assert_denied(refused(auth.get_user, ADMIN))
    assert_denied(refused(auth.update_user_admin, username, True))
    status, _, me = http(
        auth_server, "GET", "/api/2.0/mlflow/users/current", user=(username, PASSWORD)
    )
    assert status == 200 and me["user"]["username"] == username and me["user"]["is_admin"] is False
    # Self-service password change needs the current password, as in MLflow.
    error = refused(auth.update_user_password, username, "another-password-1")
    assert isinstance(error, RestException) and error.error_code == "INVALID_PARAMETER_VALUE"
    auth.update_user_password(username, "another-password-1", current_password=PASSWORD)
    acting.user(username, "another-password-1")
    assert auth.get_user(username).username == username

    acting.admin()
    auth.update_user_admin(username, True)
    assert auth.get_user(username).is_admin is True
    auth.delete_user(username)
    acting.user(username, "another-password-1")  # a deleted user's credentials fail
    error = refused(MlflowClient().get_experiment, "0")
    assert error.get_http_status_code() == 401


def test_read_edit_deny_revoke(auth_server: AuthServer, acting: Acting) -> None:
    auth = get_app_client("basic-auth", auth_server.uri)
    client = MlflowClient()
    alice = new_user(acting, auth_server.uri)
    experiment_id = client.create_experiment(unique("shared"))
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "loss", 0.5, step=1)

    auth.grant_user_permission(alice, "experiment", experiment_id, "READ")
    result = auth.get_user_permission(alice, "experiment", experiment_id)
    assert (result.permission, result.allowed) == ("READ", False)

    acting.user(alice, PASSWORD)  # READ: reads work, writes are refused
    assert client.get_experiment(experiment_id).experiment_id == experiment_id
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    assert [r.info.run_id for r in client.search_runs([experiment_id])] == [run.info.run_id]
    assert_denied(refused(client.log_metric, run.info.run_id, "loss", 0.4, step=2))
    assert_denied(refused(client.create_run, experiment_id))
    assert_denied(refused(client.set_experiment_tag, experiment_id, "k", "v"))
    assert_denied(refused(auth.grant_user_permission, alice, "experiment", experiment_id, "MANAGE"))

    acting.admin()
    auth.grant_user_permission(alice, "experiment", experiment_id, "EDIT")
    acting.user(alice, PASSWORD)  # EDIT: writes work, delete does not
    own_run = client.create_run(experiment_id)
    client.log_batch(own_run.info.run_id, metrics=[Metric("acc", 0.9, 0, 1)])
    client.log_metric(run.info.run_id, "loss", 0.4, step=2)
    assert client.get_metric_history(own_run.info.run_id, "acc")[0].value == 0.9
    assert_denied(refused(client.delete_experiment, experiment_id))

    acting.admin()
    auth.grant_user_permission(alice, "experiment", experiment_id, "DENY")
    acting.user(alice, PASSWORD)  # DENY hides it
    assert_denied(refused(client.get_experiment, experiment_id))
    assert_denied(refused(client.get_run, run.info.run_id))
    visible = {e.experiment_id for e in client.search_experiments()}
    assert experiment_id not in visible and "0" in visible
    assert list(client.search_runs([experiment_id, "0"])) == []

    acting.admin()
    auth.revoke_user_permission(alice, "experiment", experiment_id)
    acting.user(alice, PASSWORD)  # back to the default, READ
    assert client.get_experiment(experiment_id).experiment_id == experiment_id
    assert_denied(refused(client.log_metric, run.info.run_id, "loss", 0.3, step=3))
    status, _, listed = http(
        auth_server,
        "GET",
        f"/api/3.0/mlflow/users/permissions/list?username={alice}",
        user=(alice, PASSWORD),
    )
    assert status == 200 and listed == {"is_admin": False, "permissions": []}


def test_creator_manages_and_delegates(auth_server: AuthServer, acting: Acting) -> None:
    auth = get_app_client("basic-auth", auth_server.uri)
    client = MlflowClient()
    alice = new_user(acting, auth_server.uri)
    bob = new_user(acting, auth_server.uri)
    acting.user(alice, PASSWORD)
    experiment_id = client.create_experiment(unique("alices"))
    assert auth.get_user_permission(alice, "experiment", experiment_id).permission == "MANAGE"
    auth.grant_user_permission(bob, "experiment", experiment_id, "EDIT")  # MANAGE may grant
    acting.user(bob, PASSWORD)
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "lr", "0.1")
    assert_denied(refused(auth.grant_user_permission, bob, "experiment", experiment_id, "MANAGE"))
    error = refused(auth.grant_user_permission, bob, "experiment", experiment_id, "NO_PERMISSIONS")
    assert isinstance(error, RestException) and error.error_code == "INVALID_PARAMETER_VALUE"

    status, _, audit = http(auth_server, "GET", "/api/runstream/v1/audit", user=(bob, PASSWORD))
    assert status == 403
    status, _, audit = http(
        auth_server, "GET", "/api/runstream/v1/audit", user=(ADMIN, ADMIN_PASSWORD)
    )
    assert status == 200
    grants = [
        e
        for e in audit["entries"]
        if e["action"] == "permission_granted" and e["resource_id"] == experiment_id
    ]
    assert {(e["actor"], e["username"], e["permission"]) for e in grants} == {
        ("runstream", alice, "MANAGE"),
        (alice, bob, "EDIT"),
    }
    assert all(isinstance(e["at"], int) for e in grants)


def test_foreign_artifacts_are_refused(
    auth_server: AuthServer, acting: Acting, tmp_path: Path
) -> None:
    auth = get_app_client("basic-auth", auth_server.uri)
    client = MlflowClient()
    alice = new_user(acting, auth_server.uri)
    experiment_id = client.create_experiment(unique("secret"))
    run = client.create_run(experiment_id)
    source = tmp_path / "weights.txt"
    source.write_text("secret weights")
    client.log_artifact(run.info.run_id, str(source))
    auth.grant_user_permission(alice, "experiment", experiment_id, "DENY")

    acting.user(alice, PASSWORD)
    assert_denied(refused(client.download_artifacts, run.info.run_id, "weights.txt", str(tmp_path)))
    path = f"{experiment_id}/{run.info.run_id}/artifacts/weights.txt"
    status, _, _ = http(
        auth_server, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{path}", user=(alice, PASSWORD)
    )
    assert status == 403
    status, _, _ = http(
        auth_server,
        "GET",
        f"/api/2.0/mlflow-artifacts/artifacts/0/../{path}",
        user=(alice, PASSWORD),
    )
    assert status in (403, 404)
    acting.admin()
    out = client.download_artifacts(run.info.run_id, "weights.txt", str(tmp_path / "admin"))
    assert Path(out).read_text() == "secret weights"


def test_tokens(auth_server: AuthServer, acting: Acting) -> None:
    alice = new_user(acting, auth_server.uri)
    status, _, issued = http(
        auth_server, "POST", "/api/runstream/v1/tokens", {"name": "ci"}, user=(alice, PASSWORD)
    )
    assert status == 200 and issued["token"].startswith("rst_")
    token = issued["token"]
    acting.token(token)
    client = MlflowClient()
    assert client.get_experiment("0").experiment_id == "0"
    status, _, listed = http(auth_server, "GET", "/api/runstream/v1/tokens", token=token)
    assert [t["name"] for t in listed["tokens"]] == ["ci"]
    assert "token" not in listed["tokens"][0]  # shown once, at issue

    status, _, _ = http(
        auth_server,
        "DELETE",
        f"/api/runstream/v1/tokens/{issued['token_info']['id']}",
        user=(alice, PASSWORD),
    )
    assert status == 200
    error = refused(client.get_experiment, "0")  # revoked
    assert error.get_http_status_code() == 401

    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    status, _, short = http(
        auth_server,
        "POST",
        "/api/runstream/v1/tokens",
        {"name": "short", "expires_at": soon},
        user=(alice, PASSWORD),
    )
    assert status == 200
    acting.token(short["token"])
    assert client.get_experiment("0").experiment_id == "0"
    time.sleep(1.2)
    error = refused(client.get_experiment, "0")  # expired
    assert error.get_http_status_code() == 401
