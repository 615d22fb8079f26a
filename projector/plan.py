"""Projection of a batch of decoded stream entries into rows per table: pure, no I/O.

``plan(entries)`` folds the events of a batch, in stream order, into a ``WritePlan``:

- ordered ``Segment``s of experiment/run/tag/param rows. Inside a segment every table is
  folded by its key (later events win, as they would applied one by one), so a segment's
  tables can be written in any order with one statement per table. An experiment delete or
  restore also changes every run of the experiment (MLflow cascades both); that touches rows
  the planner cannot see, so it closes the segment and becomes the segment's ``cascade``,
  applied after its rows and before the next segment's.
- ``MetricAppends``: the points of each series (run, key) of the batch, concatenated in logged
  order. Where they land (tail chunk or new chunks) depends on the stored series state, which
  ``chunks.layout`` combines with them once the store has read it.

Semantics follow MLflow's SQL store (``mlflow/store/tracking/sqlalchemy_store.py``); each
place where that is not obvious says which function it mirrors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

from runstream.projector import models_plan
from runstream.projector.models_plan import ModelRows
from runstream.projector.registry_plan import Statement, registry_statements
from runstream.schemas import constants as c
from runstream.schemas import experiments as ex
from runstream.schemas import metrics as me
from runstream.schemas import registry as rg
from runstream.schemas import runs as ru
from runstream.schemas.codec import Event
from runstream.schemas.entries import Entry

ACTIVE = "active"
DELETED = "deleted"


@dataclass(slots=True)
class ExperimentRow:
    experiment_id: int
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    deleted_time: int | None = None


@dataclass(slots=True)
class ExperimentPatch:
    """Changes to an experiment row written before this batch; None leaves a column as is."""

    experiment_id: int
    name: str | None = None
    last_update_time: int | None = None
    lifecycle_stage: str | None = None
    set_deleted_time: bool = False
    deleted_time: int | None = None


@dataclass(slots=True)
class RunRow:
    run_id: str
    experiment_id: int
    name: str
    user_id: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str
    deleted_time: int | None = None


@dataclass(slots=True)
class RunPatch:
    """Changes to a run row written before this batch; None leaves a column as is."""

    run_id: str
    name: str | None = None
    status: str | None = None
    end_time: int | None = None
    lifecycle_stage: str | None = None
    set_deleted_time: bool = False
    deleted_time: int | None = None


@dataclass(frozen=True, slots=True)
class RunsCascade:
    """Every run of an experiment takes this lifecycle (MLflow's delete/restore_experiment)."""

    experiment_id: int
    lifecycle_stage: str
    deleted_time: int | None


@dataclass(slots=True)
class Segment:
    """Rows folded by key; ``None`` as a tag value means the tag is deleted."""

    experiments: dict[int, ExperimentRow] = field(default_factory=dict)
    experiment_patches: dict[int, ExperimentPatch] = field(default_factory=dict)
    experiment_tags: dict[tuple[int, str], str | None] = field(default_factory=dict)
    runs: dict[str, RunRow] = field(default_factory=dict)
    run_patches: dict[str, RunPatch] = field(default_factory=dict)
    run_tags: dict[tuple[str, str], str | None] = field(default_factory=dict)
    params: dict[tuple[str, str], str] = field(default_factory=dict)
    models: ModelRows = field(default_factory=ModelRows)
    """Logged models, datasets, run inputs and outputs (``models_plan``)."""
    registry: list[Statement] = field(default_factory=list)
    """Registry events as statements in stream order (``registry_plan``), applied last."""
    cascade: RunsCascade | None = None

    def is_empty(self) -> bool:
        return not (
            self.experiments
            or self.experiment_patches
            or self.experiment_tags
            or self.runs
            or self.run_patches
            or self.run_tags
            or self.params
            or not self.models.is_empty()
            or self.registry
            or self.cascade
        )


@dataclass(frozen=True, slots=True)
class MetricAppends:
    """Points per series, concatenated: series ``i`` is ``offsets[i]:offsets[i + 1]``."""

    series: tuple[tuple[str, str], ...]
    """(run_id, key) per series, in order of first appearance in the batch."""
    offsets: tuple[int, ...]
    steps: bytes
    timestamps: bytes
    values: bytes

    @property
    def point_count(self) -> int:
        return len(self.values) // 8


@dataclass(frozen=True, slots=True)
class WritePlan:
    segments: tuple[Segment, ...]
    metrics: MetricAppends
    entries: int

    @property
    def point_count(self) -> int:
        return self.metrics.point_count


class _Planner:
    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.current = Segment()
        self.series: dict[tuple[str, str], tuple[list[bytes], list[bytes], list[bytes]]] = {}

    def close_segment(self, cascade: RunsCascade | None) -> None:
        self.current.cascade = cascade
        if not self.current.is_empty():
            self.segments.append(self.current)
        self.current = Segment()

    # -- experiments ----------------------------------------------------------------------------

    def experiment_patch(self, experiment_id: int) -> ExperimentRow | ExperimentPatch:
        seg = self.current
        row = seg.experiments.get(experiment_id)
        if row is not None:
            return row
        patch = seg.experiment_patches.get(experiment_id)
        if patch is None:
            patch = seg.experiment_patches[experiment_id] = ExperimentPatch(experiment_id)
        return patch

    def experiment_lifecycle(self, experiment_id: int, stage: str, time: int) -> None:
        # MLflow's delete/restore_experiment set last_update_time and cascade to every run.
        target = self.experiment_patch(experiment_id)
        target.lifecycle_stage = stage
        target.last_update_time = time
        deleted_time = time if stage == DELETED else None
        if isinstance(target, ExperimentPatch):
            target.set_deleted_time = True
        target.deleted_time = deleted_time
        self.close_segment(RunsCascade(experiment_id, stage, deleted_time))

    # -- runs -----------------------------------------------------------------------------------

    def run_patch(self, run_id: str) -> RunRow | RunPatch:
        seg = self.current
        row = seg.runs.get(run_id)
        if row is not None:
            return row
        patch = seg.run_patches.get(run_id)
        if patch is None:
            patch = seg.run_patches[run_id] = RunPatch(run_id)
        return patch

    def rename_run(self, run_id: str, name: str) -> None:
        # MLflow's update_run_info: a truthy name sets the column and the mlflow.runName tag.
        if not name:
            return
        self.run_patch(run_id).name = name
        self.current.run_tags[(run_id, c.RUN_NAME_TAG)] = name

    def run_lifecycle(self, run_id: str, stage: str, deleted_time: int | None) -> None:
        target = self.run_patch(run_id)
        target.lifecycle_stage = stage
        if isinstance(target, RunPatch):
            target.set_deleted_time = True
        target.deleted_time = deleted_time

    # -- events ---------------------------------------------------------------------------------

    def add(self, event: Event) -> None:
        seg = self.current
        if isinstance(event, rg.REGISTRY_EVENT_TYPES):
            seg.registry.extend(registry_statements(event))
            return
        match event:
            case me.MetricsLogged(run_id=run_id, series=series):
                for s in series:
                    if not s.values:
                        continue
                    cols = self.series.get((run_id, s.key))
                    if cols is None:
                        cols = self.series[(run_id, s.key)] = ([], [], [])
                    cols[0].append(s.steps)
                    cols[1].append(s.timestamps)
                    cols[2].append(s.values)
            case ru.RunCreated():
                tags = dict(event.tags)
                # MLflow's create_run: the name comes from run_name or the mlflow.runName
                # tag, and the tag is added when only run_name was given.
                name = event.run_name or tags.get(c.RUN_NAME_TAG, "")
                if name and c.RUN_NAME_TAG not in tags:
                    tags[c.RUN_NAME_TAG] = name
                seg.run_patches.pop(event.run_id, None)
                seg.runs[event.run_id] = RunRow(
                    run_id=event.run_id,
                    experiment_id=int(event.experiment_id),
                    name=name,
                    user_id=event.user_id,
                    status=event.status,
                    start_time=event.start_time,
                    end_time=None,
                    lifecycle_stage=ACTIVE,
                    artifact_uri=event.artifact_uri,
                )
                for key, value in tags.items():
                    seg.run_tags[(event.run_id, key)] = value
            case ru.RunUpdated():
                if event.status is not None:
                    self.run_patch(event.run_id).status = event.status
                if event.end_time is not None:
                    self.run_patch(event.run_id).end_time = event.end_time
                if event.run_name is not None:
                    self.rename_run(event.run_id, event.run_name)
            case ru.RunDeleted():
                self.run_lifecycle(event.run_id, DELETED, event.time)
            case ru.RunRestored():
                self.run_lifecycle(event.run_id, ACTIVE, None)
            case ru.RunTagsSet():
                for key, value in event.tags:
                    if key == c.RUN_NAME_TAG:
                        # MLflow's set_tag routes this tag through update_run_info.
                        self.rename_run(event.run_id, value)
                    else:
                        seg.run_tags[(event.run_id, key)] = value
            case ru.RunTagDeleted():
                seg.run_tags[(event.run_id, event.key)] = None
            case ru.ParamsLogged():
                for key, value in event.params:
                    # A param keeps its first value (ingest refuses a different one).
                    seg.params.setdefault((event.run_id, key), value)
            case ex.ExperimentCreated():
                experiment_id = int(event.experiment_id)
                seg.experiment_patches.pop(experiment_id, None)
                seg.experiments[experiment_id] = ExperimentRow(
                    experiment_id=experiment_id,
                    name=event.name,
                    artifact_location=event.artifact_location,
                    lifecycle_stage=ACTIVE,
                    creation_time=event.creation_time,
                    last_update_time=event.creation_time,
                )
                for key, value in event.tags:
                    seg.experiment_tags[(experiment_id, key)] = value
            case ex.ExperimentRenamed():
                target = self.experiment_patch(int(event.experiment_id))
                target.name = event.name
                target.last_update_time = event.time
            case ex.ExperimentDeleted():
                self.experiment_lifecycle(int(event.experiment_id), DELETED, event.time)
            case ex.ExperimentRestored():
                self.experiment_lifecycle(int(event.experiment_id), ACTIVE, event.time)
            case ex.ExperimentTagSet():
                seg.experiment_tags[(int(event.experiment_id), event.key)] = event.value
            case ex.ExperimentTagDeleted():
                seg.experiment_tags[(int(event.experiment_id), event.key)] = None
            case _ if models_plan.is_planned(event):
                # is_planned checked the type; mypy cannot narrow a union through it.
                models_plan.add(seg.models, cast(models_plan.PlannedEvent, event))
            case _:
                raise TypeError(f"no projection for event type {type(event).__name__}")

    def finish(self, entries: int) -> WritePlan:
        self.close_segment(None)
        keys = tuple(self.series)
        offsets = [0]
        for cols in self.series.values():
            offsets.append(offsets[-1] + sum(len(part) for part in cols[2]) // 8)
        metrics = MetricAppends(
            series=keys,
            offsets=tuple(offsets),
            steps=b"".join(part for cols in self.series.values() for part in cols[0]),
            timestamps=b"".join(part for cols in self.series.values() for part in cols[1]),
            values=b"".join(part for cols in self.series.values() for part in cols[2]),
        )
        return WritePlan(tuple(self.segments), metrics, entries)


def plan(entries: Iterable[Entry]) -> WritePlan:
    """Fold the events of ``entries`` (in stream order) into the rows to write."""
    planner = _Planner()
    count = 0
    for entry in entries:
        count += 1
        for event in entry.events:
            planner.add(event)
    return planner.finish(count)


def plan_events(events: Sequence[Event]) -> WritePlan:
    """``plan`` of one entry holding ``events``; for tests and tools."""
    return plan([Entry(0, tuple(events))])
