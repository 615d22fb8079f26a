"""A runstream server with auth on (``--auth basic``), for the real ``mlflow`` client.

One server per module on a real port, served from a thread with its own event loop (the
mlflow client blocks); its own database from the migrated template and its own key prefix.
Tests act as a user by setting ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (or ``_TOKEN``),
which the client reads on every request.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import mlflow
import pytest
from aiohttp import web

from runstream.server import build_app
from runstream.settings import Settings

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

ADMIN = "admin"
ADMIN_PASSWORD = "admin-password-0123"


@dataclass(frozen=True)
class AuthServer:
    uri: str
    settings: Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Threaded:
    def __init__(self, app: web.Application, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.port = port
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _sql(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute("SELECT pg_advisory_lock(7263)")
        try:
            await conn.execute(statement)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(7263)")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def auth_server(
    pg_admin_url: str,
    redis_url: str,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AuthServer]:
    name = f"rs_auth_{uuid.uuid4().hex[:12]}"
    asyncio.run(_sql(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    workdir: Path = tmp_path_factory.mktemp("auth")
    base, _, _ = pg_admin_url.rpartition("/")
    port = _free_port()
    settings = Settings(
        database_url=f"{base}/{name}",
        redis_url=redis_url,
        stream_prefix=f"rsa{uuid.uuid4().hex[:12]}",
        shards=4,
        port=port,
        data_dir=workdir / "data",
        artifacts_url=str(workdir / "artifacts"),
        projector_block_ms=50,
        auth="basic",
        admin_username=ADMIN,
        admin_password=ADMIN_PASSWORD,
    )
    server = _Threaded(build_app(settings), port)
    server.start()
    try:
        yield AuthServer(f"http://127.0.0.1:{port}", settings)
    finally:
        server.stop()
        asyncio.run(_drop(pg_admin_url, name, redis_url, settings.stream_prefix))


async def _drop(admin_url: str, name: str, redis_url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


class Acting:
    """Switches the credentials the mlflow client sends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def user(self, username: str, password: str) -> None:
        self.monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        self.monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
        self.monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)

    def admin(self) -> None:
        self.user(ADMIN, ADMIN_PASSWORD)

    def token(self, token: str) -> None:
        self.monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        self.monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        self.monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)

    def nobody(self) -> None:
        for name in (
            "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD",
            "MLFLOW_TRACKING_TOKEN",
        ):
            self.monkeypatch.delenv(name, raising=False)


@pytest.fixture
def acting(auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Acting]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server.uri)
    mlflow.set_tracking_uri(auth_server.uri)
    act = Acting(monkeypatch)
    act.admin()
    yield act
    while mlflow.active_run() is not None:
        mlflow.end_run()
