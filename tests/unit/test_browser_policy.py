"""The browser policy (runstream/browser_safety.py) and the connection guard's aiohttp hooks."""

from __future__ import annotations

import inspect

from aiohttp.web_protocol import RequestHandler

from runstream.browser_safety import BrowserPolicy
from runstream.settings import Settings


def policy(**kw: str) -> BrowserPolicy:
    return BrowserPolicy.from_settings(Settings(**kw))  # type: ignore[arg-type]


def test_default_hosts_are_local_private_and_the_public_url() -> None:
    p = policy(public_url="https://mlflow.example.com")
    for host in (
        "localhost",
        "localhost:5000",
        "127.0.0.1:8080",
        "[::1]:5000",
        "10.0.0.7",
        "172.16.3.4:80",
        "172.31.0.1",
        "192.168.1.20:5000",
        "mlflow.example.com",
        "mlflow.example.com:443",
    ):
        assert p.host_allowed(host), host
    for host in ("evil.example", "172.32.0.1", "8.8.8.8:5000", "", None, "localhost.evil.example"):
        assert not p.host_allowed(host), host


def test_configured_hosts_replace_the_defaults() -> None:
    p = policy(allowed_hosts="tracking.corp, *.internal:*")
    assert p.host_allowed("tracking.corp") and p.host_allowed("a.internal:5000")
    assert not p.host_allowed("localhost:5000")
    assert policy(allowed_hosts="*").host_allowed("anything")


def test_cross_origin_writes() -> None:
    p = policy()
    assert p.blocks_write("POST", "https://evil.example", "localhost:5000")
    assert not p.blocks_write("GET", "https://evil.example", "localhost:5000")
    assert not p.blocks_write("POST", None, "localhost:5000")  # not a browser
    assert not p.blocks_write("POST", "http://localhost:3000", "localhost:5000")
    assert not p.blocks_write("POST", "http://10.0.0.5:5000", "10.0.0.5:5000")  # own origin
    assert p.blocks_write("DELETE", "http://10.0.0.6:5000", "10.0.0.5:5000")
    allowed = policy(cors_allowed_origins="https://app.example, https://*.corp.example")
    assert not allowed.blocks_write("POST", "https://app.example", "localhost:5000")
    assert not allowed.blocks_write("PATCH", "https://x.corp.example", "localhost:5000")
    assert allowed.blocks_write("POST", "https://app.example.evil", "localhost:5000")
    assert policy(cors_allowed_origins="*").origin_allowed("https://evil.example")


def test_x_frame_options() -> None:
    assert policy().x_frame_options == "SAMEORIGIN"
    assert policy(x_frame_options="none").x_frame_options is None


def test_the_connection_guard_hooks_still_exist_in_aiohttp() -> None:
    # runstream/connections.py overrides these and reads this counter: fail loudly if
    # aiohttp renames them rather than silently dropping the slow-client deadline.
    for name in ("connection_made", "data_received", "connection_lost", "finish_response"):
        assert callable(getattr(RequestHandler, name)), name
    assert "_request_count" in RequestHandler.__slots__
    assert inspect.iscoroutinefunction(RequestHandler.finish_response)
