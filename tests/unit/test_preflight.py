"""What `runstream server` refuses before starting anything: a taken port, a held data folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runstream.preflight import (
    LOCK_FILE,
    DataDirLock,
    PreflightError,
    check_port_free,
    connection_budget,
)
from runstream.settings import Settings


def test_a_free_port_passes_and_a_listening_one_is_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.listen()
        with pytest.raises(PreflightError) as refused:
            check_port_free("127.0.0.1", port)
    assert f"port {port} on 127.0.0.1 is already in use" in str(refused.value)
    assert "--port" in str(refused.value)
    check_port_free("127.0.0.1", port)  # free again once closed
    check_port_free("127.0.0.1", 0)


def test_a_wildcard_listener_blocks_the_wildcard_address() -> None:
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        with pytest.raises(PreflightError):
            check_port_free("0.0.0.0", listener.getsockname()[1])


def test_an_unknown_host_is_refused() -> None:
    with pytest.raises(PreflightError, match=r"cannot listen on no-such-host\.invalid"):
        check_port_free("no-such-host.invalid", 5000)


def test_the_lock_holds_the_folder_and_names_its_pid(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    with DataDirLock(folder) as held:
        assert (folder / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(PreflightError) as refused:
            DataDirLock(folder).acquire()
        message = str(refused.value)
        assert f"process {os.getpid()}" in message
        assert str(folder) in message
        assert held.path == folder / LOCK_FILE
    # released: the next holder gets it, and the pid is not left behind as a holder
    assert (folder / LOCK_FILE).read_text() == ""
    with DataDirLock(folder):
        pass


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from runstream.preflight import DataDirLock
    DataDirLock(Path(sys.argv[1])).acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_another_process_is_named_and_its_death_frees_the_folder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(PreflightError, match=f"process {holder.pid}, lock"):
            DataDirLock(tmp_path).acquire()
    finally:
        holder.kill()  # no clean-up runs: the kernel drops the flock
        holder.wait()
    with DataDirLock(tmp_path):
        pass


@pytest.mark.parametrize("command", ["migrate", "replay"])
def test_one_off_commands_on_embedded_stores_respect_the_lock(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runstream import cli

    with DataDirLock(tmp_path):
        assert cli.main([command, "--data-dir", str(tmp_path)], environ={}) == 2
    assert f"process {os.getpid()}" in capsys.readouterr().err
    assert not (tmp_path / "postgres").exists()  # refused before PostgreSQL was started


def test_the_connection_budget_counts_every_pool_that_may_grow() -> None:
    settings = Settings(db_pool_max=10, search_pool_max=4, projector_pool_max=4)
    everything = ("ingest", "api", "projector")
    assert connection_budget(settings, [everything]) == 18
    # --workers 8: eight HTTP processes, and the parent running the projector with its own
    # request pool (compaction).
    assert connection_budget(settings, [("ingest", "api")] * 8 + [("projector",)]) == 8 * 14 + 14
    assert connection_budget(settings, [("api",), ("api",)]) == 28
    assert connection_budget(settings, [("ingest",)]) == 10
