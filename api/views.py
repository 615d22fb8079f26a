"""Rows of the read tables as MLflow's JSON, shared by the native and the MLflow routes.

The shapes are those MLflow's server writes with ``message_to_json(entity.to_proto())``:
- int64 fields (times, steps) are JSON numbers, ids of experiments are strings;
- proto2 fields that MLflow leaves unset are left out (an experiment's zero creation time,
  a run's missing end time or empty artifact URI, empty repeated fields);
- a metric value that JSON cannot carry is the string protobuf's JSON mapping uses:
  ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (MLflow's client parses those back to floats);
  -0.0 stays -0.0.
Pure functions of plain values; the rows come from ``runstream.api.queries``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runstream.api.mlflow.run_io_views import run_io_to_json

JsonDict = dict[str, Any]

LIFECYCLE_STAGES_OF_VIEW: Mapping[str, tuple[str, ...]] = {
    "ACTIVE_ONLY": ("active",),
    "DELETED_ONLY": ("deleted",),
    "ALL": ("active", "deleted"),
}
"""MLflow's ``ViewType`` names and the lifecycle stages each one shows."""
VIEW_TYPES: Mapping[str, int] = {"ACTIVE_ONLY": 1, "DELETED_ONLY": 2, "ALL": 3}
"""MLflow's ``ViewType`` names and their enum numbers."""


def json_float(value: float) -> float | str:
    """A double as protobuf's JSON mapping writes it (and so MLflow's server)."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def key_values_to_json(pairs: Iterable[Sequence[Any]]) -> list[JsonDict]:
    return [{"key": key, "value": value} for key, value in pairs]


def experiment_to_json(row: Mapping[str, Any], tags: Iterable[Sequence[Any]]) -> JsonDict:
    """MLflow ``Experiment``; ``row`` has the columns of the ``experiments`` table."""
    out: JsonDict = {
        "experiment_id": str(row["experiment_id"]),
        "name": row["name"],
        "artifact_location": row["artifact_location"],
        "lifecycle_stage": row["lifecycle_stage"],
    }
    # Experiment.to_proto sets the times only when truthy.
    if row["last_update_time"]:
        out["last_update_time"] = row["last_update_time"]
    if row["creation_time"]:
        out["creation_time"] = row["creation_time"]
    tag_list = key_values_to_json(tags)
    if tag_list:
        out["tags"] = tag_list
    return out


def metric_to_json(key: str, value: float, timestamp: int, step: int) -> JsonDict:
    return {"key": key, "value": json_float(value), "timestamp": timestamp, "step": step}


def run_info_to_json(row: Mapping[str, Any]) -> JsonDict:
    """MLflow ``RunInfo``; ``row`` has the columns of the ``runs`` table."""
    out: JsonDict = {
        "run_uuid": row["run_id"],
        "experiment_id": str(row["experiment_id"]),
        "run_name": row["name"],
        "user_id": row["user_id"],
        "status": row["status"],
    }
    if row["start_time"] is not None:
        out["start_time"] = row["start_time"]
    # RunInfo.to_proto: an end time of 0 and an empty artifact URI mean "unset".
    if row["end_time"]:
        out["end_time"] = row["end_time"]
    if row["artifact_uri"]:
        out["artifact_uri"] = row["artifact_uri"]
    out["lifecycle_stage"] = row["lifecycle_stage"]
    out["run_id"] = row["run_id"]
    return out


def run_to_json(
    row: Mapping[str, Any],
    params: Iterable[Sequence[Any]],
    tags: Iterable[Sequence[Any]],
    metrics: Iterable[Sequence[Any]],
) -> JsonDict:
    """MLflow ``Run``: ``metrics`` are (key, value, timestamp, step) latest values.

    ``inputs`` and ``outputs`` are empty objects, as MLflow's SQL-backed server sends for a run
    without datasets or logged models.
    """
    data: JsonDict = {}
    metric_list = [metric_to_json(k, v, ts, st) for k, v, ts, st in metrics]
    if metric_list:
        data["metrics"] = metric_list
    param_list = key_values_to_json(params)
    if param_list:
        data["params"] = param_list
    tag_list = key_values_to_json(tags)
    if tag_list:
        data["tags"] = tag_list
    return {"info": run_info_to_json(row), "data": data, "inputs": {}, "outputs": {}}


def experiment_row_to_json(row: Mapping[str, Any]) -> JsonDict:
    """An experiment row from ``queries`` (which carries its ``tags``)."""
    return experiment_to_json(row, row["tags"])


def run_row_to_json(row: Mapping[str, Any]) -> JsonDict:
    """A run row from ``queries`` (which carries ``params``, ``tags`` and ``metrics``)."""
    out = run_to_json(row, row["params"], row["tags"], row["metrics"])
    out["inputs"], out["outputs"] = run_io_to_json(row)  # datasets and logged models
    return out
