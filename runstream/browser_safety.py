"""Browser safety with ``mlflow server``'s defaults: Host allow-list, CORS, no cross-origin writes.

A web page on any origin can make a browser send requests to a server on the user's machine or
network. Three rules keep it from reading or changing anything (issue 14, DESIGN invariant 8):

- **Host allow-list** (DNS rebinding): a request whose ``Host`` header is not allowed gets 403.
  Allowed by default: localhost, private addresses (RFC 1918, IPv6 unique local) and the host
  of ``public_url``; ``--allowed-hosts`` replaces that list (``*`` allows any host). ``/health``
  is exempt, for orchestrators.
- **CORS**: a browser may read answers only for allowed origins (``http://localhost``,
  ``127.0.0.1`` and ``[::1]`` on any port by default; ``--cors-allowed-origins`` adds more, ``*``
  allows any); preflights of the API are answered here.
- **No state change from another origin**: a POST/PUT/PATCH/DELETE to the API carrying an
  ``Origin`` that is neither allowed, localhost, nor the request's own origin gets 403, even
  when it is a CORS "simple request" that a browser sends without a preflight. (The native
  write routes also refuse bodies that are not JSON or msgpack: ``ingest/handlers.py``.)

Every response carries ``X-Content-Type-Options: nosniff`` and ``X-Frame-Options``.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict

from runstream.settings import Settings
from runstream.web import Handler

logger = logging.getLogger(__name__)

INVALID_HOST = "Invalid Host header - possible DNS rebinding attack detected"
CROSS_ORIGIN_BLOCKED = "Cross-origin request blocked"
"""MLflow's texts for the two refusals (plain text, 403)."""

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIXES = ("/api/", "/ajax-api/")
EXEMPT_PATHS = frozenset({"/health", "/version"})
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "0.0.0.0")
PRIVATE_HOST_PATTERNS = (
    "10.*",
    "192.168.*",
    *(f"172.{n}.*" for n in range(16, 32)),
    "[fc*",
    "[fd*",
)
LOCAL_ORIGIN = re.compile(r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?$")
CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS, PATCH"
PREFLIGHT_MAX_AGE = "600"


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


@dataclass(frozen=True, slots=True)
class BrowserPolicy:
    allowed_hosts: tuple[str, ...]
    """Patterns (``fnmatch``) a Host header must match; ``("*",)`` allows any."""
    allowed_origins: tuple[str, ...]
    """Origins (exact, or ``fnmatch`` patterns with ``*``) besides localhost."""
    x_frame_options: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> BrowserPolicy:
        hosts = _split(settings.allowed_hosts) or default_allowed_hosts(settings.public_url)
        frame = settings.x_frame_options.upper()
        return cls(hosts, _split(settings.cors_allowed_origins), None if frame == "NONE" else frame)

    def host_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        return host_matches(self.allowed_hosts, host.lower())

    @property
    def any_origin(self) -> bool:
        return "*" in self.allowed_origins

    def origin_allowed(self, origin: str) -> bool:
        """May a page of ``origin`` read answers (CORS) and change state?"""
        if self.any_origin or LOCAL_ORIGIN.match(origin):
            return True
        return any(
            fnmatch.fnmatchcase(origin, p) if "*" in p else origin == p
            for p in self.allowed_origins
        )

    def blocks_write(self, method: str, origin: str | None, host: str | None) -> bool:
        if origin is None or method not in STATE_CHANGING:
            return False
        if self.origin_allowed(origin):
            return False
        # The page's own server: the UI served from this host writes with its own Origin.
        own = urlsplit(origin)
        return not (host and own.scheme in ("http", "https") and own.netloc == host)


@functools.lru_cache(maxsize=1024)
def host_matches(patterns: tuple[str, ...], host: str) -> bool:
    """Does ``host`` (lower case) match one of ``patterns``? Every request asks, almost always
    with the same one or two Hosts, so verdicts are remembered (bounded: random Hosts only
    churn the cache)."""
    return any(
        # "[" starts a character class for fnmatch; in a Host it is an IPv6 bracket.
        fnmatch.fnmatchcase(host, p.lower().replace("[", "[[]")) if "*" in p else host == p.lower()
        for p in patterns
    )


def default_allowed_hosts(public_url: str | None) -> tuple[str, ...]:
    """localhost and private addresses, each with any port, plus ``public_url``'s host."""
    hosts: list[str] = []
    for host in (*LOCAL_HOSTS, *PRIVATE_HOST_PATTERNS):
        hosts += [host, host + ":*"] if not host.endswith("*") else [host]
    if public_url:
        parts = urlsplit(public_url)
        if parts.hostname:
            name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            hosts += [name, f"{name}:*"]
    return tuple(hosts)


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def browser_safety_middleware(policy: BrowserPolicy) -> Middleware:
    @web.middleware
    async def browser_safety(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if request.path not in EXEMPT_PATHS and not policy.host_allowed(host):
            logger.warning(
                "refused Host %r for %s %s",
                host,
                request.method,
                request.path,
                extra={"action": "host_refused"},
            )
            return _text(403, INVALID_HOST)
        origin = request.headers.get("Origin")
        api = is_api(request.path)
        if api and not policy.any_origin and policy.blocks_write(request.method, origin, host):
            logger.warning(
                "refused cross-origin %s %s from %s",
                request.method,
                request.path,
                origin,
                extra={"action": "cross_origin_refused"},
            )
            return _text(403, CROSS_ORIGIN_BLOCKED)
        preflight = (
            request.method == "OPTIONS"
            and origin is not None
            and "Access-Control-Request-Method" in request.headers
        )
        if preflight and api:
            return web.Response(status=204)
        return await handler(request)

    return browser_safety


def add_cors_headers(
    policy: BrowserPolicy, request: web.Request, headers: CIMultiDict[str]
) -> None:
    origin = request.headers.get("Origin")
    if origin is None or not policy.origin_allowed(origin):
        return
    preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
    if policy.any_origin:
        # A wildcard cannot go with credentials (the CORS rules); browsers drop cookies.
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
        headers.add("Vary", "Origin")
    if preflight:
        headers["Access-Control-Allow-Methods"] = CORS_METHODS
        wanted = request.headers.get("Access-Control-Request-Headers")
        if wanted:
            headers["Access-Control-Allow-Headers"] = wanted
        headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE


def use_browser_safety(app: web.Application, settings: Settings) -> None:
    """Put the policy first in ``app``'s middlewares and the security headers on every answer
    (streamed ones too, through ``on_response_prepare``)."""
    policy = BrowserPolicy.from_settings(settings)
    app.middlewares.insert(0, browser_safety_middleware(policy))

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if policy.x_frame_options is not None:
            response.headers.setdefault("X-Frame-Options", policy.x_frame_options)
        add_cors_headers(policy, request, response.headers)

    app.on_response_prepare.append(security_headers)
