"""Model-registry events (MLflow's registered models and model versions). Field docs are the
wire-format reference.

Every registry event travels on ``REGISTRY_SHARD``, so the registry is totally ordered: a name
is unique at each point of the stream, a rename moves every version with it, and version
numbers are allocated in stream order. Names and versions are what MLflow's API keys
everything by; versions are integers here and strings on MLflow's wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runstream.schemas.constants import EXPERIMENT_SHARD

Pairs = tuple[tuple[str, str], ...]
"""Ordered (key, value) pairs; msgpack carries them as a list of 2-lists."""

REGISTRY_SHARD = EXPERIMENT_SHARD
"""The registry's write-side keys share shard 0's Redis hash tag with the experiment names."""

STAGE_NONE = "None"
STAGE_STAGING = "Staging"
STAGE_PRODUCTION = "Production"
STAGE_ARCHIVED = "Archived"
STAGES = (STAGE_NONE, STAGE_STAGING, STAGE_PRODUCTION, STAGE_ARCHIVED)
"""MLflow's canonical stage names (``model_registry_stages``), in MLflow's order."""
ACTIVE_STAGES = (STAGE_STAGING, STAGE_PRODUCTION)
"""The stages ``archive_existing_versions`` applies to."""


@dataclass(frozen=True, slots=True)
class RegisteredModelCreated:
    TYPE: ClassVar[str] = "registered_model_created"
    VERSION: ClassVar[int] = 1

    name: str
    """Unique among registered models; ingest refuses a name that exists."""
    time: int
    """Milliseconds since the epoch: creation and first last-updated time."""
    description: str = ""
    tags: Pairs = ()
    """Later pairs win over earlier ones with the same key."""


@dataclass(frozen=True, slots=True)
class RegisteredModelRenamed:
    TYPE: ClassVar[str] = "registered_model_renamed"
    VERSION: ClassVar[int] = 1

    name: str
    new_name: str
    """Must not name another registered model; the versions, tags and aliases move with it."""
    time: int


@dataclass(frozen=True, slots=True)
class RegisteredModelUpdated:
    TYPE: ClassVar[str] = "registered_model_updated"
    VERSION: ClassVar[int] = 1

    name: str
    description: str
    """The new description ("" clears it, as MLflow's update)."""
    time: int


@dataclass(frozen=True, slots=True)
class RegisteredModelDeleted:
    """MLflow's hard delete: the model, its versions, tags and aliases are gone; the name and
    the version numbers are free again."""

    TYPE: ClassVar[str] = "registered_model_deleted"
    VERSION: ClassVar[int] = 1

    name: str
    time: int


@dataclass(frozen=True, slots=True)
class RegisteredModelTagSet:
    TYPE: ClassVar[str] = "registered_model_tag_set"
    VERSION: ClassVar[int] = 1

    name: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class RegisteredModelTagDeleted:
    TYPE: ClassVar[str] = "registered_model_tag_deleted"
    VERSION: ClassVar[int] = 1

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class RegisteredModelAliasSet:
    TYPE: ClassVar[str] = "registered_model_alias_set"
    VERSION: ClassVar[int] = 1

    name: str
    alias: str
    version: int
    """A live version of the model; an alias set again moves to the new version."""


@dataclass(frozen=True, slots=True)
class RegisteredModelAliasDeleted:
    TYPE: ClassVar[str] = "registered_model_alias_deleted"
    VERSION: ClassVar[int] = 1

    name: str
    alias: str


@dataclass(frozen=True, slots=True)
class ModelVersionCreated:
    TYPE: ClassVar[str] = "model_version_created"
    VERSION: ClassVar[int] = 1

    name: str
    version: int
    """One more than the highest version the model ever had (deleted versions included);
    allocated by ingest atomically with the append."""
    time: int
    source: str
    """The URI the client registered (``runs:/...``, ``models:/<model_id>``, a store URI)."""
    storage_location: str = ""
    """Where the files are (MLflow's ``storage_location``): the logged model's artifact
    location for ``models:/<model_id>`` sources, else the source itself."""
    run_id: str = ""
    run_link: str = ""
    description: str = ""
    user_id: str = ""
    model_id: str = ""
    """The MLflow 3 logged model registered, "" for none."""
    tags: Pairs = ()


@dataclass(frozen=True, slots=True)
class ModelVersionUpdated:
    TYPE: ClassVar[str] = "model_version_updated"
    VERSION: ClassVar[int] = 1

    name: str
    version: int
    description: str
    time: int


@dataclass(frozen=True, slots=True)
class ModelVersionStageTransitioned:
    TYPE: ClassVar[str] = "model_version_stage_transitioned"
    VERSION: ClassVar[int] = 1

    name: str
    version: int
    stage: str
    """One of ``STAGES``."""
    time: int
    archive_existing_versions: bool = False
    """Move the model's other versions in ``stage`` to Archived (only for ``ACTIVE_STAGES``)."""


@dataclass(frozen=True, slots=True)
class ModelVersionDeleted:
    """MLflow's soft delete: the row stays (its number is never reused), redacted, with the
    internal stage ``Deleted_Internal``; aliases pointing at it are removed."""

    TYPE: ClassVar[str] = "model_version_deleted"
    VERSION: ClassVar[int] = 1

    name: str
    version: int
    time: int


@dataclass(frozen=True, slots=True)
class ModelVersionTagSet:
    TYPE: ClassVar[str] = "model_version_tag_set"
    VERSION: ClassVar[int] = 1

    name: str
    version: int
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class ModelVersionTagDeleted:
    TYPE: ClassVar[str] = "model_version_tag_deleted"
    VERSION: ClassVar[int] = 1

    name: str
    version: int
    key: str


RegistryEvent = (
    RegisteredModelCreated
    | RegisteredModelRenamed
    | RegisteredModelUpdated
    | RegisteredModelDeleted
    | RegisteredModelTagSet
    | RegisteredModelTagDeleted
    | RegisteredModelAliasSet
    | RegisteredModelAliasDeleted
    | ModelVersionCreated
    | ModelVersionUpdated
    | ModelVersionStageTransitioned
    | ModelVersionDeleted
    | ModelVersionTagSet
    | ModelVersionTagDeleted
)

REGISTRY_EVENT_TYPES: tuple[type[RegistryEvent], ...] = (
    RegisteredModelCreated,
    RegisteredModelRenamed,
    RegisteredModelUpdated,
    RegisteredModelDeleted,
    RegisteredModelTagSet,
    RegisteredModelTagDeleted,
    RegisteredModelAliasSet,
    RegisteredModelAliasDeleted,
    ModelVersionCreated,
    ModelVersionUpdated,
    ModelVersionStageTransitioned,
    ModelVersionDeleted,
    ModelVersionTagSet,
    ModelVersionTagDeleted,
)


def is_registry_event(event: object) -> bool:
    return isinstance(event, REGISTRY_EVENT_TYPES)
