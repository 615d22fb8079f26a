"""HTTP for the SDK on one stdlib keep-alive connection (no aiohttp in training processes)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgpack

try:
    USER_AGENT = f"runstream-python/{version('runstream')}"
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    USER_AGENT = "runstream-python"
MSGPACK = "application/msgpack"


class TransportError(Exception):
    """The request did not get an HTTP answer (refused, reset, timed out)."""


class HTTPError(Exception):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str, error_code: str = "") -> None:
        super().__init__(f"HTTP {status} {error_code}: {message}".replace(" :", ":"))
        self.status = status
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    """Lower-cased header names."""
    body: bytes

    def retry_after(self, default: float) -> float:
        """Seconds from the ``Retry-After`` header (delta-seconds form), else ``default``."""
        raw = self.headers.get("retry-after")
        try:
            return max(0.0, float(raw)) if raw is not None else default
        except ValueError:
            return default

    def decode(self) -> Any:
        """The body as msgpack or JSON, by its content type."""
        if not self.body:
            return None
        if self.headers.get("content-type", "").startswith(MSGPACK):
            return msgpack.unpackb(self.body, raw=False)
        return json.loads(self.body)

    def error(self) -> HTTPError:
        """The answer as an ``HTTPError`` with the server's ``error_code`` and message."""
        try:
            data = self.decode()
        except ValueError:
            data = None
        if isinstance(data, dict):
            return HTTPError(
                self.status, str(data.get("message", "")), str(data.get("error_code", ""))
            )
        return HTTPError(self.status, self.body[:500].decode("utf-8", "replace"))


class Transport:
    """One keep-alive connection to a runstream server; requests are serialised by a lock."""

    def __init__(
        self, url: str, timeout: float = 30.0, headers: dict[str, str] | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._base_path = parts.path.rstrip("/")
        self._timeout = timeout
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and read the whole answer; raises ``TransportError`` only.

        A request on a reused connection that the server closed meanwhile is sent once more
        on a new connection (callers send idempotent requests or carry an Idempotency-Key).
        """
        target = self._base_path + path
        if query:
            target += "?" + urlencode(query)
        all_headers = {**self._headers, **(headers or {})}
        with self._lock:
            for attempt in (0, 1):
                reused = self._conn is not None
                try:
                    conn = self._connection(timeout)
                    conn.request(method, target, body=body, headers=all_headers)
                    answer = conn.getresponse()
                    data = answer.read()
                except (OSError, http.client.HTTPException) as exc:
                    self._close_locked()
                    if reused and attempt == 0 and not isinstance(exc, TimeoutError):
                        continue
                    raise TransportError(f"{method} {self.url}{path}: {exc!r}") from exc
                if answer.will_close:
                    self._close_locked()
                return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
        raise AssertionError("unreachable")

    def request_json(
        self,
        method: str,
        path: str,
        payload: Any = None,
        query: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """A JSON request whose error answers raise ``HTTPError``."""
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        response = self.request(method, path, body, headers, query, timeout)
        if response.status >= 400:
            raise response.error()
        return response.decode()

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=timeout or self._timeout)
            self._conn.connect()
            if self._conn.sock is not None:
                self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif self._conn.sock is not None:
            self._conn.sock.settimeout(timeout or self._timeout)
        return self._conn

    def _close_locked(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def close(self) -> None:
        """Close the connection (a later request opens a new one).

        Does not wait for a request in flight on another thread (at exit, a hung server must
        not hold the process): that request closes the connection when it ends.
        """
        if self._lock.acquire(timeout=0.1):
            try:
                self._close_locked()
            finally:
                self._lock.release()

    def forget(self) -> None:
        """Drop the connection without touching its socket (the forked child's copy)."""
        self._conn = None
        self._lock = threading.Lock()
