"""Real stores for every test: PostgreSQL and Redis as servers, never mocks.

The servers come from RUNSTREAM_TEST_DATABASE_URL / RUNSTREAM_TEST_REDIS_URL, else the local
defaults (127.0.0.1:5432 as postgres, 127.0.0.1:6379) when they answer, else the embedded
ones started for the session (RUNSTREAM_TEST_EMBEDDED=1 forces those). A template database
is migrated once per session; each test gets its own database made from it and its own Redis
key prefix.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from runstream.projector.migrations import load_migrations, migrate_dsn
from runstream.settings import Settings

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def embedded_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Embedded PostgreSQL/Valkey, started only for the stores that have no server answering."""
    # RUNSTREAM_TEST_EMBEDDED=1 ignores local servers: the path of a machine that has none.
    local = os.environ.get("RUNSTREAM_TEST_EMBEDDED") != "1"
    wanted_pg = os.environ.get("RUNSTREAM_TEST_DATABASE_URL") or (
        DEFAULT_PG if local and _answers(DEFAULT_PG, 5432) else None
    )
    wanted_redis = os.environ.get("RUNSTREAM_TEST_REDIS_URL") or (
        DEFAULT_REDIS if local and _answers(DEFAULT_REDIS, 6379) else None
    )
    urls = {"database_url": wanted_pg or "", "redis_url": wanted_redis or ""}
    if wanted_pg and wanted_redis:
        yield urls
        return
    from runstream.embedded import EmbeddedStores

    stores = EmbeddedStores(
        tmp_path_factory.mktemp("embedded"),
        postgres=not wanted_pg,
        redis=not wanted_redis,
    )
    stores.start()
    try:
        urls["database_url"] = wanted_pg or stores.database_url
        urls["redis_url"] = wanted_redis or stores.redis_url
        yield urls
    finally:
        stores.stop()


@pytest.fixture(scope="session")
def pg_admin_url(embedded_stores: dict[str, str]) -> str:
    return embedded_stores["database_url"]


@pytest.fixture(scope="session")
def redis_url(embedded_stores: dict[str, str]) -> str:
    return embedded_stores["redis_url"]


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> str:
    """A database migrated once; its name changes with the migrations, so it is reused safely."""
    digest = hashlib.sha1("".join(m.sql for m in load_migrations()).encode()).hexdigest()[:12]
    name = f"rs_template_{digest}"

    async def ensure() -> None:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            # Concurrent sessions (parallel test runs) serialise here.
            await conn.execute("SELECT pg_advisory_lock(7263)")
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
                if not exists:
                    building = f"{name}_build_{os.getpid()}"
                    await conn.execute(f'DROP DATABASE IF EXISTS "{building}"')
                    await conn.execute(f'CREATE DATABASE "{building}"')
                    await migrate_dsn(with_database(pg_admin_url, building))
                    await conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            finally:
                await conn.execute("SELECT pg_advisory_unlock(7263)")
        finally:
            await conn.close()

    asyncio.run(ensure())
    return name


async def create_test_database(pg_admin_url: str, template: str) -> tuple[str, str]:
    name = f"rs_test_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute("SELECT pg_advisory_lock(7263)")
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await conn.execute("SELECT pg_advisory_unlock(7263)")
    finally:
        await conn.close()
    return name, with_database(pg_admin_url, name)


async def drop_test_database(pg_admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database_url(pg_admin_url: str, template_database: str) -> AsyncIterator[str]:
    name, url = await create_test_database(pg_admin_url, template_database)
    try:
        yield url
    finally:
        await drop_test_database(pg_admin_url, name)


@pytest.fixture
async def stream_prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"rst{uuid.uuid4().hex[:12]}"
    yield prefix
    client = aioredis.from_url(redis_url)
    try:
        batch = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the test Redis (keys are the test's own through ``stream_prefix``)."""
    client = aioredis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the test's own database."""
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert p is not None
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def settings(database_url: str, redis_url: str, stream_prefix: str, tmp_path: Path) -> Settings:
    """Settings for one isolated test: own database, own prefix, small timeouts."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        stream_prefix=stream_prefix,
        shards=4,
        data_dir=tmp_path / "data",
        artifacts_url=str(tmp_path / "artifacts"),
        lease_ttl_ms=2_000,
        claim_idle_ms=1_000,
        projector_block_ms=50,
        read_your_writes_timeout=10.0,
    )


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[str]:
    """The app ``runstream server`` runs (ingest, api, projector) on a real port; its URL."""
    from runstream.server import build_app

    test_server = TestServer(build_app(settings), host="127.0.0.1")
    await test_server.start_server()
    try:
        yield str(test_server.make_url("")).rstrip("/")
    finally:
        await test_server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
