"""One settings object, built once at start-up from RUNSTREAM_* variables and CLI flags."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runstream.schemas import constants as c
from runstream.schemas.errors import ConfigurationError

ENV_PREFIX = "RUNSTREAM_"
AUTH_MODES = ("none", "basic")
DEFAULT_PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")


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
    """Bytes in one native ingest body (msgpack columns); 413 from Content-Length or once
    passed while reading, before anything is parsed."""
    max_json_bytes: int = 24 * 1024 * 1024
    """Bytes in one JSON body of the MLflow, native and auth routes (fits MLflow's largest
    message, a dataset with a 16 MB profile); parsing JSON holds the event loop, so it is
    bounded tighter than msgpack. The UI's ``/graphql`` and the artifact routes' JSON are
    bounded by ``max_body_bytes`` and ``max_json_items``."""
    max_json_items: int = 100_000
    """JSON items (counted by their commas) in one JSON body of any route; 413 before
    parsing. Parsing time grows with the items (100,000: under 10 ms of event loop); MLflow's
    largest batch has about 5,000."""
    backlog_limit: int = 200_000
    """Unprojected entries per shard past which ingest answers 429 with Retry-After."""
    read_your_writes_timeout: float = 10.0
    """Longest wait, in seconds, of a request for the projector to apply the writes it must
    see: MLflow reads (every write accepted before them), MLflow writes that answer with what
    they wrote, and native requests with ``?wait_for=`` or ``?wait=1``; past it, 503 with
    Retry-After."""

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
    projector_pool_max: int = 4
    """Connections of the projector's own pool: API readers can never take them."""
    search_pool_max: int = 4
    """Connections of the run searches' own pool per process (their planner settings): at most
    this many searches run at once in a process, and they never take the other reads'."""
    store_timeout: float = 10.0
    """Seconds a write waits for Redis or PostgreSQL to answer before it is refused with 503
    (a store that accepts connections but does not answer, e.g. a frozen Redis)."""
    statement_timeout: float = 30.0
    """Seconds a query of the API may run in PostgreSQL before it is cancelled (503)."""

    max_artifact_bytes: int = 5 * 1024**3
    """Bytes in one proxied artifact upload (413 past it; S3's limit on one PUT is 5 GiB)."""
    max_filter_chars: int = 4_000
    """Characters in a search filter or order-by (400 past it)."""
    max_filter_clauses: int = 50
    """ANDed comparisons in one search filter (400 past it)."""
    header_timeout: float = 10.0
    """Seconds a client has to send a request's line and headers before it is disconnected."""
    body_timeout: float = 60.0
    """Seconds a request body may stall (no byte received) before it is refused (408)."""

    allowed_hosts: str | None = None
    """Comma-separated Host header values to accept (``*`` for any; ``name:*`` any port); unset:
    localhost, private addresses and the host of ``public_url`` (MLflow's default)."""
    cors_allowed_origins: str | None = None
    """Comma-separated origins that may call the API from a browser (``*`` for any); unset:
    http(s)://localhost and 127.0.0.1 on any port (MLflow's default)."""
    x_frame_options: str = "SAMEORIGIN"
    """X-Frame-Options header of every response: SAMEORIGIN, DENY or NONE (not sent)."""
    run_projector: bool = True
    """Whether ``runstream server`` runs a projector in-process."""
    workers: int = 0
    """HTTP worker processes sharing the port (SO_REUSEPORT); 0 means one per core."""

    auth: str = "none"
    """``basic`` turns on users, tokens and permissions on every route; ``none`` is open."""
    admin_username: str = "admin"
    """The first admin, created on an empty user store when auth is on."""
    admin_password: str | None = None
    """Password of the first admin (12 characters at least); only read on an empty store."""
    default_permission: str = "READ"
    """Permission on an experiment or registered model without a grant (READ, USE, EDIT,
    MANAGE or NO_PERMISSIONS), as MLflow's ``default_permission``."""
    auth_cache_seconds: float = 30.0
    """How long a verified credential is trusted in-process; changes elsewhere reach every
    process within a second through a generation counter in Redis."""
    oidc_issuer: str | None = None
    """With auth on: also accept this OpenID Connect issuer's JWTs as bearer tokens."""
    oidc_audience: str | None = None
    """The audience (``aud``) those tokens must carry; required with the issuer."""
    oidc_jwks_url: str | None = None
    """The issuer's signing keys; unset: ``jwks_uri`` of its discovery document."""
    oidc_username_claim: str = "sub"
    """The claim that names the runstream user (created on first sign-in)."""
    oidc_admin_claim: str = "groups"
    """The claim (a string or a list) that can make a user admin."""
    oidc_admin_value: str | None = None
    """The value of that claim that makes an admin; unset: admins come from runstream only."""

    extra: Mapping[str, Any] = field(default_factory=dict, metadata={"settable": False})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read RUNSTREAM_* variables; keyword overrides (CLI flags) win over the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in settable_fields():
            raw = environ.get(env_name(f.name))
            if raw:  # an empty variable is an unset one
                values[f.name] = parse_field(f.name, raw)
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.shards < 1 or self.shards > 1024:
            raise ConfigurationError(f"RUNSTREAM_SHARDS={self.shards}: must be 1..1024")
        if self.workers < 0:
            raise ConfigurationError(f"RUNSTREAM_WORKERS={self.workers}: must be >= 0")
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
        if self.x_frame_options.upper() not in ("SAMEORIGIN", "DENY", "NONE"):
            raise ConfigurationError(
                f"RUNSTREAM_X_FRAME_OPTIONS={self.x_frame_options!r}: SAMEORIGIN, DENY or NONE"
            )
        for name in ("max_artifact_bytes", "max_filter_chars", "max_filter_clauses"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"RUNSTREAM_{name.upper()}: must be at least 1")
        if self.auth not in AUTH_MODES:
            raise ConfigurationError(f"RUNSTREAM_AUTH={self.auth!r}: must be one of {AUTH_MODES}")
        if self.default_permission not in DEFAULT_PERMISSIONS:
            raise ConfigurationError(
                f"RUNSTREAM_DEFAULT_PERMISSION={self.default_permission!r}: must be one of "
                f"{DEFAULT_PERMISSIONS}"
            )
        if self.oidc_issuer and not self.oidc_audience:
            raise ConfigurationError(
                "RUNSTREAM_OIDC_AUDIENCE is not set: tokens of RUNSTREAM_OIDC_ISSUER are only "
                "accepted for a named audience"
            )
        if self.auth_cache_seconds < 0:
            raise ConfigurationError(
                f"RUNSTREAM_AUTH_CACHE_SECONDS={self.auth_cache_seconds}: must be >= 0"
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


# -- one parser, driven by the field types -----------------------------------------------------


def env_name(field_name: str) -> str:
    """The RUNSTREAM_* variable of a Settings field (``data_dir`` is RUNSTREAM_HOME)."""
    return ENV_PREFIX + ("HOME" if field_name == "data_dir" else field_name.upper())


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected an integer") from None


def _float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}")


PARSERS: dict[type, Callable[[str], Any]] = {
    bool: _bool,
    int: _int,
    float: _float,
    str: str,
    Path: Path,
}
"""Text -> value for each type a Settings field may have (``T | None`` parses as ``T``)."""


def value_type(annotation: Any) -> type:
    """The type a field's text parses to: ``T`` for ``T`` and for ``T | None``."""
    if isinstance(annotation, type):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return value_type(args[0])
    raise TypeError(f"Settings cannot parse fields of type {annotation!r}")


def settable_fields() -> list[dataclasses.Field[Any]]:
    """The fields a variable or a flag sets (all but ``extra``), in declaration order."""
    return [f for f in dataclasses.fields(Settings) if f.metadata.get("settable", True)]


@cache
def field_types() -> dict[str, type]:
    """Every settable field of ``Settings`` and the type its text parses to."""
    hints = typing.get_type_hints(Settings)
    return {f.name: value_type(hints[f.name]) for f in settable_fields()}


def parse_text(field_name: str, raw: str) -> Any:
    """``raw`` as the value of ``field_name`` (a variable's or a flag's text); ValueError says
    what was expected."""
    return PARSERS[field_types()[field_name]](raw)


def parse_field(field_name: str, raw: str) -> Any:
    """A variable's text as its field's value; ConfigurationError names the variable and value."""
    try:
        return parse_text(field_name, raw)
    except ValueError as exc:
        raise ConfigurationError(f"{env_name(field_name)}={raw!r}: {exc}") from None
