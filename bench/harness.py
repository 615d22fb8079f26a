"""Servers for benchmarks: a ``runstream server`` and a real ``mlflow server``, side by side.

Both are context managers that create a fresh PostgreSQL database (and, for runstream, a
fresh Redis key prefix), start the server as a child process on a free loopback port, wait
for its health check, yield its URL, and on exit stop the process (its whole process group:
MLflow's uvicorn workers included) and drop what they created::

    from bench.harness import start_mlflow, start_runstream

    with start_runstream() as rs, start_mlflow() as ml:
        print(rs.url, ml.url)

Stores default to the PostgreSQL and Redis on 127.0.0.1 (``BenchStores.from_env``:
``RUNSTREAM_BENCH_PG``/``RUNSTREAM_TEST_DATABASE_URL`` and ``RUNSTREAM_BENCH_REDIS``).
Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis

HOST = "127.0.0.1"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
HEALTH_TIMEOUT = 180.0
"""Seconds a server gets to answer /health (MLflow migrates a fresh database: 10-40 s)."""
STOP_TIMEOUT = 10.0
MLFLOW_DEFAULT_WORKERS = 4
"""What ``mlflow server`` starts when ``--workers`` is not given (uvicorn, MLflow 3.x)."""


class ServerFailed(RuntimeError):
    """A benchmark server did not come up; the message carries the tail of its log."""


@dataclass(frozen=True, slots=True)
class BenchStores:
    """The external stores benchmarks use: an admin PostgreSQL DSN and a Redis URL."""

    pg_admin: str = DEFAULT_PG
    redis_url: str = DEFAULT_REDIS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BenchStores:
        env = os.environ if environ is None else environ
        pg = env.get("RUNSTREAM_BENCH_PG") or env.get("RUNSTREAM_TEST_DATABASE_URL") or DEFAULT_PG
        return cls(pg, env.get("RUNSTREAM_BENCH_REDIS") or DEFAULT_REDIS)

    def database_url(self, name: str) -> str:
        """The admin DSN with its database replaced by ``name``."""
        return urlunsplit(urlsplit(self.pg_admin)._replace(path="/" + name))


@dataclass
class Server:
    """A running benchmark server."""

    kind: str
    url: str
    database_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    prefix: str = ""
    """Redis key prefix (runstream only)."""
    workers: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def venv_bin(name: str) -> str:
    """An executable next to this interpreter (the venv's ``mlflow``), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerFailed(f"{name!r} is not installed next to {sys.executable} nor on PATH")
    return found


# -- databases and prefixes ------------------------------------------------------------------


async def _admin(pg_admin: str, sql: str) -> None:
    conn = await asyncpg.connect(pg_admin, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(stores: BenchStores, name: str) -> str:
    asyncio.run(_admin(stores.pg_admin, f'CREATE DATABASE "{name}"'))
    return stores.database_url(name)


def drop_database(stores: BenchStores, name: str) -> None:
    asyncio.run(_admin(stores.pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def delete_prefix(redis_url: str, prefix: str) -> int:
    """Delete every Redis key under ``prefix:`` (bounded scan); returns how many."""
    client = redis.Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.delete(*batch))
                batch = []
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


# -- processes -------------------------------------------------------------------------------


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], timeout: float, log_path: Path
) -> float:
    """Poll ``url/health`` until it answers 200; returns the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(
                f"{url}: exited with {process.returncode} before answering /health:\n"
                + _tail(log_path)
            )
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.2)
    raise ServerFailed(f"{url}: no healthy answer in {timeout:g} s:\n" + _tail(log_path))


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group (the server and its workers), SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _spawn(argv: Sequence[str], log: IO[bytes], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    # Own session: stop_process signals the group, so MLflow's uvicorn workers go too.
    return subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env),
        start_new_session=True,
    )


@contextlib.contextmanager
def start_runstream(
    stores: BenchStores | None = None,
    *,
    run_projector: bool = True,
    flags: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    health_timeout: float = HEALTH_TIMEOUT,
) -> Iterator[Server]:
    """``runstream server`` on a fresh database and Redis prefix; yields the running server.

    ``run_projector=False`` serves ingest and api only (nothing is applied to PostgreSQL:
    for measuring ingest alone). ``flags`` are extra ``runstream server`` flags
    (``["--shards", "16"]``).
    """
    stores = stores or BenchStores.from_env()
    token = uuid.uuid4().hex[:10]
    db_name = f"rs_bench_{token}"
    prefix = f"rsbench{token}"
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rs-bench-"))
    log_path = workdir / "server.log"
    database_url = create_database(stores, db_name)
    process: subprocess.Popen[bytes] | None = None
    try:
        argv = [
            sys.executable, "-m", "runstream", "server",
            "--database-url", database_url,
            "--redis-url", stores.redis_url,
            "--stream-prefix", prefix,
            "--host", HOST,
            "--port", str(port),
            "--data-dir", str(workdir / "data"),
            "--log-level", "WARNING",
            "--run-projector" if run_projector else "--no-run-projector",
            *flags,
        ]  # fmt: skip
        child_env = {**os.environ, **(env or {})}
        with open(log_path, "wb") as log:
            process = _spawn(argv, log, child_env)
        url = f"http://{HOST}:{port}"
        wait_healthy(url, process, health_timeout, log_path)
        yield Server("runstream", url, database_url, process, log_path, prefix=prefix)
    finally:
        if process is not None:
            stop_process(process)
        with contextlib.suppress(Exception):
            delete_prefix(stores.redis_url, prefix)
        with contextlib.suppress(Exception):
            drop_database(stores, db_name)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def start_mlflow(
    stores: BenchStores | None = None,
    *,
    workers: int | None = None,
    flags: Sequence[str] = (),
    health_timeout: float = HEALTH_TIMEOUT,
) -> Iterator[Server]:
    """A real ``mlflow server`` on a fresh PostgreSQL database; yields the running server.

    ``workers=None`` runs what MLflow users get by default (``MLFLOW_DEFAULT_WORKERS``
    uvicorn workers); artifacts go to a temporary folder (``--artifacts-destination``).
    """
    stores = stores or BenchStores.from_env()
    token = uuid.uuid4().hex[:10]
    db_name = f"mlflow_bench_{token}"
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="mlflow-bench-"))
    log_path = workdir / "server.log"
    create_database(stores, db_name)
    backend = urlunsplit(
        urlsplit(stores.database_url(db_name))._replace(scheme="postgresql+psycopg2")
    )
    process: subprocess.Popen[bytes] | None = None
    try:
        argv = [
            venv_bin("mlflow"), "server",
            "--backend-store-uri", backend,
            "--artifacts-destination", str(workdir / "artifacts"),
            "--host", HOST,
            "--port", str(port),
        ]  # fmt: skip
        if workers is not None:
            argv += ["--workers", str(workers)]
        argv += list(flags)
        # The server's own telemetry and tracking settings stay out of the measurement.
        child_env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        child_env.pop("MLFLOW_TRACKING_URI", None)
        with open(log_path, "wb") as log:
            process = _spawn(argv, log, child_env)
        url = f"http://{HOST}:{port}"
        wait_healthy(url, process, health_timeout, log_path)
        yield Server(
            "mlflow",
            url,
            stores.database_url(db_name),
            process,
            log_path,
            workers=workers or MLFLOW_DEFAULT_WORKERS,
        )
    finally:
        if process is not None:
            stop_process(process)
        with contextlib.suppress(Exception):
            drop_database(stores, db_name)
        shutil.rmtree(workdir, ignore_errors=True)


# -- machine facts ---------------------------------------------------------------------------


def machine_facts(stores: BenchStores | None = None) -> dict[str, str]:
    """CPU count, memory, Python, PostgreSQL and Redis versions, load (for the report)."""
    stores = stores or BenchStores.from_env()
    facts: dict[str, str] = {
        "nproc": str(os.cpu_count() or "?"),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                facts["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        facts["load_average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with contextlib.suppress(Exception):
        facts["postgresql"] = asyncio.run(_pg_version(stores.pg_admin))
    with contextlib.suppress(Exception):
        client = redis.Redis.from_url(stores.redis_url)
        try:
            info = client.info("server")
            facts["redis"] = str(info.get("redis_version", "?"))
        finally:
            client.close()
    with contextlib.suppress(Exception):
        import mlflow

        facts["mlflow"] = mlflow.__version__
    return facts


async def _pg_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
