"""The test sessions' own store choice and clean-up (tests/conftest.py).

The default is embedded stores; 127.0.0.1 is used only when RUNSTREAM_TEST_LOCAL_STORES=1 asks
for it; a session's template database is its own and is gone when the session ends.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_conftest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rs_tests_conftest", ROOT / "tests/conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


conftest = load_conftest()
PG, REDIS = conftest.DEFAULT_PG, conftest.DEFAULT_REDIS


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (None, None)),
        ({"RUNSTREAM_TEST_LOCAL_STORES": "1"}, (PG, REDIS)),
        ({"RUNSTREAM_TEST_LOCAL_STORES": "0"}, (None, None)),
        ({"RUNSTREAM_TEST_LOCAL_STORES": "1", "RUNSTREAM_TEST_EMBEDDED": "1"}, (None, None)),
        (
            {"RUNSTREAM_TEST_DATABASE_URL": "postgresql://u:pw@db/x"},
            ("postgresql://u:pw@db/x", None),
        ),
        ({"RUNSTREAM_TEST_REDIS_URL": "redis://r/1"}, (None, "redis://r/1")),
        (
            {"RUNSTREAM_TEST_LOCAL_STORES": "1", "RUNSTREAM_TEST_REDIS_URL": "redis://r/1"},
            (PG, "redis://r/1"),
        ),
    ],
)
def test_local_servers_are_used_only_when_asked(
    environ: dict[str, str], expected: tuple[str | None, str | None]
) -> None:
    assert conftest.chosen_store_urls(environ) == expected


def test_each_session_names_its_own_template() -> None:
    first, second = conftest.template_name("aaaa1111"), conftest.template_name("bbbb2222")
    assert first != second
    assert first.startswith("rs_template_") and first.endswith("_aaaa1111")
    assert len(first) < 64  # PostgreSQL's identifier limit


SESSION_TEST = textwrap.dedent(
    """
    import os
    from pathlib import Path

    def test_uses_a_database(database_url: str, template_database: str) -> None:
        Path(os.environ["TEMPLATE_NAME_FILE"]).write_text(template_database)
    """
)


async def database_count(pg_admin_url: str, name: str) -> int:
    conn = await asyncpg.connect(pg_admin_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = $1", name
        )
        return count
    finally:
        await conn.close()


@pytest.mark.slow
def test_a_session_drops_its_template_database(
    pg_admin_url: str, redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "test_session.py").write_text(SESSION_TEST)
    name_file = tmp_path / "template-name"
    env = {
        **os.environ,
        "RUNSTREAM_TEST_DATABASE_URL": pg_admin_url,
        "RUNSTREAM_TEST_REDIS_URL": redis_url,
        "TEMPLATE_NAME_FILE": str(name_file),
        "PYTHONPATH": str(ROOT / "tests"),
    }
    # The same conftest as a plugin, on a test folder of its own: a whole session in a child.
    session = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", "/dev/null", "-o", "asyncio_mode=auto",
         str(tmp_path / "test_session.py")],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert session.returncode == 0, session.stdout + session.stderr
    template = name_file.read_text()
    assert template.startswith("rs_template_")
    assert asyncio.run(database_count(pg_admin_url, template)) == 0
