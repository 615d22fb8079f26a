"""Real stores for every test: PostgreSQL and Redis as servers, never mocks.

Each store comes from RUNSTREAM_TEST_DATABASE_URL / RUNSTREAM_TEST_REDIS_URL when set, else
from the local default (127.0.0.1:5432 as postgres with trust, 127.0.0.1:6379) when
RUNSTREAM_TEST_LOCAL_STORES=1 (``.ci/run`` sets it), else it is embedded: started for the
session and stopped after it. Nothing local is tried unless asked, so a local PostgreSQL that
wants a password does not get in the way. (RUNSTREAM_TEST_EMBEDDED=1, from before embedded
was the default, still forces the embedded stores.)

A template database is migrated once per session under a name of its own and dropped at the
end of the session, so concurrent sessions on one PostgreSQL neither share nor leave one;
each test gets its own database made from it and its own Redis key prefix.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from runstream.ingest.ingestor import Ingestor
from runstream.projector.migrations import load_migrations, migrate_dsn
from runstream.settings import Settings

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_STORES_ENV = "RUNSTREAM_TEST_LOCAL_STORES"
CREATE_DATABASE_LOCK = 7263
"""pg_advisory_lock key around CREATE DATABASE: two at once from one template fail."""


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


def chosen_store_urls(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(PostgreSQL, Redis) URLs the environment asks for; None where the store is embedded."""
    local = environ.get(LOCAL_STORES_ENV) == "1" and environ.get("RUNSTREAM_TEST_EMBEDDED") != "1"
    pg = environ.get("RUNSTREAM_TEST_DATABASE_URL") or (DEFAULT_PG if local else None)
    redis = environ.get("RUNSTREAM_TEST_REDIS_URL") or (DEFAULT_REDIS if local else None)
    return pg, redis


@pytest.fixture(scope="session")
def embedded_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The session's store URLs; embedded PostgreSQL/Valkey for any store not given."""
    wanted_pg, wanted_redis = chosen_store_urls(os.environ)
    for url, port in ((wanted_pg, 5432), (wanted_redis, 6379)):
        if url is not None and not _answers(url, port):
            pytest.exit(
                f"test store {url} does not answer (unset {LOCAL_STORES_ENV} and the "
                "RUNSTREAM_TEST_*_URL variables to use embedded stores)",
                returncode=2,
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


def template_name(session: str) -> str:
    """``rs_template_<migrations digest>_<session>``: this session's own template database."""
    digest = hashlib.sha1("".join(m.sql for m in load_migrations()).encode()).hexdigest()[:12]
    return f"rs_template_{digest}_{session}"


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> Iterator[str]:
    """A database migrated once for this session and dropped at its end.

    Its name is the session's own: a concurrent session on the same PostgreSQL makes and drops
    its own, so no session drops a template another still copies from.
    """
    name = template_name(uuid.uuid4().hex[:8])
    created = False

    async def create() -> None:
        nonlocal created
        await create_database(pg_admin_url, name)
        created = True
        await migrate_dsn(with_database(pg_admin_url, name))

    try:
        asyncio.run(create())
        yield name
    finally:
        if created:
            asyncio.run(drop_test_database(pg_admin_url, name))


async def create_database(pg_admin_url: str, name: str, template: str | None = None) -> None:
    conn = await asyncpg.connect(pg_admin_url)
    try:
        # Concurrent sessions (parallel test runs) serialise here.
        await conn.execute("SELECT pg_advisory_lock($1)", CREATE_DATABASE_LOCK)
        try:
            suffix = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", CREATE_DATABASE_LOCK)
    finally:
        await conn.close()


async def create_test_database(pg_admin_url: str, template: str) -> tuple[str, str]:
    name = f"rs_test_{uuid.uuid4().hex[:16]}"
    await create_database(pg_admin_url, name, template)
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
async def ingestor(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis
) -> AsyncIterator[Ingestor]:
    """The ingest side's writer on the test's stores, closed after the test."""
    ingestor = Ingestor(redis, pool, settings)
    yield ingestor
    await ingestor.aclose()


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
