"""`runstream server` with nothing configured: embedded stores, one process, data kept.

Runs the real command as a subprocess with RUNSTREAM_DATABASE_URL/REDIS_URL unset, so it
starts its own PostgreSQL and Valkey under RUNSTREAM_HOME.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.slow

V1 = "/api/runstream/v1"
START_TIMEOUT = 90.0

# -- helpers for running runstream as real processes (also used by test_compose.py) -------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environ(**extra: str) -> dict[str, str]:
    """The test process's environment without any RUNSTREAM_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    env.update(extra)
    return env


def start(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m runstream ARGS`` with output to ``log``."""
    out = open(log, "ab")  # noqa: SIM115 - the child owns it; closed when the test ends
    return subprocess.Popen(
        [sys.executable, "-m", "runstream", *args],
        env=dict(env),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}/health not ready after {timeout} s:\n{log.read_text()}")


def request(
    method: str,
    url: str,
    body: Any = None,
    timeout: float = 30,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, orjson.loads(resp.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read() or b"null")


def stop(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> int:
    process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), recursively."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        try:
            listed = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, listed):
            found.append(child)
            frontier.append(child)
    return found


def alive(pid: int) -> bool:
    """Running and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


# -- the server ------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def launch(home: Path, log: Path) -> Server:
    port = free_port()
    env = clean_environ(RUNSTREAM_HOME=str(home), RUNSTREAM_SHARDS="2")
    process = start(["server", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log, START_TIMEOUT)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Server(url, process, log)


@pytest.fixture
def launched(home: Path, tmp_path: Path) -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def write_run(url: str, run_id: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    now = int(time.time() * 1000)
    events = [
        {
            "type": "run_created",
            "run_id": run_id,
            "experiment_id": "0",
            "user_id": "e2e",
            "run_name": "embedded",
            "start_time": now,
            "artifact_uri": "",
            "tags": [["mlflow.runName", "embedded"]],
        },
        {"type": "params_logged", "run_id": run_id, "params": [["lr", "0.01"], ["depth", "4"]]},
        {
            "type": "metrics_logged",
            "run_id": run_id,
            "series": [
                {
                    "key": "loss",
                    "steps": [0, 1, 2],
                    "timestamps": [now, now + 1, now + 2],
                    "values": [1.0, 0.5, 0.25],
                }
            ],
        },
    ]
    status, body = request("POST", f"{url}{V1}/events?wait=1", {"events": events}, headers=headers)
    assert status == 200, body
    assert body["events"] == 3
    assert body["points"] == 3
    return body  # type: ignore[no-any-return]


def check_run(url: str, run_id: str, headers: Mapping[str, str] | None = None) -> None:
    status, body = request("GET", f"{url}{V1}/runs/{run_id}", headers=headers)
    assert status == 200, body
    run = body["run"]
    assert run["info"]["experiment_id"] == "0"
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"lr": "0.01", "depth": "4"}
    status, history = request("GET", f"{url}{V1}/runs/{run_id}/history?key=loss", headers=headers)
    assert status == 200, history
    assert history["steps"] == [0, 1, 2]
    assert history["values"] == [1.0, 0.5, 0.25]


def stores_of(server: Server) -> list[int]:
    return children_of(server.process.pid)


def test_server_keeps_everything_across_a_restart(
    home: Path, tmp_path: Path, launched: list[Server]
) -> None:
    launched.append(first := launch(home, tmp_path / "first.log"))
    assert (home / "postgres" / "PG_VERSION").exists()
    assert (home / "redis").is_dir()
    banner = first.log.read_text()
    assert f"MLFLOW_TRACKING_URI={first.url}" in banner
    children = stores_of(first)
    assert children, "no embedded store processes found"

    run_id = uuid.uuid4().hex
    write_run(first.url, run_id)
    check_run(first.url, run_id)

    began = time.monotonic()
    assert stop(first.process, signal.SIGTERM, timeout=30) == 0, first.log.read_text()
    assert time.monotonic() - began < 15
    assert wait_gone(children, 5) == [], "embedded stores outlived the server"

    launched.append(second := launch(home, tmp_path / "second.log"))
    check_run(second.url, run_id)
    other = uuid.uuid4().hex
    write_run(second.url, other)
    check_run(second.url, other)
    assert stop(second.process, signal.SIGINT, timeout=30) == 0, second.log.read_text()


def test_a_killed_server_leaves_no_orphans(
    home: Path, tmp_path: Path, launched: list[Server]
) -> None:
    launched.append(server := launch(home, tmp_path / "server.log"))
    children = stores_of(server)
    assert any(alive(pid) for pid in children)
    server.process.kill()
    server.process.wait()
    assert wait_gone(children, 10) == [], "embedded stores survived a SIGKILLed server"


def test_a_second_server_is_refused_before_it_starts_anything(
    home: Path, tmp_path: Path, launched: list[Server]
) -> None:
    launched.append(first := launch(home, tmp_path / "first.log"))
    port = first.url.rsplit(":", 1)[1]

    # same data folder, another port: names the folder and the pid that holds it
    env = clean_environ(RUNSTREAM_HOME=str(home))
    began = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "runstream", "server", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 2, second.stderr
    assert f"data folder {home.resolve()} is in use" in second.stderr
    assert f"process {first.process.pid}" in second.stderr
    assert "Traceback" not in second.stderr

    # same port, another folder: refused before the embedded stores start
    other = tmp_path / "other-home"
    third = subprocess.run(
        [sys.executable, "-m", "runstream", "server", "--port", port],
        env=clean_environ(RUNSTREAM_HOME=str(other)), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert third.returncode == 2, third.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in third.stderr
    assert not (other / "postgres").exists()
    assert time.monotonic() - began < 20  # no store was started to find out
    assert request("GET", f"{first.url}/health")[0] == 200  # the first server is untouched
