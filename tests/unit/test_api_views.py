"""Views against MLflow's own serialisation: ``message_to_json(entity.to_proto())``."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from mlflow.entities import (
    Experiment,
    ExperimentTag,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunTag,
)
from mlflow.entities.run_outputs import RunOutputs
from mlflow.utils.proto_json_utils import message_to_json

from runstream.api import views

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def mlflow_json(entity: Any) -> Any:
    return json.loads(message_to_json(entity.to_proto()))


def experiment_row(**changes: Any) -> dict[str, Any]:
    row = {
        "experiment_id": 7,
        "name": "exp/with spaces",
        "artifact_location": "s3://bucket/7",
        "lifecycle_stage": "active",
        "creation_time": 1_700_000_000_000,
        "last_update_time": 1_700_000_000_500,
    }
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("changes", "tags"),
    [
        ({}, [("a", "1"), ("b", "")]),
        ({"creation_time": 0, "last_update_time": 0, "lifecycle_stage": "deleted"}, []),
        ({"experiment_id": 0, "name": "Default"}, [("mlflow.note.content", "x" * 100)]),
    ],
)
def test_experiment_matches_mlflow(changes: dict[str, Any], tags: list[tuple[str, str]]) -> None:
    row = experiment_row(**changes)
    expected = mlflow_json(
        Experiment(
            str(row["experiment_id"]),
            row["name"],
            row["artifact_location"],
            row["lifecycle_stage"],
            tags=[ExperimentTag(k, v) for k, v in tags],
            creation_time=row["creation_time"],
            last_update_time=row["last_update_time"],
        )
    )
    # runstream has no workspaces; MLflow 3 adds its default one, which clients ignore.
    expected.pop("workspace", None)
    assert views.experiment_to_json(row, tags) == expected


def run_row(**changes: Any) -> dict[str, Any]:
    row = {
        "run_id": "0123456789abcdef0123456789abcdef",
        "experiment_id": 3,
        "name": "bright-owl-42",
        "user_id": "alice",
        "status": "FINISHED",
        "start_time": 1_700_000_000_000,
        "end_time": 1_700_000_100_000,
        "lifecycle_stage": "active",
        "artifact_uri": "s3://bucket/3/0123/artifacts",
    }
    row.update(changes)
    return row


def mlflow_run(
    row: dict[str, Any],
    params: list[tuple[str, str]],
    tags: list[tuple[str, str]],
    metrics: list[tuple[str, float, int, int]],
) -> Any:
    info = RunInfo(
        run_id=row["run_id"],
        experiment_id=str(row["experiment_id"]),
        user_id=row["user_id"],
        status=row["status"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        lifecycle_stage=row["lifecycle_stage"],
        artifact_uri=row["artifact_uri"],
        run_name=row["name"],
    )
    data = RunData(
        metrics=[Metric(k, v, ts, st) for k, v, ts, st in metrics],
        params=[Param(k, v) for k, v in params],
        tags=[RunTag(k, v) for k, v in tags],
    )
    # What MLflow's SQL store hands its server for a run without datasets or models.
    return mlflow_json(Run(info, data, RunInputs([], []), RunOutputs([])))


METRICS = [
    ("acc", 0.5, 1_700_000_000_001, 3),
    ("loss/nan", math.nan, 0, INT64_MAX),
    ("neg_inf", -math.inf, INT64_MAX, INT64_MIN),
    ("pos_inf", math.inf, INT64_MIN, 0),
    ("zero", -0.0, 5, -1),
    ("tiny", 5e-324, 1, 1),
]


@pytest.mark.parametrize(
    ("changes", "params", "tags", "metrics"),
    [
        ({}, [("lr", "0.1"), ("opt", "")], [("mlflow.runName", "bright-owl-42")], METRICS),
        ({"end_time": None, "artifact_uri": "", "status": "RUNNING"}, [], [], []),
        ({"end_time": 0, "name": "", "lifecycle_stage": "deleted"}, [("p", "v")], [], []),
    ],
)
def test_run_matches_mlflow(
    changes: dict[str, Any],
    params: list[tuple[str, str]],
    tags: list[tuple[str, str]],
    metrics: list[tuple[str, float, int, int]],
) -> None:
    row = run_row(**changes)
    ours = json.loads(json.dumps(views.run_to_json(row, params, tags, metrics)))
    assert ours == mlflow_run(row, params, tags, metrics)


def test_negative_zero_keeps_its_sign() -> None:
    value = views.metric_to_json("z", -0.0, 0, 0)["value"]
    assert isinstance(value, float)
    assert math.copysign(1.0, value) == -1.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"), (1.25, 1.25)],
)
def test_json_float(value: float, expected: float | str) -> None:
    assert views.json_float(value) == expected


def test_row_helpers_read_the_aggregated_columns() -> None:
    exp = experiment_row(tags=[("k", "v")])
    assert views.experiment_row_to_json(exp)["tags"] == [{"key": "k", "value": "v"}]
    run = run_row(params=[("p", "1")], tags=[], metrics=[("m", 1.0, 2, 3)])
    data = views.run_row_to_json(run)["data"]
    assert data == {
        "params": [{"key": "p", "value": "1"}],
        "metrics": [{"key": "m", "value": 1.0, "timestamp": 2, "step": 3}],
    }
