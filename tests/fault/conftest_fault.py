"""A real ``runstream server`` process on the test's own database and Redis prefix."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from runstream.settings import Settings

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServerProcess:
    url: str
    settings: Settings
    """What the process runs with (its database, prefix and shards)."""
    log: Path
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(settings: Settings, log: Path, **env: str) -> ServerProcess:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    assert settings.database_url and settings.redis_url
    environ.update(
        RUNSTREAM_DATABASE_URL=settings.database_url,
        RUNSTREAM_REDIS_URL=settings.redis_url,
        RUNSTREAM_STREAM_PREFIX=settings.stream_prefix,
        RUNSTREAM_SHARDS=str(settings.shards),
        RUNSTREAM_HOME=str(settings.data_dir),
        RUNSTREAM_ARTIFACTS_URL=str(settings.artifacts_url),
        RUNSTREAM_HOST="127.0.0.1",
        RUNSTREAM_PORT=str(port),
        RUNSTREAM_LOG_LEVEL="WARNING",
        **env,
    )
    out = open(log, "ab")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(
        [sys.executable, "-m", "runstream", "server"],
        env=environ,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"server not healthy:\n{log.read_text()}")
        time.sleep(0.1)
    return ServerProcess(url, settings.replace(port=port), log, process)


def stop_server(server: ServerProcess) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)
