"""MLflow's logged-model, log-inputs, log-outputs and log-model messages as typed values. Pure.

Each ``parse_*`` checks one message as MLflow's handler schema does (``_assert_required``,
``_assert_string``, ``_assert_array``, ...) and raises ``InvalidParameterValue`` with its
message; event-level limits are checked again by ingest.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runstream.api.mlflow import logged_model_search as lms
from runstream.api.mlflow.logged_model_views import STATUS_FROM_PROTO
from runstream.api.mlflow.messages import (
    API_DOCS_HINT,
    Fields,
    Metric,
    Pairs,
    message_list,
    optional_int,
    optional_string,
    required_string,
    string_list,
    type_error,
)
from runstream.api.mlflow.pagination import check_page_size
from runstream.schemas import constants as c
from runstream.schemas import models as mo
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import missing_value, parse_experiment_id

LOG_MODEL_FIELDS = ("run_id", "utc_time_created", "artifact_path", "model_uuid")
"""The keys of a model's dict that MLflow keeps in ``mlflow.log-model.history``."""


def _pairs(fields: Fields, name: str) -> Pairs:
    out = []
    for item in message_list(fields, name):
        key, value = item.get("key"), item.get("value", "")
        if not isinstance(key, str):
            raise type_error(f"{name}.key", key)
        if not isinstance(value, str):
            raise type_error(f"{name}.value", value)
        out.append((key, value))
    return tuple(out)


def _string(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise type_error(name, value)
    return value


# -- logged models -------------------------------------------------------------------------------


def parse_tags(fields: Fields) -> Pairs:
    """SetLoggedModelTags' ``tags``: later pairs win, as MLflow's upsert."""
    return _pairs(fields, "tags")


def parse_params(fields: Fields) -> Pairs:
    return _pairs(fields, "params")


@dataclass(frozen=True, slots=True)
class CreateLoggedModel:
    experiment_id: str
    name: str | None
    model_type: str
    source_run_id: str
    params: Pairs
    tags: Pairs


def parse_create_logged_model(fields: Fields) -> CreateLoggedModel:
    experiment_id = required_string(fields, "experiment_id")
    return CreateLoggedModel(
        experiment_id=experiment_id,
        name=optional_string(fields, "name") or None,
        model_type=optional_string(fields, "model_type") or "",
        source_run_id=optional_string(fields, "source_run_id") or "",
        params=_pairs(fields, "params"),
        tags=_pairs(fields, "tags"),
    )


def parse_status(fields: Fields) -> str:
    """FinalizeLoggedModel's ``status``: the enum's name or number (required)."""
    value = fields.get("status")
    if value is None or value == "":
        raise InvalidParameterValue(missing_value("status") + API_DOCS_HINT)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    status: str | None = STATUS_FROM_PROTO.get(value) if isinstance(value, str | int) else None
    if status is None:
        raise InvalidParameterValue(f"Unknown model status: {value}")
    return status


def parse_search_logged_models(fields: Fields) -> lms.SearchRequest:
    experiment_ids = string_list(fields, "experiment_ids")
    if not experiment_ids:
        raise InvalidParameterValue(missing_value("experiment_ids") + API_DOCS_HINT)
    for experiment_id in experiment_ids:
        parse_experiment_id(experiment_id)
    filter_string = optional_string(fields, "filter") or None
    datasets = []
    for d in message_list(fields, "datasets"):
        name = _string(d, "dataset_name")
        if not name:
            raise InvalidParameterValue(
                "`dataset_name` in the `datasets` clause must be specified."
            )
        datasets.append(lms.DatasetFilter(name, _string(d, "dataset_digest") or None))
    max_results = check_page_size(
        optional_int(fields, "max_results") or c.LOGGED_MODEL_SEARCH_MAX_RESULTS_DEFAULT
    )
    order_by = []
    for o in message_list(fields, "order_by"):
        field_name = _string(o, "field_name")
        if not field_name:
            raise InvalidParameterValue(missing_value("order_by.field_name") + API_DOCS_HINT)
        ascending = o.get("ascending", True)
        if not isinstance(ascending, bool):
            raise type_error("order_by.ascending", ascending)
        order_by.append(
            lms.OrderBy(
                field_name,
                ascending,
                _string(o, "dataset_name") or None,
                _string(o, "dataset_digest") or None,
            )
        )
    return lms.SearchRequest(
        experiment_ids=tuple(experiment_ids),
        filter_string=filter_string,
        datasets=tuple(datasets),
        max_results=max_results,
        order_by=tuple(order_by),
        page_token=optional_string(fields, "page_token") or None,
        comparisons=tuple(lms.parse_filter(filter_string)),
    )


# -- run inputs and outputs ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatasetInput:
    name: str
    digest: str
    source_type: str
    source: str
    schema: str
    profile: str
    tags: Pairs


@dataclass(frozen=True, slots=True)
class LogInputs:
    run_id: str
    datasets: tuple[DatasetInput, ...]
    model_ids: tuple[str, ...]


def parse_log_inputs(fields: Fields) -> LogInputs:
    run_id = required_string(fields, "run_id")
    raw = message_list(fields, "datasets")
    models = message_list(fields, "models")
    if len(raw) > c.MAX_DATASETS_PER_REQUEST or len(models) > c.MAX_MODELS_PER_REQUEST:
        raise InvalidParameterValue(
            f"A request can log at most {c.MAX_DATASETS_PER_REQUEST} datasets and "
            f"{c.MAX_MODELS_PER_REQUEST} models. Please split them across several requests."
        )
    datasets = []
    seen: set[tuple[str, str]] = set()
    for item in raw:
        dataset = item.get("dataset")
        if not isinstance(dataset, dict):
            raise InvalidParameterValue("Dataset input must have a dataset associated with it.")
        parsed = DatasetInput(
            name=_string(dataset, "name"),
            digest=_string(dataset, "digest"),
            source_type=_string(dataset, "source_type"),
            source=_string(dataset, "source"),
            schema=_string(dataset, "schema"),
            profile=_string(dataset, "profile"),
            tags=_pairs(item, "tags"),
        )
        # MLflow keeps the first of a request's inputs with the same name and digest.
        if (parsed.name, parsed.digest) not in seen:
            seen.add((parsed.name, parsed.digest))
            datasets.append(parsed)
    model_ids = tuple(_string(m, "model_id") for m in models)
    return LogInputs(run_id, tuple(datasets), model_ids)


@dataclass(frozen=True, slots=True)
class LogOutputs:
    run_id: str
    models: tuple[tuple[str, int], ...]


def parse_log_outputs(fields: Fields) -> LogOutputs:
    run_id = required_string(fields, "run_id")
    if fields.get("models") is None:
        raise InvalidParameterValue(missing_value("models") + API_DOCS_HINT)
    raw = message_list(fields, "models")
    if len(raw) > c.MAX_MODELS_PER_REQUEST:
        raise InvalidParameterValue(
            f"A request can log at most {c.MAX_MODELS_PER_REQUEST} models. Please split them "
            "across several requests."
        )
    models = []
    for m in raw:
        model_id = _string(m, "model_id")
        step = optional_int(m, "step") or 0
        models.append((model_id, step))
    return LogOutputs(run_id, tuple(models))


@dataclass(frozen=True, slots=True)
class LogModel:
    run_id: str
    model: dict[str, Any]
    """The model's entry of ``mlflow.log-model.history`` (``Model.get_tags_dict``)."""


def parse_log_model(fields: Fields) -> LogModel:
    run_id = required_string(fields, "run_id")
    model_json = required_string(fields, "model_json")
    try:
        model = json.loads(model_json)
    except ValueError:
        model = None
    if not isinstance(model, dict):
        raise InvalidParameterValue(
            f"Malformed model info. \n {model_json} \n is not a valid JSON."
        )
    missing = {"artifact_path", "flavors", "utc_time_created", "run_id"} - set(model)
    if missing:
        raise InvalidParameterValue(f"Model json is missing mandatory fields: {missing}")
    return LogModel(run_id, history_entry(model))


def history_entry(model: Mapping[str, Any]) -> dict[str, Any]:
    """What MLflow's ``Model.get_tags_dict`` keeps: ids, time, path, flavors minus config."""
    entry = {key: model[key] for key in LOG_MODEL_FIELDS if key in model}
    if entry.get("model_uuid") is None:
        entry["model_uuid"] = uuid.uuid4().hex  # Model.from_dict makes one when absent
    flavors = model.get("flavors") or {}
    entry["flavors"] = {
        name: (
            {k: v for k, v in config.items() if k != "config"}
            if isinstance(config, dict)
            else config
        )
        for name, config in (flavors.items() if isinstance(flavors, dict) else ())
    }
    return entry


# -- metrics logged against a model --------------------------------------------------------------


def model_metric_events(
    run_id: str, raw_metrics: Any, metrics: Sequence[Metric]
) -> list[mo.LoggedModelMetricLogged]:
    """The model points of a log-metric/log-batch request: its metrics that name a
    ``model_id`` (MLflow's ``_log_model_metrics``); ``metrics`` are the request's metrics as
    ``mlflow_requests`` checked them, in the order of ``raw_metrics``."""
    if not isinstance(raw_metrics, list):
        return []
    events = []
    for raw, metric in zip(raw_metrics, metrics, strict=False):
        model_id = raw.get("model_id") if isinstance(raw, dict) else None
        if not model_id or not isinstance(model_id, str):
            continue
        events.append(
            mo.LoggedModelMetricLogged(
                run_id=run_id,
                model_id=model_id,
                key=metric.key,
                value=metric.value,
                timestamp=metric.timestamp,
                step=metric.step,
                dataset_name=_string(raw, "dataset_name"),
                dataset_digest=_string(raw, "dataset_digest"),
            )
        )
    return events
