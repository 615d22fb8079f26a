"""One settings object, built once at start-up from RUNSTREAM_* variables and CLI flags."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runstream.schemas import constants as c
from runstream.schemas.errors import ConfigurationError

ENV_PREFIX = "RUNSTREAM_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable of every runstream process. Field docs are shown by ``--help``."""

    database_url: str | None = None
    """PostgreSQL DSN; unset means the embedded PostgreSQL under ``data_dir``."""
    redis_url: str | None = None
    """Redis URL; unset means the embedded Valkey under ``data_dir``."""
    artifacts_url: str | None = None
    """Artifact root: ``s3://bucket/prefix`` or a local path; unset means ``data_dir/artifacts``."""
    s3_endpoint_url: str | None = None
    """S3 endpoint for MinIO or another S3-compatible store."""
    data_dir: Path = Path("runstream-data")
    """Where the embedded stores and local artifacts keep their data (env: RUNSTREAM_HOME)."""
    host: str = "127.0.0.1"
    port: int = 5000
    public_url: str | None = None
    """URL clients use to reach this server (printed at start); defaults to http://host:port."""

    stream_prefix: str = c.DEFAULT_PREFIX
    """Prefix of every Redis key runstream writes."""
    shards: int = c.DEFAULT_SHARDS
    """Number of stream shards. Fixed for the life of a deployment."""

    max_body_bytes: int = c.DEFAULT_MAX_BODY_BYTES
    backlog_limit: int = 200_000
    """Unprojected entries per shard past which ingest answers 429 with Retry-After."""
    read_your_writes_timeout: float = 10.0
    """Seconds a write through the MLflow routes waits for the projector to apply it."""

    projector_batch: int = 500
    """Stream entries read per XREADGROUP and applied per PostgreSQL transaction."""
    projector_block_ms: int = 100
    lease_ttl_ms: int = 5_000
    """A projector's hold on a shard expires this long after its last renewal."""
    claim_idle_ms: int = 5_000
    """Pending entries idle this long are claimed from a dead consumer (XAUTOCLAIM)."""
    max_deliveries: int = 5
    """An entry that fails this many times goes to the dead-letter stream."""
    consumer_name: str | None = None
    """Projector consumer name; defaults to host:pid."""
    chunk_points: int = 1024
    """Metric points per stored chunk."""

    db_pool_min: int = 1
    db_pool_max: int = 10
    run_projector: bool = True
    """Whether ``runstream server`` runs a projector in-process."""

    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read RUNSTREAM_* variables; keyword overrides (CLI flags) win over the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            env_name = ENV_PREFIX + ("HOME" if f.name == "data_dir" else f.name.upper())
            raw = environ.get(env_name)
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, env_name, raw, f.type)
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.shards < 1 or self.shards > 1024:
            raise ConfigurationError(f"RUNSTREAM_SHARDS={self.shards}: must be 1..1024")
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"RUNSTREAM_PORT={self.port}: must be 1..65535")
        for name in ("database_url", "redis_url"):
            value = getattr(self, name)
            if value is not None:
                scheme = urlsplit(value).scheme
                allowed = (
                    ("postgres", "postgresql")
                    if name == "database_url"
                    else ("redis", "rediss", "unix")
                )
                if scheme not in allowed:
                    raise ConfigurationError(
                        f"RUNSTREAM_{name.upper()}={value!r}: scheme must be one of {allowed}"
                    )
        if not self.stream_prefix or any(ch in self.stream_prefix for ch in " {}"):
            raise ConfigurationError(
                f"RUNSTREAM_STREAM_PREFIX={self.stream_prefix!r}: no spaces or braces"
            )

    @property
    def tracking_uri(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _parse(name: str, env_name: str, raw: str, type_: Any) -> Any:
    type_name = str(type_)
    try:
        if type_name in ("int",):
            return int(raw)
        if type_name in ("float",):
            return float(raw)
        if type_name in ("bool",):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if type_name == "Path":
            return Path(raw)
        return raw
    except ValueError as exc:
        raise ConfigurationError(f"{env_name}={raw!r}: {exc}") from exc
