"""Verified credentials, cached in-process so the write path does not pay argon2 per request.

Keyed by the sha256 of the ``Authorization`` header (the cache holds no secret). An entry
lives ``auth_cache_seconds`` at most (a token's entry no longer than the token). Every change
of users, tokens or grants bumps a generation counter in Redis (``store.generation_key``);
each process reads it at most once per ``GENERATION_CHECK_SECONDS`` and empties its cache
when it moved, so a revoked token or a changed password stops working everywhere within
about a second, and at once in the process that made the change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from runstream.auth import credentials as cr
from runstream.auth.oidc import OidcVerifier, looks_like_jwt
from runstream.auth.permissions import Principal
from runstream.auth.store import AuthStore, User, generation_key
from runstream.schemas.errors import Unauthenticated

GENERATION_CHECK_SECONDS = 1.0
MAX_ENTRIES = 10_000


class AuthCache:
    def __init__(
        self,
        store: AuthStore,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        oidc: OidcVerifier | None = None,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.oidc = oidc
        self.clock = clock
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._pending: dict[bytes, asyncio.Future[Principal]] = {}
        self._generation: bytes | str | None = None
        self._checked_at = float("-inf")

    async def principal(self, header: str | None) -> Principal:
        """The verified caller of an ``Authorization`` header; Unauthenticated otherwise."""
        if not header:
            raise Unauthenticated(
                "You are not authenticated: send HTTP Basic credentials or a token."
            )
        await self._follow_generation()
        key = cr.header_key(header)
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._pending.get(key)
        if pending is not None:  # the same credential arriving many times at once: verify once
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            principal, until = await self._verify(header)
            future.set_result(principal)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._pending[key]
        if self.ttl > 0:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key] = (min(now + self.ttl, until), principal)
        return principal

    def clear(self) -> None:
        self._entries.clear()

    async def _follow_generation(self) -> None:
        now = self.clock()
        if now - self._checked_at < GENERATION_CHECK_SECONDS:
            return
        self._checked_at = now
        generation = await self.store.redis.get(generation_key(self.store.prefix))
        if generation != self._generation:
            self._generation = generation
            self._entries.clear()

    async def _verify(self, header: str) -> tuple[Principal, float]:
        parsed = cr.parse_authorization(header)
        if parsed is None:
            raise Unauthenticated("Malformed Authorization header: use Basic or Bearer.")
        until = float("inf")
        user: User | None
        if isinstance(parsed, cr.BearerToken) and self.oidc and looks_like_jwt(parsed.token):
            identity = await self.oidc.identity(parsed.token)
            user = await self.store.provisioned_user(identity.username)
            left = (identity.expires_at - datetime.now(UTC)).total_seconds()
            principal = await self.store.principal(user)
            if identity.is_admin and not principal.is_admin:
                principal = Principal(principal.user_id, principal.username, True, principal.grants)
            return principal, self.clock() + max(0.0, left)
        if isinstance(parsed, cr.BearerToken):
            found = await self.store.token_owner(cr.token_digest(parsed.token))
            if found is None:
                raise Unauthenticated("Invalid, revoked or expired token.")
            user, expires_at = found
            if expires_at is not None:
                left = (expires_at - datetime.now(UTC)).total_seconds()
                until = self.clock() + max(0.0, left)
        else:
            record = await self.store.password_hash(parsed.username)
            stored = record[1] if record is not None else cr.dummy_hash()
            # argon2 takes tens of ms of CPU: off the event loop.
            ok = await asyncio.to_thread(cr.verify_password, stored, parsed.password)
            if record is None or not ok:
                raise Unauthenticated("Invalid username or password.")
            user = record[0]
        return await self.store.principal(user), until
