"""``GET /health``: 200 only when PostgreSQL and Redis both answer, else 503 naming the failure.

Load balancers and compose health checks poll this, so each probe is bounded by a short
timeout and both run concurrently: a hung store turns into a prompt 503, not a hung probe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiohttp import web

from runstream.resources import PG_POOL, REDIS
from runstream.web import json_response

PROBE_TIMEOUT_SECONDS = 2.0


async def _probe(check: Awaitable[object]) -> str | None:
    """None when the store answered, else why not."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await check
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT_SECONDS:g} s"
    except Exception as exc:  # any driver error means "not healthy", reported, never raised
        return f"{type(exc).__name__}: {exc}"
    return None


async def health(request: web.Request) -> web.Response:
    postgres, redis = await asyncio.gather(
        _probe(request.app[PG_POOL].fetchval("SELECT 1")),
        _probe(request.app[REDIS].ping()),
    )
    failed = {name: error for name, error in (("postgres", postgres), ("redis", redis)) if error}
    if not failed:
        return json_response({"status": "ok"})
    return json_response({"status": "unavailable", "failed": failed}, status=503)
