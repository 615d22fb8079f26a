"""Logged-model events (MLflow 3 ``LoggedModel``). Field docs are the wire-format reference.

A logged model's own events travel on ``shard_of_model(model_id)`` so that they apply in
order; a model is never removed (``logged_model_deleted`` is MLflow's soft delete), so a check
that it exists, once true, stays true. Metrics that a run logs against a model
(``logged_model_metrics_logged``) belong to the run and travel on the run's shard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

Pairs = tuple[tuple[str, str], ...]
"""Ordered (key, value) pairs; msgpack carries them as a list of 2-lists."""

MODEL_ID_PATTERN = re.compile(r"^m-[0-9a-f]{32}$")
"""``m-`` and 32 hex digits (a uuid4 without dashes), as MLflow's SQL store makes them."""

MODEL_STATUSES = ("PENDING", "READY", "FAILED")
"""A model is created PENDING and finalized READY or FAILED (MLflow's ``LoggedModelStatus``)."""


@dataclass(frozen=True, slots=True)
class LoggedModelCreated:
    TYPE: ClassVar[str] = "logged_model_created"
    VERSION: ClassVar[int] = 1

    model_id: str
    """``m-<32 hex>``; ingest assigns one when the client leaves it empty."""
    experiment_id: str
    """The experiment the model belongs to; it must exist and be active."""
    name: str
    """At most 500 characters; MLflow generates a random name when the client gives none."""
    creation_time: int
    """Milliseconds since the epoch; also the model's first ``last_updated_timestamp_ms``."""
    artifact_location: str = ""
    """``<experiment artifact location>/models/<model_id>/artifacts``; ingest derives it when
    empty."""
    source_run_id: str = ""
    """The run that produced the model ("" for none)."""
    model_type: str = ""
    tags: Pairs = ()
    """Later pairs win over earlier ones with the same key."""
    params: Pairs = ()
    """The first value of a key is kept (MLflow's param rows are keyed by model and key)."""
    status: str = "PENDING"


@dataclass(frozen=True, slots=True)
class LoggedModelFinalized:
    TYPE: ClassVar[str] = "logged_model_finalized"
    VERSION: ClassVar[int] = 1

    model_id: str
    status: str
    """READY or FAILED (PENDING is accepted too, as MLflow's ``finalize_logged_model``)."""
    time: int
    """Milliseconds since the epoch: the model's new ``last_updated_timestamp_ms``."""


@dataclass(frozen=True, slots=True)
class LoggedModelTagsSet:
    TYPE: ClassVar[str] = "logged_model_tags_set"
    VERSION: ClassVar[int] = 1

    model_id: str
    tags: Pairs
    """Later pairs win over earlier ones with the same key."""


@dataclass(frozen=True, slots=True)
class LoggedModelTagDeleted:
    TYPE: ClassVar[str] = "logged_model_tag_deleted"
    VERSION: ClassVar[int] = 1

    model_id: str
    key: str


@dataclass(frozen=True, slots=True)
class LoggedModelParamsLogged:
    TYPE: ClassVar[str] = "logged_model_params_logged"
    VERSION: ClassVar[int] = 1

    model_id: str
    params: Pairs
    """A key already logged keeps its first value."""


@dataclass(frozen=True, slots=True)
class LoggedModelDeleted:
    TYPE: ClassVar[str] = "logged_model_deleted"
    VERSION: ClassVar[int] = 1

    model_id: str
    time: int
    """Milliseconds since the epoch: the model's new ``last_updated_timestamp_ms``."""


@dataclass(frozen=True, slots=True)
class LoggedModelMetricLogged:
    """One metric point a run logged against a model (a metric with ``model_id`` in MLflow).

    The run's own history gets the point through ``metrics_logged``; this event only adds it
    to the model's metrics (``logged_model_metrics``), as MLflow's ``_log_model_metrics``.
    """

    TYPE: ClassVar[str] = "logged_model_metric_logged"
    VERSION: ClassVar[int] = 1

    run_id: str
    model_id: str
    key: str
    value: float
    timestamp: int
    """Milliseconds since the epoch."""
    step: int = 0
    dataset_name: str = ""
    dataset_digest: str = ""


LoggedModelEvent = (
    LoggedModelCreated
    | LoggedModelFinalized
    | LoggedModelTagsSet
    | LoggedModelTagDeleted
    | LoggedModelParamsLogged
    | LoggedModelDeleted
    | LoggedModelMetricLogged
)

LOGGED_MODEL_EVENT_TYPES: tuple[type[LoggedModelEvent], ...] = (
    LoggedModelCreated,
    LoggedModelFinalized,
    LoggedModelTagsSet,
    LoggedModelTagDeleted,
    LoggedModelParamsLogged,
    LoggedModelDeleted,
    LoggedModelMetricLogged,
)
