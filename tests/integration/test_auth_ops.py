"""``runstream users ...``, the first admin, the refusal to start without one, the audit shard."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
from typing import Any

import asyncpg
import msgpack
import pytest

from runstream import cli
from runstream.projector.replay import replay_on
from runstream.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _users(settings: Settings, *args: str, stdin: str = "") -> tuple[int, str]:
    assert settings.database_url and settings.redis_url
    argv = [
        "users",
        *args,
        "--database-url",
        settings.database_url,
        "--redis-url",
        settings.redis_url,
        "--stream-prefix",
        settings.stream_prefix,
    ]
    # the flags belong to `users`, before its action: argparse wants them there
    argv = ["users", *argv[len(args) + 1 :], *args]
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdin", io.StringIO(stdin))
        mp.setattr("sys.stdout", out)
        code = cli.main(argv, environ={})
    return code, out.getvalue()


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def test_users_cli_and_audit(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert settings.database_url
    code, out = _users(
        settings, "create", "root", "--is-admin", "--password-stdin", stdin="root-password-123\n"
    )
    assert code == 0 and "admin: True" in out
    code, _ = _users(settings, "create", "ci", "--password-stdin", stdin="short\n")
    assert code == 1
    assert "12 characters" in capsys.readouterr().err
    code, _ = _users(settings, "create", "ci", "--password-stdin", stdin="ci-password-1234\n")
    assert code == 0
    code, out = _users(settings, "list")
    assert [line.split("\t")[1] for line in out.splitlines()] == ["root", "ci"]
    code, token = _users(
        settings, "token-issue", "ci", "--name", "nightly", "--expires-in-days", "1"
    )
    assert code == 0 and token.strip().startswith("rst_")
    code, out = _users(settings, "token-list", "ci")
    token_id = out.split("\t")[0]
    assert "nightly" in out and "expires" in out
    assert _users(settings, "token-revoke", token_id)[0] == 0
    assert "revoked" in _users(settings, "token-list")[1]
    assert (
        _users(settings, "reset-password", "ci", "--password-stdin", stdin="ci-password-5678\n")[0]
        == 0
    )
    assert _users(settings, "set-admin", "ci")[0] == 0
    assert _users(settings, "delete", "ci")[0] == 0
    assert _users(settings, "delete", "ci")[0] == 1  # no such user

    rows = asyncio.run(
        _fetch(
            settings.database_url,
            "SELECT payload FROM event_log WHERE shard = -1 ORDER BY entry_seq",
        )
    )
    entries = [msgpack.unpackb(r["payload"])["audit"] for r in rows]
    assert [e["action"] for e in entries] == [
        "user_created",
        "user_created",
        "token_issued",
        "token_revoked",
        "password_changed",
        "admin_changed",
        "user_deleted",
    ]
    assert all(e["actor"].startswith("cli:") for e in entries)
    assert "password" not in str(entries).replace("password_changed", "")

    async def replay() -> int:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return (await replay_on(conn, settings.chunk_points)).entries
        finally:
            await conn.close()

    assert asyncio.run(replay()) == 0  # audit entries are not projected


def test_refuses_to_start_without_an_admin(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert settings.database_url and settings.redis_url
    argv = [
        "api",
        "--auth",
        "basic",
        "--database-url",
        settings.database_url,
        "--redis-url",
        settings.redis_url,
        "--stream-prefix",
        settings.stream_prefix,
        "--port",
        str(_free_port()),
    ]
    assert cli.main(argv, environ={}) == 2
    assert "RUNSTREAM_ADMIN_PASSWORD" in capsys.readouterr().err
    assert cli.main(argv, environ={"RUNSTREAM_ADMIN_PASSWORD": "short"}) == 2


async def test_model_grants_follow_renames_and_deletes(
    pool: asyncpg.Pool, redis: Any, stream_prefix: str
) -> None:
    from runstream.auth.store import AuthStore

    store = AuthStore(pool, redis, stream_prefix)
    await store.create_user("root", "alice", "alice-password-0123")
    await store.grant("root", "alice", "registered_model", "churn", "EDIT")
    await store.rename_resource("root", "registered_model", "churn", "churn-v2")
    assert await store.grants_of("alice") == [
        {"resource_type": "registered_model", "resource_id": "churn-v2", "permission": "EDIT"}
    ]
    await store.forget_resource("root", "registered_model", "churn-v2")
    assert await store.grants_of("alice") == []
    actions = [e["action"] for e in await store.audit()]
    assert actions[:2] == ["permissions_deleted", "permissions_renamed"]


async def test_changes_reach_every_process_within_a_generation_check(
    pool: asyncpg.Pool, redis: Any, stream_prefix: str
) -> None:
    """Two caches over the same stores stand for two processes: a revocation made through
    one is seen by the other at its next generation check (at most a second later)."""
    from runstream.auth.cache import GENERATION_CHECK_SECONDS, AuthCache
    from runstream.auth.store import AuthStore
    from runstream.schemas.errors import Unauthenticated

    store = AuthStore(pool, redis, stream_prefix)
    await store.create_user("root", "bot", "bot-password-01234")
    info, token = await store.issue_token("root", "bot", "ci", None)
    now = [0.0]
    other = AuthCache(store, ttl=30.0, clock=lambda: now[0])
    header = f"Bearer {token}"
    assert (await other.principal(header)).username == "bot"

    await store.revoke_token("root", info.token_id)  # through "this" process: bumps Redis
    now[0] += GENERATION_CHECK_SECONDS / 2
    assert (await other.principal(header)).username == "bot"  # still cached, by design
    now[0] += GENERATION_CHECK_SECONDS
    with pytest.raises(Unauthenticated):
        await other.principal(header)

    await store.create_user("root", "eve", "eve-password-01234")
    basic = "Basic " + base64.b64encode(b"eve:eve-password-01234").decode()
    assert (await other.principal(basic)).username == "eve"
    await store.update_password("root", "eve", "eve-password-56789")
    now[0] += GENERATION_CHECK_SECONDS
    with pytest.raises(Unauthenticated):
        await other.principal(basic)
