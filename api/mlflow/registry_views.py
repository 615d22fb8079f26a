"""Registered models and model versions as MLflow's JSON: pure functions of rows.

Shapes are those of ``message_to_json(entity.to_proto())`` in MLflow's server: times as JSON
numbers, versions as strings, a version's ``description`` and ``run_link`` always present,
a model's empty description and empty repeated fields left out. A version's ``model_id`` is
not shown, as MLflow's SQL store does not return it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runstream.api.views import JsonDict

Row = Mapping[str, Any]


def _pairs(pairs: Sequence[Sequence[Any]]) -> list[JsonDict]:
    return [{"key": key, "value": value} for key, value in pairs]


def model_version_to_json(row: Row, *, aliases: bool = True) -> JsonDict:
    """``aliases=False`` for a model's ``latest_versions``, which MLflow shows without them."""
    out: JsonDict = {
        "name": row["name"],
        "version": str(row["version"]),
        "creation_timestamp": row["creation_time"],
        "last_updated_timestamp": row["last_updated_time"],
    }
    if row["user_id"] is not None:
        out["user_id"] = row["user_id"]
    out["current_stage"] = row["current_stage"]
    if row["description"] is not None:
        out["description"] = row["description"]
    out["source"] = row["source"]
    if row["run_id"] is not None:
        out["run_id"] = row["run_id"]
    out["status"] = row["status"]
    if row["status_message"] is not None:
        out["status_message"] = row["status_message"]
    if row["tags"]:
        out["tags"] = _pairs(row["tags"])
    if row["run_link"] is not None:
        out["run_link"] = row["run_link"]
    if aliases and row["aliases"]:
        out["aliases"] = list(row["aliases"])
    return out


def registered_model_to_json(row: Row, latest: Sequence[Row]) -> JsonDict:
    out: JsonDict = {
        "name": row["name"],
        "creation_timestamp": row["creation_time"],
        "last_updated_timestamp": row["last_updated_time"],
    }
    if row["description"]:
        out["description"] = row["description"]
    if latest:
        out["latest_versions"] = [model_version_to_json(v, aliases=False) for v in latest]
    if row["tags"]:
        out["tags"] = _pairs(row["tags"])
    if row["aliases"]:
        out["aliases"] = [
            {"alias": alias, "version": str(version)} for alias, version in row["aliases"]
        ]
    return out
