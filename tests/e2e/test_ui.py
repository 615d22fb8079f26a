"""MLflow's Tracking UI against runstream, in a real headless Chromium.

The full server (``build_app``: ingest, api, projector) runs in the test's event loop; the
``mlflow`` client logs runs from a thread (it blocks); Chromium loads the UI's pages, driven
over the Chrome DevTools Protocol with aiohttp's websocket client (no browser-automation
package needed). The test records every response the page gets and fails on any 5xx, and on
any 404 from a tracking endpoint.

Needs a Chromium binary (``chromium``, ``chromium-browser`` or ``google-chrome`` on PATH, or
RUNSTREAM_TEST_CHROMIUM=<path>); without one the browser tests are skipped. On Debian/Ubuntu:
``apt-get install -y chromium``. Set RUNSTREAM_TEST_SCREENSHOTS=<dir> to keep a screenshot of
each page.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from runstream.api.ui import routes as ui
from runstream.settings import Settings

pytestmark = pytest.mark.slow

mlflow = pytest.importorskip("mlflow")


def chromium_binary() -> str | None:
    configured = os.environ.get("RUNSTREAM_TEST_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = chromium_binary()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium)"
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1900,1000",
)
PAGE_TIMEOUT = 45.0

EXPECTED_404 = ("/ajax-api/2.0/mlflow/users/current",)
"""Tracking-prefixed routes MLflow itself answers 404 without its auth app (the UI expects it)."""
TRACKING_PATHS = ("/ajax-api/", "/api/2.0/", "/graphql", "/get-artifact", "/version")


# -- a minimal Chrome DevTools Protocol client ----------------------------------------------------


@dataclass
class Seen:
    method: str
    url: str
    status: int


@dataclass
class Page:
    ws: aiohttp.ClientWebSocketResponse
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    waiting: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    async def call(self, method: str, **params: Any) -> Any:
        call_id = next(self.ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[call_id] = future
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        return await asyncio.wait_for(future, 30)

    async def read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                future = self.waiting.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(str(data["error"])))
                else:
                    future.set_result(data.get("result"))
                continue
            params = data.get("params", {})
            if data.get("method") == "Network.requestWillBeSent":
                self.methods[params["requestId"]] = params["request"]["method"]
            elif data.get("method") == "Network.responseReceived":
                method = self.methods.get(params["requestId"], "?")
                response = params["response"]
                self.seen.append(Seen(method, response["url"], response["status"]))

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def text(self) -> str:
        result = await self.call(
            "Runtime.evaluate", expression="document.body ? document.body.innerText : ''"
        )
        return str(result["result"].get("value", ""))

    async def wait_for_text(self, *needles: str) -> str:
        deadline = time.monotonic() + PAGE_TIMEOUT
        while True:
            text = await self.text()
            if all(needle in text for needle in needles):
                return text
            if time.monotonic() > deadline:
                missing = [needle for needle in needles if needle not in text]
                raise AssertionError(f"{missing} not on the page, which shows:\n{text[:3000]}")
            await asyncio.sleep(0.3)

    async def screenshot(self, name: str) -> None:
        folder = os.environ.get("RUNSTREAM_TEST_SCREENSHOTS")
        if folder:
            shot = await self.call("Page.captureScreenshot", format="png")
            await asyncio.to_thread(_save, Path(folder) / f"{name}.png", shot["data"])


def _save(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data))


@contextlib.asynccontextmanager
async def browser_page(binary: str) -> AsyncIterator[Page]:
    profile = tempfile.mkdtemp(prefix="rs-chromium-")
    process = await asyncio.create_subprocess_exec(
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {process.returncode})")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.put(f"http://127.0.0.1:{port}/json/new?about:blank") as resp:
                target = await resp.json()
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                reader = asyncio.create_task(page.read())
                try:
                    await page.call("Network.enable")
                    await page.call("Page.enable")
                    yield page
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        shutil.rmtree(profile, ignore_errors=True)


# -- data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    experiment_id: str
    run_id: str
    run_name: str


def log_runs(uri: str, workdir: Path) -> Logged:
    """Two runs through the real mlflow client: params, stepped metrics, an artifact."""
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment(f"ui-{workdir.name}")
    notes = workdir / "notes.txt"
    notes.write_text("trained for 20 steps\n")
    logged = None
    for i, name in enumerate(("ui-run-alpha", "ui-run-beta")):
        run = client.create_run(experiment_id, run_name=name)
        run_id = run.info.run_id
        client.log_param(run_id, "learning_rate", f"0.0{i + 5}")
        client.log_param(run_id, "optimizer", "adamw")
        now = int(time.time() * 1000)
        metrics = [
            mlflow.entities.Metric("val_loss", 1.0 / (step + 1 + i), now + step, step)
            for step in range(20)
        ]
        client.log_batch(run_id, metrics=metrics)
        client.log_artifact(run_id, str(notes))
        client.set_terminated(run_id)
        logged = Logged(experiment_id, run_id, name)
    assert logged is not None
    return logged


def tracking_failures(page: Page, base: str) -> list[str]:
    """Every 5xx, and every 404 from a tracking endpoint MLflow would have answered."""
    bad = []
    for seen in page.seen:
        if not seen.url.startswith(base):
            continue
        path = seen.url[len(base) :].split("?")[0]
        tracking = path.startswith(TRACKING_PATHS) and path not in EXPECTED_404
        if seen.status >= 500 or (seen.status == 404 and tracking):
            bad.append(f"{seen.status} {seen.method} {path}")
    return bad


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


# -- tests ----------------------------------------------------------------------------------------


@needs_chromium
async def test_tracking_ui_renders_runs_params_metrics_and_artifacts(
    server: str, tmp_path: Path, mlflow_env: None
) -> None:
    assert CHROMIUM is not None
    logged = await asyncio.to_thread(log_runs, server, tmp_path)
    experiment = f"{server}/#/experiments/{logged.experiment_id}"
    run_page = f"{experiment}/runs/{logged.run_id}"
    async with browser_page(CHROMIUM) as page:
        await page.goto(f"{experiment}/runs")
        await page.wait_for_text("ui-run-alpha", "ui-run-beta", "2 matching runs")
        await page.screenshot("runs-table")

        await page.goto(run_page)
        text = await page.wait_for_text(logged.run_name, "learning_rate", "0.06", "val_loss")
        assert "adamw" in text
        await page.screenshot("run-overview")

        await page.goto(f"{run_page}/model-metrics")
        await page.wait_for_text("val_loss", "Step")
        await page.screenshot("run-metrics")

        await page.goto(f"{run_page}/artifacts")
        await page.wait_for_text("notes.txt")
        await page.screenshot("run-artifacts")

    paths = [seen.url for seen in page.seen]
    assert any("/graphql" in url for url in paths)
    assert any("metrics/get-history-bulk-interval" in url for url in paths)
    assert any("artifacts/list" in url for url in paths)
    assert tracking_failures(page, server) == []


async def test_root_serves_mlflow_ui_with_mlflow_cache_headers(
    server: str, http: aiohttp.ClientSession
) -> None:
    build = ui.find_ui_build()
    assert build is not None, "mlflow is installed, so its UI build should be found"
    async with http.get(f"{server}/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        index = await resp.text()
    assert "static-files/static/js/main." in index
    script = index.split('src="', 1)[1].split('"', 1)[0]
    async with http.get(f"{server}/{script}") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == f"public, max-age={ui.STATIC_MAX_AGE}"
    for escape in ("static-files/../index.html", "static-files/%2e%2e/%2e%2e/__init__.py"):
        async with http.get(f"{server}/{escape}") as resp:
            assert resp.status == 404
    async with http.get(f"{server}/version") as resp:
        assert await resp.text() == build.version


async def test_ui_only_endpoints_answer_like_an_empty_mlflow(
    server: str, http: aiohttp.ClientSession
) -> None:
    ajax = f"{server}/ajax-api/2.0/mlflow"
    for url in (
        f"{ajax}/registered-models/search",
        f"{ajax}/model-versions/search?filter=run_id%3D%27x%27",
        f"{ajax}/gateway-proxy?gateway_path=api%2F2.0%2Fendpoints%2F",
        f"{server}/ajax-api/3.0/mlflow/ui-telemetry",
    ):
        async with http.get(url) as resp:
            assert resp.status == 200, url
    async with http.get(f"{ajax}/gateway-proxy") as resp:
        assert await resp.json() == {"endpoints": []}
    query = '{ mlflowGetRun(input: {runId: "nope"}) { run { info { runName } } } }'
    async with http.post(f"{server}/graphql", json={"query": query}) as resp:
        assert resp.status == 200
        assert await resp.json() == {
            "data": {"mlflowGetRun": None},
            "errors": ["Run with id=nope not found"],
        }


async def test_without_mlflow_root_says_how_to_get_the_ui(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runstream.server import build_app

    monkeypatch.setattr(ui, "find_ui_build", lambda: None)
    async with TestClient(TestServer(build_app(settings))) as client:
        resp = await client.get("/")
        assert resp.status == 200
        assert "pip install mlflow" in await resp.text()
        assert (await client.get("/static-files/static/js/main.js")).status == 404
        assert (await client.post("/graphql", json={"query": "{ __typename }"})).status == 404


def test_static_file_refuses_paths_that_leave_the_build(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "a.js").write_text("1")
    root = tmp_path.resolve()
    assert ui.static_file(root, "static/a.js") == root / "static" / "a.js"
    for bad in ("../x", "static/../../x", "/etc/passwd", "static//a.js", "static", "", "a\\b"):
        assert ui.static_file(root, bad) is None
