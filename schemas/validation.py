"""Validation rules shared by every entry point, with MLflow's limits and messages.

Pure functions: each raises ``InvalidParameterValue`` with a message that names the field.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import fields
from typing import Any

from runstream.schemas import constants as c
from runstream.schemas.errors import InvalidParameterValue, ResourceDoesNotExist

_KEY_CHARS = re.compile(r"^[/\w.\- :]*$")
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
_EXPERIMENT_ID = re.compile(r"^[0-9]{1,18}$")
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def invalid_value(path: str, value: Any, detail: str | None = None) -> str:
    shown = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if detail:
        return f"Invalid value {shown} for parameter '{path}' supplied: {detail}"
    return f"Invalid value {shown} for parameter '{path}' supplied."


def missing_value(path: str) -> str:
    return f"Missing value for required parameter '{path}'."


def exceeds_maximum_length(path: str, limit: int) -> str:
    return f"'{path}' exceeds the maximum length of {limit} characters"


def check_key_name(name: str, path: str) -> None:
    """MLflow's rule for a metric, param or tag name: its characters, and no path tricks
    (the name may become a file name). Length is checked by the caller, whose message names
    the kind of entity."""
    if not _KEY_CHARS.match(name):
        raise InvalidParameterValue(
            invalid_value(
                path,
                name,
                "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.),"
                " spaces ( ), colon(:) and slashes (/).",
            )
        )
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise InvalidParameterValue(
            invalid_value(
                path,
                name,
                "Names may be treated as files in certain cases, and must not resolve to other"
                f" names when treated as such. This name would resolve to {norm!r}",
            )
        )


def validate_key(name: Any, path: str = "key") -> str:
    """A metric, param or tag key: MLflow's charset, no path tricks, at most 250 characters."""
    if name is None:
        raise InvalidParameterValue(missing_value(path))
    if not isinstance(name, str):
        raise InvalidParameterValue(invalid_value(path, name, "must be a string"))
    check_key_name(name, path)
    if len(name) > c.MAX_ENTITY_KEY_LENGTH:
        raise InvalidParameterValue(exceeds_maximum_length(path, c.MAX_ENTITY_KEY_LENGTH))
    return name


def validate_string(value: Any, path: str, limit: int, *, allow_none: bool = False) -> str:
    if value is None:
        if allow_none:
            return ""
        raise InvalidParameterValue(missing_value(path))
    if not isinstance(value, str):
        raise InvalidParameterValue(invalid_value(path, value, "must be a string"))
    if len(value) > limit:
        raise InvalidParameterValue(exceeds_maximum_length(path, limit))
    return check_text(value, path)


def validate_param_value(value: Any, path: str = "value") -> str:
    return validate_string(value, path, c.MAX_PARAM_VALUE_LENGTH)


def validate_tag_value(value: Any, path: str = "value") -> str:
    return validate_string(value, path, c.MAX_TAG_VALUE_LENGTH, allow_none=True)


def validate_experiment_tag_value(value: Any, path: str = "value") -> str:
    return validate_string(value, path, c.MAX_EXPERIMENT_TAG_VALUE_LENGTH, allow_none=True)


def validate_run_id(run_id: Any, path: str = "run_id") -> str:
    if not isinstance(run_id, str) or _RUN_ID.match(run_id) is None:
        raise InvalidParameterValue(invalid_value(path, run_id))
    return run_id


def validate_experiment_id(experiment_id: Any, path: str = "experiment_id") -> str:
    if isinstance(experiment_id, int) and not isinstance(experiment_id, bool):
        experiment_id = str(experiment_id)
    if not isinstance(experiment_id, str) or _EXPERIMENT_ID.match(experiment_id) is None:
        raise InvalidParameterValue(f"Invalid experiment ID: '{experiment_id}'")
    return experiment_id


def parse_experiment_id(value: object) -> int:
    """An experiment id of a request (an integer, or its text as MLflow's ids travel), as
    MLflow's ``_parse_experiment_id`` reads it: not an integer is 400, past int64 is 404 (no
    experiment has that id; PostgreSQL could not compare it)."""
    not_an_integer = InvalidParameterValue(
        f"Invalid experiment ID '{value}'. Experiment ID must be a valid integer."
    )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise not_an_integer
    try:
        experiment_id = int(value)
    except ValueError:
        raise not_an_integer from None
    if not INT64_MIN <= experiment_id <= INT64_MAX:
        raise experiment_not_found(experiment_id)
    return experiment_id


def experiment_not_found(experiment_id: int | str) -> ResourceDoesNotExist:
    return ResourceDoesNotExist(f"No Experiment with id={experiment_id} exists")


def validate_experiment_name(name: Any) -> str:
    if name is None or name == "":
        raise InvalidParameterValue("Invalid experiment name: ''")
    if not isinstance(name, str):
        raise InvalidParameterValue(f"Invalid experiment name: {name}. Expects a string.")
    if len(name) > c.MAX_EXPERIMENT_NAME_LENGTH:
        raise InvalidParameterValue(exceeds_maximum_length("name", c.MAX_EXPERIMENT_NAME_LENGTH))
    return check_text(name, "name")


def validate_int64(value: Any, path: str, *, minimum: int = INT64_MIN) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameterValue(invalid_value(path, value, "must be a 64-bit integer"))
    if value < minimum or value > INT64_MAX:
        raise InvalidParameterValue(invalid_value(path, value, "out of the 64-bit integer range"))
    return value


def validate_batch_limit(entity_name: str, limit: int, length: int) -> None:
    if length > limit:
        raise InvalidParameterValue(
            f"A batch logging request can contain at most {limit} {entity_name}. "
            f"Got {length} {entity_name}. Please split up {entity_name} across multiple"
            " requests and try again."
        )


# -- what the stores can hold ---------------------------------------------------------------------
#
# ``check_storable`` is the one check that the door (ingest's ``rules``) and the projection
# (``projector.consumer``) both run, so that nothing ingest acknowledges can fail in PostgreSQL
# for a reason ingest could have seen: a NUL character (PostgreSQL ``text`` cannot hold it), a
# lone surrogate (not encodable as UTF-8), an integer past int64, a string past its limit.

STRING_LIMITS: dict[str, int] = {
    "run_id": 256,
    "experiment_id": 32,
    "user_id": c.MAX_USER_ID_LENGTH,
    "run_name": c.MAX_RUN_NAME_LENGTH,
    "artifact_uri": c.MAX_ARTIFACT_LOCATION_LENGTH,
    "artifact_location": c.MAX_ARTIFACT_LOCATION_LENGTH,
    "status": 32,
    "name": c.MAX_EXPERIMENT_NAME_LENGTH,
    "key": c.MAX_ENTITY_KEY_LENGTH,
    "value": max(c.MAX_EXPERIMENT_TAG_VALUE_LENGTH, 100_000),  # registry tags: 100,000
    "model_id": 256,
    "source_run_id": 256,
    "model_type": 500,
    "digest": 36,
    "source_type": 36,
    "source": 65_535,
    "schema": 1_048_575,
    "profile": 16_777_215,
    "dataset_name": 500,
    "dataset_digest": 36,
    # the model registry (ingest/registry_rules.py checks each with MLflow's message)
    "description": 100_000,
    "new_name": 256,
    "alias": 255,
    "storage_location": 100_000,
    "run_link": 100_000,
    "stage": 32,
}
"""Characters per string field of any event: the largest of MLflow's limits for a field of
that name (the routes check the exact limit of each entity, with MLflow's messages)."""

PAIR_LIMITS: dict[tuple[str, str], tuple[int, int]] = {
    ("experiment_created", "tags"): (c.MAX_ENTITY_KEY_LENGTH, c.MAX_EXPERIMENT_TAG_VALUE_LENGTH),
    ("run_created", "tags"): (c.MAX_ENTITY_KEY_LENGTH, c.MAX_TAG_VALUE_LENGTH),
    ("run_tags_set", "tags"): (c.MAX_ENTITY_KEY_LENGTH, c.MAX_TAG_VALUE_LENGTH),
    ("params_logged", "params"): (c.MAX_ENTITY_KEY_LENGTH, c.MAX_PARAM_VALUE_LENGTH),
    ("logged_model_created", "tags"): (255, c.MAX_TAG_VALUE_LENGTH),
    ("logged_model_created", "params"): (255, c.MAX_PARAM_VALUE_LENGTH),
    ("logged_model_tags_set", "tags"): (255, c.MAX_TAG_VALUE_LENGTH),
    ("logged_model_params_logged", "params"): (255, c.MAX_PARAM_VALUE_LENGTH),
    ("dataset_input_logged", "tags"): (255, 500),
    ("registered_model_created", "tags"): (250, 100_000),
    ("model_version_created", "tags"): (250, 100_000),
}
"""(key, value) characters per pair field, by event type and field."""


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` as text, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode), which cannot be stored"
    return None


def check_text(value: str, path: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise InvalidParameterValue(invalid_value(path, _shown(value), problem))
    return value


def _shown(value: str) -> str:
    # json.dumps escapes NUL and surrogates; a long value is cut so the message stays short.
    return value if len(value) <= 100 else value[:100] + "..."


def check_storable(event: Any, path: str = "event") -> None:
    """Refuse an event whose strings or integers PostgreSQL would refuse, or past the limits.

    ``event`` is any of the frozen event types of ``schemas``; the walk is by field, so a field
    added to an event is covered (a string field without a limit fails here, and in the tests).
    """
    type_name = event.TYPE
    for f in fields(event):
        name = f.name
        value = getattr(event, name)
        where = f"{path}.{name}"
        if value is None or isinstance(value, bool | float | bytes):
            continue
        if isinstance(value, str):
            _check_string(value, where, _string_limit(type_name, name))
        elif isinstance(value, int):
            validate_int64(value, where)
        elif isinstance(value, tuple):
            _check_tuple(type_name, name, value, where)
        else:
            raise InvalidParameterValue(invalid_value(where, str(value), "unexpected type"))


def _string_limit(type_name: str, name: str) -> int:
    limit = STRING_LIMITS.get(name)
    if limit is None:
        raise AssertionError(f"no length limit for {type_name}.{name}")
    return limit


def _check_string(value: str, path: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidParameterValue(exceeds_maximum_length(path, limit))
    check_text(value, path)


def _check_tuple(type_name: str, name: str, value: tuple[Any, ...], path: str) -> None:
    if name == "series":
        for j, series in enumerate(value):
            _check_string(series.key, f"{path}[{j}].key", c.MAX_ENTITY_KEY_LENGTH)
        return
    limits = PAIR_LIMITS.get((type_name, name))
    if limits is None:
        raise AssertionError(f"no length limits for {type_name}.{name}")
    key_limit, value_limit = limits
    for j, (key, item) in enumerate(value):
        _check_string(key, f"{path}[{j}].key", key_limit)
        _check_string(item, f"{path}[{j}].value", value_limit)


def check_storable_all(events: Any, path: str = "events") -> None:
    for i, event in enumerate(events):
        check_storable(event, f"{path}[{i}]")


# -- bounded search work ------------------------------------------------------------------------

_AND = re.compile(r"\band\b", re.IGNORECASE)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`")
FILTER_FIELDS = ("filter", "filter_string")
ORDER_FIELDS = ("order_by",)


def filter_clauses(text: str) -> int:
    """Comparisons in a search filter: its ANDs outside quotes, plus one."""
    return len(_AND.findall(_QUOTED.sub("''", text))) + 1


def check_search_size(fields: Any, max_chars: int, max_clauses: int) -> None:
    """Refuse a search whose filter or order-by would cost PostgreSQL unbounded planning time
    (issue 14: 1,000 ANDed clauses kept the planner busy for minutes)."""
    if not isinstance(fields, dict):
        return
    for name in FILTER_FIELDS:
        text = fields.get(name)
        if isinstance(text, str) and text:
            if len(text) > max_chars:
                raise InvalidParameterValue(
                    f"Search filter of {len(text)} characters exceeds the limit of {max_chars}"
                )
            check_text(text, name)
            clauses = filter_clauses(text)
            if clauses > max_clauses:
                raise InvalidParameterValue(
                    f"Search filter has {clauses} clauses, more than the limit of {max_clauses}"
                )
    for name in ORDER_FIELDS:
        value = fields.get(name)
        items = value if isinstance(value, list) else [value]
        if len(items) > max_clauses:
            raise InvalidParameterValue(
                f"'{name}' has {len(items)} items, more than the limit of {max_clauses}"
            )
        for item in items:
            if isinstance(item, str) and len(item) > max_chars:
                raise InvalidParameterValue(f"'{name}' exceeds the limit of {max_chars} characters")
