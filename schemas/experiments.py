"""Experiment events. Field docs are the wire-format reference.

Experiment events all travel on shard ``EXPERIMENT_SHARD`` (see ``constants``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

Tags = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ExperimentCreated:
    TYPE: ClassVar[str] = "experiment_created"
    VERSION: ClassVar[int] = 1

    experiment_id: str
    """Decimal string assigned by ingest, as MLflow's SQL store does ("0" is Default)."""
    name: str
    artifact_location: str
    """Where the experiment's run artifacts live, e.g. ``mlflow-artifacts:/1``."""
    creation_time: int
    """Milliseconds since the epoch."""
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class ExperimentRenamed:
    TYPE: ClassVar[str] = "experiment_renamed"
    VERSION: ClassVar[int] = 1

    experiment_id: str
    name: str
    time: int


@dataclass(frozen=True, slots=True)
class ExperimentDeleted:
    TYPE: ClassVar[str] = "experiment_deleted"
    VERSION: ClassVar[int] = 1

    experiment_id: str
    time: int


@dataclass(frozen=True, slots=True)
class ExperimentRestored:
    TYPE: ClassVar[str] = "experiment_restored"
    VERSION: ClassVar[int] = 1

    experiment_id: str
    time: int


@dataclass(frozen=True, slots=True)
class ExperimentTagSet:
    TYPE: ClassVar[str] = "experiment_tag_set"
    VERSION: ClassVar[int] = 1

    experiment_id: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class ExperimentTagDeleted:
    TYPE: ClassVar[str] = "experiment_tag_deleted"
    VERSION: ClassVar[int] = 1

    experiment_id: str
    key: str


ExperimentEvent = (
    ExperimentCreated
    | ExperimentRenamed
    | ExperimentDeleted
    | ExperimentRestored
    | ExperimentTagSet
    | ExperimentTagDeleted
)
