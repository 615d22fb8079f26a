"""Stateless checks of registry events, with MLflow's rules and messages. Pure.

MLflow's ``_validate_model_name``, ``_validate_registered_model_tag``,
``_validate_model_version_tag``, ``_validate_model_alias_name`` (and ``..._reserved``) and
``get_canonical_stage``; each raises ``InvalidParameterValue`` as MLflow does. The api room
calls the same functions on request fields, so a refusal reads the same from either door.
"""

from __future__ import annotations

import posixpath
import re

from runstream.schemas import registry as rg
from runstream.schemas import validation as v
from runstream.schemas.errors import InvalidParameterValue

MAX_REGISTRY_TAG_KEY_LENGTH = 250
MAX_REGISTRY_TAG_VALUE_LENGTH = 100_000
MAX_ALIAS_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 100_000
"""Not an MLflow limit (its column is TEXT): a bound, as every string here has one."""
MAX_SOURCE_LENGTH = 100_000
"""Not an MLflow limit (its column is VARCHAR(500) on MySQL only): a bound."""
MAX_NAME_LENGTH = 256
"""MLflow's ``registered_models.name`` column is VARCHAR(256)."""
LATEST_ALIAS = "latest"

_ALIAS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")


def check_model_name(name: str, path: str = "name") -> None:
    if name.strip() == "":
        raise InvalidParameterValue(v.missing_value(path))
    if "/" in name or ":" in name:
        raise InvalidParameterValue(
            f"Invalid model name '{name}'. Names cannot contain '/' or ':'."
        )
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise InvalidParameterValue(
            v.invalid_value(
                path,
                name,
                "Names may be treated as files in certain cases, and must not resolve to other"
                f" names when treated as such. This name would resolve to {norm!r}",
            )
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidParameterValue(v.exceeds_maximum_length(path, MAX_NAME_LENGTH))


def check_tag(key: str, value: str) -> None:
    """A registered-model or model-version tag (MLflow's messages name ``key``/``value``)."""
    v.check_key_name(key, "key")
    if len(key) > MAX_REGISTRY_TAG_KEY_LENGTH:
        raise InvalidParameterValue(v.exceeds_maximum_length("key", MAX_REGISTRY_TAG_KEY_LENGTH))
    if len(value) > MAX_REGISTRY_TAG_VALUE_LENGTH:
        raise InvalidParameterValue(
            v.exceeds_maximum_length("value", MAX_REGISTRY_TAG_VALUE_LENGTH)
        )


def check_tag_key(key: str) -> None:
    """A tag key to delete: MLflow's ``_validate_tag_name``."""
    if len(key) > MAX_REGISTRY_TAG_KEY_LENGTH:
        raise InvalidParameterValue(v.exceeds_maximum_length("key", MAX_REGISTRY_TAG_KEY_LENGTH))
    v.check_key_name(key, "key")


def check_alias(alias: str, *, reserved: bool) -> None:
    """``reserved``: also refuse the names MLflow keeps for itself (setting an alias)."""
    if alias == "":
        raise InvalidParameterValue("Registered model alias name cannot be empty.")
    if not _ALIAS.match(alias):
        raise InvalidParameterValue(
            f"Invalid alias name: '{alias}'. Names may only contain alphanumerics, "
            "underscores (_), and dashes (-)."
        )
    if len(alias) > MAX_ALIAS_LENGTH:
        raise InvalidParameterValue(
            v.exceeds_maximum_length("Registered model alias name", MAX_ALIAS_LENGTH)
        )
    if not reserved:
        return
    if alias.lower() == LATEST_ALIAS:
        raise InvalidParameterValue("'latest' alias name (case insensitive) is reserved.")
    if _VERSION_ALIAS.match(alias):
        raise InvalidParameterValue(f"Version alias name '{alias}' is reserved.")


def canonical_stage(stage: str) -> str:
    """MLflow's ``get_canonical_stage``: case-insensitive, refused when unknown."""
    for known in rg.STAGES:
        if stage.lower() == known.lower():
            return known
    raise InvalidParameterValue(
        f"Invalid Model Version stage: {stage}. Value must be one of {', '.join(rg.STAGES)}."
    )


def check_version(version: int, path: str) -> None:
    if version < 1:
        raise InvalidParameterValue(v.invalid_value(path, version, "must be at least 1"))
    v.validate_int64(version, path)


def check_event(event: rg.RegistryEvent, path: str) -> None:
    """Check one registry event (events from the native endpoint get the same checks)."""
    check_model_name(event.name, f"{path}.name")
    version = getattr(event, "version", None)
    if version is not None and not isinstance(event, rg.ModelVersionCreated):
        check_version(version, f"{path}.version")
    time = getattr(event, "time", None)
    if time is not None:
        v.validate_int64(time, f"{path}.time", minimum=0)
    match event:
        case rg.RegisteredModelCreated():
            for key, value in event.tags:
                check_tag(key, value)
            v.validate_string(event.description, f"{path}.description", MAX_DESCRIPTION_LENGTH)
        case rg.RegisteredModelRenamed():
            check_model_name(event.new_name, "new_name")
        case rg.RegisteredModelUpdated() | rg.ModelVersionUpdated():
            v.validate_string(event.description, f"{path}.description", MAX_DESCRIPTION_LENGTH)
        case rg.RegisteredModelTagSet() | rg.ModelVersionTagSet():
            check_tag(event.key, event.value)
        case rg.RegisteredModelTagDeleted() | rg.ModelVersionTagDeleted():
            check_tag_key(event.key)
        case rg.RegisteredModelAliasSet():
            check_alias(event.alias, reserved=True)
        case rg.RegisteredModelAliasDeleted():
            check_alias(event.alias, reserved=False)
        case rg.ModelVersionCreated():
            if event.version != 0:
                check_version(event.version, f"{path}.version")
            for key, value in event.tags:
                check_tag(key, value)
            for name, text in (
                ("source", event.source),
                ("storage_location", event.storage_location),
                ("run_link", event.run_link),
                ("description", event.description),
            ):
                v.validate_string(text, f"{path}.{name}", MAX_SOURCE_LENGTH)
            if event.run_id:
                v.validate_run_id(event.run_id, f"{path}.run_id")
        case rg.ModelVersionStageTransitioned():
            if event.stage not in rg.STAGES:
                canonical_stage(event.stage)
                raise InvalidParameterValue(
                    v.invalid_value(f"{path}.stage", event.stage, "use the canonical stage name")
                )
            if event.archive_existing_versions and event.stage not in rg.ACTIVE_STAGES:
                raise InvalidParameterValue(archive_refusal(event.stage))
        case _:
            pass


def archive_refusal(stage: str) -> str:
    return (
        "Model version transition cannot archive existing model versions because "
        f"'{stage}' is not an Active stage. Valid stages are {list(rg.ACTIVE_STAGES)}"
    )
