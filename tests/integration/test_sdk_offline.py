"""The SDK with no server: it says so within two seconds (URL and spool folder), and
``runstream sync`` later sends the spool to a server, creating what the batches need first.

The server runs on the test's event loop; every SDK call that waits on the network goes
through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import runstream
from runstream import api, ingest, projector
from runstream.client import lifecycle, notices
from runstream.client.batches import Batch
from runstream.client.spool import SpoolWriter
from runstream.schemas.codec import event_to_obj
from runstream.schemas.metrics import MetricSeries, MetricsLogged
from runstream.schemas.runs import RunCreated
from runstream.settings import Settings
from runstream.web import error_middleware


def build_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    ingest.setup(app, settings)
    api.setup(app, settings)
    projector.setup(app, settings)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "spool"
    monkeypatch.setenv("RUNSTREAM_SPOOL_DIR", str(folder))
    monkeypatch.setenv("RUNSTREAM_FLUSH_INTERVAL", "0.05")
    for name in ("RUNSTREAM_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    yield folder
    for run in lifecycle.open_runs():
        run.finish("KILLED", timeout=0)


# -- saying so ----------------------------------------------------------------------------------

NO_SERVER_SCRIPT = """
import sys, time
import runstream
started = time.monotonic()
run = runstream.start_run(experiment="offline", url=sys.argv[1])
print(f"start_run took {time.monotonic() - started:.3f}", flush=True)
run.log({"loss": 1.0})
"""


def silent_listener() -> Iterator[socket.socket]:
    """A port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_no_server_is_reported_within_two_seconds_without_logging(server: str, spool: Path) -> None:
    """A script that configures no logging still sees the URL and the spool folder on stderr,
    once, within two seconds, whether the port refuses or nobody answers on it."""
    listener = silent_listener()
    port = free_port() if server == "refused" else next(listener).getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RUNSTREAM_FLUSH_TIMEOUT": "0.5"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(NO_SERVER_SCRIPT), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    lines = []
    while not any(url in line for line in lines):
        lines.append(proc.stderr.readline())
        assert lines[-1], "no notice before the script ended"
    noticed = time.monotonic() - started
    rest = proc.stderr.read()
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert proc.wait(30) == 0
    listener.close()
    text = "".join(lines) + rest
    assert noticed < 2.0 + 1.0  # the script's own interpreter start is in this figure
    took = float(out.split("start_run took ")[1].split()[0])
    assert took < 2.0
    assert str(spool) in text
    assert text.count(f"no server answers at {url}") == 1


async def test_no_server_is_a_warning_of_the_runstream_logger(
    spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    run = await asyncio.to_thread(runstream.start_run, experiment="offline", url=url)
    assert time.monotonic() - started < 2.0
    records = [r for r in caplog.records if r.name == "runstream.client.notices"]
    assert len(records) == 1
    assert records[0].levelname == "WARNING" and str(spool) in records[0].message
    await asyncio.to_thread(run.finish, "FINISHED", 0.2)


async def test_a_sender_without_a_lookup_reports_too(
    spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run attached by id makes no lookup: the sender's first failed connection says so."""
    url = f"http://127.0.0.1:{free_port()}"
    run = await asyncio.to_thread(runstream.start_run, run_id="c" * 32, url=url)
    run.log({"loss": 1.0})
    deadline = time.monotonic() + 2.0
    while not any(url in r.message and str(spool) in r.message for r in caplog.records):
        assert time.monotonic() < deadline, "no notice within two seconds"
        await asyncio.sleep(0.05)
    await asyncio.to_thread(run.finish, "FINISHED", 0.2)
    notices.forget(url)


# -- syncing later ------------------------------------------------------------------------------


async def start_server(settings: Settings, port: int | None = None) -> TestServer:
    server = TestServer(build_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    return server


async def test_offline_run_syncs_to_the_server_started_later(
    settings: Settings, spool: Path
) -> None:
    """The newcomer's path: start_run with no server, log, exit; start a server; sync."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run = await asyncio.to_thread(
        runstream.start_run, experiment="later", params={"lr": 0.1}, url=url
    )
    for step in range(50):
        run.log({"loss": 1 / (step + 1)}, step=step)
    assert not await asyncio.to_thread(run.finish, "FINISHED", 0.3)
    server = await start_server(settings, port)
    try:
        result = await asyncio.to_thread(runstream.sync_spool, None, spool)
        assert result.ok and result.points_sent == 50 and not result.errors
        with runstream.Client(url) as client:
            got = await asyncio.to_thread(client.get_run, run.run_id, wait_for=result.token)
            history = await asyncio.to_thread(
                client.history, run.run_id, "loss", wait_for=result.token
            )
        assert got["info"]["status"] == "FINISHED"
        assert history.steps.tolist() == list(range(50))
    finally:
        await server.close()


def spool_batch(spool: Path, name: str, batch: Batch, url: str) -> None:
    """A writer directory named ``name`` holding ``batch``, as a process that is gone left it."""
    writer = SpoolWriter(spool)
    writer.write(batch, url)
    writer.close()
    writer.path.rename(spool / name)


def creation(run_id: str, experiment_id: str) -> dict[str, object]:
    return event_to_obj(RunCreated(run_id, experiment_id, "me", "r", 1, "", ()))


def points(run_id: str, n: int) -> dict[str, object]:
    series = MetricSeries.from_lists("m", range(n), range(n), [float(i) for i in range(n)])
    return event_to_obj(MetricsLogged(run_id, (series,)))


async def test_a_runs_creation_is_sent_before_its_points_in_another_directory(
    settings: Settings, spool: Path
) -> None:
    """A forked child spools its points in its own directory, which may sort before the
    parent's, where the creation is: sync sends the creation first, then the points."""
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    run_id = "d" * 32
    spool_batch(spool, "w-a-child", Batch(run_id, [points(run_id, 7)], 7, 1, 0), url)
    spool_batch(
        spool,
        "w-b-parent",
        Batch(run_id, [creation(run_id, "")], 0, 1, 0, experiment_name="forked"),
        url,
    )
    try:
        result = await asyncio.to_thread(runstream.sync_spool, None, spool)
        assert result.ok and result.batches_sent == 2 and result.points_sent == 7
        with runstream.Client(url) as client:
            history = await asyncio.to_thread(client.history, run_id, "m", wait_for=result.token)
        assert history.steps.tolist() == list(range(7))
    finally:
        await server.close()


async def test_points_of_a_run_no_spool_creates_are_left_with_a_clear_error(
    settings: Settings, spool: Path
) -> None:
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    run_id = "e" * 32
    spool_batch(spool, "w-only-points", Batch(run_id, [points(run_id, 3)], 3, 1, 0), url)
    try:
        result = await asyncio.to_thread(runstream.sync_spool, None, spool)
    finally:
        await server.close()
    assert result.batches_pending == 1 and result.batches_rejected == 0
    assert len(result.errors) == 1
    assert f"has no run {run_id} and no spooled batch created it" in result.errors[0]
    assert (spool / "w-only-points" / "000000000001.rsb").is_file()  # kept for a later sync


async def test_a_run_of_another_servers_experiment_is_created_by_name(
    settings: Settings, spool: Path
) -> None:
    """Spooled after its experiment was resolved on a server that is gone: a new server has
    no experiment of that id, so the run is created in the experiment of its name."""
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    run_id = "f" * 32
    batch = Batch(run_id, [creation(run_id, "424242"), points(run_id, 4)], 4, 2, 0)
    batch.started_in = "moved-here"
    spool_batch(spool, "w-old-server", batch, url)
    try:
        result = await asyncio.to_thread(runstream.sync_spool, None, spool)
        assert result.ok and result.points_sent == 4 and not result.errors
        with runstream.Client(url) as client:
            got = await asyncio.to_thread(client.get_run, run_id, wait_for=result.token)
            found = await asyncio.to_thread(client.search_runs, got["info"]["experiment_id"], "")
        assert [r["info"]["run_id"] for r in found] == [run_id]
        assert got["info"]["experiment_id"] != "424242"
    finally:
        await server.close()
