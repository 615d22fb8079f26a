"""MLflow's model-registry messages as typed values. Pure.

Each ``parse_*`` checks one message as MLflow's handler schema does (``_assert_required``,
``_assert_string``, ...) and its store's validators (``registry_rules``), raising
``InvalidParameterValue`` with MLflow's messages. Versions are strings on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from runstream.api.mlflow import pagination
from runstream.api.mlflow.messages import (
    Fields,
    Pairs,
    message_list,
    optional_int,
    optional_string,
    required_string,
    string_list,
    type_error,
)
from runstream.ingest import registry_rules as rr
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import invalid_value

MAX_MODELS_PER_PAGE = 1000
"""``search_registered_models``' ``max_results`` limit (and default 100)."""
DEFAULT_MODELS_PER_PAGE = 100
MAX_VERSIONS_PER_PAGE = 200_000
"""``search_model_versions``' limit, which is also the message's default."""


def model_name(fields: Fields, name: str = "name") -> str:
    value = required_string(fields, name)
    rr.check_model_name(value, name)
    return value


def version_number(fields: Fields) -> int:
    """MLflow's ``_validate_model_version``: the string must be an integer."""
    raw = fields.get("version")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    text = required_string(fields, "version")
    try:
        return int(text)
    except ValueError:
        raise InvalidParameterValue(
            f"Parameter 'version' must be an integer, got '{text}'."
        ) from None


def _string(fields: Fields, name: str) -> str:
    return optional_string(fields, name) or ""


def tags(fields: Fields) -> Pairs:
    out = []
    for item in message_list(fields, "tags"):
        key, value = item.get("key"), item.get("value", "")
        if not isinstance(key, str):
            raise type_error("tags.key", key)
        if not isinstance(value, str):
            raise type_error("tags.value", value)
        rr.check_tag(key, value)
        out.append((key, value))
    return tuple(out)


def tag(fields: Fields) -> tuple[str, str]:
    key = required_string(fields, "key")
    value = _string(fields, "value")
    rr.check_tag(key, value)
    return key, value


def tag_key(fields: Fields) -> str:
    key = required_string(fields, "key")
    rr.check_tag_key(key)
    return key


def alias(fields: Fields, *, reserved: bool) -> str:
    value = required_string(fields, "alias")
    rr.check_alias(value, reserved=reserved)
    return value


def description(fields: Fields) -> str:
    return _string(fields, "description")


def archive_flag(fields: Fields) -> bool:
    value = fields.get("archive_existing_versions", False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"  # a query string
    if not isinstance(value, bool):
        raise type_error("archive_existing_versions", value)
    return value


@dataclass(frozen=True, slots=True)
class CreateModelVersion:
    name: str
    source: str
    run_id: str
    has_run_id: bool
    model_id: str
    has_model_id: bool
    run_link: str
    description: str
    tags: Pairs


def parse_create_model_version(fields: Fields) -> CreateModelVersion:
    name = model_name(fields)
    source = required_string(fields, "source")
    return CreateModelVersion(
        name=name,
        source=source,
        run_id=_string(fields, "run_id"),
        has_run_id=fields.get("run_id") is not None,
        model_id=_string(fields, "model_id"),
        has_model_id=fields.get("model_id") is not None,
        run_link=_string(fields, "run_link"),
        description=description(fields),
        tags=tags(fields),
    )


@dataclass(frozen=True, slots=True)
class Search:
    filter: str | None
    max_results: int
    order_by: tuple[str, ...]
    offset: int


def parse_search(fields: Fields, *, default: int, limit: int) -> Search:
    max_results = optional_int(fields, "max_results")
    if max_results is None:
        max_results = default
    if max_results > limit:
        raise InvalidParameterValue(
            invalid_value("max_results", max_results)
            + " See the API docs for more information about request parameters."
        )
    if max_results < 1:
        raise InvalidParameterValue(
            f"Invalid value for max_results. It must be a positive integer, but got {max_results}"
        )
    token = optional_string(fields, "page_token") or None
    return Search(
        filter=optional_string(fields, "filter") or None,
        max_results=max_results,
        order_by=tuple(string_list(fields, "order_by")),
        offset=pagination.decode(token).offset,
    )


def stages(fields: Fields) -> tuple[str, ...]:
    return tuple(rr.canonical_stage(s) for s in string_list(fields, "stages"))


def required_stage(fields: Fields) -> str:
    return required_string(fields, "stage")
