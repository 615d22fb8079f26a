"""The SDK against a real in-process server (ingest + api + projector, real PostgreSQL/Redis).

The SDK is synchronous and threaded; the server runs on the test's event loop, so every SDK
call that waits on the network goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import struct
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import runstream
from runstream import api, ingest, projector
from runstream.client import buffer as buffer_module
from runstream.client import lifecycle
from runstream.projector.service import project_until_idle
from runstream.settings import Settings
from runstream.web import error_middleware

NAN_PAYLOAD = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
SPECIALS = [float("nan"), NAN_PAYLOAD, float("inf"), float("-inf"), -0.0, 5e-324]


def build_app(settings: Settings, with_projector: bool = True) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    ingest.setup(app, settings)
    api.setup(app, settings)
    if with_projector:
        projector.setup(app, settings)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start(app: web.Application, port: int | None = None) -> TestServer:
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    return server


@pytest.fixture(autouse=True)
def sdk_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    spool = tmp_path / "spool"
    monkeypatch.setenv("RUNSTREAM_SPOOL_DIR", str(spool))
    monkeypatch.setenv("RUNSTREAM_FLUSH_INTERVAL", "0.05")
    monkeypatch.setenv("RUNSTREAM_FLUSH_TIMEOUT", "30")
    for name in ("RUNSTREAM_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    yield spool
    # A failed test must not leave runs for the exit hook to wait on.
    for run in lifecycle.open_runs():
        run.finish("KILLED", timeout=0)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[str]:
    test_server = await start(build_app(settings))
    try:
        yield str(test_server.make_url("")).rstrip("/")
    finally:
        await test_server.close()


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Deterministic call timestamps (ms), so that every timestamp can be compared."""
    state = {"ns": 1_700_000_000_000 * 1_000_000}

    def clock() -> int:
        state["ns"] += 1_000_000
        return state["ns"]

    monkeypatch.setattr(buffer_module, "_time_ns", clock)
    return lambda: state["ns"] // 1_000_000


def spool_files(spool: Path, pattern: str = "w-*/*.rsb") -> list[Path]:
    return sorted(spool.glob(pattern))


def poll_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


Expected = dict[str, list[tuple[int, int, bytes]]]


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def log_points(run: runstream.Run, n: int, clock: Callable[[], int]) -> Expected:
    """n calls over several keys, auto and explicit steps, special values; what was logged."""
    expected: Expected = {}
    for i in range(n):
        metrics: dict[str, float] = {"loss": 1.0 / (i + 1), "acc": i * 0.001}
        if i % 7 == 0:
            metrics["loss"] = SPECIALS[(i // 7) % len(SPECIALS)]
        if i % 10 == 0:
            metrics["val/loss"] = -float(i)
        step = i * 10 if i % 10 == 0 else None
        steps_before = run._buffer.next_steps()
        run.log(metrics, step=step)
        stamp = clock()
        for key, value in metrics.items():
            at = step if step is not None else steps_before.get(key, 0)
            expected.setdefault(key, []).append((at, stamp, bits(value)))
    return expected


async def read_history(client: runstream.Client, run_id: str, key: str, token: str) -> Any:
    return await asyncio.to_thread(client.history, run_id, key, wait_for=token or None)


def as_points(history: runstream.History) -> list[tuple[int, int, bytes]]:
    return [(s, t, bits(v)) for s, t, v in history.points()]


async def assert_history(
    client: runstream.Client, run_id: str, expected: Expected, token: str
) -> None:
    for key, points in expected.items():
        history = await read_history(client, run_id, key, token)
        assert history.key == key
        assert as_points(history) == points, key


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params_of(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


async def test_every_point_round_trips(server: str, fake_clock: Callable[[], int]) -> None:
    run = await asyncio.to_thread(
        runstream.start_run,
        experiment="sdk-roundtrip",
        name="first run",
        params={"lr": 0.01, "layers": 3},
        tags={"team": "vision"},
        url=server,
    )
    assert run.experiment_id is not None and len(run.run_id) == 32
    expected = log_points(run, 3000, fake_clock)
    run.log_params({"batch": 64})
    run.set_tags({"phase": "train"})
    assert await asyncio.to_thread(run.flush, 30)
    more = log_points(run, 500, fake_clock)
    for key, points in more.items():
        expected[key] += points
    assert await asyncio.to_thread(run.finish)
    stats = run.stats()
    total = sum(len(p) for p in expected.values())
    assert stats.points_logged == total and stats.points_sent == total
    assert stats.points_pending == 0 and stats.failures == 0 and stats.points_dropped == 0

    client = runstream.Client(server)
    await assert_history(client, run.run_id, expected, run.write_token)
    got = await asyncio.to_thread(client.get_run, run.run_id, wait_for=run.write_token)
    assert got["info"]["status"] == "FINISHED"
    assert got["info"]["experiment_id"] == run.experiment_id
    assert params_of(got) == {"lr": "0.01", "layers": "3", "batch": "64"}
    tags = tags_of(got)
    assert tags["team"] == "vision" and tags["phase"] == "train"
    assert tags["mlflow.runName"] == "first run"
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]
    downsampled = await asyncio.to_thread(
        client.history, run.run_id, "acc", 100, wait_for=run.write_token
    )
    assert 0 < len(downsampled) <= len(expected["acc"])
    client.close()


async def test_context_manager_marks_failed(server: str) -> None:
    def work() -> str:
        with runstream.start_run(experiment="sdk-cm", url=server) as run:
            run.log({"x": 1.0})
            raise_in = run.run_id
            raise RuntimeError(raise_in)

    with pytest.raises(RuntimeError) as info:
        await asyncio.to_thread(work)
    run_id = str(info.value)
    client = runstream.Client(server)
    status = None
    for _ in range(200):
        try:
            status = (await asyncio.to_thread(client.get_run, run_id))["info"]["status"]
        except runstream.HTTPError as exc:
            assert exc.status == 404  # not projected yet
        if status == "FAILED":
            break
        await asyncio.sleep(0.05)
    assert status == "FAILED"
    client.close()


async def test_param_change_refused_at_call_site(server: str) -> None:
    run = await asyncio.to_thread(runstream.start_run, experiment="sdk-params", url=server)
    run.log_params({"lr": 0.1})
    run.log_params({"lr": 0.1})
    with pytest.raises(ValueError, match="lr"):
        run.log_params({"lr": 0.2})
    assert await asyncio.to_thread(run.finish)


async def test_offline_start_spools_then_sync_delivers_once(
    settings: Settings, sdk_env: Path, fake_clock: Callable[[], int]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run = await asyncio.to_thread(
        runstream.start_run, experiment="sdk-offline", params={"p": 1}, url=url
    )
    assert run.experiment_id is None  # nobody answered: creation deferred
    expected = log_points(run, 1000, fake_clock)
    delivered = await asyncio.to_thread(run.finish, "FINISHED", 0.5)
    assert not delivered
    stats = run.stats()
    total = sum(len(p) for p in expected.values())
    assert stats.points_spooled == total and stats.points_sent == 0 and stats.retries >= 1
    files = spool_files(sdk_env)
    assert files
    backup = sdk_env.parent / "backup"
    shutil.copytree(sdk_env, backup)

    test_server = await start(build_app(settings), port)
    try:
        result = await asyncio.to_thread(runstream.sync_spool, None, sdk_env)
        assert result.ok and result.points_sent == total
        assert result.batches_sent == len(files)
        assert not spool_files(sdk_env, "w-*")  # sent files and their directory are gone
        again = await asyncio.to_thread(runstream.sync_spool, None, sdk_env)
        assert again.batches_sent == 0
        # A crash between the server's answer and the delete: the same files once more.
        shutil.rmtree(sdk_env)
        shutil.copytree(backup, sdk_env)
        resent = await asyncio.to_thread(runstream.sync_spool, url, sdk_env)
        assert resent.ok and resent.batches_sent == len(files)
        client = runstream.Client(url)
        token = resent.token or result.token
        await assert_history(client, run.run_id, expected, token)  # exactly once
        got = await asyncio.to_thread(client.get_run, run.run_id, wait_for=token)
        assert got["info"]["status"] == "FINISHED"
        assert params_of(got) == {"p": "1"}
        client.close()
    finally:
        await test_server.close()


async def test_backs_off_on_429(settings: Settings) -> None:
    tight = settings.replace(backlog_limit=1)
    test_server = await start(build_app(tight, with_projector=False))
    url = str(test_server.make_url("")).rstrip("/")
    try:
        os.environ["RUNSTREAM_BATCH_POINTS"] = "100"
        try:
            run = await asyncio.to_thread(runstream.start_run, experiment="sdk-429", url=url)
        finally:
            del os.environ["RUNSTREAM_BATCH_POINTS"]
        for i in range(600):
            run.log({"a": float(i)})
        await asyncio.to_thread(poll_until, lambda: run.stats().retries > 0, 20)
        stats = run.stats()
        assert stats.retries >= 1 and "429" in (stats.last_error or "")
        assert stats.points_sent < 600

        async def drain() -> None:
            while True:
                await project_until_idle(tight)
                await asyncio.sleep(0.05)

        projecting = asyncio.create_task(drain())
        try:
            assert await asyncio.to_thread(run.finish, "FINISHED", 60)
        finally:
            projecting.cancel()
        assert run.stats().points_sent == 600 and run.stats().failures == 0
        await project_until_idle(tight)
        client = runstream.Client(url)
        history = await read_history(client, run.run_id, "a", run.write_token)
        assert history.values.tolist() == [float(i) for i in range(600)]
        assert history.steps.tolist() == list(range(600))
        client.close()
    finally:
        await test_server.close()


async def test_forked_child_logs_to_the_same_run(server: str) -> None:
    run = await asyncio.to_thread(runstream.start_run, experiment="sdk-fork", url=server)
    for i in range(100):
        run.log({"parent": float(i), "shared": float(i)})
    assert await asyncio.to_thread(run.flush, 30)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for i in range(1000):
                run.log({"child": float(i), "shared": 1000.0 + i})
            ok = run.flush(30)
            os.write(write, f"{run.write_token}\n{run.stats().points_sent}".encode())
            code = 0 if ok else 2
        finally:
            os._exit(code)
    os.close(write)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    token, child_sent = os.read(read, 4096).decode().split("\n")
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0 and int(child_sent) == 2000
    run.log({"parent": 100.0})
    assert await asyncio.to_thread(run.finish)
    assert run.stats().points_sent == 201  # the parent counts its own points only

    client = runstream.Client(server)
    child = await read_history(client, run.run_id, "child", token)
    assert child.values.tolist() == [float(i) for i in range(1000)]
    assert child.steps.tolist() == list(range(1000))
    shared = await read_history(client, run.run_id, "shared", run.write_token)
    values = sorted(shared.values.tolist())
    assert values == [float(i) for i in range(100)] + [1000.0 + i for i in range(1000)]
    # The child's auto steps carried on from the parent's counter at fork time.
    child_steps = [s for s, v in zip(shared.steps, shared.values, strict=True) if v >= 1000]
    assert child_steps == list(range(100, 1100))
    got = await asyncio.to_thread(client.get_run, run.run_id, wait_for=run.write_token)
    assert got["info"]["status"] == "FINISHED"
    client.close()


SCRIPT = """
import sys, time, runstream
run = runstream.start_run(experiment="sdk-exit", url=sys.argv[1])
for i in range(5000):
    run.log({"x": float(i), "y": -float(i)})
print(run.run_id, flush=True)
if sys.argv[2] == "wait":
    time.sleep(60)
"""


async def run_script(
    server: str, mode: str, sdk_env: Path
) -> tuple[str, asyncio.subprocess.Process]:
    env = {**os.environ, "RUNSTREAM_SPOOL_DIR": str(sdk_env), "RUNSTREAM_FLUSH_INTERVAL": "5"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(SCRIPT),
        server,
        mode,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    return line.decode().strip(), proc


async def wait_for_run(client: runstream.Client, run_id: str, status: str, points: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            got = await asyncio.to_thread(client.get_run, run_id)
            history = await asyncio.to_thread(client.history, run_id, "x")
            if got["info"]["status"] == status and len(history) == points:
                assert history.values.tolist() == [float(i) for i in range(points)]
                return
        except runstream.HTTPError:
            pass
        assert time.monotonic() < deadline, "run did not arrive"
        await asyncio.sleep(0.1)


async def test_exit_without_finish_delivers(server: str, sdk_env: Path) -> None:
    run_id, proc = await run_script(server, "exit", sdk_env)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    client = runstream.Client(server)
    await wait_for_run(client, run_id, "FINISHED", 5000)
    client.close()


async def test_sigterm_delivers_and_marks_killed(server: str, sdk_env: Path) -> None:
    run_id, proc = await run_script(server, "wait", sdk_env)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 128 + signal.SIGTERM
    client = runstream.Client(server)
    await wait_for_run(client, run_id, "KILLED", 5000)
    client.close()


async def test_memory_bound_spools_and_the_sender_resends(
    settings: Settings, sdk_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNSTREAM_MAX_QUEUE_POINTS", "100")
    monkeypatch.setenv("RUNSTREAM_BATCH_POINTS", "50")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run = await asyncio.to_thread(runstream.start_run, experiment="sdk-bound", url=url)
    for i in range(1000):
        run.log({"a": float(i)})
    await asyncio.to_thread(poll_until, lambda: run.stats().points_spooled >= 900, 20)
    assert run.stats().points_spooled >= 900
    test_server = await start(build_app(settings), port)
    try:
        assert await asyncio.to_thread(run.finish, "FINISHED", 60)
        stats = run.stats()
        assert stats.points_sent == 1000 and stats.points_pending == 0
        assert run.experiment_id is not None  # resolved by the first batch that got through
        assert not spool_files(sdk_env)
        client = runstream.Client(url)
        history = await read_history(client, run.run_id, "a", run.write_token)
        assert history.values.tolist() == [float(i) for i in range(1000)]
        client.close()
    finally:
        await test_server.close()


async def test_refused_batches_are_kept_and_counted(server: str, sdk_env: Path) -> None:
    import uuid

    run = await asyncio.to_thread(runstream.start_run, run_id=uuid.uuid4().hex, url=server)
    for i in range(10):
        run.log({"a": float(i)})
    run.set_tags({"t": "v"})
    for i in range(5):
        run.log({"a": float(i)})
    assert await asyncio.to_thread(run.flush, 30)  # settled: refused, not pending
    stats = run.stats()
    # One batch of three events, refused, split, and each refused on its own.
    assert stats.failures == 3 and stats.points_rejected == 15 and stats.points_sent == 0
    assert "404" in (stats.last_error or "")
    assert len(spool_files(sdk_env, "rejected/*.rsb")) == 3
    await asyncio.to_thread(run.finish, "FINISHED", 5)


def _mp_child(run: runstream.Run) -> None:
    for i in range(300):
        run.log({"mp": float(i)})
    # no flush: multiprocessing leaves through os._exit; the SDK's finalizer delivers


async def test_multiprocessing_child_delivers_without_flush(server: str) -> None:
    import multiprocessing

    run = await asyncio.to_thread(runstream.start_run, experiment="sdk-mp", url=server)
    run.log({"mp": -1.0})
    assert await asyncio.to_thread(run.flush, 30)
    child = multiprocessing.get_context("fork").Process(target=_mp_child, args=(run,))
    child.start()
    await asyncio.to_thread(child.join, 60)
    assert child.exitcode == 0
    assert await asyncio.to_thread(run.finish)
    client = runstream.Client(server)
    await asyncio.to_thread(
        poll_until,
        lambda: len(client.history(run.run_id, "mp", wait_for=run.write_token)) == 301,
        20,
    )
    history = await read_history(client, run.run_id, "mp", run.write_token)
    assert sorted(history.values.tolist()) == [-1.0] + [float(i) for i in range(300)]
    got = await asyncio.to_thread(client.get_run, run.run_id, wait_for=run.write_token)
    assert got["info"]["status"] == "FINISHED"  # the child did not finish the run
    client.close()
