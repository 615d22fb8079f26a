"""Turning auth on for an app (docs/auth.md).

``setup_auth(app, settings)`` turns it on for one app: the middleware that authenticates and
applies the permission table, the user/permission routes, and at start-up the first admin.
``runstream.server.build_app`` calls it when ``settings.auth == "basic"``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from runstream.auth.cache import AuthCache
from runstream.auth.guard import AUTH, Auth, auth_middleware
from runstream.auth.oidc import OidcVerifier
from runstream.auth.permissions import BY_NAME
from runstream.auth.resolver import Resolver
from runstream.auth.routes import add_auth_routes
from runstream.auth.store import AuthStore
from runstream.resources import PG_POOL, REDIS, create_pg_pool, create_redis, use_stores
from runstream.schemas.errors import ConfigurationError
from runstream.settings import Settings

logger = logging.getLogger(__name__)

_AUTH_ADDED = web.AppKey("auth_added", bool)


def setup_auth(app: web.Application, settings: Settings) -> None:
    """Authenticate every request of ``app`` and enforce permissions (idempotent).

    Call before the app starts; the middleware goes after those already there (inside the
    error middleware, so refusals render as MLflow errors).
    """
    if app.get(_AUTH_ADDED):
        return
    app[_AUTH_ADDED] = True
    use_stores(app, settings)
    app.middlewares.append(auth_middleware)
    add_auth_routes(app)

    async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
        store = AuthStore(app[PG_POOL], app[REDIS], settings.stream_prefix)
        await bootstrap_admin(store, settings)
        app[AUTH] = Auth(
            store=store,
            cache=AuthCache(
                store,
                settings.auth_cache_seconds,
                oidc=OidcVerifier(settings) if settings.oidc_issuer else None,
            ),
            resolver=Resolver(app[REDIS], app[PG_POOL], settings.stream_prefix, settings.shards),
            default=BY_NAME[settings.default_permission],
            max_json_bytes=settings.max_json_bytes,
            max_json_items=settings.max_json_items,
        )
        yield

    app.cleanup_ctx.append(auth_ctx)


async def bootstrap_admin_once(settings: Settings) -> None:
    """``bootstrap_admin`` on connections of its own: the parent of ``--workers N`` calls it
    before it starts them, so a missing admin stops the server once, with exit 2, instead of
    failing every worker it would restart for ever."""
    pool = await create_pg_pool(settings)
    redis = create_redis(settings)
    try:
        await bootstrap_admin(AuthStore(pool, redis, settings.stream_prefix), settings)
    finally:
        await redis.aclose()
        await pool.close()


async def bootstrap_admin(store: AuthStore, settings: Settings) -> None:
    """The first admin from RUNSTREAM_ADMIN_USERNAME/PASSWORD when there is none; without
    an admin and without a password, refuse to start (ConfigurationError: exit 2)."""
    if await store.has_admin():
        return
    if not settings.admin_password:
        raise ConfigurationError(
            "auth is on (RUNSTREAM_AUTH=basic) but there is no admin user: set "
            "RUNSTREAM_ADMIN_PASSWORD (12 characters at least) to create "
            f"'{settings.admin_username}' (RUNSTREAM_ADMIN_USERNAME), or create one with "
            "`runstream users create --is-admin`"
        )
    if len(settings.admin_password) < 12:
        raise ConfigurationError("RUNSTREAM_ADMIN_PASSWORD: must be 12 characters at least")
    user = await store.create_first_admin(settings.admin_username, settings.admin_password)
    if user is not None:
        logger.info(
            "created the first admin %r", user.username, extra={"action": "admin_bootstrapped"}
        )


__all__ = ["bootstrap_admin", "setup_auth"]
