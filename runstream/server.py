"""Run runstream's parts as HTTP processes: all in one (``runstream server``) or one each.

``run_server`` is the zero-configuration default: it starts embedded PostgreSQL/Valkey for
whichever store has no URL, keeps everything under ``data_dir``, migrates, and serves ingest,
api and the projector from ONE aiohttp app. ``run_parts`` serves any subset of the parts
against external stores (``runstream ingest|api|projector``, the containers of compose.yaml).

With ``settings.workers`` > 1 (default: one per core) this process also starts N-1 worker
processes serving the HTTP parts on the same port (``runstream/workers.py``); it keeps the
projector and the embedded stores. Every app answers ``GET /metrics`` (``metrics_http``).

Shutdown order on SIGINT/SIGTERM: stop accepting, finish requests (bounded), app clean-up
(projector task, pools), then the embedded stores. Data survives restarts: PostgreSQL and the
Valkey append-only file live under ``data_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from aiohttp import web

from runstream import __version__, telemetry
from runstream.api.health import health
from runstream.browser_safety import use_browser_safety
from runstream.connections import GuardedAppRunner
from runstream.embedded import EmbeddedStores
from runstream.loop import run_loop
from runstream.metrics_http import add_metrics_route, latency_middleware
from runstream.preflight import DataDirLock, check_port_free, warn_if_over_connection_budget
from runstream.projector.migrations import migrate_dsn
from runstream.resources import use_stores
from runstream.settings import Settings
from runstream.web import BODY_TIMEOUT, answer_head_on_get, error_middleware
from runstream.workers import WorkerSet, http_parts, reserve_port, worker_count

logger = logging.getLogger(__name__)

PARTS = ("ingest", "api", "projector")
SHUTDOWN_TIMEOUT = 5.0
"""Seconds open requests (and live streams) get to finish at shutdown."""
HEALTH_TIMEOUT = 2.0
WATCHDOG_INTERVAL = 1.0


@dataclass
class _Outcome:
    exit_code: int = 0


def with_local_defaults(settings: Settings) -> Settings:
    """An absolute ``data_dir``, and artifacts under it unless RUNSTREAM_ARTIFACTS_URL is set."""
    data_dir = settings.data_dir.expanduser().resolve()
    artifacts = settings.artifacts_url or str(data_dir / "artifacts")
    return settings.replace(data_dir=data_dir, artifacts_url=artifacts)


def room_setup(part: str) -> Callable[[web.Application, Settings], Any]:
    """The ``setup(app, settings)`` of ``runstream.<part>`` (or of its ``app`` module)."""
    module = importlib.import_module(f"runstream.{part}")
    setup = getattr(module, "setup", None)
    if setup is None:
        setup = importlib.import_module(f"runstream.{part}.app").setup
    return setup  # type: ignore[no-any-return]


def build_app(settings: Settings, parts: Collection[str] = PARTS) -> web.Application:
    """One aiohttp app carrying the given parts; ``GET /health`` always answers."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; known: {PARTS}")
    app = web.Application(
        middlewares=[latency_middleware, error_middleware], client_max_size=settings.max_body_bytes
    )
    app[BODY_TIMEOUT] = settings.body_timeout
    use_browser_safety(app, settings)  # Host allow-list, CORS, no cross-origin writes
    for part in PARTS:
        if part in parts:
            room_setup(part)(app, settings)
    if parts:  # no parts: the parent of HTTP workers that runs no projector holds no stores
        use_stores(app, settings)
    if settings.auth == "basic" and set(parts) & {"ingest", "api"}:
        from runstream.auth.app import setup_auth  # a projector alone serves only /health

        setup_auth(app, settings)
    if not any(
        resource.canonical == "/health" for resource in app.router.resources()
    ):  # a part without the api still answers the orchestrator's health checks
        app.router.add_get("/health", health)
    add_metrics_route(app)
    answer_head_on_get(app)
    return app


def run_server(settings: Settings, out: TextIO = sys.stdout) -> int:
    """``runstream server``: embedded stores for unset URLs, then every part in one app.

    Returns the process exit code. Must run on the main thread (signals, parent-death).
    Raises ``PreflightError`` before starting anything when the port is taken or another
    server holds the data folder.
    """
    uses_data_dir = (
        settings.database_url is None or settings.redis_url is None or not settings.artifacts_url
    )
    settings = with_local_defaults(settings)
    check_port_free(settings.host, settings.port)
    lock = DataDirLock(settings.data_dir)
    if uses_data_dir:
        lock.acquire()
    stores: EmbeddedStores | None = None
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        if settings.database_url is None or settings.redis_url is None:
            stores = EmbeddedStores(
                settings.data_dir,
                postgres=settings.database_url is None,
                redis=settings.redis_url is None,
            )
            stores.start()
            settings = settings.replace(
                database_url=settings.database_url or stores.database_url,
                redis_url=settings.redis_url or stores.redis_url,
            )
            logger.info(
                "embedded stores ready in %s",
                ", ".join(f"{k} {v:.2f} s" for k, v in stores.timings.items()),
                extra={"action": "embedded_ready"},
            )
        parts = PARTS if settings.run_projector else ("ingest", "api")
        return _run(settings, parts, stores, out)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if stores is not None:
            stores.stop()
        lock.release()


def run_parts(settings: Settings, parts: Collection[str], out: TextIO = sys.stdout) -> int:
    """``runstream ingest|api|projector``: some parts against stores given by URL."""
    settings = with_local_defaults(settings)
    return _run(settings, parts, None, out)


def _run(
    settings: Settings, parts: Collection[str], stores: EmbeddedStores | None, out: TextIO
) -> int:
    """Serve ``parts`` from this process; or, when there are HTTP parts and ``settings.workers``
    asks for more than one process, serve them from N worker processes and keep the rest (the
    projector) here, off their event loops (runstream/workers.py)."""
    count = worker_count(settings)
    served = http_parts(parts)
    if count <= 1 or not served:
        return run_loop(_serve(settings, parts, stores, out))
    own = tuple(p for p in parts if p not in served)
    asyncio.run(_prepare_database(settings, [served] * count + ([own] if own else [])))
    if settings.auth == "basic":
        from runstream.auth.app import bootstrap_admin_once

        asyncio.run(bootstrap_admin_once(settings))
    # Held until the parent stops: the port is ours, and a taken port fails once, here.
    reserved = reserve_port(settings.host, settings.port)
    with telemetry.multiprocess_metrics():
        workers = WorkerSet(settings.replace(workers=1), served, count, serve_worker)
        try:
            workers.start()
            return run_loop(_serve(settings, own, stores, out, workers=workers, migrate=False))
        finally:
            workers.stop()
            reserved.close()


def serve_worker(settings: Settings, parts: Collection[str], parent: int) -> int:
    """A worker process's life (runstream/workers.py): serve until signalled or orphaned."""
    return run_loop(_serve(settings, parts, None, None, parent=parent, migrate=False))


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _prepare_database(settings: Settings, processes: Sequence[Collection[str]]) -> None:
    """Migrate, then warn when the pools of ``processes`` (the parts each serves) could open
    more connections than PostgreSQL accepts."""
    assert settings.database_url
    applied = await migrate_dsn(settings.database_url)
    if applied:
        logger.info("applied migrations %s", applied, extra={"action": "migrate"})
    await warn_if_over_connection_budget(settings, processes)


async def _serve(
    settings: Settings,
    parts: Collection[str],
    stores: EmbeddedStores | None,
    out: TextIO | None,
    *,
    workers: WorkerSet | None = None,
    parent: int | None = None,
    migrate: bool = True,
) -> int:
    """Serve until SIGINT/SIGTERM. ``workers``: this process is the parent of worker
    processes (it restarts the dead ones) and does not listen, they do; ``parent``: this
    process is a worker of that parent (it stops when orphaned) and shares the port with its
    siblings (SO_REUSEPORT)."""
    assert settings.database_url and settings.redis_url
    if migrate:
        await _prepare_database(settings, [parts])
    app = build_app(settings, parts)
    stop = asyncio.Event()
    outcome = _Outcome()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            logger.info("already stopping")
            return
        logger.info("%s: stopping", signum.name, extra={"action": "stop"})
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    runner = GuardedAppRunner(
        app,
        header_timeout=settings.header_timeout,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        access_log=logging.getLogger("aiohttp.access"),
    )
    await runner.setup()
    watchdog: asyncio.Task[None] | None = None
    try:
        if workers is None:
            shared = parent is not None
            site = web.TCPSite(
                runner, settings.host, settings.port, reuse_address=True, reuse_port=shared or None
            )
            await site.start()
        # What start-up made (modules, botocore's service data, pools) lives as long as the
        # process: keep the cyclic collector from walking it again in every full collection.
        gc.collect()
        gc.freeze()
        if out is not None:
            _print_banner(settings, parts, stores, out, workers)
        if stores is not None or workers is not None or parent is not None:
            watchdog = asyncio.create_task(_watch(stores, workers, parent, stop, outcome))
        await stop.wait()
    finally:
        if workers is not None:
            workers.terminate()  # they stop alongside this process, not after it
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    logger.info("stopped", extra={"action": "stopped"})
    return outcome.exit_code


async def _watch(
    stores: EmbeddedStores | None,
    workers: WorkerSet | None,
    parent: int | None,
    stop: asyncio.Event,
    outcome: _Outcome,
) -> None:
    """An embedded store that dies takes the server down (exit 1) rather than 503s forever;
    a worker that dies is replaced; a worker whose parent died stops."""
    while not stop.is_set():
        await asyncio.sleep(WATCHDOG_INTERVAL)
        failed = stores.failed() if stores is not None else None
        if failed:
            logger.error("embedded store exited: %s; stopping", failed)
            outcome.exit_code = 1
            stop.set()
        if workers is not None and workers.misconfigured():
            logger.error("a worker refused its settings; stopping")
            outcome.exit_code = 2
            stop.set()
        elif workers is not None:
            for pid in workers.restart_dead():
                telemetry.forget_process(pid)
        if parent is not None and os.getppid() != parent:
            logger.error("parent process %d is gone; stopping", parent)
            outcome.exit_code = 1
            stop.set()


def _print_banner(
    settings: Settings,
    parts: Collection[str],
    stores: EmbeddedStores | None,
    out: TextIO,
    workers: WorkerSet | None = None,
) -> None:
    uri = settings.tracking_uri
    processes = ""
    if workers is not None:  # the parent names what its workers serve too
        parts = (*parts, *workers.parts)
        processes = f", {workers.count} HTTP worker processes"
    lines = [
        f"runstream {__version__} ({', '.join(p for p in PARTS if p in parts)}{processes}) "
        f"listening on http://{settings.host}:{settings.port}"
    ]
    if stores is not None:
        lines.append(f"  data:      {settings.data_dir} (embedded PostgreSQL/Valkey)")
    if "api" in parts:
        lines += [
            f"  artifacts: {settings.artifacts_url}",
            "Point MLflow and the runstream SDK at it:",
            f"  export MLFLOW_TRACKING_URI={uri}",
            f"Tracking URI: {uri}",
        ]
    elif "ingest" not in parts:
        lines.append("  (no public routes; GET /health for health checks)")
    print("\n".join(lines), file=out, flush=True)
