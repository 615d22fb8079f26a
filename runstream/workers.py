"""HTTP worker processes: ``runstream server --workers N`` serves from N processes on one port.

The parent process owns the embedded stores, runs the migrations and the projector, and
starts N worker processes that serve the HTTP parts; it does not serve HTTP itself. Every
worker binds the same host and port with ``SO_REUSEPORT``, so the kernel spreads connections
over them. Each worker is a whole aiohttp app with its own pools and its own subscriptions
(watermarks, live streams): nothing in a request depends on which worker answers. The
projector stays single per shard anyway (shard leases in Redis, ``projector/leases.py``);
keeping it out of the workers keeps its batches (decoding, planning, a dozen PostgreSQL round
trips per batch) off the event loops that answer requests: in one loop they interleaved with
every request that arrived meanwhile (issue 12, docs/performance.md). With ``--workers 1``
everything runs in one process.

Workers die with the parent: each sets ``PR_SET_PDEATHSIG`` (Linux) to SIGTERM and also
watches its parent's pid. The parent restarts a worker that exits while it runs, and on
SIGINT/SIGTERM stops them all (SIGTERM, then SIGKILL after a grace period) before the stores.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

from runstream.logs import configure_logging
from runstream.schemas.errors import ConfigurationError
from runstream.settings import Settings

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 8.0
"""How long a worker gets to finish its requests after SIGTERM before it is killed."""
MISCONFIGURED = 2
"""A worker's exit code when its settings are refused (the CLI's code for the same)."""
RESTART_PAUSE_SECONDS = 1.0
"""A worker that keeps dying is restarted at most this often."""


def worker_count(settings: Settings) -> int:
    """``settings.workers``, 0 meaning one per core this process may run on (its CPU affinity:
    a cpuset or ``taskset`` counts, a CPU quota does not)."""
    if settings.workers > 0:
        return settings.workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT, not listening.

    The parent holds it while workers start, so that the port is ours (another process
    without SO_REUSEPORT cannot take it) and so that a taken port fails here, once, with a
    clear error, rather than in every worker. Not listening, it receives no connections.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this process when its parent dies; exit now if it already has."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


WorkerEntry = Callable[[Settings, tuple[str, ...], int], int]
"""What a worker process runs (``server.serve_worker``): settings, parts, parent pid -> exit
code. Handed in by the server, so that this module does not import it back."""


def _worker_main(
    entry: WorkerEntry, settings: Settings, parts: tuple[str, ...], parent: int, log_level: int
) -> None:
    die_with_parent(parent)
    configure_logging(logging.getLevelName(log_level))
    try:
        code = entry(settings, parts, parent)
    except ConfigurationError as exc:
        logger.error("%s", exc.message)
        code = MISCONFIGURED
    raise SystemExit(code)


@dataclass
class WorkerSet:
    """The N HTTP worker processes of a parent that runs the projector."""

    settings: Settings
    parts: tuple[str, ...]
    count: int
    entry: WorkerEntry
    processes: list[BaseProcess] = field(default_factory=list)
    _stopping: bool = False
    _last_restart: float = 0.0

    def __post_init__(self) -> None:
        # spawn, not fork: the parent has threads (embedded stores' log pumps, asyncio's
        # executor) and open store connections that a forked child must not share.
        self._context = multiprocessing.get_context("spawn")

    def _spawn(self) -> BaseProcess:
        process = self._context.Process(
            target=_worker_main,
            args=(self.entry, self.settings, self.parts, os.getpid(), logging.getLogger().level),
            name="runstream-worker",
            daemon=False,
        )
        process.start()
        return process

    def start(self) -> None:
        self.processes = [self._spawn() for _ in range(self.count)]
        logger.info(
            "started %d worker process(es): %s",
            self.count,
            ", ".join(str(p.pid) for p in self.processes),
            extra={"action": "workers_started"},
        )

    def misconfigured(self) -> bool:
        """Did a worker refuse to start for its settings? Restarting it would not help."""
        return any(p.exitcode == MISCONFIGURED for p in self.processes)

    def restart_dead(self) -> list[int]:
        """Replace workers that exited (crash, OOM kill); returns the pids that died."""
        if self._stopping:
            return []
        dead = [i for i, p in enumerate(self.processes) if not p.is_alive()]
        if not dead or time.monotonic() - self._last_restart < RESTART_PAUSE_SECONDS:
            return []
        self._last_restart = time.monotonic()
        gone = []
        for i in dead:
            old = self.processes[i]
            gone.append(old.pid or 0)
            logger.warning(
                "worker %s exited with %s; starting another",
                old.pid,
                old.exitcode,
                extra={"action": "worker_restart"},
            )
            self.processes[i] = self._spawn()
        return gone

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def terminate(self) -> None:
        """SIGTERM every worker (they finish their requests and exit); returns at once."""
        self._stopping = True
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM every worker, wait up to ``grace`` seconds, SIGKILL the rest."""
        if not self._stopping:
            self.terminate()
        deadline = time.monotonic() + grace
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.warning("worker %s did not stop in %g s; killing it", process.pid, grace)
                process.kill()
                process.join(2.0)


def http_parts(parts: Collection[str]) -> tuple[str, ...]:
    """The parts a worker serves: every one but the projector."""
    return tuple(p for p in parts if p != "projector")
