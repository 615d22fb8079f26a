"""The server the real ``mlflow`` client talks to: runstream, or MLflow itself.

``RUNSTREAM_COMPAT_TARGET=mlflow`` starts ``mlflow server`` on a fresh PostgreSQL database
with ``--artifacts-destination`` (the seeds' deployment); anything else builds runstream's
full in-process server (ingest + api + projector + MLflow and artifact routes) and serves it
on a real port from a thread with its own event loop, since the mlflow client blocks.
The same tests run against both: that is the compatibility proof
(``python -m bench --only mlflow_proof``).

One server per session (MLflow takes seconds to migrate a database); tests isolate
themselves by unique experiment names.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import mlflow
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from runstream.settings import Settings

TARGET = os.environ.get("RUNSTREAM_COMPAT_TARGET", "runstream")
START_TIMEOUT = 120.0

# The client retries 5xx for minutes by default; a failure should show at once. No telemetry.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@dataclass(frozen=True)
class Target:
    name: str
    """``runstream`` or ``mlflow``."""
    uri: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_database(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


async def _create_database(admin_url: str, name: str, template: str | None) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute("SELECT pg_advisory_lock(7263)")
        try:
            suffix = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        finally:
            await conn.execute("SELECT pg_advisory_unlock(7263)")
    finally:
        await conn.close()


async def _drop_keys(redis_url: str, prefix: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _wait_until_up(
    uri: str, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(uri + "/api/2.0/mlflow/experiments/get?experiment_id=0"):
                return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{uri} did not answer within {timeout} s")


class _ThreadedServer:
    """An aiohttp app served from a thread with its own event loop."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.app = app
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
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


def build_runstream_app(settings: Settings) -> web.Application:
    """The app ``runstream server`` runs: ingest, api (MLflow and artifact routes), projector."""
    from runstream.server import build_app

    return build_app(settings)


@pytest.fixture(scope="session")
def compat_target(
    pg_admin_url: str,
    redis_url: str,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Target]:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    name = f"rs_compat_{TARGET}_{uuid.uuid4().hex[:10]}"
    workdir = tmp_path_factory.mktemp(f"compat-{TARGET}")
    if TARGET == "mlflow":
        asyncio.run(_create_database(pg_admin_url, name, None))
        backend = with_database(pg_admin_url, name).replace(
            "postgresql://", "postgresql+psycopg2://"
        )
        log = open(workdir / "mlflow-server.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--backend-store-uri",
                backend,
                "--artifacts-destination",
                str(workdir / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
        try:
            _wait_until_up(uri, START_TIMEOUT, process)
            yield Target("mlflow", uri)
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
            asyncio.run(_drop_database(pg_admin_url, name))
        return
    asyncio.run(_create_database(pg_admin_url, name, template_database))
    settings = Settings(
        database_url=with_database(pg_admin_url, name),
        redis_url=redis_url,
        stream_prefix=f"rsc{uuid.uuid4().hex[:12]}",
        shards=4,
        data_dir=workdir / "data",
        artifacts_url=str(workdir / "artifacts"),
        projector_block_ms=50,
        read_your_writes_timeout=10.0,
    )
    server = _ThreadedServer(build_runstream_app(settings), port)
    server.start()
    try:
        _wait_until_up(uri, START_TIMEOUT)
        yield Target("runstream", uri)
    finally:
        server.stop()
        asyncio.run(_drop_database(pg_admin_url, name))
        asyncio.run(_drop_keys(redis_url, settings.stream_prefix))


@pytest.fixture(autouse=True)
def tracking_uri(compat_target: Target, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", compat_target.uri)
    mlflow.set_tracking_uri(compat_target.uri)
    yield compat_target.uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def unique() -> str:
    """A suffix that keeps this test's experiment names apart from every other test's."""
    return uuid.uuid4().hex[:10]
