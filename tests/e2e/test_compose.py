"""compose.yaml, the Dockerfile and deploy/nginx.conf, checked without Docker.

The stack is validated with ``docker-compose config`` when the binary exists (else its YAML is
checked by hand), and its services are exercised by running the same commands the containers
run — ``runstream ingest``, ``runstream projector``, ``runstream api`` — as processes against
the test's own database and Redis prefix, behind the real nginx config when nginx is installed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_server_embedded import (
    check_run,
    children_of,
    clean_environ,
    free_port,
    start,
    stop,
    wait_gone,
    wait_healthy,
    write_run,
)

from runstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
PARTS = ("ingest", "projector", "api")


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with an empty environment (``$$`` is a literal ``$``)."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return value.replace("$$", "$")


def compose_config() -> dict[str, Any]:
    """The resolved stack: ``docker-compose config`` when available, else the parsed YAML."""
    binary = shutil.which("docker-compose")
    if binary:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSTREAM_", "POSTGRES_"))}
        done = subprocess.run(
            [binary, "-f", str(COMPOSE), "config"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return yaml.safe_load(done.stdout)  # type: ignore[no-any-return]
    raw = yaml.safe_load(COMPOSE.read_text())
    for service in raw["services"].values():
        env = service.get("environment", {})
        if isinstance(env, dict):
            service["environment"] = {k: interpolate(str(v)) for k, v in env.items()}
    return raw  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return compose_config()


def test_compose_has_the_whole_deployment(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(services) >= {
        "postgres",
        "redis",
        "minio",
        "minio-create-bucket",
        "ingest",
        "projector",
        "api",
        "proxy",
    }
    assert "/var/lib/postgresql/data" in str(services["postgres"]["volumes"])
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "/data" in str(services["redis"]["volumes"])
    assert services["minio-create-bucket"]["image"].startswith("minio/mc")
    assert "mc mb" in str(services["minio-create-bucket"]["command"])
    assert "5000" in str(services["proxy"]["ports"])
    assert "deploy/nginx.conf" in str(services["proxy"]["volumes"])


@pytest.mark.parametrize("part", PARTS)
def test_each_service_runs_its_command_with_valid_settings(
    stack: dict[str, Any], part: str
) -> None:
    service = stack["services"][part]
    assert service["command"] == [part]
    assert "build" in service
    env = {k: str(v) for k, v in service["environment"].items()}
    settings = Settings.from_env(env)
    assert settings.database_url and "@postgres:5432/" in settings.database_url
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.artifacts_url and settings.artifacts_url.startswith("s3://")
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.host == "0.0.0.0"
    assert settings.workers == 0  # one HTTP process per core of the container
    assert settings.auth == "basic"  # on by default; the admin's password from the environment
    assert settings.admin_password is None
    assert "/health" in " ".join(service["healthcheck"]["test"])
    depends = service["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["minio-create-bucket"]["condition"] == "service_completed_successfully"


def test_dockerfile_runs_the_cli_and_ships_every_room() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["runstream"]' in dockerfile
    assert "USER runstream" in dockerfile
    for folder in ("runstream", "schemas", "ingest", "projector", "api"):
        assert f"COPY {folder} {folder}" in dockerfile


def test_nginx_routes_writes_to_ingest_and_the_rest_to_api() -> None:
    conf = NGINX_CONF.read_text()
    assert re.search(
        r"location = /api/runstream/v1/events \{\s*proxy_pass http://runstream_ingest;", conf
    )
    assert re.search(
        r"location = /api/runstream/v1/experiments/get-or-create \{\s*"
        r"proxy_pass http://runstream_ingest;",
        conf,
    )
    assert re.search(r"location / \{[^}]*proxy_pass http://runstream_api;", conf)
    assert "client_max_body_size 0;" in conf
    assert "proxy_request_buffering off;" in conf
    assert conf.count("proxy_buffering off;") >= 2


def local_nginx_conf(tmp_path: Path, ports: dict[str, int], listen: int) -> Path:
    """deploy/nginx.conf with the upstreams and port of this test, in a runnable main file."""
    site = NGINX_CONF.read_text()
    site = site.replace("server ingest:5000;", f"server 127.0.0.1:{ports['ingest']};")
    site = site.replace("server api:5000;", f"server 127.0.0.1:{ports['api']};")
    site = site.replace("listen 5000;", f"listen 127.0.0.1:{listen};")
    (tmp_path / "site.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    main.write_text(
        f"daemon off;\nuser root;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/nginx.err;\n"
        "events {}\n"
        f"http {{\n access_log off;\n client_body_temp_path {temp}/body;\n"
        f" proxy_temp_path {temp}/proxy;\n fastcgi_temp_path {temp}/fastcgi;\n"
        f" uwsgi_temp_path {temp}/uwsgi;\n scgi_temp_path {temp}/scgi;\n"
        f" include {tmp_path}/site.conf;\n}}\n"
    )
    return main


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed")
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    conf = local_nginx_conf(tmp_path, {"ingest": 1, "api": 2}, free_port())
    done = subprocess.run(
        ["nginx", "-t", "-c", str(conf), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
async def test_the_containers_commands_work_as_processes(
    database_url: str, redis_url: str, stream_prefix: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(run_three_services, database_url, redis_url, stream_prefix, tmp_path)


def run_three_services(database_url: str, redis_url: str, prefix: str, tmp_path: Path) -> None:
    env = clean_environ(
        RUNSTREAM_DATABASE_URL=database_url,
        RUNSTREAM_REDIS_URL=redis_url,
        RUNSTREAM_STREAM_PREFIX=prefix,
        RUNSTREAM_SHARDS="2",
        RUNSTREAM_ARTIFACTS_URL=str(tmp_path / "artifacts"),
        RUNSTREAM_HOME=str(tmp_path / "home"),
        RUNSTREAM_HOST="127.0.0.1",
        RUNSTREAM_PROJECTOR_BLOCK_MS="50",
    )
    ports = {part: free_port() for part in PARTS}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for part in PARTS:
            log = tmp_path / f"{part}.log"
            processes[part] = start([part], {**env, "RUNSTREAM_PORT": str(ports[part])}, log)
        for part in PARTS:
            url = f"http://127.0.0.1:{ports[part]}"
            wait_healthy(url, processes[part], tmp_path / f"{part}.log", 60)

        run_id = uuid.uuid4().hex
        write_run(f"http://127.0.0.1:{ports['ingest']}", run_id)
        check_run(f"http://127.0.0.1:{ports['api']}", run_id)

        if shutil.which("nginx"):
            through_nginx(tmp_path, ports)

        for part in PARTS:
            descendants = children_of(processes[part].pid)
            code = stop(processes[part], signal.SIGTERM, timeout=30)
            assert code == 0, (tmp_path / f"{part}.log").read_text()
            assert wait_gone(descendants, 5) == []
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def through_nginx(tmp_path: Path, ports: dict[str, int]) -> None:
    """The reverse proxy of compose.yaml in front of the three processes."""
    listen = free_port()
    conf = local_nginx_conf(tmp_path, ports, listen)
    nginx = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{listen}"
        wait_healthy(url, nginx, tmp_path / "nginx.err", 20)
        run_id = uuid.uuid4().hex
        write_run(url, run_id)
        check_run(url, run_id)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
