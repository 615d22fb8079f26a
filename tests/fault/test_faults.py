"""Faults against a real ``runstream server`` process: slow clients, a frozen Redis, clients
that go away mid-request (issue 14). Each asserts what the server answers and what it logs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest_fault import ServerProcess, free_port, start_server, stop_server

from runstream.embedded import valkey_binary
from runstream.settings import Settings

pytestmark = pytest.mark.slow

MLFLOW = "/api/2.0/mlflow"


async def _slow_header_client(port: int, stop_after: float) -> float | None:
    """Send a request head one byte every 2 s; seconds until the server closed, or None."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"GET /api/2.0/mlflow/experiments/get?experiment_id=0 HTTP/1.1\r\nHost: localhost\r\n"
    start = time.monotonic()
    try:
        for byte in head:
            if time.monotonic() - start > stop_after:
                return None
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(1), 2.0)
                if data == b"":
                    return time.monotonic() - start
            except TimeoutError:
                pass
        return None
    except (ConnectionError, OSError):
        return time.monotonic() - start
    finally:
        writer.close()


def test_slow_header_clients_are_closed(settings: Settings, tmp_path: Path) -> None:
    server = start_server(settings, tmp_path / "server.log", RUNSTREAM_HEADER_TIMEOUT="3")
    try:

        async def attack() -> tuple[list[float | None], float]:
            clients = [
                asyncio.create_task(_slow_header_client(server.settings.port, 20.0))
                for _ in range(100)
            ]
            await asyncio.sleep(1.0)
            # A normal client is served meanwhile.
            t0 = time.monotonic()
            resp = await asyncio.to_thread(
                requests.get, f"{server.url}{MLFLOW}/experiments/get?experiment_id=0", timeout=10
            )
            assert resp.status_code == 200
            normal = time.monotonic() - t0
            return list(await asyncio.gather(*clients)), normal

        closed, normal = asyncio.run(attack())
        assert all(c is not None and c < 8.0 for c in closed), closed
        assert normal < 2.0
        print(f"slow-loris: 100 of 100 closed after at most {max(closed):.1f} s")  # type: ignore[type-var]
    finally:
        stop_server(server)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis of this test alone, so it can be frozen (SIGSTOP) without touching others."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(valkey_binary()),
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        process.wait(10)


def test_frozen_redis_answers_503_with_retry_after(
    settings: Settings, tmp_path: Path, own_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, redis_process = own_redis
    server = start_server(
        settings.replace(redis_url=url),
        tmp_path / "server.log",
        RUNSTREAM_STORE_TIMEOUT="2",
        RUNSTREAM_READ_YOUR_WRITES_TIMEOUT="2",
    )
    try:
        run = requests.post(f"{server.url}{MLFLOW}/runs/create", json={}, timeout=10).json()
        run_id = run["run"]["info"]["run_id"]
        os.kill(redis_process.pid, signal.SIGSTOP)
        try:
            for method, path, body in (
                ("GET", f"/runs/get?run_id={run_id}", None),
                ("POST", "/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "1"}),
                ("POST", "/runs/create", {}),
            ):
                t0 = time.monotonic()
                resp = requests.request(method, server.url + MLFLOW + path, json=body, timeout=30)
                assert resp.status_code == 503, (path, resp.status_code, resp.text)
                assert resp.headers.get("Retry-After"), path
                assert time.monotonic() - t0 < 10, path
        finally:
            os.kill(redis_process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 20
        while True:
            resp = requests.get(f"{server.url}{MLFLOW}/runs/get?run_id={run_id}", timeout=10)
            if resp.status_code == 200:
                break
            assert time.monotonic() < deadline, resp.text
            time.sleep(0.2)
    finally:
        stop_server(server)
    assert "Traceback" not in server.log.read_text()


def test_clients_that_go_away_leave_one_line_not_a_traceback(
    server_process: ServerProcess,
) -> None:
    port = server_process.settings.port
    for path in (f"{MLFLOW}/runs/log-batch", "/api/runstream/v1/events"):
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                    f'\r\nContent-Length: 100000\r\n\r\n{{"run_id": "'.encode()
                )
                time.sleep(0.05)
    time.sleep(0.5)
    resp = requests.get(f"{server_process.url}/health", timeout=10)
    assert resp.status_code == 200
    assert "Traceback" not in server_process.log.read_text()
