"""Stateless checks of a request's events, before anything touches Redis.

Pure functions: each raises a ``RunstreamError`` whose message names the field
(``events[3].params[0].key``). Metric points are never visited one by one: a series is
checked by its key and the lengths of its packed columns.
"""

from __future__ import annotations

from collections.abc import Sequence

from runstream.ingest import model_rules, registry_rules
from runstream.schemas import constants as c
from runstream.schemas import experiments as ex
from runstream.schemas import registry as rg
from runstream.schemas import runs as rn
from runstream.schemas import validation as v
from runstream.schemas.codec import Event
from runstream.schemas.errors import InvalidParameterValue, RequestTooLarge
from runstream.schemas.metrics import MetricsLogged

_KNOWN_KEYS: set[str] = set()
"""Metric keys that passed ``validate_key``; training loops log the same few keys forever."""
_KNOWN_KEYS_LIMIT = 100_000


def check_events(events: Sequence[Event]) -> int:
    """Check every event; return the number of metric points."""
    if not events:
        raise InvalidParameterValue("Missing value for required parameter 'events'.")
    if len(events) > c.MAX_EVENTS_PER_REQUEST:
        raise InvalidParameterValue(
            f"A request can contain at most {c.MAX_EVENTS_PER_REQUEST} events. Got "
            f"{len(events)} events. Please split them across several requests."
        )
    points = 0
    for i, event in enumerate(events):
        path = f"events[{i}]"
        if isinstance(event, MetricsLogged):
            points += check_metrics(event, path)
        elif isinstance(event, model_rules.TRACKED_EVENT_TYPES):
            model_rules.check_event(event, path)
        elif isinstance(event, rg.REGISTRY_EVENT_TYPES):
            registry_rules.check_event(event, path)
        elif is_experiment_event(event):
            check_experiment_event(event, path)
        else:
            check_run_event(event, path)
        # What PostgreSQL would refuse (NUL, lone surrogates, int64, lengths): the same check
        # the projector makes before applying an entry (schemas.validation).
        v.check_storable(event, path)
    if points > c.MAX_POINTS_PER_REQUEST:
        raise RequestTooLarge(
            f"A request can contain at most {c.MAX_POINTS_PER_REQUEST} metric points. Got "
            f"{points}. Please split them across several requests."
        )
    return points


def check_metrics(event: MetricsLogged, path: str) -> int:
    v.validate_run_id(event.run_id, f"{path}.run_id")
    points = 0
    for j, series in enumerate(event.series):
        key = series.key
        if key not in _KNOWN_KEYS:
            v.validate_key(key, f"{path}.series[{j}].key")
            if len(_KNOWN_KEYS) >= _KNOWN_KEYS_LIMIT:
                _KNOWN_KEYS.clear()
            _KNOWN_KEYS.add(key)
        n, rest = divmod(len(series.values), 8)
        # Events built in Python (the MLflow routes) skip the codec's column checks.
        if rest or len(series.steps) != 8 * n or len(series.timestamps) != 8 * n:
            raise InvalidParameterValue(
                f"Invalid value for parameter '{path}.series[{j}]' supplied: columns differ in"
                f" length (steps {len(series.steps)} bytes, timestamps"
                f" {len(series.timestamps)} bytes, values {len(series.values)} bytes)"
            )
        points += n
    return points


def check_pairs(
    pairs: Sequence[tuple[str, str]], path: str, value_limit: int, *, allow_empty: bool = True
) -> None:
    for j, (key, value) in enumerate(pairs):
        v.validate_key(key, f"{path}[{j}].key")
        v.validate_string(value, f"{path}[{j}].value", value_limit, allow_none=allow_empty)


def check_params(event: rn.ParamsLogged, path: str) -> None:
    check_pairs(event.params, f"{path}.params", c.MAX_PARAM_VALUE_LENGTH)
    seen: set[str] = set()
    dupes = []
    for key, _ in event.params:
        if key in seen:
            dupes.append(key)
        seen.add(key)
    if dupes:
        raise InvalidParameterValue(
            f"Duplicate parameter keys have been submitted: {dupes}. Please ensure "
            "the request contains only one param value per param key."
        )


def check_status(status: str, path: str) -> None:
    if status not in rn.RUN_STATUSES:
        raise InvalidParameterValue(
            v.invalid_value(path, status, f"must be one of {', '.join(rn.RUN_STATUSES)}")
        )


def check_run_event(event: Event, path: str) -> None:
    run_id = getattr(event, "run_id", None)
    v.validate_run_id(run_id, f"{path}.run_id")
    if isinstance(event, rn.RunCreated):
        v.validate_experiment_id(event.experiment_id, f"{path}.experiment_id")
        v.validate_string(event.run_name, f"{path}.run_name", c.MAX_RUN_NAME_LENGTH)
        v.validate_string(event.user_id, f"{path}.user_id", c.MAX_USER_ID_LENGTH)
        v.validate_string(
            event.artifact_uri, f"{path}.artifact_uri", c.MAX_ARTIFACT_LOCATION_LENGTH
        )
        v.validate_int64(event.start_time, f"{path}.start_time", minimum=0)
        check_status(event.status, f"{path}.status")
        check_pairs(event.tags, f"{path}.tags", c.MAX_TAG_VALUE_LENGTH)
    elif isinstance(event, rn.RunUpdated):
        if event.status is not None:
            check_status(event.status, f"{path}.status")
        if event.run_name is not None:
            v.validate_string(event.run_name, f"{path}.run_name", c.MAX_RUN_NAME_LENGTH)
        if event.end_time is not None:
            v.validate_int64(event.end_time, f"{path}.end_time")
    elif isinstance(event, rn.RunTagsSet):
        check_pairs(event.tags, f"{path}.tags", c.MAX_TAG_VALUE_LENGTH)
    elif isinstance(event, rn.RunTagDeleted):
        v.validate_key(event.key, f"{path}.key")
    elif isinstance(event, rn.ParamsLogged):
        check_params(event, path)
    elif not isinstance(event, rn.RunDeleted | rn.RunRestored):
        raise InvalidParameterValue(f"{path}.type: {type(event).__name__} is not accepted here")


def check_experiment_event(event: Event, path: str) -> None:
    experiment_id = getattr(event, "experiment_id", None)
    if isinstance(event, ex.ExperimentCreated):
        # Ingest assigns the id; the client's value (often "") is not looked at.
        v.validate_experiment_name(event.name)
        v.validate_string(
            event.artifact_location,
            f"{path}.artifact_location",
            c.MAX_ARTIFACT_LOCATION_LENGTH,
        )
        check_pairs(event.tags, f"{path}.tags", c.MAX_EXPERIMENT_TAG_VALUE_LENGTH)
        return
    v.validate_experiment_id(experiment_id, f"{path}.experiment_id")
    if isinstance(event, ex.ExperimentRenamed):
        v.validate_experiment_name(event.name)
    elif isinstance(event, ex.ExperimentTagSet):
        v.validate_key(event.key, f"{path}.key")
        v.validate_experiment_tag_value(event.value, f"{path}.value")
    elif isinstance(event, ex.ExperimentTagDeleted):
        v.validate_key(event.key, f"{path}.key")


def is_experiment_event(event: Event) -> bool:
    return isinstance(
        event,
        ex.ExperimentCreated
        | ex.ExperimentRenamed
        | ex.ExperimentDeleted
        | ex.ExperimentRestored
        | ex.ExperimentTagSet
        | ex.ExperimentTagDeleted,
    )
