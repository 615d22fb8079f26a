"""The one way benchmarks start servers: runstream, MLflow's server, a null server, Redis.

Each is a context manager that starts a child process on a free loopback port, waits for
its health check, yields it, and on exit stops the process (its whole process group:
MLflow's uvicorn workers included) and drops what it created::

    from bench.harness import start_mlflow, start_null_server, start_runstream

    with start_runstream() as rs, start_mlflow() as ml, start_null_server() as null:
        print(rs.url, ml.url, null.url)

- ``start_runstream``: ``runstream server`` on a fresh PostgreSQL database and Redis key
  prefix. Redis is, unless told otherwise, a dedicated ``redis-server`` (or the embedded
  Valkey) with persistence as deployed (``--appendonly yes --appendfsync everysec``, as in
  ``compose.yaml``): never the shared one on 6379, whose persistence is whatever it is.
- ``start_mlflow``: ``mlflow server`` on a fresh PostgreSQL database, as MLflow users run it.
- ``start_null_server``: ``bench/null_server.py``, the floor of the per-call benchmarks.

Both tracking servers get the same warm-up (``warm_up``) before anything is measured.
PostgreSQL defaults to 127.0.0.1:5432 (``RUNSTREAM_BENCH_PG`` or
``RUNSTREAM_TEST_DATABASE_URL``); every database is dropped on exit.
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
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
HEALTH_TIMEOUT = 180.0
"""Seconds a server gets to answer /health (MLflow migrates a fresh database: 10-40 s)."""
STOP_TIMEOUT = 10.0
MLFLOW_DEFAULT_WORKERS = 4
"""What ``mlflow server`` starts when ``--workers`` is not given (uvicorn, MLflow 3.x)."""


class ServerFailed(RuntimeError):
    """A benchmark server did not come up; the message carries the tail of its log."""


@dataclass(frozen=True, slots=True)
class BenchStores:
    """The stores benchmarks use: an admin PostgreSQL DSN, and a Redis URL or None.

    ``redis_url=None`` (the default) means a dedicated Redis with AOF persistence is started
    for the run (``start_redis``); a URL (``RUNSTREAM_BENCH_REDIS``, ``--redis``) uses that
    server as it is configured, and the report says so.
    """

    pg_admin: str = DEFAULT_PG
    redis_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BenchStores:
        env = os.environ if environ is None else environ
        pg = env.get("RUNSTREAM_BENCH_PG") or env.get("RUNSTREAM_TEST_DATABASE_URL") or DEFAULT_PG
        return cls(pg, env.get("RUNSTREAM_BENCH_REDIS") or None)

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


def table_bytes(database_url: str) -> dict[str, int]:
    """``pg_total_relation_size`` (heap, indexes, TOAST) of every table in the database's
    own schemas, after ``VACUUM ANALYZE``: what the data costs on disk, all of it."""
    return asyncio.run(_table_bytes(database_url))


async def _table_bytes(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await conn.execute("VACUUM ANALYZE")
        rows = await conn.fetch(
            "SELECT n.nspname || '.' || c.relname AS name,"
            " pg_total_relation_size(c.oid) AS bytes"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'm')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%'"
        )
    finally:
        await conn.close()
    return {str(r["name"]): int(r["bytes"]) for r in rows}


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


def _spawn(
    argv: Sequence[str], log: IO[bytes] | int, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    # Own session: stop_process signals the group, so MLflow's uvicorn workers go too.
    return subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env),
        start_new_session=True,
    )


@dataclass(frozen=True, slots=True)
class RedisServer:
    """A Redis the benchmark started (or was given): its URL and how it persists."""

    url: str
    persistence: str


def redis_binary() -> str:
    """``redis-server`` on PATH, else the embedded Valkey runstream ships with."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    from runstream.embedded import valkey_binary

    return str(valkey_binary())


def _redis_ready(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def start_redis(health_timeout: float = 30.0) -> Iterator[RedisServer]:
    """A dedicated Redis on a free loopback port, persisting as deployed: AOF on,
    ``appendfsync everysec``, no RDB snapshots (``compose.yaml``'s and the embedded
    store's settings). Its folder is removed on exit."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rs-bench-redis-"))
    log_path = workdir / "redis.log"
    argv = [
        redis_binary(), "--port", str(port), "--bind", HOST, "--dir", str(workdir),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        "--daemonize", "no", "--protected-mode", "yes", "--logfile", str(log_path),
    ]  # fmt: skip
    url = f"redis://{HOST}:{port}/0"
    process = _spawn(argv, subprocess.DEVNULL, os.environ)
    try:
        deadline = time.monotonic() + health_timeout
        while not _redis_ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServerFailed(f"redis on {url} did not start:\n" + _tail(log_path))
            time.sleep(0.05)
        yield RedisServer(url, "appendonly yes, appendfsync everysec")
    finally:
        stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)


_workers_flag: bool | None = None


def runstream_has_workers_flag() -> bool:
    """Whether this checkout's ``runstream server`` takes ``--workers N`` (issue 12 adds it)."""
    global _workers_flag
    if _workers_flag is None:
        done = subprocess.run(
            [sys.executable, "-m", "runstream", "server", "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        _workers_flag = "--workers" in done.stdout
    return _workers_flag


@contextlib.contextmanager
def start_runstream(
    stores: BenchStores | None = None,
    *,
    run_projector: bool = True,
    workers: int | None = None,
    flags: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    health_timeout: float = HEALTH_TIMEOUT,
    python: Sequence[str] | None = None,
) -> Iterator[Server]:
    """``runstream server`` on a fresh database and Redis prefix; yields the running server.

    ``python`` replaces the interpreter's argv (``[python, "-m", "bench.cpu_profile", path]``
    profiles the server, bench/call_cost.py).

    ``run_projector=False`` serves ingest and api only (nothing is applied to PostgreSQL:
    for measuring ingest alone). ``workers`` is passed as ``--workers N`` when the CLI has
    that flag (``Server.workers`` says what ran; without the flag it is 1 and
    ``Server.extra["workers_note"]`` says why). ``flags`` are extra ``runstream server``
    flags (``["--shards", "16"]``). Without ``stores.redis_url`` a dedicated AOF Redis is
    started for this server alone.
    """
    stores = stores or BenchStores.from_env()
    if stores.redis_url is None:
        with start_redis() as own:
            dedicated = BenchStores(stores.pg_admin, own.url)
            with start_runstream(
                dedicated,
                run_projector=run_projector,
                workers=workers,
                flags=flags,
                env=env,
                health_timeout=health_timeout,
                python=python,
            ) as server:
                yield server
        return
    redis_url = stores.redis_url
    extra: dict[str, str] = {}
    worker_flags: list[str] = []
    ran_workers = 1
    if workers is not None:
        if runstream_has_workers_flag():
            worker_flags = ["--workers", str(workers)]
            ran_workers = workers
        else:
            extra["workers_note"] = f"--workers {workers} asked, but runstream server lacks it"
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
            *(python or [sys.executable]), "-m", "runstream", "server",
            "--database-url", database_url,
            "--redis-url", redis_url,
            "--stream-prefix", prefix,
            "--host", HOST,
            "--port", str(port),
            "--data-dir", str(workdir / "data"),
            "--log-level", "WARNING",
            "--run-projector" if run_projector else "--no-run-projector",
            *worker_flags,
            *flags,
        ]  # fmt: skip
        child_env = {**os.environ, **(env or {})}
        with open(log_path, "wb") as log:
            process = _spawn(argv, log, child_env)
        url = f"http://{HOST}:{port}"
        wait_healthy(url, process, health_timeout, log_path)
        yield Server(
            "runstream",
            url,
            database_url,
            process,
            log_path,
            prefix=prefix,
            workers=ran_workers,
            extra=extra,
        )
    finally:
        if process is not None:
            stop_process(process)
        with contextlib.suppress(Exception):
            delete_prefix(redis_url, prefix)
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


@contextlib.contextmanager
def start_null_server(health_timeout: float = 60.0) -> Iterator[Server]:
    """``bench/null_server.py`` in its own process: MLflow's routes answered at once."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="null-bench-"))
    log_path = workdir / "server.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        argv = [sys.executable, "-m", "bench.null_server", "--host", HOST, "--port", str(port)]
        with open(log_path, "wb") as log:
            # bench/ is importable from the clone's root, wherever the harness was started.
            path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
            process = _spawn(argv, log, {**os.environ, "PYTHONPATH": path})
        url = f"http://{HOST}:{port}"
        wait_healthy(url, process, health_timeout, log_path)
        yield Server("null", url, "", process, log_path)
    finally:
        if process is not None:
            stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)


# -- warm-up ---------------------------------------------------------------------------------

WARM_ROUNDS = 3
WARM_CONCURRENCY = 8


def warm_up(url: str) -> None:
    """The same warm-up for every tracking server before it is measured: rounds of
    concurrent cheap MLflow reads (experiments/search, runs/search, get-history of an absent
    series), so every worker process has imported its code and opened its connections
    (MLflow's uvicorn workers import lazily: their first calls take seconds longer)."""
    asyncio.run(_warm_up(url))


async def _warm_up(url: str) -> None:
    import aiohttp

    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/2.0/mlflow/experiments/search", {"max_results": 1}),
        ("POST", "/api/2.0/mlflow/runs/search", {"experiment_ids": ["0"], "max_results": 1}),
        ("GET", "/api/2.0/mlflow/metrics/get-history",
         {"run_id": "0" * 32, "metric_key": "absent", "max_results": "10"}),
    ]  # fmt: skip
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(i: int) -> None:
            method, path, body = calls[i % len(calls)]
            if method == "GET":
                async with http.get(url + path, params=body) as resp:
                    await resp.read()
            else:
                async with http.post(url + path, json=body) as resp:
                    await resp.read()

        for _ in range(WARM_ROUNDS):
            await asyncio.gather(*(one(i) for i in range(WARM_CONCURRENCY)))


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
        if stores.redis_url is None:
            version = subprocess.run(
                [redis_binary(), "--version"], capture_output=True, text=True, timeout=10
            ).stdout.split()
            facts["redis"] = (
                next((w.split("=", 1)[1] for w in version if w.startswith("v=")), "?")
                + " (dedicated, appendonly yes, appendfsync everysec)"
            )
        else:
            client = redis.Redis.from_url(stores.redis_url)
            try:
                info = client.info("server")
                facts["redis"] = (
                    f"{info.get('redis_version', '?')} ({stores.redis_url}, as configured)"
                )
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
