"""Projection of registry events into SQL statements: pure, no I/O.

Registry events are few (people register models, not training loops), and a rename, a delete
or an archiving transition changes rows the batch cannot see; so each event becomes a short
list of statements applied in stream order (``registry_statements``), rather than rows folded
by key. Semantics follow MLflow's ``model_registry/sqlalchemy_store.py``:

- ``create_registered_model`` / ``create_model_version``: creation and last-updated times
  are the event's time; a new version also touches its model's ``last_updated_time``.
- ``rename_registered_model``: versions, tags and aliases follow the name (foreign keys
  ``ON UPDATE CASCADE``); the model and every version get the rename's time.
- ``transition_model_version_stage``: with ``archive_existing_versions``, the other versions
  in the target stage become Archived; the model's last-updated time moves too.
- ``delete_model_version``: a soft delete that redacts the row and drops its aliases;
  ``delete_registered_model``: a hard delete of everything under the name.
- Tag and alias changes, and ``update_model_version``, leave the model's time alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runstream.schemas import registry as rg

DELETED_STAGE = "Deleted_Internal"
"""MLflow's ``STAGE_DELETED_INTERNAL``."""


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    args: tuple[Any, ...]


INSERT_MODEL = """
INSERT INTO registered_models (name, creation_time, last_updated_time, description)
VALUES ($1, $2, $2, $3)
ON CONFLICT (name) DO NOTHING
"""
TOUCH_MODEL = "UPDATE registered_models SET last_updated_time = $2 WHERE name = $1"
RENAME_MODEL = """
UPDATE registered_models SET name = $2, last_updated_time = $3 WHERE name = $1
"""
TOUCH_VERSIONS = "UPDATE model_versions SET last_updated_time = $2 WHERE name = $1"
UPDATE_MODEL = """
UPDATE registered_models SET description = $2, last_updated_time = $3 WHERE name = $1
"""
DELETE_MODEL = "DELETE FROM registered_models WHERE name = $1"
UPSERT_MODEL_TAGS = """
INSERT INTO registered_model_tags (name, key, value)
SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS u(k, v)
ON CONFLICT (name, key) DO UPDATE SET value = EXCLUDED.value
"""
DELETE_MODEL_TAG = "DELETE FROM registered_model_tags WHERE name = $1 AND key = $2"
UPSERT_ALIAS = """
INSERT INTO registered_model_aliases (name, alias, version) VALUES ($1, $2, $3)
ON CONFLICT (name, alias) DO UPDATE SET version = EXCLUDED.version
"""
DELETE_ALIAS = "DELETE FROM registered_model_aliases WHERE name = $1 AND alias = $2"
INSERT_VERSION = """
INSERT INTO model_versions (name, version, creation_time, last_updated_time, description,
                            user_id, source, storage_location, run_id, run_link, model_id)
VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (name, version) DO NOTHING
"""
UPSERT_VERSION_TAGS = """
INSERT INTO model_version_tags (name, version, key, value)
SELECT $1, $2, k, v FROM unnest($3::text[], $4::text[]) AS u(k, v)
ON CONFLICT (name, version, key) DO UPDATE SET value = EXCLUDED.value
"""
DELETE_VERSION_TAG = """
DELETE FROM model_version_tags WHERE name = $1 AND version = $2 AND key = $3
"""
UPDATE_VERSION = """
UPDATE model_versions SET description = $3, last_updated_time = $4
WHERE name = $1 AND version = $2
"""
ARCHIVE_STAGE = """
UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $4
WHERE name = $1 AND version <> $2 AND current_stage = $3
"""
SET_STAGE = """
UPDATE model_versions SET current_stage = $3, last_updated_time = $4
WHERE name = $1 AND version = $2
"""
DELETE_VERSION_ALIASES = "DELETE FROM registered_model_aliases WHERE name = $1 AND version = $2"
DELETE_VERSION = f"""
UPDATE model_versions SET current_stage = '{DELETED_STAGE}', last_updated_time = $3,
    description = NULL, user_id = NULL, source = 'REDACTED-SOURCE-PATH',
    run_id = 'REDACTED-RUN-ID', run_link = 'REDACTED-RUN-LINK', status_message = NULL
WHERE name = $1 AND version = $2
"""


def _folded(pairs: rg.Pairs) -> tuple[list[str], list[str]]:
    """Keys and values, a later pair winning over an earlier one with its key."""
    folded = dict(pairs)
    return list(folded), list(folded.values())


def registry_statements(event: rg.RegistryEvent) -> list[Statement]:
    """The statements that apply ``event``, in order."""
    s = Statement
    match event:
        case rg.RegisteredModelCreated():
            out = [s(INSERT_MODEL, (event.name, event.time, event.description or None))]
            if event.tags:
                out.append(s(UPSERT_MODEL_TAGS, (event.name, *_folded(event.tags))))
            return out
        case rg.RegisteredModelRenamed():
            return [
                s(RENAME_MODEL, (event.name, event.new_name, event.time)),
                s(TOUCH_VERSIONS, (event.new_name, event.time)),
            ]
        case rg.RegisteredModelUpdated():
            return [s(UPDATE_MODEL, (event.name, event.description or None, event.time))]
        case rg.RegisteredModelDeleted():
            return [s(DELETE_MODEL, (event.name,))]
        case rg.RegisteredModelTagSet():
            return [s(UPSERT_MODEL_TAGS, (event.name, [event.key], [event.value]))]
        case rg.RegisteredModelTagDeleted():
            return [s(DELETE_MODEL_TAG, (event.name, event.key))]
        case rg.RegisteredModelAliasSet():
            return [s(UPSERT_ALIAS, (event.name, event.alias, event.version))]
        case rg.RegisteredModelAliasDeleted():
            return [s(DELETE_ALIAS, (event.name, event.alias))]
        case rg.ModelVersionCreated():
            out = [
                s(
                    INSERT_VERSION,
                    (
                        event.name,
                        event.version,
                        event.time,
                        event.description,
                        event.user_id or None,
                        event.source,
                        event.storage_location or event.source,
                        event.run_id or None,
                        event.run_link,
                        event.model_id or None,
                    ),
                ),
                s(TOUCH_MODEL, (event.name, event.time)),
            ]
            if event.tags:
                out.append(
                    s(UPSERT_VERSION_TAGS, (event.name, event.version, *_folded(event.tags)))
                )
            return out
        case rg.ModelVersionUpdated():
            return [s(UPDATE_VERSION, (event.name, event.version, event.description, event.time))]
        case rg.ModelVersionStageTransitioned():
            out = []
            if event.archive_existing_versions:
                out.append(s(ARCHIVE_STAGE, (event.name, event.version, event.stage, event.time)))
            out.append(s(SET_STAGE, (event.name, event.version, event.stage, event.time)))
            out.append(s(TOUCH_MODEL, (event.name, event.time)))
            return out
        case rg.ModelVersionDeleted():
            return [
                s(DELETE_VERSION_ALIASES, (event.name, event.version)),
                s(DELETE_VERSION, (event.name, event.version, event.time)),
                s(TOUCH_MODEL, (event.name, event.time)),
            ]
        case rg.ModelVersionTagSet():
            return [s(UPSERT_VERSION_TAGS, (event.name, event.version, [event.key], [event.value]))]
        case rg.ModelVersionTagDeleted():
            return [s(DELETE_VERSION_TAG, (event.name, event.version, event.key))]
    raise TypeError(f"no projection for event type {type(event).__name__}")
