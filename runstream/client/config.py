"""SDK configuration: one frozen object, read from the environment once per run.

The training process reads nothing else from the environment: every tunable of the SDK is a
field here, with its ``RUNSTREAM_*`` variable named in the field's docstring.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:5000"


def resolve_url(url: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The server URL: ``url``, else ``RUNSTREAM_URL``, else an http(s) ``MLFLOW_TRACKING_URI``.

    Falls back to ``http://127.0.0.1:5000``. A trailing slash is removed; a path prefix (a
    server behind a reverse proxy at ``https://host/mlflow``) is kept.
    """
    env = os.environ if environ is None else environ
    candidate = url or env.get("RUNSTREAM_URL") or ""
    if not candidate:
        tracking = env.get("MLFLOW_TRACKING_URI", "")
        if urlsplit(tracking).scheme in ("http", "https"):
            candidate = tracking
    candidate = candidate or DEFAULT_URL
    parts = urlsplit(candidate)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"runstream URL {candidate!r}: expected http(s)://host[:port][/path]")
    return candidate.rstrip("/")


def default_spool_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``RUNSTREAM_SPOOL_DIR``, else ``~/.runstream/spool``."""
    env = os.environ if environ is None else environ
    configured = env.get("RUNSTREAM_SPOOL_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".runstream" / "spool"


def auth_headers(
    environ: Mapping[str, str] | None = None, token: str | None = None
) -> dict[str, str]:
    """The credentials the SDK sends: ``token`` (an API token of a runstream server with auth
    on), else ``RUNSTREAM_TOKEN``, else MLflow's client credentials
    (``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``)."""
    env = os.environ if environ is None else environ
    token = token or env.get("RUNSTREAM_TOKEN") or env.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        raw = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {raw}"}
    return {}


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Every tunable of the SDK's writer side."""

    url: str = DEFAULT_URL
    """Server URL (see ``resolve_url``)."""
    spool_dir: Path = field(default_factory=default_spool_dir)
    """Where batches go when they cannot be sent (env: RUNSTREAM_SPOOL_DIR)."""
    flush_timeout: float = 30.0
    """Seconds ``finish()`` and process exit wait for delivery before spooling the rest
    (env: RUNSTREAM_FLUSH_TIMEOUT)."""
    flush_interval: float = 0.5
    """Seconds between sends while logging (env: RUNSTREAM_FLUSH_INTERVAL)."""
    batch_points: int = 100_000
    """Metric points per request at most (env: RUNSTREAM_BATCH_POINTS)."""
    max_queue_points: int = 2_000_000
    """Points held in memory waiting to be sent (about 24 bytes each) before the oldest batches
    are spooled to disk (env: RUNSTREAM_MAX_QUEUE_POINTS)."""
    max_buffer_points: int = 4_000_000
    """Points a run's buffer holds before the sender has collected them; past it ``log`` drops
    points and counts them (only reached while the sender thread is stuck)
    (env: RUNSTREAM_MAX_BUFFER_POINTS)."""
    request_timeout: float = 30.0
    """Seconds for one HTTP request (env: RUNSTREAM_REQUEST_TIMEOUT)."""
    compress_min_bytes: int = 0
    """Request bodies of at least this many bytes are sent gzip-compressed; 0 turns
    compression off, the default: see docs/sdk.md for the measurements
    (env: RUNSTREAM_COMPRESS_MIN_BYTES)."""
    max_backoff: float = 30.0
    """Longest wait between retries of a failed request, in seconds."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra request headers (credentials: ``token``, RUNSTREAM_TOKEN, MLFLOW_TRACKING_TOKEN or
    MLFLOW_TRACKING_USERNAME/PASSWORD)."""

    @classmethod
    def from_env(
        cls,
        url: str | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        token: str | None = None,
        **overrides: Any,
    ) -> ClientConfig:
        """Read the ``RUNSTREAM_*`` variables; keyword overrides win (``token``: see
        ``auth_headers``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "url": resolve_url(url, env),
            "spool_dir": default_spool_dir(env),
            "headers": auth_headers(env, token),
        }
        for name, kind in _ENV_FIELDS.items():
            raw = env.get("RUNSTREAM_" + name.upper())
            if raw:
                try:
                    values[name] = kind(raw)
                except ValueError as exc:
                    raise ValueError(f"RUNSTREAM_{name.upper()}={raw!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> ClientConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


_ENV_FIELDS: dict[str, Any] = {
    "flush_timeout": float,
    "flush_interval": float,
    "batch_points": int,
    "max_queue_points": int,
    "max_buffer_points": int,
    "request_timeout": float,
    "compress_min_bytes": int,
}
