"""What ``runstream server`` checks before it starts anything: its port and its data folder;
and, once PostgreSQL answers, whether its pools fit in PostgreSQL's connection limit.

Starting the embedded stores takes seconds and a failed start leaves a confusing trail (a
PostgreSQL log, a half-started Valkey), so a port in use or a data folder that another server
holds is refused first, with a message that says what to do.

The data folder lock is an ``fcntl.flock`` on ``<data_dir>/runstream.lock``: the kernel drops it
when the holder exits, however it exits, so a crashed server never leaves a stale lock. The
file carries the holder's pid so the refusal can name it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from runstream.settings import Settings

logger = logging.getLogger(__name__)

LOCK_FILE = "runstream.lock"


class PreflightError(RuntimeError):
    """A start-up conflict the operator must resolve (the command exits 2)."""


def check_port_free(host: str, port: int) -> None:
    """Refuse a ``host:port`` that something already listens on.

    Binds the way the server will (SO_REUSEADDR, so a port in TIME_WAIT is not refused) and
    lets go at once; port 0 (any free port) is never taken.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise PreflightError(f"cannot listen on {host}:{port}: {exc}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PreflightError(
                        f"port {port} on {host} is already in use; stop what listens there or "
                        "choose another port (--port or RUNSTREAM_PORT)"
                    ) from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    continue  # e.g. no IPv6 on this machine: the server skips it too
                raise PreflightError(f"cannot listen on {host}:{port}: {exc}") from None


@dataclass
class DataDirLock:
    """Exclusive hold of a data folder for one server process (a context manager)."""

    data_dir: Path
    _fd: int | None = field(default=None, init=False, repr=False)

    @property
    def path(self) -> Path:
        return self.data_dir / LOCK_FILE

    def acquire(self) -> None:
        import fcntl  # not at the top: cli imports this module and the client runs on Windows

        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise PreflightError(
                f"data folder {self.data_dir} is in use by another runstream server ({who}, "
                f"lock {self.path}); stop it or choose another folder (--data-dir or "
                "RUNSTREAM_HOME)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        fd, self._fd = self._fd, None
        # Empty first: a reader between our unlock and close must not see our pid as a holder.
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def connection_budget(settings: Settings, processes: Sequence[Collection[str]]) -> int:
    """The most PostgreSQL connections the server's pools may open at once, given the parts
    each of its processes serves: every process has the request handlers' pool, one serving
    the api also the search pool, one running the projector also the projector's."""
    return sum(
        settings.db_pool_max
        + (settings.search_pool_max if "api" in parts else 0)
        + (settings.projector_pool_max if "projector" in parts else 0)
        for parts in processes
    )


async def warn_if_over_connection_budget(
    settings: Settings, processes: Sequence[Collection[str]]
) -> None:
    """Log a warning when the pools of ``processes`` (the parts each serves) may open more
    connections than PostgreSQL accepts.

    Pools grow only under load, so a server over the budget starts and works until a busy
    moment, when a new connection is refused; saying so at start-up names the settings to
    change instead. Other clients of the database count against the same limit.
    """
    import asyncpg  # a server dependency; this module is also the CLI's

    budget = connection_budget(settings, processes)
    conn = await asyncpg.connect(settings.database_url)
    try:
        allowed = await conn.fetchval(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
        )
    finally:
        await conn.close()
    if budget > allowed:
        logger.warning(
            "the connection pools of %d processes may open %d PostgreSQL connections"
            " (RUNSTREAM_DB_POOL_MAX %d each, RUNSTREAM_SEARCH_POOL_MAX %d per api process,"
            " RUNSTREAM_PROJECTOR_POOL_MAX %d for the projector), more than the %d PostgreSQL"
            " accepts: lower those or RUNSTREAM_WORKERS, or raise max_connections",
            len(processes), budget, settings.db_pool_max, settings.search_pool_max,
            settings.projector_pool_max, allowed,
            extra={"action": "preflight"},
        )  # fmt: skip
