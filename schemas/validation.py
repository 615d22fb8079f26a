"""Validation rules shared by every entry point, with MLflow's limits and messages.

Pure functions: each raises ``InvalidParameterValue`` with a message that names the field.
"""

from __future__ import annotations

import json
import posixpath
import re
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
    return value


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
    return name


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
