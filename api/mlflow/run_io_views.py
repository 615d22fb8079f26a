"""A run's ``inputs`` and ``outputs`` as MLflow's JSON (``RunInputs``, ``RunOutputs``): pure.

Apart from ``logged_model_views`` so that ``views.run_row_to_json`` can use it without an
import cycle. Empty repeated fields are left out, so a run without any is ``{}`` and ``{}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

JsonDict = dict[str, Any]


def key_values_to_json(pairs: Iterable[Sequence[Any]]) -> list[JsonDict]:
    return [{"key": key, "value": value} for key, value in pairs]


def dataset_input_to_json(item: Sequence[Any]) -> JsonDict:
    """MLflow ``DatasetInput``: (name, digest, source_type, source, schema, profile, tags)."""
    name, digest, source_type, source, schema, profile, tags = item
    dataset: JsonDict = {
        "name": name,
        "digest": digest,
        "source_type": source_type,
        "source": source,
    }
    if schema is not None:
        dataset["schema"] = schema
    if profile is not None:
        dataset["profile"] = profile
    out: JsonDict = {}
    tag_list = key_values_to_json(tags)
    if tag_list:
        out["tags"] = tag_list
    out["dataset"] = dataset
    return out


def run_inputs_to_json(
    dataset_inputs: Iterable[Sequence[Any]], model_inputs: Iterable[str]
) -> JsonDict:
    """MLflow ``RunInputs``: ``{}`` for a run without any, as MLflow's server sends."""
    out: JsonDict = {}
    datasets = [dataset_input_to_json(d) for d in dataset_inputs]
    if datasets:
        out["dataset_inputs"] = datasets
    models = [{"model_id": model_id} for model_id in model_inputs]
    if models:
        out["model_inputs"] = models
    return out


def run_outputs_to_json(model_outputs: Iterable[Sequence[Any]]) -> JsonDict:
    """MLflow ``RunOutputs``: (model_id, step) per output."""
    outputs = [{"model_id": model_id, "step": step} for model_id, step in model_outputs]
    return {"model_outputs": outputs} if outputs else {}


def run_io_to_json(row: Mapping[str, Any]) -> tuple[JsonDict, JsonDict]:
    """``inputs`` and ``outputs`` of a run row that carries ``dataset_inputs``,
    ``model_inputs`` and ``model_outputs`` (``logged_model_queries.RUN_IO_COLUMNS``)."""
    return (
        run_inputs_to_json(row.get("dataset_inputs") or (), row.get("model_inputs") or ()),
        run_outputs_to_json(row.get("model_outputs") or ()),
    )
