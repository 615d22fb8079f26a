"""Run events: lifecycle, tags and params. Field docs are the wire-format reference.

All events of one run travel on the shard ``shard_of(run_id)``, so they apply in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

Pairs = tuple[tuple[str, str], ...]
"""Ordered (key, value) pairs; msgpack carries them as a list of 2-lists."""


@dataclass(frozen=True, slots=True)
class RunCreated:
    TYPE: ClassVar[str] = "run_created"
    VERSION: ClassVar[int] = 1

    run_id: str
    """32 hex characters (uuid4), assigned by ingest unless the client brings one."""
    experiment_id: str
    user_id: str
    run_name: str
    start_time: int
    """Milliseconds since the epoch."""
    artifact_uri: str
    tags: Pairs = ()
    status: str = "RUNNING"


@dataclass(frozen=True, slots=True)
class RunUpdated:
    TYPE: ClassVar[str] = "run_updated"
    VERSION: ClassVar[int] = 1

    run_id: str
    status: str | None = None
    """One of RUNNING, SCHEDULED, FINISHED, FAILED, KILLED; None leaves it unchanged."""
    end_time: int | None = None
    run_name: str | None = None


@dataclass(frozen=True, slots=True)
class RunDeleted:
    TYPE: ClassVar[str] = "run_deleted"
    VERSION: ClassVar[int] = 1

    run_id: str
    time: int


@dataclass(frozen=True, slots=True)
class RunRestored:
    TYPE: ClassVar[str] = "run_restored"
    VERSION: ClassVar[int] = 1

    run_id: str
    time: int


@dataclass(frozen=True, slots=True)
class RunTagsSet:
    TYPE: ClassVar[str] = "run_tags_set"
    VERSION: ClassVar[int] = 1

    run_id: str
    tags: Pairs
    """Later pairs win over earlier ones with the same key."""


@dataclass(frozen=True, slots=True)
class RunTagDeleted:
    TYPE: ClassVar[str] = "run_tag_deleted"
    VERSION: ClassVar[int] = 1

    run_id: str
    key: str


@dataclass(frozen=True, slots=True)
class ParamsLogged:
    TYPE: ClassVar[str] = "params_logged"
    VERSION: ClassVar[int] = 1

    run_id: str
    params: Pairs
    """A param, once logged, keeps its value: ingest refuses a different one."""


RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")

RunEvent = (
    RunCreated | RunUpdated | RunDeleted | RunRestored | RunTagsSet | RunTagDeleted | ParamsLogged
)
