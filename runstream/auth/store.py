"""Users, tokens, grants and the audit trail in PostgreSQL (migration 0007).

Every change runs in one transaction with its audit entry: an event-log row on the audit
shard (``AUDIT_SHARD``), payload ``{"v": 1, "at": ms, "audit": {"action", "actor", ...}}``
in msgpack, so who changed what and when is kept with the events and cannot be lost apart
from the change. After the commit the auth generation in Redis is bumped, which tells every
process to drop its cached credentials and grants (``cache.AuthCache``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgpack
import redis.asyncio as aioredis

from runstream.auth import credentials as cr
from runstream.auth.permissions import Principal
from runstream.schemas.errors import (
    InvalidParameterValue,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)

AUDIT_SHARD = -1
NO_PASSWORD = "!"
"""The password hash of a user who signs in through the identity provider: matches nothing."""
AUDIT_FORMAT_VERSION = 1


def generation_key(prefix: str) -> str:
    """Redis counter bumped after every change of users, tokens or grants."""
    return f"{prefix}:auth:generation"


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    username: str
    is_admin: bool

    def to_json(self) -> dict[str, Any]:
        """MLflow's ``User.to_json``."""
        return {"id": self.user_id, "username": self.username, "is_admin": self.is_admin}


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: int
    username: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.token_id,
            "username": self.username,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _user(row: asyncpg.Record) -> User:
    return User(row["user_id"], row["username"], row["is_admin"])


class AuthStore:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, prefix: str) -> None:
        self.pool = pool
        self.redis = redis
        self.prefix = prefix

    # -- reads ----------------------------------------------------------------------------------

    async def user(self, username: str) -> User:
        row = await self.pool.fetchrow(
            "SELECT user_id, username, is_admin FROM auth_users WHERE username = $1", username
        )
        if row is None:
            raise ResourceDoesNotExist(f"User with username={username} not found")
        return _user(row)

    async def users(self) -> list[User]:
        rows = await self.pool.fetch(
            "SELECT user_id, username, is_admin FROM auth_users ORDER BY user_id"
        )
        return [_user(r) for r in rows]

    async def has_admin(self) -> bool:
        return bool(
            await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM auth_users WHERE is_admin)")
        )

    async def password_hash(self, username: str) -> tuple[User, str] | None:
        row = await self.pool.fetchrow(
            "SELECT user_id, username, is_admin, password_hash FROM auth_users WHERE username = $1",
            username,
        )
        return None if row is None else (_user(row), row["password_hash"])

    async def token_owner(self, digest: bytes) -> tuple[User, datetime | None] | None:
        """The user of a live (unrevoked, unexpired) token, and when it expires."""
        row = await self.pool.fetchrow(
            "SELECT u.user_id, u.username, u.is_admin, t.expires_at"
            " FROM auth_tokens t JOIN auth_users u USING (user_id)"
            " WHERE t.token_hash = $1 AND t.revoked_at IS NULL"
            " AND (t.expires_at IS NULL OR t.expires_at > now())",
            digest,
        )
        return None if row is None else (_user(row), row["expires_at"])

    async def principal(self, user: User) -> Principal:
        rows = await self.pool.fetch(
            "SELECT resource_type, resource_id, permission FROM auth_grants WHERE user_id = $1",
            user.user_id,
        )
        grants = {(r["resource_type"], r["resource_id"]): r["permission"] for r in rows}
        return Principal(user.user_id, user.username, user.is_admin, grants)

    async def grants_of(self, username: str) -> list[dict[str, str]]:
        user = await self.user(username)
        rows = await self.pool.fetch(
            "SELECT resource_type, resource_id, permission FROM auth_grants WHERE user_id = $1"
            " ORDER BY resource_type, resource_id",
            user.user_id,
        )
        return [dict(r) for r in rows]

    async def grant_of(self, username: str, resource_type: str, resource_id: str) -> str | None:
        permission: str | None = await self.pool.fetchval(
            "SELECT g.permission FROM auth_grants g JOIN auth_users u USING (user_id)"
            " WHERE u.username = $1 AND g.resource_type = $2 AND g.resource_id = $3",
            username,
            resource_type,
            resource_id,
        )
        return permission

    async def tokens(self, username: str | None = None) -> list[TokenInfo]:
        rows = await self.pool.fetch(
            "SELECT t.token_id, u.username, t.name, t.created_at, t.expires_at, t.revoked_at"
            " FROM auth_tokens t JOIN auth_users u USING (user_id)"
            " WHERE $1::text IS NULL OR u.username = $1 ORDER BY t.token_id",
            username,
        )
        return [TokenInfo(**dict(r)) for r in rows]

    async def audit(self, limit: int = 100, before_ms: int | None = None) -> list[dict[str, Any]]:
        """Newest first: ``{"at": ms, "seq": n, **entry}``."""
        rows = await self.pool.fetch(
            "SELECT entry_ms, entry_seq, payload FROM event_log WHERE shard = $1"
            " AND ($2::bigint IS NULL OR entry_ms < $2)"
            " ORDER BY entry_ms DESC, entry_seq DESC LIMIT $3",
            AUDIT_SHARD,
            before_ms,
            limit,
        )
        out = []
        for r in rows:
            payload = msgpack.unpackb(r["payload"], raw=False)
            out.append({"at": r["entry_ms"], "seq": r["entry_seq"], **payload["audit"]})
        return out

    # -- changes --------------------------------------------------------------------------------

    async def create_user(
        self, actor: str, username: str, password: str, *, is_admin: bool = False
    ) -> User:
        cr.check_username(username)
        cr.check_password(password)
        password_hash = cr.hash_password(password)
        async with self._change() as conn:
            row = await conn.fetchrow(
                "INSERT INTO auth_users (username, password_hash, is_admin) VALUES ($1, $2, $3)"
                " ON CONFLICT (username) DO NOTHING RETURNING user_id, username, is_admin",
                username,
                password_hash,
                is_admin,
            )
            if row is None:
                raise ResourceAlreadyExists(f"User '{username}' already exists")
            await _audit(conn, actor, "user_created", username=username, is_admin=is_admin)
        return _user(row)

    async def create_first_admin(self, username: str, password: str) -> User | None:
        """The first admin, unless one exists (concurrent starts: one wins, under a lock)."""
        cr.check_username(username)
        cr.check_password(password)
        password_hash = cr.hash_password(password)
        async with self._change() as conn:
            await conn.execute("LOCK TABLE auth_users IN SHARE ROW EXCLUSIVE MODE")
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM auth_users WHERE is_admin)"):
                return None
            row = await conn.fetchrow(
                "INSERT INTO auth_users (username, password_hash, is_admin) VALUES ($1, $2, true)"
                " ON CONFLICT (username) DO UPDATE SET is_admin = true, password_hash = $2"
                " RETURNING user_id, username, is_admin",
                username,
                password_hash,
            )
            await _audit(conn, "runstream", "admin_bootstrapped", username=username)
        return _user(row)

    async def provisioned_user(self, username: str) -> User:
        """The user an identity provider vouched for, created without a password on first
        sign-in (so grants can name them before or after)."""
        row = await self.pool.fetchrow(
            "SELECT user_id, username, is_admin FROM auth_users WHERE username = $1", username
        )
        if row is not None:
            return _user(row)
        async with self._change() as conn:
            row = await conn.fetchrow(
                "INSERT INTO auth_users (username, password_hash) VALUES ($1, $2)"
                " ON CONFLICT (username) DO UPDATE SET username = excluded.username"
                " RETURNING user_id, username, is_admin",
                username,
                NO_PASSWORD,
            )
            await _audit(conn, "oidc", "user_provisioned", username=username)
        return _user(row)

    async def update_password(self, actor: str, username: str, password: str) -> None:
        cr.check_password(password)
        password_hash = cr.hash_password(password)
        async with self._change() as conn:
            done = await conn.fetchval(
                "UPDATE auth_users SET password_hash = $2 WHERE username = $1 RETURNING user_id",
                username,
                password_hash,
            )
            if done is None:
                raise ResourceDoesNotExist(f"User with username={username} not found")
            await _audit(conn, actor, "password_changed", username=username)

    async def update_admin(self, actor: str, username: str, is_admin: bool) -> None:
        async with self._change() as conn:
            done = await conn.fetchval(
                "UPDATE auth_users SET is_admin = $2 WHERE username = $1 RETURNING user_id",
                username,
                is_admin,
            )
            if done is None:
                raise ResourceDoesNotExist(f"User with username={username} not found")
            await _audit(conn, actor, "admin_changed", username=username, is_admin=is_admin)

    async def delete_user(self, actor: str, username: str) -> None:
        async with self._change() as conn:
            done = await conn.fetchval(
                "DELETE FROM auth_users WHERE username = $1 RETURNING user_id", username
            )
            if done is None:
                raise ResourceDoesNotExist(f"User with username={username} not found")
            await _audit(conn, actor, "user_deleted", username=username)

    async def grant(
        self, actor: str, username: str, resource_type: str, resource_id: str, permission: str
    ) -> None:
        async with self._change() as conn:
            user_id = await _user_id(conn, username)
            await conn.execute(
                "INSERT INTO auth_grants (user_id, resource_type, resource_id, permission)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, resource_type, resource_id)"
                " DO UPDATE SET permission = excluded.permission, granted_at = now()",
                user_id,
                resource_type,
                resource_id,
                permission,
            )
            await _audit(
                conn,
                actor,
                "permission_granted",
                username=username,
                resource_type=resource_type,
                resource_id=resource_id,
                permission=permission,
            )

    async def revoke(self, actor: str, username: str, resource_type: str, resource_id: str) -> None:
        async with self._change() as conn:
            user_id = await _user_id(conn, username)
            done = await conn.fetchval(
                "DELETE FROM auth_grants WHERE user_id = $1 AND resource_type = $2"
                " AND resource_id = $3 RETURNING permission",
                user_id,
                resource_type,
                resource_id,
            )
            if done is None:
                raise ResourceDoesNotExist(
                    f"No permission of user '{username}' on {resource_type} '{resource_id}'"
                )
            await _audit(
                conn,
                actor,
                "permission_revoked",
                username=username,
                resource_type=resource_type,
                resource_id=resource_id,
                permission=done,
            )

    async def rename_resource(self, actor: str, kind: str, old: str, new: str) -> None:
        """Grants on a renamed resource follow it (a registered model's name is its id)."""
        async with self._change() as conn:
            moved = await conn.fetchval(
                "WITH moved AS (UPDATE auth_grants SET resource_id = $3"
                " WHERE resource_type = $1 AND resource_id = $2 RETURNING 1)"
                " SELECT count(*) FROM moved",
                kind,
                old,
                new,
            )
            if moved:
                await _audit(
                    conn,
                    actor,
                    "permissions_renamed",
                    resource_type=kind,
                    resource_id=old,
                    new_id=new,
                )

    async def forget_resource(self, actor: str, kind: str, resource_id: str) -> None:
        """Drop every grant on a deleted resource."""
        async with self._change() as conn:
            gone = await conn.fetchval(
                "WITH gone AS (DELETE FROM auth_grants WHERE resource_type = $1"
                " AND resource_id = $2 RETURNING 1) SELECT count(*) FROM gone",
                kind,
                resource_id,
            )
            if gone:
                await _audit(
                    conn, actor, "permissions_deleted", resource_type=kind, resource_id=resource_id
                )

    async def issue_token(
        self, actor: str, username: str, name: str, expires_at: datetime | None
    ) -> tuple[TokenInfo, str]:
        """A new token of ``username``: its record and the token itself (shown once)."""
        token = cr.new_token()
        async with self._change() as conn:
            user_id = await _user_id(conn, username)
            row = await conn.fetchrow(
                "INSERT INTO auth_tokens (user_id, name, token_hash, expires_at)"
                " VALUES ($1, $2, $3, $4) RETURNING token_id, created_at",
                user_id,
                name,
                cr.token_digest(token),
                expires_at,
            )
            await _audit(
                conn,
                actor,
                "token_issued",
                username=username,
                token_id=row["token_id"],
                name=name,
                expires_at=expires_at.isoformat() if expires_at else None,
            )
        info = TokenInfo(row["token_id"], username, name, row["created_at"], expires_at, None)
        return info, token

    async def revoke_token(self, actor: str, token_id: int, username: str | None = None) -> None:
        """Revoke a token; with ``username``, only one of that user's."""
        async with self._change() as conn:
            owner = await conn.fetchval(
                "UPDATE auth_tokens t SET revoked_at = now() FROM auth_users u"
                " WHERE t.token_id = $1 AND u.user_id = t.user_id AND t.revoked_at IS NULL"
                " AND ($2::text IS NULL OR u.username = $2) RETURNING u.username",
                token_id,
                username,
            )
            if owner is None:
                raise ResourceDoesNotExist(f"No live token with id {token_id}")
            await _audit(conn, actor, "token_revoked", username=owner, token_id=token_id)

    def _change(self) -> _Change:
        return _Change(self)

    async def bump_generation(self) -> None:
        await self.redis.incr(generation_key(self.prefix))


class _Change:
    """A transaction on a pooled connection that bumps the auth generation once committed."""

    def __init__(self, store: AuthStore) -> None:
        self.store = store
        self._conn: Any = None
        self._tx: Any = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._conn = await self.store.pool.acquire()
        self._tx = self._conn.transaction()
        await self._tx.start()
        conn: asyncpg.Connection = self._conn
        return conn

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                await self._tx.commit()
            else:
                await self._tx.rollback()
        finally:
            await self.store.pool.release(self._conn)
        if exc_type is None:
            await self.store.bump_generation()


async def _user_id(conn: asyncpg.Connection, username: str) -> int:
    user_id: int | None = await conn.fetchval(
        "SELECT user_id FROM auth_users WHERE username = $1", username
    )
    if user_id is None:
        raise ResourceDoesNotExist(f"User with username={username} not found")
    return user_id


async def _audit(conn: asyncpg.Connection, actor: str, action: str, **what: Any) -> None:
    at = int(time.time() * 1000)
    payload = msgpack.packb(
        {"v": AUDIT_FORMAT_VERSION, "at": at, "audit": {"action": action, "actor": actor, **what}},
        use_bin_type=True,
    )
    await conn.execute(
        "INSERT INTO event_log (shard, entry_ms, entry_seq, accepted_at, payload)"
        " VALUES ($1, $2, nextval('auth_audit_seq'), $2, $3)",
        AUDIT_SHARD,
        at,
        payload,
    )


def parse_expiry(value: object) -> datetime | None:
    """An ISO-8601 expiry (with a zone), or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParameterValue("expires_at must be an ISO-8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidParameterValue(f"expires_at={value!r}: {exc}") from exc
    if parsed.tzinfo is None:
        raise InvalidParameterValue(f"expires_at={value!r}: give a time zone (e.g. Z or +00:00)")
    return parsed
