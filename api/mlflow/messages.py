"""MLflow's tracking request messages as typed values: pure parsing and validation.

A request's fields come from the JSON body, or for a GET with a query string from the query
(repeated keys make a list, as MLflow's server reads them). Each ``parse_*`` function checks
one message the way MLflow's server does, first its handler schema (``_assert_required``,
``_assert_string``, ``_assert_intlike``, ... with the hint MLflow appends) and then its
store's rules (``_validate_metric``, ``_validate_param``, ``_validate_tag``, the log-batch
limits), and raises ``InvalidParameterValue`` with MLflow's message. No I/O here.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

from runstream.api.mlflow import pagination
from runstream.api.views import VIEW_TYPES
from runstream.schemas import constants as c
from runstream.schemas.errors import InvalidParameterValue, MalformedRequest
from runstream.schemas.validation import (
    INT64_MAX,
    INT64_MIN,
    check_key_name,
    exceeds_maximum_length,
    invalid_value,
    missing_value,
    parse_experiment_id,
    validate_batch_limit,
    validate_experiment_name,
    validate_run_id,
)

Fields = Mapping[str, Any]
Pairs = tuple[tuple[str, str], ...]

API_DOCS_HINT = " See the API docs for more information about request parameters."
"""What MLflow's handler schema appends to a refusal."""

RUN_STATUSES = {"RUNNING": 1, "SCHEDULED": 2, "FINISHED": 3, "FAILED": 4, "KILLED": 5}

_MISSING_KEY_NAME = "A key name must be provided."
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# -- where the fields come from -------------------------------------------------------------------


def fields_from_query(query: MultiMapping[str], repeated: Collection[str] = ()) -> dict[str, Any]:
    """Query-string fields: ``repeated`` ones as lists (``getlist``), others the first value."""
    out: dict[str, Any] = {}
    for name in query:
        if name in out:
            continue
        out[name] = query.getall(name) if name in repeated else query.getone(name)
    return out


def fields_from_body(body: Any) -> dict[str, Any]:
    """A JSON body; old clients double-encode it as a JSON string, which MLflow accepts."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise MalformedRequest(f"Request body is not valid JSON: {exc}") from exc
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise MalformedRequest("Request body must be a JSON object")
    return body


# -- the handler schema's assertions --------------------------------------------------------------


def _schema_error(message: str) -> InvalidParameterValue:
    return InvalidParameterValue(message + API_DOCS_HINT)


def type_error(name: str, value: Any) -> InvalidParameterValue:
    """What MLflow says when a field's JSON type does not fit its proto type."""
    return _schema_error(
        invalid_value(name, value, f" Hint: Value was of type '{type(value).__name__}'.")
    )


def _absent(value: Any) -> bool:
    return value is None or value == ""


def required_string(fields: Fields, name: str, alias: str | None = None) -> str:
    value = fields.get(name)
    if value is None and alias is not None:
        value = fields.get(alias)
    if _absent(value):
        raise _schema_error(missing_value(name))
    if not isinstance(value, str):
        raise type_error(name, value)
    return value


def optional_string(fields: Fields, name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise type_error(name, value)
    return value


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        # orjson reads an integer past int64 as a float: -2**63 - 1 arrives as -2.0**63.
        # A float at or past 2**63 in magnitude is refused, not clamped into range.
        return int(value) if -(2.0**63) < value < 2.0**63 else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def optional_int(fields: Fields, name: str) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    number = _as_int(value)
    if number is None:
        raise type_error(name, value)
    return number


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[value]
        try:
            return float(value)
        except ValueError:
            return None
    return None


def string_list(fields: Fields, name: str) -> list[str]:
    value = fields.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise type_error(name, value)
    return value


def message_list(fields: Fields, name: str) -> list[Mapping[str, Any]]:
    value = fields.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise type_error(name, value)
    return value


def enum_value(fields: Fields, name: str, names: Mapping[str, int]) -> str | None:
    """An enum field by name or number, as protobuf's JSON parser takes it."""
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value in names:
        return value
    number = _as_int(value)
    for known, known_number in names.items():
        if number == known_number:
            return known
    raise _schema_error(invalid_value(name, value, f" expected one of {sorted(names)}."))


def require_present(fields: Mapping[str, Any], name: str, path: str) -> None:
    if _absent(fields.get(name)):
        raise _schema_error(missing_value(path))


# -- the store's rules ----------------------------------------------------------------------------


def path_in(path: str, name: str) -> str:
    """MLflow's ``append_to_json_path``."""
    if not path:
        return name
    return f"{path}{name}" if name.startswith("[") else f"{path}.{name}"


def check_length(entity: str, limit: int, value: str) -> None:
    if len(value) > limit:
        raise InvalidParameterValue(exceeds_maximum_length(entity, limit))


def truncated(value: str, limit: int) -> str:
    """MLflow truncates long param and tag values (``MLFLOW_TRUNCATE_LONG_VALUES``, on)."""
    return value if len(value) <= limit else value[:limit]


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int


_INT64 = range(INT64_MIN, INT64_MAX + 1)
_INT64_START = INT64_MIN
_INT64_END = INT64_MAX + 1


@functools.lru_cache(maxsize=65_536)
def _is_valid_metric_name(key: str) -> bool:
    try:
        check_key_name(key, "name")
        check_length("Metric name", c.MAX_ENTITY_KEY_LENGTH, key)
    except InvalidParameterValue:
        return False
    return True


def check_metric(key: Any, value: Any, timestamp: Any, step: Any, path: str = "") -> Metric:
    """MLflow's ``_validate_metric``; ``value`` may be a JSON number or NaN/Infinity."""
    # What MLflow's client sends (a float, int64 stamp and step, a key seen before) is
    # accepted by exact type checks; anything else takes the full path below, which words
    # every refusal as MLflow does. log-batch carries 1,000 of these per request.
    if (
        type(value) is float
        and type(timestamp) is int
        and (step is None or type(step) is int)
        and type(key) is str
        and 0 <= timestamp < 2**63
        and (step is None or step in _INT64)
        and _is_valid_metric_name(key)
    ):
        return Metric(key, value, timestamp, 0 if step is None else step)
    name_path = path_in(path, "name")
    if key is None:
        raise InvalidParameterValue(
            invalid_value(name_path, key, f"Metric name cannot be None. {_MISSING_KEY_NAME}")
        )
    if not isinstance(key, str):
        raise InvalidParameterValue(invalid_value(name_path, key, "must be a string"))
    check_key_name(key, name_path)
    if value is None:
        raise InvalidParameterValue(missing_value(path_in(path, "value")))
    number = _as_float(value)
    if number is None:
        raise InvalidParameterValue(
            invalid_value(
                path_in(path, "value"),
                value,
                f"(timestamp={timestamp}). "
                "Please specify value as a valid double (64-bit floating point)",
            )
        )
    stamp = _as_int(timestamp)
    if stamp is None or stamp < 0 or stamp not in _INT64:
        raise InvalidParameterValue(
            invalid_value(
                path_in(path, "timestamp"),
                timestamp,
                f"metric '{key}' (value={number}). "
                "Timestamp must be a nonnegative long (64-bit integer) ",
            )
        )
    step_number = 0 if step is None else _as_int(step)
    if step_number is None or step_number not in _INT64:
        raise InvalidParameterValue(
            invalid_value(
                path_in(path, "step"),
                step,
                f"metric '{key}' (value={number}). Step must be a valid long (64-bit integer).",
            )
        )
    check_length("Metric name", c.MAX_ENTITY_KEY_LENGTH, key)
    return Metric(key, number, stamp, step_number)


def check_param(key: Any, value: Any, path: str = "") -> tuple[str, str]:
    """MLflow's ``_validate_param``: the value is truncated to 6000 characters."""
    key_path = path_in(path, "key")
    if key is None:
        raise InvalidParameterValue(invalid_value(key_path, "", _MISSING_KEY_NAME))
    if not isinstance(key, str):
        raise type_error(key_path, key)
    check_key_name(key, key_path)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise type_error(path_in(path, "value"), value)
    check_length("Param key", c.MAX_ENTITY_KEY_LENGTH, key)
    return key, truncated(value, c.MAX_PARAM_VALUE_LENGTH)


def check_tag(key: Any, value: Any, path: str = "") -> tuple[str, str]:
    """MLflow's ``_validate_tag``: the value is truncated to 8000 characters."""
    key_path = path_in(path, "key")
    if key is None:
        raise InvalidParameterValue(missing_value(key_path))
    if not isinstance(key, str):
        raise type_error(key_path, key)
    check_key_name(key, key_path)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise type_error(path_in(path, "value"), value)
    check_length(key_path, c.MAX_ENTITY_KEY_LENGTH, key)
    return key, truncated(value, c.MAX_TAG_VALUE_LENGTH)


def check_experiment_tag(key: Any, value: Any) -> tuple[str, str]:
    """MLflow's ``_validate_experiment_tag``: long values are refused, not truncated."""
    if key is None:
        raise InvalidParameterValue(missing_value("key"))
    if not isinstance(key, str):
        raise type_error("key", key)
    check_key_name(key, "key")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise type_error("value", value)
    check_length("key", c.MAX_ENTITY_KEY_LENGTH, key)
    check_length("value", c.MAX_EXPERIMENT_TAG_VALUE_LENGTH, value)
    return key, value


# -- experiments ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateExperiment:
    name: str
    artifact_location: str | None
    tags: Pairs


def parse_create_experiment(fields: Fields) -> CreateExperiment:
    name = required_string(fields, "name")
    artifact_location = optional_string(fields, "artifact_location") or None
    raw_tags = message_list(fields, "tags")
    validate_experiment_name(name)
    if artifact_location is not None and len(artifact_location) > c.MAX_ARTIFACT_LOCATION_LENGTH:
        raise InvalidParameterValue(
            "Invalid artifact path length. The length of the artifact path cannot be "
            f"greater than {c.MAX_ARTIFACT_LOCATION_LENGTH} characters. To configure this "
            "limit, please set the MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH environment variable."
        )
    tags = tuple(check_experiment_tag(t.get("key"), t.get("value")) for t in raw_tags)
    return CreateExperiment(name, artifact_location, tags)


def parse_experiment_ref(fields: Fields) -> int:
    """The ``experiment_id`` of get, delete and restore."""
    return parse_experiment_id(required_string(fields, "experiment_id"))


def parse_experiment_name(fields: Fields) -> str:
    return required_string(fields, "experiment_name")


@dataclass(frozen=True, slots=True)
class SearchExperiments:
    view_type: str
    max_results: int
    filter_string: str
    order_by: tuple[str, ...]
    page_token: str | None


def parse_search_experiments(fields: Fields) -> SearchExperiments:
    view_type = enum_value(fields, "view_type", VIEW_TYPES) or "ACTIVE_ONLY"
    # Unset, the proto field reads 0, which the store refuses, as MLflow's does.
    max_results = optional_int(fields, "max_results") or 0
    order_by = tuple(string_list(fields, "order_by"))
    filter_string = optional_string(fields, "filter") or ""
    page_token = optional_string(fields, "page_token") or None
    pagination.check_max_results(max_results)
    return SearchExperiments(view_type, max_results, filter_string, order_by, page_token)


@dataclass(frozen=True, slots=True)
class UpdateExperiment:
    experiment_id: int
    new_name: str


def parse_update_experiment(fields: Fields) -> UpdateExperiment:
    experiment_id = required_string(fields, "experiment_id")
    new_name = required_string(fields, "new_name")
    validate_experiment_name(new_name)
    return UpdateExperiment(parse_experiment_id(experiment_id), new_name)


@dataclass(frozen=True, slots=True)
class ExperimentTag:
    experiment_id: int
    key: str
    value: str


def parse_set_experiment_tag(fields: Fields) -> ExperimentTag:
    experiment_id = required_string(fields, "experiment_id")
    key = required_string(fields, "key")
    value = optional_string(fields, "value") or ""
    key, value = check_experiment_tag(key, value)
    return ExperimentTag(parse_experiment_id(experiment_id), key, value)


def parse_delete_experiment_tag(fields: Fields) -> ExperimentTag:
    experiment_id = required_string(fields, "experiment_id")
    key = required_string(fields, "key")
    return ExperimentTag(parse_experiment_id(experiment_id), key, "")


# -- runs -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateRun:
    experiment_id: int
    user_id: str
    run_name: str
    """What the request asked for; empty when it named no run (see ``resolve_run_name``)."""
    start_time: int
    tags: Pairs


def parse_create_run(fields: Fields) -> CreateRun:
    experiment_id = optional_string(fields, "experiment_id") or "0"
    start_time = optional_int(fields, "start_time") or 0
    run_name = optional_string(fields, "run_name") or ""
    user_id = optional_string(fields, "user_id") or ""
    raw_tags = message_list(fields, "tags")
    tags = tuple(
        check_tag(t.get("key"), t.get("value"), path=f"tags[{i}]") for i, t in enumerate(raw_tags)
    )
    return CreateRun(parse_experiment_id(experiment_id), user_id, run_name, start_time, tags)


def resolve_run_name(run_name: str, tags: Pairs, generate: Callable[[], str]) -> tuple[str, Pairs]:
    """MLflow's ``create_run``: the name from the request, else its ``mlflow.runName`` tag, else
    a generated one; the tag is added when the request had none. Both, differing, is an error."""
    tag_name = next((value for key, value in tags if key == c.RUN_NAME_TAG), None)
    if run_name and tag_name and run_name != tag_name:
        raise InvalidParameterValue(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
            f"different values (run_name='{run_name}', mlflow.runName='{tag_name}')."
        )
    name = run_name or tag_name or generate()
    if not tag_name:
        tags = (*tags, (c.RUN_NAME_TAG, name))
    return name, tags


def parse_run_ref(fields: Fields, *, alias: bool = True) -> str:
    """``run_id`` (or the older ``run_uuid`` where the message has it)."""
    return required_string(fields, "run_id", "run_uuid" if alias else None)


@dataclass(frozen=True, slots=True)
class UpdateRun:
    run_id: str
    status: str | None
    end_time: int | None
    run_name: str | None


def parse_update_run(fields: Fields) -> UpdateRun:
    run_id = parse_run_ref(fields)
    end_time = optional_int(fields, "end_time")
    status = enum_value(fields, "status", RUN_STATUSES)
    run_name = optional_string(fields, "run_name")
    return UpdateRun(run_id, status, end_time, run_name or None)


@dataclass(frozen=True, slots=True)
class SearchRuns:
    experiment_ids: tuple[str, ...]
    filter_string: str
    run_view_type: str
    max_results: int
    order_by: tuple[str, ...]
    page_token: str | None


def parse_search_runs(fields: Fields) -> SearchRuns:
    experiment_ids = tuple(string_list(fields, "experiment_ids"))
    filter_string = optional_string(fields, "filter") or ""
    max_results = optional_int(fields, "max_results")
    if max_results is None:
        max_results = c.SEARCH_MAX_RESULTS_DEFAULT
    if max_results > c.SEARCH_MAX_RESULTS_THRESHOLD:
        raise type_error("max_results", fields.get("max_results"))
    order_by = tuple(string_list(fields, "order_by"))
    view = enum_value(fields, "run_view_type", VIEW_TYPES) or "ACTIVE_ONLY"
    page_token = optional_string(fields, "page_token") or None
    pagination.check_max_results(max_results)
    for experiment_id in experiment_ids:
        parse_experiment_id(experiment_id)
    return SearchRuns(experiment_ids, filter_string, view, max_results, order_by, page_token)


@dataclass(frozen=True, slots=True)
class RunTag:
    run_id: str
    key: str
    value: str


def parse_set_tag(fields: Fields) -> RunTag:
    run_id = parse_run_ref(fields)
    key = required_string(fields, "key")
    value = optional_string(fields, "value") or ""
    key, value = check_tag(key, value)
    return RunTag(run_id, key, value)


def parse_delete_tag(fields: Fields) -> RunTag:
    run_id = parse_run_ref(fields, alias=False)
    key = required_string(fields, "key")
    return RunTag(run_id, key, "")


# -- logging --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogMetric:
    run_id: str
    metric: Metric


def parse_log_metric(fields: Fields) -> LogMetric:
    run_id = parse_run_ref(fields)
    key = required_string(fields, "key")
    value = fields.get("value")
    if _absent(value):
        raise _schema_error(missing_value("value"))
    if _as_float(value) is None:
        raise type_error("value", value)
    timestamp = fields.get("timestamp")
    if _absent(timestamp):
        raise _schema_error(missing_value("timestamp"))
    optional_int(fields, "timestamp")
    optional_int(fields, "step")
    return LogMetric(run_id, check_metric(key, value, timestamp, fields.get("step")))


@dataclass(frozen=True, slots=True)
class LogParam:
    run_id: str
    key: str
    value: str


def parse_log_param(fields: Fields) -> LogParam:
    run_id = parse_run_ref(fields)
    key = required_string(fields, "key")
    value = optional_string(fields, "value") or ""
    key, value = check_param(key, value)
    return LogParam(run_id, key, value)


MetricColumns = dict[str, tuple[list[int], list[int], list[float]]]
"""Points per metric key, in first-logged key order: (steps, timestamps, values) lists."""


@dataclass(frozen=True, slots=True)
class LogBatch:
    run_id: str
    series: MetricColumns
    """Every metric of the batch, as columns per key, each key's points in logged order."""
    metrics: tuple[Metric, ...]
    """The metrics one by one, only when some metric names a logged model (``model_id``),
    which alone needs them; empty otherwise (``series`` holds them)."""
    params: Pairs
    tags: Pairs

    @property
    def metric_count(self) -> int:
        return sum(len(values) for _, _, values in self.series.values())


def metric_columns(raw_metrics: Sequence[Mapping[str, Any]]) -> MetricColumns | None:
    """The fast path of log-batch's metrics: columns per key in one pass over the raw dicts.

    Takes what MLflow's client sends (float values, int timestamps and steps, keys that pass
    ``_is_valid_metric_name``, no ``model_id``); None as soon as one metric does not, and the
    caller checks them one by one (``check_metric``) for MLflow's exact refusal. The checks
    are ``check_metric``'s fast path, made once per point without building a ``Metric``, and
    the key name is checked once per distinct key (a batch has ~10 keys and 1,000 points).
    """
    columns: MetricColumns = {}
    for m in raw_metrics:
        value = m.get("value")
        timestamp = m.get("timestamp")
        step = m.get("step", 0)
        if (
            type(value) is not float
            or type(timestamp) is not int
            or not 0 <= timestamp < _INT64_END
            or "model_id" in m
        ):
            return None
        if step is None:
            step = 0
        elif type(step) is not int or not _INT64_START <= step < _INT64_END:
            return None
        key = m.get("key")
        if type(key) is not str:
            return None
        cols = columns.get(key)
        if cols is None:
            if not _is_valid_metric_name(key):
                return None
            cols = columns[key] = ([], [], [])
        cols[0].append(step)
        cols[1].append(timestamp)
        cols[2].append(value)
    return columns


def _columns_of(metrics: Sequence[Metric]) -> MetricColumns:
    columns: MetricColumns = {}
    for m in metrics:
        steps, stamps, values = columns.setdefault(m.key, ([], [], []))
        steps.append(m.step)
        stamps.append(m.timestamp)
        values.append(m.value)
    return columns


def _batch_list(fields: Fields, name: str) -> Any:
    """The raw ``name`` list of a log-batch, not yet checked item by item (None when absent)."""
    value = fields.get(name)
    return value if isinstance(value, list) else None


def check_batch_counts(fields: Fields) -> None:
    """MLflow's batch limits (``_validate_batch_log_limits``), from the lists' lengths alone.

    Run before any per-item work (item types, the columnar pass, required fields), so that an
    oversized batch costs the event loop microseconds whatever it holds. MLflow's server checks
    items first (``_validate_batch_log_data`` before ``_validate_batch_log_limits``): for a batch
    that is both oversized and holds a bad item (or run id), MLflow names it, runstream the count;
    both answer 400 INVALID_PARAMETER_VALUE, and MLflow's client never sends such a batch (it
    splits batches at these limits). docs/reliability.md, "Bounded work per request".
    """
    counts: dict[str, int] = {}
    for name in ("metrics", "params", "tags"):
        value = _batch_list(fields, name)
        counts[name] = 0 if value is None else len(value)
    validate_batch_limit("metrics", c.MAX_METRICS_PER_BATCH, counts["metrics"])
    validate_batch_limit("params", c.MAX_PARAMS_TAGS_PER_BATCH, counts["params"])
    validate_batch_limit("tags", c.MAX_PARAMS_TAGS_PER_BATCH, counts["tags"])
    validate_batch_limit(
        "metrics, params, and tags", c.MAX_ENTITIES_PER_BATCH, sum(counts.values())
    )


def parse_log_batch(fields: Fields) -> LogBatch:
    run_id = required_string(fields, "run_id")
    # Past the counts, MLflow's order: the handler's required fields, then the store's run id,
    # items, unique param keys.
    check_batch_counts(fields)
    raw_metrics = message_list(fields, "metrics")
    raw_params = message_list(fields, "params")
    raw_tags = message_list(fields, "tags")
    series = metric_columns(raw_metrics)
    if series is None:
        for i, m in enumerate(raw_metrics):
            require_present(m, "key", f"metrics[{i}].key")
            require_present(m, "value", f"metrics[{i}].value")
            require_present(m, "timestamp", f"metrics[{i}].timestamp")
    for i, p in enumerate(raw_params):
        require_present(p, "key", f"params[{i}].key")
    for i, t in enumerate(raw_tags):
        require_present(t, "key", f"tags[{i}].key")
    validate_run_id(run_id)
    metrics: tuple[Metric, ...] = ()
    if series is None:
        metrics = tuple(
            check_metric(
                m.get("key"), m.get("value"), m.get("timestamp"), m.get("step"), f"metrics[{i}]"
            )
            for i, m in enumerate(raw_metrics)
        )
        series = _columns_of(metrics)
    params = tuple(
        check_param(p.get("key"), p.get("value"), f"params[{i}]") for i, p in enumerate(raw_params)
    )
    tags = tuple(
        check_tag(t.get("key"), t.get("value"), f"tags[{i}]") for i, t in enumerate(raw_tags)
    )
    check_unique_param_keys(params)
    return LogBatch(run_id, series, metrics, params, tags)


def check_unique_param_keys(params: Sequence[tuple[str, str]]) -> None:
    """MLflow refuses one key twice in one batch, even with the same value."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for key, _ in params:
        if key in seen:
            duplicates.append(key)
        seen.add(key)
    if duplicates:
        raise InvalidParameterValue(
            f"Duplicate parameter keys have been submitted: {duplicates}. Please ensure "
            "the request contains only one param value per param key."
        )


# -- metric reads ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetMetricHistory:
    run_id: str
    metric_key: str
    max_results: int | None
    offset: int


def parse_get_metric_history(fields: Fields) -> GetMetricHistory:
    run_id = parse_run_ref(fields)
    metric_key = required_string(fields, "metric_key")
    page_token = optional_string(fields, "page_token")
    max_results = optional_int(fields, "max_results")
    if max_results is not None and max_results <= 0:
        raise InvalidParameterValue(
            f"Invalid value {max_results} for parameter 'max_results' supplied. "
            "It must be a positive integer."
        )
    offset = pagination.decode(page_token).offset
    return GetMetricHistory(run_id, metric_key, max_results, offset)


@dataclass(frozen=True, slots=True)
class GetMetricHistoryBulkInterval:
    run_ids: tuple[str, ...]
    metric_key: str
    start_step: int | None
    end_step: int | None
    max_results: int


def parse_get_metric_history_bulk_interval(fields: Fields) -> GetMetricHistoryBulkInterval:
    if "run_ids" not in fields:
        raise _schema_error(missing_value("run_ids"))
    run_ids = string_list(fields, "run_ids")
    if len(run_ids) > c.MAX_RUNS_PER_HISTORY_BULK:
        raise _schema_error(
            "GetMetricHistoryBulkInterval request must specify at most "
            f"{c.MAX_RUNS_PER_HISTORY_BULK} run_ids. Received {len(run_ids)} run_ids."
        )
    metric_key = required_string(fields, "metric_key")
    start_step = optional_int(fields, "start_step")
    end_step = optional_int(fields, "end_step")
    max_results = optional_int(fields, "max_results")
    if max_results is None:
        max_results = c.MAX_RESULTS_PER_RUN
    elif not 1 <= max_results <= c.MAX_RESULTS_PER_RUN:
        raise _schema_error(f"max_results must be between 1 and {c.MAX_RESULTS_PER_RUN}.")
    if start_step is not None and end_step is not None:
        if start_step > end_step:
            raise InvalidParameterValue(
                "end_step must be greater than start_step. "
                f"Found start_step={start_step} and end_step={end_step}."
            )
    elif start_step is not None or end_step is not None:
        raise InvalidParameterValue(
            "If either start step or end step are specified, both must be specified."
        )
    return GetMetricHistoryBulkInterval(
        tuple(run_ids), metric_key, start_step, end_step, max_results
    )


# -- artifacts ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListArtifacts:
    run_id: str
    path: str | None
    page_token: str | None


def parse_list_artifacts(fields: Fields) -> ListArtifacts:
    run_id = parse_run_ref(fields)
    path = optional_string(fields, "path")
    page_token = optional_string(fields, "page_token") or None
    return ListArtifacts(run_id, path, page_token)
