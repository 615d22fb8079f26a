"""Stateless checks of logged-model and run input/output events, with MLflow's limits.

Pure functions, called by ``rules.check_events``: each raises ``InvalidParameterValue`` with a
message that names the field (``events[2].tags[0].key``).
"""

from __future__ import annotations

from runstream.schemas import constants as c
from runstream.schemas import inputs as inp
from runstream.schemas import models as mo
from runstream.schemas import validation as v
from runstream.schemas.errors import InvalidParameterValue

TrackedEvent = mo.LoggedModelEvent | inp.RunInputEvent
TRACKED_EVENT_TYPES = (*mo.LOGGED_MODEL_EVENT_TYPES, *inp.RUN_INPUT_EVENT_TYPES)

_BAD_NAME_CHARS = ("/", ":", ".", "%", '"', "'")


def is_tracked_event(event: object) -> bool:
    return isinstance(event, TRACKED_EVENT_TYPES)


def check_model_id(model_id: str, path: str, *, allow_empty: bool = False) -> None:
    if allow_empty and model_id == "":
        return
    if mo.MODEL_ID_PATTERN.match(model_id) is None:
        raise InvalidParameterValue(v.invalid_value(path, model_id, "expected m-<32 hex digits>"))


def check_model_name(name: str) -> None:
    """MLflow's ``_validate_logged_model_name`` (ingest needs a name; the route makes one)."""
    if not name or any(ch in name for ch in _BAD_NAME_CHARS):
        raise InvalidParameterValue(
            f"Invalid model name ({name!r}) provided. Model name must be a non-empty string "
            f"and cannot contain the following characters: {_BAD_NAME_CHARS}"
        )
    if len(name) > c.MAX_MODEL_NAME_LENGTH:
        raise InvalidParameterValue(v.exceeds_maximum_length("name", c.MAX_MODEL_NAME_LENGTH))


def check_model_status(status: str, path: str) -> None:
    if status not in mo.MODEL_STATUSES:
        raise InvalidParameterValue(
            v.invalid_value(path, status, f"must be one of {', '.join(mo.MODEL_STATUSES)}")
        )


def check_pairs(pairs: mo.Pairs, path: str, key_limit: int, value_limit: int) -> None:
    for j, (key, value) in enumerate(pairs):
        if not key:
            raise InvalidParameterValue(v.missing_value(f"{path}[{j}].key"))
        if len(key) > key_limit:
            raise InvalidParameterValue(v.exceeds_maximum_length(f"{path}[{j}].key", key_limit))
        v.validate_string(value, f"{path}[{j}].value", value_limit, allow_none=True)


def check_event(event: TrackedEvent, path: str) -> None:
    """Check one logged-model or run input/output event."""
    if isinstance(event, inp.DatasetInputLogged | inp.ModelInputLogged | inp.ModelOutputLogged):
        check_run_input(event, path)
        return
    if isinstance(event, mo.LoggedModelMetricLogged):
        v.validate_run_id(event.run_id, f"{path}.run_id")
        check_model_id(event.model_id, f"{path}.model_id")
        v.validate_key(event.key, f"{path}.key")
        v.validate_int64(event.timestamp, f"{path}.timestamp")
        v.validate_int64(event.step, f"{path}.step")
        v.validate_string(event.dataset_name, f"{path}.dataset_name", c.MAX_DATASET_NAME_LENGTH)
        v.validate_string(
            event.dataset_digest, f"{path}.dataset_digest", c.MAX_DATASET_DIGEST_LENGTH
        )
        return
    check_model_id(
        event.model_id, f"{path}.model_id", allow_empty=isinstance(event, mo.LoggedModelCreated)
    )
    if isinstance(event, mo.LoggedModelCreated):
        v.validate_experiment_id(event.experiment_id, f"{path}.experiment_id")
        check_model_name(event.name)
        v.validate_int64(event.creation_time, f"{path}.creation_time", minimum=0)
        v.validate_string(
            event.artifact_location, f"{path}.artifact_location", c.MAX_ARTIFACT_LOCATION_LENGTH
        )
        if event.source_run_id:
            v.validate_run_id(event.source_run_id, f"{path}.source_run_id")
        v.validate_string(event.model_type, f"{path}.model_type", c.MAX_MODEL_TYPE_LENGTH)
        check_model_status(event.status, f"{path}.status")
        check_pairs(event.tags, f"{path}.tags", c.MAX_MODEL_TAG_KEY_LENGTH, c.MAX_TAG_VALUE_LENGTH)
        check_pairs(
            event.params,
            f"{path}.params",
            c.MAX_MODEL_PARAM_KEY_LENGTH,
            c.MAX_PARAM_VALUE_LENGTH,
        )
    elif isinstance(event, mo.LoggedModelFinalized):
        check_model_status(event.status, f"{path}.status")
        v.validate_int64(event.time, f"{path}.time", minimum=0)
    elif isinstance(event, mo.LoggedModelTagsSet):
        check_pairs(event.tags, f"{path}.tags", c.MAX_MODEL_TAG_KEY_LENGTH, c.MAX_TAG_VALUE_LENGTH)
    elif isinstance(event, mo.LoggedModelTagDeleted):
        if not event.key:
            raise InvalidParameterValue(v.missing_value(f"{path}.key"))
    elif isinstance(event, mo.LoggedModelParamsLogged):
        check_pairs(
            event.params, f"{path}.params", c.MAX_MODEL_PARAM_KEY_LENGTH, c.MAX_PARAM_VALUE_LENGTH
        )
    elif isinstance(event, mo.LoggedModelDeleted):
        v.validate_int64(event.time, f"{path}.time", minimum=0)


def check_run_input(
    event: inp.DatasetInputLogged | inp.ModelInputLogged | inp.ModelOutputLogged, path: str
) -> None:
    v.validate_run_id(event.run_id, f"{path}.run_id")
    v.validate_int64(event.time, f"{path}.time", minimum=0)
    if isinstance(event, inp.DatasetInputLogged):
        check_dataset(event, path)
        return
    if not event.model_id:
        raise InvalidParameterValue(v.missing_value(f"{path}.model_id"))
    if isinstance(event, inp.ModelOutputLogged):
        v.validate_int64(event.step, f"{path}.step")


def check_dataset(event: inp.DatasetInputLogged, path: str) -> None:
    """MLflow's ``_validate_dataset`` and ``_validate_input_tag`` (their messages)."""
    limits = (
        ("name", event.name, c.MAX_DATASET_NAME_LENGTH),
        ("digest", event.digest, c.MAX_DATASET_DIGEST_LENGTH),
        ("source_type", event.source_type, c.MAX_DATASET_SOURCE_TYPE_LENGTH),
        ("source", event.source, c.MAX_DATASET_SOURCE_LENGTH),
        ("schema", event.schema, c.MAX_DATASET_SCHEMA_LENGTH),
        ("profile", event.profile, c.MAX_DATASET_PROFILE_LENGTH),
    )
    for name, value, limit in limits:
        if len(value) > limit:
            raise InvalidParameterValue(v.exceeds_maximum_length(name, limit))
    for key, value in event.tags:
        if len(key) > c.MAX_INPUT_TAG_KEY_LENGTH:
            raise InvalidParameterValue(v.exceeds_maximum_length("key", c.MAX_INPUT_TAG_KEY_LENGTH))
        if len(value) > c.MAX_INPUT_TAG_VALUE_LENGTH:
            raise InvalidParameterValue(
                v.exceeds_maximum_length("value", c.MAX_INPUT_TAG_VALUE_LENGTH)
            )
