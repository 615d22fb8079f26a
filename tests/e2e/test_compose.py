"""compose.yaml, the Dockerfile and deploy/nginx.conf, checked without Docker.

The stack is validated with ``docker-compose config`` when the binary exists (else its YAML is
checked by hand), and its services are exercised by running the same commands the containers
run — ``runstream ingest``, ``runstream projector``, ``runstream api`` — as processes against
the test's own database and Redis prefix, behind the real nginx config when nginx is installed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
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

from runstream.browser_safety import CROSS_ORIGIN_BLOCKED, INVALID_HOST
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


def nginx_binary() -> str | None:
    """nginx on PATH, or where Debian's package puts it (/usr/sbin is not on every PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


NGINX = nginx_binary()
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (.ci/run installs it: apt-get install nginx)"
)


@needs_nginx
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    assert NGINX is not None
    conf = local_nginx_conf(tmp_path, {"ingest": 1, "api": 2}, free_port())
    done = subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


ADMIN = ("admin", "compose-test-password")
PUBLIC_HOST = "tracking.example.org"
"""The public name an operator gives the deployment (RUNSTREAM_PUBLIC_URL), TLS ending in front
of this nginx: the browser's Origin is https://PUBLIC_HOST, the Host nginx forwards PUBLIC_HOST."""


def compose_environment(
    stack: dict[str, Any], database_url: str, redis_url: str, prefix: str, tmp_path: Path
) -> dict[str, str]:
    """The environment compose gives the runstream containers, pointed at this test's stores.

    Kept from compose: auth on (basic, the first admin from RUNSTREAM_ADMIN_PASSWORD), the
    browser-safety defaults (no RUNSTREAM_ALLOWED_HOSTS or RUNSTREAM_CORS_ALLOWED_ORIGINS),
    the log level. Changed: the stores and artifacts (this test's own, no MinIO), the address,
    one HTTP process per service (the machine running the tests is small), and the public URL
    an operator sets for a public name.
    """
    env = {k: str(v) for k, v in stack["services"]["api"]["environment"].items()}
    for variable in ("RUNSTREAM_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(variable, None)
    assert env["RUNSTREAM_AUTH"] == "basic"
    assert env["RUNSTREAM_ALLOWED_HOSTS"] == "" and env["RUNSTREAM_CORS_ALLOWED_ORIGINS"] == ""
    env.update(
        RUNSTREAM_DATABASE_URL=database_url,
        RUNSTREAM_REDIS_URL=redis_url,
        RUNSTREAM_STREAM_PREFIX=prefix,
        RUNSTREAM_SHARDS="2",
        RUNSTREAM_ARTIFACTS_URL=str(tmp_path / "artifacts"),
        RUNSTREAM_HOME=str(tmp_path / "home"),
        RUNSTREAM_HOST="127.0.0.1",
        RUNSTREAM_WORKERS="1",
        RUNSTREAM_PROJECTOR_BLOCK_MS="50",
        RUNSTREAM_ADMIN_USERNAME=ADMIN[0],
        RUNSTREAM_ADMIN_PASSWORD=ADMIN[1],
        RUNSTREAM_PUBLIC_URL=f"https://{PUBLIC_HOST}",
    )
    return clean_environ(**env)


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.slow
async def test_the_containers_commands_work_as_processes(
    stack: dict[str, Any],
    database_url: str,
    redis_url: str,
    stream_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The mlflow client of the proxy checks reads its credentials from the environment.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    env = compose_environment(stack, database_url, redis_url, stream_prefix, tmp_path)
    await asyncio.to_thread(run_three_services, env, tmp_path)
    if NGINX is None:  # said, not hidden: the services ran, the proxy part did not
        pytest.skip("nginx is not installed: the services ran without the reverse proxy")


def run_three_services(env: dict[str, str], tmp_path: Path) -> None:
    ports = {part: free_port() for part in PARTS}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    auth = basic_auth(*ADMIN)
    try:
        for part in PARTS:
            log = tmp_path / f"{part}.log"
            processes[part] = start([part], {**env, "RUNSTREAM_PORT": str(ports[part])}, log)
        for part in PARTS:
            url = f"http://127.0.0.1:{ports[part]}"
            wait_healthy(url, processes[part], tmp_path / f"{part}.log", 60)

        run_id = uuid.uuid4().hex
        write_run(f"http://127.0.0.1:{ports['ingest']}", run_id, auth)
        check_run(f"http://127.0.0.1:{ports['api']}", run_id, auth)

        if NGINX is not None:
            with nginx_in_front(tmp_path, ports) as url:
                check_behind_the_proxy(url, tmp_path)

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


@contextlib.contextmanager
def nginx_in_front(tmp_path: Path, ports: dict[str, int]) -> Iterator[str]:
    """The reverse proxy of compose.yaml in front of the three processes; yields its URL."""
    assert NGINX is not None
    listen = free_port()
    conf = local_nginx_conf(tmp_path, ports, listen)
    nginx = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{listen}"
        wait_healthy(url, nginx, tmp_path / "nginx.err", 20)
        yield url
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()


def check_behind_the_proxy(url: str, tmp_path: Path) -> None:
    """What users and browsers do through compose's nginx, each answer as sent."""
    http = requests.Session()
    http.auth = ADMIN
    auth = basic_auth(*ADMIN)

    # The native routes (nginx sends events and get-or-create to ingest, reads to api).
    run_id = uuid.uuid4().hex
    write_run(url, run_id, auth)
    check_run(url, run_id, auth)

    # The MLflow client: experiment, run, params, metrics, an artifact, all read back.
    client = MlflowClient(tracking_uri=url)
    experiment_id = client.create_experiment(f"behind-nginx-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    mlflow_run_id = run.info.run_id
    client.log_batch(
        mlflow_run_id,
        metrics=[Metric("loss", 1.0 / (s + 1), 1_000 + s, s) for s in range(50)],
        params=[Param("lr", "0.01")],
    )
    (tmp_path / "notes.txt").write_text("trained behind nginx")
    client.log_artifact(mlflow_run_id, str(tmp_path / "notes.txt"), artifact_path="docs")
    client.set_terminated(mlflow_run_id)
    got = client.get_run(mlflow_run_id)
    assert got.data.params == {"lr": "0.01"}
    assert got.data.metrics == {"loss": 1.0 / 50}
    assert got.info.status == "FINISHED"
    history = client.get_metric_history(mlflow_run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / (s + 1)) for s in range(50)]
    out = Path(client.download_artifacts(mlflow_run_id, "docs", str(tmp_path / "out")))
    assert (out / "notes.txt").read_text() == "trained behind nginx"

    # The MLflow UI: its page, its script, and the ajax API the page calls.
    resp = http.get(url + "/", timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    if "static-files/static/js/main." in resp.text:  # mlflow's UI build is installed
        script = resp.text.split('src="', 1)[1].split('"', 1)[0]
        assert http.get(f"{url}/{script}", timeout=30).status_code == 200
    resp = http.post(
        url + "/ajax-api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert [r["info"]["run_id"] for r in resp.json()["runs"]] == [mlflow_run_id]

    check_browser_safety(http, url, experiment_id)
    check_body_limit(http, url, mlflow_run_id)


def check_browser_safety(http: requests.Session, url: str, experiment_id: str) -> None:
    """nginx forwards the client's Host ($http_host) and its Origin untouched, so the rules
    apply to what the browser sent, not to nginx's own address."""
    search = url + "/api/2.0/mlflow/experiments/search"

    def create(name: str, **headers: str) -> requests.Response:
        return http.post(
            url + "/api/2.0/mlflow/experiments/create", json={"name": name}, headers=headers
        )

    def exists(name: str) -> bool:
        resp = http.get(
            url + "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}
        )
        assert resp.status_code in (200, 404), resp.text
        return resp.status_code == 200

    # Host allow-list: the public name and localhost pass, another name is DNS rebinding.
    for host in (PUBLIC_HOST, f"{PUBLIC_HOST}:443", "localhost:5000", "10.1.2.3:5000"):
        resp = http.get(search, params={"max_results": 5}, headers={"Host": host})
        assert resp.status_code == 200, (host, resp.text)
    for host in ("evil.example", f"{PUBLIC_HOST}.evil.example", "runstream-attacker.test:5000"):
        resp = http.get(search, params={"max_results": 5}, headers={"Host": host})
        assert (resp.status_code, resp.text) == (403, INVALID_HOST), host
    assert http.get(url + "/health", headers={"Host": "evil.example"}).status_code == 200

    # The UI served under the public name writes with its own origin (https, in front of
    # nginx's http: the rule compares hosts, as the browser's Origin and Host both name it).
    name = f"own-origin-{uuid.uuid4().hex[:8]}"
    resp = create(name, Host=PUBLIC_HOST, Origin=f"https://{PUBLIC_HOST}")
    assert resp.status_code == 200, resp.text
    assert exists(name)

    # Another origin changes nothing, on the MLflow routes and on the native ones.
    evil = "https://evil.example"
    name = f"cross-origin-{uuid.uuid4().hex[:8]}"
    resp = create(name, Host=PUBLIC_HOST, Origin=evil)
    assert (resp.status_code, resp.text) == (403, CROSS_ORIGIN_BLOCKED)
    assert not exists(name)
    resp = http.post(
        url + "/api/runstream/v1/experiments/get-or-create",
        data=orjson.dumps({"name": name}),
        headers={"Content-Type": "text/plain", "Origin": evil},
    )
    assert (resp.status_code, resp.text) == (403, CROSS_ORIGIN_BLOCKED)
    resp = http.post(
        url + "/api/runstream/v1/experiments/get-or-create",
        data=orjson.dumps({"name": name}),
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status_code == 400, resp.text
    assert "Content-Type must be one of [application/json" in resp.json()["message"]
    assert not exists(name)

    # CORS: a page on localhost may read answers; another origin's page may not.
    preflight = {"Access-Control-Request-Method": "POST"}
    resp = http.options(search, headers={"Origin": "http://localhost:3000", **preflight})
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    resp = http.options(search, headers={"Origin": evil, **preflight})
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = http.get(
        url + "/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment_id},
        headers={"Origin": evil},
    )
    assert resp.status_code == 200 and "Access-Control-Allow-Origin" not in resp.headers


def check_body_limit(http: requests.Session, url: str, run_id: str) -> None:
    """nginx neither caps nor spools bodies (client_max_body_size 0, no request buffering):
    runstream's own limit answers, from Content-Length, with its MLflow-style 413."""
    body = b'{"run_id": "' + run_id.encode() + b'", "metrics": [' + b" " * (25 * 1024 * 1024)
    try:
        resp = http.post(
            url + "/api/2.0/mlflow/runs/log-batch",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
    except requests.ConnectionError as error:  # the server closed before the body was sent
        raise AssertionError(f"no answer through nginx: {error}") from error
    assert resp.status_code == 413, resp.text[:300]
    assert resp.json()["error_code"] == "RESOURCE_EXHAUSTED"
