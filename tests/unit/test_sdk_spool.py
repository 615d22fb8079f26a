"""Spool files: written atomically, read back identically, owned by a live writer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runstream.client.batches import build_batches
from runstream.client.buffer import RunBuffer
from runstream.client.config import ClientConfig, resolve_url
from runstream.client.spool import (
    SpoolWriter,
    claim_orphans,
    read_file,
    reject_file,
    sync_spool,
)

RUN = "0123456789abcdef0123456789abcdef"
URL = "http://127.0.0.1:9"


def a_batch() -> object:
    buf = RunBuffer()
    for i in range(10):
        buf.log({"a": float(i), "b": -float(i)})
    (batch,) = build_batches(RUN, buf.take()[0], 1, 1000)
    batch.experiment_name = "exp"
    return batch


def test_round_trip(tmp_path: Path) -> None:
    batch = a_batch()
    writer = SpoolWriter(tmp_path)
    path = writer.write(batch, URL)  # type: ignore[arg-type]
    again = writer.write(batch, URL)  # type: ignore[arg-type]
    assert path.name < again.name  # file names sort in queue order
    spooled = read_file(path)
    assert spooled.url == URL and spooled.run_id == RUN
    assert spooled.idempotency_key == batch.idempotency_key  # type: ignore[attr-defined]
    assert spooled.events == batch.events  # type: ignore[attr-defined]
    assert spooled.points == 20 and spooled.experiment_name == "exp"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    writer.close()
    assert path.exists()  # not empty: left for sync


def test_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.rsb"
    bad.write_bytes(b"\xc1garbage")
    with pytest.raises(ValueError):
        read_file(bad)


def test_live_writer_is_not_claimed(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path)
    writer.write(a_batch(), URL)  # type: ignore[arg-type]
    assert list(claim_orphans(tmp_path)) == []
    writer.close()
    (claim,) = claim_orphans(tmp_path)
    assert len(claim.files()) == 1
    claim.release()


def test_dead_process_dir_is_claimed(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from tests.unit.test_sdk_spool import a_batch;"
        "from runstream.client.spool import SpoolWriter;"
        "SpoolWriter(Path(sys.argv[1])).write(a_batch(), 'http://127.0.0.1:9');"
        "import os; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=os.getcwd())
    (claim,) = claim_orphans(tmp_path)
    assert len(claim.files()) == 1
    claim.release()


def test_sync_with_nothing_to_do(tmp_path: Path) -> None:
    result = sync_spool(URL, tmp_path / "missing")
    assert result.ok and result.batches_sent == 0


def test_sync_leaves_files_when_server_is_down(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path)
    for _ in range(3):
        writer.write(a_batch(), URL)  # type: ignore[arg-type]
    writer.close()
    result = sync_spool(None, tmp_path, attempts=1)
    assert result.batches_pending == 3 and result.batches_sent == 0 and not result.ok
    assert len(list(tmp_path.glob("w-*/*.rsb"))) == 3


def test_reject_keeps_the_error(tmp_path: Path) -> None:
    path = reject_file(tmp_path, a_batch(), URL, "HTTP 400: nope")  # type: ignore[arg-type]
    assert path.parent.name == "rejected"
    assert read_file(path).error == "HTTP 400: nope"


def test_url_resolution() -> None:
    assert resolve_url("http://h:1/") == "http://h:1"
    assert resolve_url(None, {"RUNSTREAM_URL": "https://a/b/"}) == "https://a/b"
    env = {"MLFLOW_TRACKING_URI": "http://m:5000"}
    assert resolve_url(None, env) == "http://m:5000"
    assert resolve_url(None, {"MLFLOW_TRACKING_URI": "file:///tmp/x"}) == "http://127.0.0.1:5000"
    assert resolve_url(None, {}) == "http://127.0.0.1:5000"
    with pytest.raises(ValueError):
        resolve_url("ftp://x")


def test_config_from_env(tmp_path: Path) -> None:
    env = {
        "RUNSTREAM_SPOOL_DIR": str(tmp_path),
        "RUNSTREAM_FLUSH_TIMEOUT": "2.5",
        "MLFLOW_TRACKING_USERNAME": "u",
        "MLFLOW_TRACKING_PASSWORD": "p",
    }
    config = ClientConfig.from_env(None, env)
    assert config.spool_dir == tmp_path and config.flush_timeout == 2.5
    assert config.headers["Authorization"].startswith("Basic ")
    with pytest.raises(ValueError, match="RUNSTREAM_BATCH_POINTS"):
        ClientConfig.from_env(None, {"RUNSTREAM_BATCH_POINTS": "many"})
