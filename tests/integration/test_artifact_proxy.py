"""The mlflow-artifacts proxy driven by MLflow's own client, on the local and the S3 store.

The server runs on a real loopback port in a thread (MLflow's client is synchronous); S3 is
``localbucket`` started as a subprocess. Set RUNSTREAM_ARTIFACT_BENCH_MB to also measure
upload/download throughput (see docs/artifacts.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import requests
from aiohttp import web
from botocore.config import Config
from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

from runstream.api.artifacts.routes import setup_artifact_routes
from runstream.api.artifacts.store import S3ArtifactStore, open_artifact_store
from runstream.schemas.errors import InvalidParameterValue
from runstream.settings import Settings
from runstream.web import Handler, error_middleware

API = "/api/2.0/mlflow-artifacts"
RUN = "1/0123456789abcdef/artifacts"
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalBucket:
    url: str
    data_root: Path

    def client(self) -> Any:
        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.url,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )


@pytest.fixture(scope="session")
def localbucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBucket]:
    data_root = tmp_path_factory.mktemp("localbucket")
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        # localbucket accepts any credentials; aiobotocore reads them from the usual variables.
        env.setenv("AWS_ACCESS_KEY_ID", "runstream-test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "runstream-test")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.delenv("AWS_PROFILE", raising=False)
        proc = subprocess.Popen(
            [sys.executable, "-m", "localbucket", str(data_root), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("localbucket did not start") from None
                    time.sleep(0.05)
            yield LocalBucket(f"http://127.0.0.1:{port}", data_root)
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(autouse=True)
def fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's client retries a 5xx seven times with backoff: a failure should show at once."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


@dataclass
class Backend:
    kind: str
    settings: Settings
    root: Path | None = None
    bucket: str | None = None
    localbucket: LocalBucket | None = None
    requests_seen: list[tuple[str, str]] = field(default_factory=list)

    def stored_keys(self) -> list[str]:
        if self.kind == "local":
            assert self.root is not None
            return sorted(
                str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()
            )
        assert self.localbucket is not None
        resp = self.localbucket.client().list_objects_v2(Bucket=self.bucket)
        return sorted(obj["Key"] for obj in resp.get("Contents", []))


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        root = tmp_path / "data" / "artifacts"
        return Backend("local", Settings(data_dir=tmp_path / "data"), root=root)
    bucket_server: LocalBucket = request.getfixturevalue("localbucket")
    bucket = f"rs-{uuid.uuid4().hex[:12]}"
    bucket_server.client().create_bucket(Bucket=bucket)
    settings = Settings(
        data_dir=tmp_path / "data",
        artifacts_url=f"s3://{bucket}/mlflow",
        s3_endpoint_url=bucket_server.url,
    )
    return Backend("s3", settings, bucket=bucket, localbucket=bucket_server)


@contextmanager
def serve(backend: Backend) -> Iterator[str]:
    """The artifact routes alone, on a real port, with the app's loop in a thread."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        backend.requests_seen.append((request.method, request.path))
        return await handler(request)

    async def start() -> tuple[web.AppRunner, int]:
        app = web.Application(middlewares=[record, error_middleware])
        setup_artifact_routes(app, backend.settings)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, int(runner.addresses[0][1])

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def server(backend: Backend) -> Iterator[str]:
    with serve(backend) as url:
        yield url


@pytest.fixture
def repo(server: str) -> HttpArtifactRepository:
    return HttpArtifactRepository(f"{server}{API}/artifacts/{RUN}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MiB):
            digest.update(block)
    return digest.hexdigest()


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n
    return path


def new_dir(path: Path) -> str:
    path.mkdir(parents=True)
    return str(path)


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- MLflow's client against both stores -------------------------------------------------


def test_mlflow_client_round_trip(repo: HttpArtifactRepository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "plots" / "deep").mkdir(parents=True)
    (src / "plots" / "loss.png").write_bytes(b"\x89PNG fake")
    (src / "plots" / "deep" / "notes.txt").write_text("deep note")
    (src / "plots" / "empty.txt").write_bytes(b"")
    (src / "model.pkl").write_bytes(os.urandom(3000))
    single = tmp_path / "hello.txt"
    single.write_text("hello")

    repo.log_artifact(str(single))
    repo.log_artifacts(str(src), "outputs")

    assert [(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts()] == [
        ("hello.txt", False, 5),
        ("outputs", True, None),
    ]
    assert [(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts("outputs/plots")] == [
        ("outputs/plots/deep", True, None),
        ("outputs/plots/empty.txt", False, None),  # MLflow leaves out a zero size
        ("outputs/plots/loss.png", False, 9),
    ]
    assert repo.list_artifacts("outputs/plots/deep/notes.txt") == []
    assert repo.list_artifacts("no/such/folder") == []

    out = Path(repo.download_artifacts("outputs", new_dir(tmp_path / "dl")))
    assert tree(out) == tree(src)
    one = Path(repo.download_artifacts("hello.txt", new_dir(tmp_path / "dl1")))
    assert one.read_text() == "hello"

    repo.delete_artifacts("outputs/plots")
    assert [f.path for f in repo.list_artifacts("outputs")] == ["outputs/model.pkl"]
    repo.delete_artifacts("not/there")  # nothing to delete is fine, as in MLflow
    repo.delete_artifacts()
    assert repo.list_artifacts() == []


def test_round_trip_50mb_by_sha256(
    repo: HttpArtifactRepository, backend: Backend, tmp_path: Path
) -> None:
    big = random_file(tmp_path / "weights.bin", 50 * 1000 * 1000)
    repo.log_artifact(str(big), "model")
    assert repo.list_artifacts("model")[0].file_size == big.stat().st_size
    got = Path(repo.download_artifacts("model/weights.bin", new_dir(tmp_path / "dl")))
    assert sha256(got) == sha256(big)
    assert ("PUT", f"{API}/artifacts/{RUN}/model/weights.bin") in backend.requests_seen


def test_client_multipart_upload(
    repo: HttpArtifactRepository,
    backend: Backend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(5 * MiB))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * MiB))
    big = random_file(tmp_path / "ckpt.bin", 12 * MiB + 123)
    repo.log_artifact(str(big), "ckpt")
    got = Path(repo.download_artifacts("ckpt/ckpt.bin", new_dir(tmp_path / "dl")))
    assert sha256(got) == sha256(big)

    seen = backend.requests_seen
    assert ("POST", f"{API}/mpu/create/{RUN}/ckpt") in seen
    put = ("PUT", f"{API}/artifacts/{RUN}/ckpt/ckpt.bin")
    if backend.kind == "s3":
        # Parts went straight to S3 by presigned URL; the proxy only created and completed.
        assert ("POST", f"{API}/mpu/complete/{RUN}/ckpt") in seen
        assert put not in seen
    else:
        # MLflow's answer for a store without multipart (501) makes the client fall back.
        assert put in seen


def test_multipart_endpoints_json(server: str, backend: Backend) -> None:
    url = f"{server}{API}/mpu/create/{RUN}"
    missing = requests.post(url, json={"num_parts": 2}, timeout=10)
    assert missing.status_code == 400
    assert missing.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "Missing value for required parameter 'path'" in missing.json()["message"]
    created = requests.post(url, json={"path": "/tmp/x/big.bin", "num_parts": 2}, timeout=10)
    if backend.kind == "local":
        assert created.status_code == 501
        assert created.json() == {
            "error_code": "NOT_IMPLEMENTED",
            "message": "Multipart upload is not supported for the current artifact repository",
        }
        return
    body = created.json()
    assert set(body) == {"upload_id", "credentials"}
    assert [c["part_number"] for c in body["credentials"]] == [1, 2]
    assert all("headers" not in c for c in body["credentials"])  # empty map left out
    abort = {"path": "/tmp/x/big.bin", "upload_id": body["upload_id"]}
    resp = requests.post(f"{server}{API}/mpu/abort/{RUN}", json=abort, timeout=10)
    assert (resp.status_code, resp.json()) == (200, {})


def test_wire_format_as_mlflow(server: str, backend: Backend) -> None:
    base = f"{server}{API}/artifacts"
    for name, body in (("a.txt", b"hello"), ("empty.txt", b""), ("sub/deep/b.bin", b"\0" * 10)):
        resp = requests.put(f"{base}/{RUN}/{name}", data=body, timeout=10)
        assert (resp.status_code, resp.json()) == (200, {})

    listing = requests.get(base, params={"path": RUN}, timeout=10)
    assert listing.headers["Content-Type"].startswith("application/json")
    assert listing.json() == {
        "files": [
            {"path": "a.txt", "is_dir": False, "file_size": 5},
            {"path": "empty.txt", "is_dir": False},
            {"path": "sub", "is_dir": True},
        ]
    }
    for missing in (f"{RUN}/a.txt", "1/nope", f"{RUN}/zzz"):
        assert requests.get(base, params={"path": missing}, timeout=10).json() == {}
    root = requests.get(base, timeout=10).json()
    assert root == {"files": [{"path": "1", "is_dir": True}]}

    got = requests.get(f"{base}/{RUN}/a.txt", timeout=10)
    assert got.content == b"hello"
    assert got.headers["Content-Type"] == "text/plain"
    assert got.headers["Content-Disposition"] == "attachment; filename=a.txt"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Length"] == "5"
    binary = requests.get(f"{server}/ajax-api/2.0/mlflow-artifacts/artifacts/{RUN}/sub/deep/b.bin")
    assert binary.headers["Content-Type"] == "application/octet-stream"
    assert binary.content == b"\0" * 10

    folder = requests.get(f"{base}/{RUN}/sub", timeout=10)
    assert folder.status_code == 400
    assert folder.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": f"Artifact path refers to a directory, not a file: '{RUN}/sub'",
        "sqlstate": "KAM00",
        "error_class": "INVALID_PARAMETER_VALUE",
    }


def test_download_of_missing_file_is_404(
    server: str, repo: HttpArtifactRepository, tmp_path: Path
) -> None:
    resp = requests.get(f"{server}{API}/artifacts/{RUN}/missing.txt", timeout=10)
    assert resp.status_code == 404
    assert resp.json() == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": f"No such artifact: '{RUN}/missing.txt'",
        "sqlstate": "KAM00",
        "error_class": "RESOURCE_NOT_FOUND",
    }
    with pytest.raises(Exception, match="404"):
        repo.download_artifacts("missing.txt", str(tmp_path))


# --- path traversal --------------------------------------------------------------------

TRAVERSALS = [
    "../../outside.txt",
    "1/../../outside.txt",
    "%2e%2e/%2e%2e/outside.txt",
    "1/%2E%2E%2F%2E%2E%2Foutside.txt",
    "1/%252e%252e/%252e%252e/outside.txt",
    "/tmp/outside.txt",
    "%2ftmp%2foutside.txt",
    "1\\..\\..\\outside.txt",
    "1/..%5c..%5coutside.txt",
    "1/a%00b.txt",
    "1/a%23b.txt",
    "C:/outside.txt",
    "file:///tmp/outside.txt",
]


def raw_request(server: str, method: str, target: str, body: bytes | None = None) -> Any:
    """Send the path byte for byte: requests/urllib3 would normalise the dot segments away."""
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if method == "POST" else {}
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_every_traversal_form_is_refused(server: str, backend: Backend, tmp_path: Path) -> None:
    outside_before = sorted(p for p in tmp_path.parent.rglob("*") if "artifacts" not in p.parts)
    invalid = InvalidParameterValue("Invalid path").to_json()
    mpu = json.dumps({"path": "big.bin", "upload_id": "x", "num_parts": 1, "parts": []}).encode()
    for path in TRAVERSALS:
        attempts = [
            ("PUT", f"{API}/artifacts/{path}", b"escaped"),
            ("GET", f"{API}/artifacts/{path}", None),
            ("DELETE", f"{API}/artifacts/{path}", None),
            ("GET", f"{API}/artifacts?path={path}", None),
            ("POST", f"{API}/mpu/create/{path}", mpu),
            ("POST", f"{API}/mpu/complete/{path}", mpu),
            ("POST", f"{API}/mpu/abort/{path}", mpu),
        ]
        for method, target, body in attempts:
            assert raw_request(server, method, target, body) == (400, invalid), (method, target)
    for local_file in ("/tmp/..", "/tmp/%2e%2e", "/tmp/", "a\x00b"):
        bad_file = json.dumps({"path": local_file, "num_parts": 1}).encode()
        answer = raw_request(server, "POST", f"{API}/mpu/create/{RUN}", bad_file)
        assert answer == (400, invalid), local_file

    assert backend.stored_keys() == []
    outside_after = sorted(p for p in tmp_path.parent.rglob("*") if "artifacts" not in p.parts)
    assert outside_after == outside_before
    assert not Path("/tmp/outside.txt").exists()
    if backend.localbucket is not None:
        stray = [p for p in backend.localbucket.data_root.rglob("*") if "outside" in p.name]
        assert stray == []


def test_symlink_out_of_local_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = tmp_path / "data" / "artifacts"
    (root / "1").mkdir(parents=True)
    (root / "1" / "link").symlink_to(outside, target_is_directory=True)
    (root / "1" / "ok.txt").write_text("ok")
    backend = Backend("local", Settings(data_dir=tmp_path / "data"), root=root)
    invalid = (400, InvalidParameterValue("Invalid path").to_json())
    with serve(backend) as server:
        assert raw_request(server, "GET", f"{API}/artifacts/1/link/secret.txt") == invalid
        assert raw_request(server, "PUT", f"{API}/artifacts/1/link/new.txt", b"x") == invalid
        assert raw_request(server, "GET", f"{API}/artifacts?path=1/link") == invalid
        assert raw_request(server, "DELETE", f"{API}/artifacts/1/link") == invalid
        assert raw_request(server, "DELETE", f"{API}/artifacts/1/link/secret.txt") == invalid
        listed = raw_request(server, "GET", f"{API}/artifacts?path=1")
        assert listed == (200, {"files": [{"path": "ok.txt", "is_dir": False, "file_size": 2}]})
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"


# --- the stores' streaming, below HTTP ---------------------------------------------------


async def numbered_chunks(
    total: int, chunk: int, fail_at: int | None = None
) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        if fail_at is not None and sent >= fail_at:
            raise ConnectionResetError("client went away")
        n = min(chunk, total - sent)
        yield hashlib.sha256(str(sent).encode()).digest() * (n // 32) + b"x" * (n % 32)
        sent += n


async def test_s3_unknown_length_upload_uses_parts_and_aborts_on_failure(
    localbucket: LocalBucket,
) -> None:
    bucket = f"rs-{uuid.uuid4().hex[:12]}"
    localbucket.client().create_bucket(Bucket=bucket)
    settings = Settings(artifacts_url=f"s3://{bucket}/p", s3_endpoint_url=localbucket.url)
    async with open_artifact_store(settings) as opened:
        assert isinstance(opened, S3ArtifactStore)
        calls = CallRecorder(opened.client)
        store = S3ArtifactStore(calls, bucket, "p", part_bytes=5 * MiB)
        total = 17 * MiB + 5
        expected = hashlib.sha256()
        async for block in numbered_chunks(total, 256 * 1024):
            expected.update(block)
        await store.put("a/stream.bin", numbered_chunks(total, 256 * 1024), size_hint=None)
        assert calls.names == ["create_multipart_upload"] + ["upload_part"] * 4 + [
            "complete_multipart_upload"  # 5 + 5 + 5 + 2 MiB
        ]
        got = hashlib.sha256()
        stream = await store.get("a/stream.bin")
        try:
            async for chunk in stream:
                got.update(chunk)
        finally:
            await stream.aclose()
        assert (stream.size, got.hexdigest()) == (total, expected.hexdigest())

        with pytest.raises(ConnectionResetError):
            await store.put("a/broken.bin", numbered_chunks(total, 256 * 1024, fail_at=12 * MiB))
        assert [f.path for f in await store.list("a")] == ["a/stream.bin"]
        assert calls.names[-1] == "abort_multipart_upload"
        # localbucket keeps an upload's parts in a folder named by its id until aborted.
        assert list(localbucket.data_root.glob(".localbucket-uploads/*")) == []


class CallRecorder:
    """The aiobotocore client, noting which S3 operations the store calls."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.names: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if not name.startswith(("get_", "generate_")):
            self.names.append(name)
        return getattr(self.client, name)


async def test_local_failed_upload_leaves_nothing(tmp_path: Path) -> None:
    async with open_artifact_store(Settings(data_dir=tmp_path)) as store:
        await store.put("r/keep.bin", numbered_chunks(3 * MiB, 100_000))
        with pytest.raises(ConnectionResetError):
            await store.put("r/keep.bin", numbered_chunks(3 * MiB, 100_000, fail_at=MiB))
        with pytest.raises(ConnectionResetError):
            await store.put("r/new.bin", numbered_chunks(3 * MiB, 100_000, fail_at=MiB))
        assert [(f.path, f.file_size) for f in await store.list("r")] == [("r/keep.bin", 3 * MiB)]
        assert sorted(p.name for p in (tmp_path / "artifacts" / "r").iterdir()) == ["keep.bin"]


# --- throughput (opt-in) ---------------------------------------------------------------

BENCH_MB = int(os.environ.get("RUNSTREAM_ARTIFACT_BENCH_MB", "0"))


@pytest.mark.slow
@pytest.mark.skipif(not BENCH_MB, reason="set RUNSTREAM_ARTIFACT_BENCH_MB=200 to measure")
def test_throughput(repo: HttpArtifactRepository, backend: Backend, tmp_path: Path) -> None:
    size = BENCH_MB * 1000 * 1000
    big = random_file(tmp_path / "bench.bin", size)
    started = time.perf_counter()
    repo.log_artifact(str(big))
    upload_s = time.perf_counter() - started
    started = time.perf_counter()
    got = Path(repo.download_artifacts("bench.bin", new_dir(tmp_path / "dl")))
    download_s = time.perf_counter() - started
    assert got.stat().st_size == size
    print(
        f"\n{backend.kind}: {BENCH_MB} MB upload {BENCH_MB / upload_s:.0f} MB/s "
        f"({upload_s:.2f} s), download {BENCH_MB / download_s:.0f} MB/s ({download_s:.2f} s)"
    )
