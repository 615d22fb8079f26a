"""Projection of logged-model and run input/output events into rows: pure, no I/O.

``plan.Segment`` holds one ``ModelRows``; ``add(rows, event)`` folds an event into it by key
(later events win, as they would applied one by one), and ``models_store.apply`` writes it
with one statement per table. Semantics follow MLflow's SQL store (``sqlalchemy_store.py``):

- ``create_logged_model``: status PENDING, ``last_updated_timestamp_ms`` = creation time;
  ``finalize_logged_model`` / ``delete_logged_model`` set the status / lifecycle stage and
  ``last_updated_timestamp_ms``; tags upsert, params keep their first value.
- ``_log_inputs_impl``: a dataset is kept once per experiment, name and digest (the first one
  logged keeps its source, schema and profile); a run's input of a dataset once, with the tags
  of its first logging. Model inputs and outputs are kept once per (run, model[, step]).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runstream.schemas import inputs as inp
from runstream.schemas import models as mo

ACTIVE = "active"
DELETED = "deleted"

PlannedEvent = mo.LoggedModelEvent | inp.RunInputEvent
PLANNED_EVENT_TYPES = (*mo.LOGGED_MODEL_EVENT_TYPES, *inp.RUN_INPUT_EVENT_TYPES)


@dataclass(slots=True)
class LoggedModelRow:
    model_id: str
    experiment_id: int
    name: str
    artifact_location: str
    creation_timestamp_ms: int
    last_updated_timestamp_ms: int
    status: str
    lifecycle_stage: str
    model_type: str | None
    source_run_id: str | None


@dataclass(slots=True)
class LoggedModelPatch:
    """Changes to a model row written before this batch; None leaves a column as is."""

    model_id: str
    status: str | None = None
    lifecycle_stage: str | None = None
    last_updated_timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ModelMetricRow:
    value: float
    dataset_name: str | None
    dataset_digest: str | None


MetricKey = tuple[str, str, int, int, str]
"""(model_id, key, timestamp_ms, step, run_id): MLflow's primary key of a model metric."""


@dataclass(slots=True)
class ModelRows:
    models: dict[str, LoggedModelRow] = field(default_factory=dict)
    model_patches: dict[str, LoggedModelPatch] = field(default_factory=dict)
    model_tags: dict[tuple[str, str], str | None] = field(default_factory=dict)
    """``None`` as a value means the tag is deleted."""
    model_params: dict[tuple[str, str], str] = field(default_factory=dict)
    model_metrics: dict[MetricKey, ModelMetricRow] = field(default_factory=dict)
    dataset_inputs: dict[tuple[str, str, str], inp.DatasetInputLogged] = field(default_factory=dict)
    """(run_id, name, digest) → the first logging of it in the segment."""
    model_inputs: dict[tuple[str, str], int] = field(default_factory=dict)
    """(run_id, model_id) → time logged."""
    model_outputs: dict[tuple[str, str, int], int] = field(default_factory=dict)
    """(run_id, model_id, step) → time logged."""

    def is_empty(self) -> bool:
        return not (
            self.models
            or self.model_patches
            or self.model_tags
            or self.model_params
            or self.model_metrics
            or self.dataset_inputs
            or self.model_inputs
            or self.model_outputs
        )


def is_planned(event: object) -> bool:
    return isinstance(event, PLANNED_EVENT_TYPES)


def _target(rows: ModelRows, model_id: str) -> LoggedModelRow | LoggedModelPatch:
    row = rows.models.get(model_id)
    if row is not None:
        return row
    patch = rows.model_patches.get(model_id)
    if patch is None:
        patch = rows.model_patches[model_id] = LoggedModelPatch(model_id)
    return patch


def add(rows: ModelRows, event: PlannedEvent) -> None:
    """Fold one event into ``rows``."""
    match event:
        case mo.LoggedModelCreated():
            rows.model_patches.pop(event.model_id, None)
            rows.models[event.model_id] = LoggedModelRow(
                model_id=event.model_id,
                experiment_id=int(event.experiment_id),
                name=event.name,
                artifact_location=event.artifact_location,
                creation_timestamp_ms=event.creation_time,
                last_updated_timestamp_ms=event.creation_time,
                status=event.status,
                lifecycle_stage=ACTIVE,
                model_type=event.model_type or None,
                source_run_id=event.source_run_id or None,
            )
            for key, value in event.tags:
                rows.model_tags[(event.model_id, key)] = value
            for key, value in event.params:
                rows.model_params.setdefault((event.model_id, key), value)
        case mo.LoggedModelFinalized():
            target = _target(rows, event.model_id)
            target.status = event.status
            target.last_updated_timestamp_ms = event.time
        case mo.LoggedModelDeleted():
            target = _target(rows, event.model_id)
            target.lifecycle_stage = DELETED
            target.last_updated_timestamp_ms = event.time
        case mo.LoggedModelTagsSet():
            for key, value in event.tags:
                rows.model_tags[(event.model_id, key)] = value
        case mo.LoggedModelTagDeleted():
            rows.model_tags[(event.model_id, event.key)] = None
        case mo.LoggedModelParamsLogged():
            for key, value in event.params:
                rows.model_params.setdefault((event.model_id, key), value)
        case mo.LoggedModelMetricLogged():
            metric_key = (event.model_id, event.key, event.timestamp, event.step, event.run_id)
            rows.model_metrics.setdefault(
                metric_key,
                ModelMetricRow(
                    event.value, event.dataset_name or None, event.dataset_digest or None
                ),
            )
        case inp.DatasetInputLogged():
            rows.dataset_inputs.setdefault((event.run_id, event.name, event.digest), event)
        case inp.ModelInputLogged():
            rows.model_inputs.setdefault((event.run_id, event.model_id), event.time)
        case inp.ModelOutputLogged():
            rows.model_outputs.setdefault((event.run_id, event.model_id, event.step), event.time)
        case _:
            raise TypeError(f"no projection for event type {type(event).__name__}")
