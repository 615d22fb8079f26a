"""Fixtures of the fault suite (helpers in ``conftest_fault``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_fault import ServerProcess, start_server, stop_server

from runstream.settings import Settings


@pytest.fixture
def server_process(settings: Settings, tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(settings, tmp_path / "server.log")
    try:
        yield server
    finally:
        stop_server(server)
