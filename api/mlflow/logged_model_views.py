"""Logged models as MLflow's JSON (``LoggedModel``): pure functions of rows.

Shapes are those of ``message_to_json(entity.to_proto())`` in MLflow's server: int64 fields
as JSON numbers, unset proto2 fields and empty repeated fields left out, enums by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runstream.api.views import JsonDict, json_float, key_values_to_json

STATUS_TO_PROTO = {
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}
"""Our status names and MLflow's ``LoggedModelStatus`` proto enum names."""
STATUS_FROM_PROTO: dict[str | int, str] = {
    **{proto: ours for ours, proto in STATUS_TO_PROTO.items()},
    1: "PENDING",
    2: "READY",
    3: "FAILED",
}
"""What a client may send as a status: the enum's name or its number."""


def model_metric_to_json(metric: Sequence[Any], model_id: str) -> JsonDict:
    """MLflow ``Metric`` of a model: (key, value, timestamp, step, run_id, dataset_name,
    dataset_digest)."""
    key, value, timestamp, step, run_id, dataset_name, dataset_digest = metric
    out: JsonDict = {"key": key, "value": json_float(value), "timestamp": timestamp, "step": step}
    if dataset_name is not None:
        out["dataset_name"] = dataset_name
    if dataset_digest is not None:
        out["dataset_digest"] = dataset_digest
    out["model_id"] = model_id
    out["run_id"] = run_id
    return out


def logged_model_to_json(row: Mapping[str, Any]) -> JsonDict:
    """MLflow ``LoggedModel``; ``row`` has the columns of ``logged_models`` plus ``tags``,
    ``params`` [(key, value)] and ``metrics`` (see ``model_metric_to_json``)."""
    info: JsonDict = {
        "model_id": row["model_id"],
        "experiment_id": str(row["experiment_id"]),
        "name": row["name"],
        "creation_timestamp_ms": row["creation_timestamp_ms"],
        "last_updated_timestamp_ms": row["last_updated_timestamp_ms"],
        "artifact_uri": row["artifact_location"],
        "status": STATUS_TO_PROTO.get(row["status"], "LOGGED_MODEL_STATUS_UNSPECIFIED"),
    }
    if row["model_type"] is not None:
        info["model_type"] = row["model_type"]
    if row["source_run_id"] is not None:
        info["source_run_id"] = row["source_run_id"]
    if row["status_message"] is not None:
        info["status_message"] = row["status_message"]
    tags = key_values_to_json(row["tags"])
    if tags:
        info["tags"] = tags
    data: JsonDict = {}
    params = key_values_to_json(row["params"])
    if params:
        data["params"] = params
    metrics = [model_metric_to_json(m, row["model_id"]) for m in row["metrics"]]
    if metrics:
        data["metrics"] = metrics
    return {"info": info, "data": data}
