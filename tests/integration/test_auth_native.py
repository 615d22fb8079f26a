"""Auth on runstream's own routes: the SDK with a token, native reads, live, bulk, GraphQL."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

import runstream
import runstream.client.reader
from runstream.client import lifecycle
from runstream.server import build_app
from runstream.settings import Settings

ADMIN = ("admin", "admin-password-0123")
ALICE = ("alice", "alice-password-0123")
NATIVE = "/api/runstream/v1"


def basic(user: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(autouse=True)
def sdk_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RUNSTREAM_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("RUNSTREAM_FLUSH_INTERVAL", "0.05")
    for name in (
        "RUNSTREAM_URL",
        "MLFLOW_TRACKING_URI",
        "RUNSTREAM_TOKEN",
        "MLFLOW_TRACKING_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    yield
    for run in lifecycle.open_runs():
        run.finish("KILLED", timeout=0)


@pytest.fixture
async def url(settings: Settings) -> AsyncIterator[str]:
    auth = dataclasses.replace(
        settings, auth="basic", admin_username=ADMIN[0], admin_password=ADMIN[1]
    )
    server = TestServer(build_app(auth), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=headers) as answer:
        data = (
            await answer.json(content_type=None) if answer.content_type.endswith("json") else None
        )
        return answer.status, data


def sdk_session(
    url: str, token: str, experiment: str
) -> tuple[str, runstream.client.reader.History]:
    run = runstream.start_run(experiment=experiment, url=url, token=token)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    assert run.finish(timeout=30)
    with runstream.Client(url, token=token) as client:
        history = client.history(run.run_id, "loss", wait_for=run.write_token)
    return run.run_id, history


async def test_native_routes_follow_permissions(url: str, http: aiohttp.ClientSession) -> None:
    status, _ = await call(
        http,
        "POST",
        f"{url}/api/2.0/mlflow/users/create",
        basic(ADMIN),
        {"username": ALICE[0], "password": ALICE[1]},
    )
    assert status == 200
    status, issued = await call(
        http, "POST", f"{url}{NATIVE}/tokens", basic(ALICE), {"name": "sdk"}
    )
    assert status == 200
    token = issued["token"]

    # The admin's experiment and run, denied to alice.
    status, made = await call(
        http, "POST", f"{url}{NATIVE}/experiments/get-or-create", basic(ADMIN), {"name": "secret"}
    )
    secret = made["experiment_id"]
    status, run = await call(
        http, "POST", f"{url}/api/2.0/mlflow/runs/create", basic(ADMIN), {"experiment_id": secret}
    )
    secret_run = run["run"]["info"]["run_id"]
    status, _ = await call(
        http,
        "POST",
        f"{url}/api/3.0/mlflow/users/permissions/grant",
        basic(ADMIN),
        {
            "username": ALICE[0],
            "resource_type": "experiment",
            "resource_id": secret,
            "permission": "DENY",
        },
    )
    assert status == 200

    # The SDK with alice's token: her own experiment (she creates it, so she manages it).
    run_id, history = await asyncio.to_thread(sdk_session, url, token, "alices")
    assert list(history.values) == [1.0 / (s + 1) for s in range(5)]

    me = bearer(token)
    status, listed = await call(http, "GET", f"{url}{NATIVE}/experiments", me)
    names = {e["name"] for e in listed["experiments"]}
    assert "alices" in names and "secret" not in names and "Default" in names
    for path in (
        f"/experiments/{secret}",
        f"/experiments/{secret}/runs",
        f"/runs/{secret_run}",
        f"/runs/{secret_run}/history?key=loss",
        f"/live?runs={secret_run},{run_id}",
    ):
        status, body = await call(http, "GET", f"{url}{NATIVE}{path}", me)
        assert status == 403, path
        assert body["error_code"] == "PERMISSION_DENIED"
    status, _ = await call(
        http,
        "POST",
        f"{url}{NATIVE}/history/bulk",
        me,
        {"series": [{"run_id": run_id, "key": "loss"}, {"run_id": secret_run, "key": "loss"}]},
    )
    assert status == 403
    status, _ = await call(
        http,
        "POST",
        f"{url}{NATIVE}/history/bulk",
        me,
        {"series": [{"run_id": run_id, "key": "loss"}]},
    )
    assert status == 200
    events = {
        "events": [{"type": "run_tags_set", "v": 1, "run_id": secret_run, "tags": [["k", "v"]]}]
    }
    status, body = await call(http, "POST", f"{url}{NATIVE}/events", me, events)
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED"
    events["events"][0]["run_id"] = run_id
    status, _ = await call(http, "POST", f"{url}{NATIVE}/events", me, events)
    assert status == 200
    status, _ = await call(http, "POST", f"{url}{NATIVE}/events", {}, events)
    assert status == 401

    wanted = 'mlflowGetExperiment(input: {experimentId: "' + secret + '"})'
    query = {"query": "query { " + wanted + " { experiment { name } } }"}
    status, answer = await call(http, "POST", f"{url}/graphql", me, query)
    assert status == 200 and answer["errors"] and "Permission denied" in answer["errors"][0]
    status, answer = await call(http, "POST", f"{url}/graphql", basic(ADMIN), query)
    assert answer["data"]["mlflowGetExperiment"]["experiment"]["name"] == "secret"
