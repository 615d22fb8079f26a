"""Read SQL of the model registry, bound parameters only.

A model or a version comes back in one round trip with its tags and aliases as arrays of
records (ordered by key / alias); a model's latest versions (one per stage) in a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import asyncpg

from runstream.api.mlflow import registry_search as rs
from runstream.api.mlflow.registry_requests import Search

Executor: TypeAlias = "asyncpg.Pool | asyncpg.Connection"
Row: TypeAlias = asyncpg.Record

MODEL_COLUMNS = """
m.name, m.creation_time, m.last_updated_time, m.description,
ARRAY(SELECT (t.key, t.value) FROM registered_model_tags t
      WHERE t.name = m.name ORDER BY t.key) AS tags,
ARRAY(SELECT (a.alias, a.version) FROM registered_model_aliases a
      WHERE a.name = m.name ORDER BY a.alias) AS aliases
"""

VERSION_COLUMNS = """
v.name, v.version, v.creation_time, v.last_updated_time, v.description, v.user_id,
v.current_stage, v.source, v.storage_location, v.run_id, v.run_link, v.status,
v.status_message, v.model_id,
ARRAY(SELECT (t.key, t.value) FROM model_version_tags t
      WHERE t.name = v.name AND t.version = v.version ORDER BY t.key) AS tags,
ARRAY(SELECT a.alias FROM registered_model_aliases a
      WHERE a.name = v.name AND a.version = v.version ORDER BY a.alias) AS aliases
"""

LIVE = "v.current_stage <> 'Deleted_Internal'"


async def model(db: Executor, name: str) -> Row | None:
    return await db.fetchrow(
        f"SELECT {MODEL_COLUMNS} FROM registered_models m WHERE m.name = $1", name
    )


async def model_exists(db: Executor, name: str) -> bool:
    found = await db.fetchval("SELECT 1 FROM registered_models WHERE name = $1", name)
    return found is not None


async def latest_versions(db: Executor, names: Sequence[str]) -> dict[str, list[Row]]:
    """Per model, its newest live version in each stage (MLflow's ``latest_versions``),
    ordered by version."""
    rows = await db.fetch(
        f"""
        SELECT * FROM (
            SELECT DISTINCT ON (v.name, v.current_stage) {VERSION_COLUMNS}
            FROM model_versions v WHERE v.name = ANY($1) AND {LIVE}
            ORDER BY v.name, v.current_stage, v.version DESC
        ) latest ORDER BY name, version
        """,
        list(names),
    )
    out: dict[str, list[Row]] = {name: [] for name in names}
    for row in rows:
        out[row["name"]].append(row)
    return out


async def version(db: Executor, name: str, number: int) -> Row | None:
    """A live version."""
    return await db.fetchrow(
        f"SELECT {VERSION_COLUMNS} FROM model_versions v"
        f" WHERE v.name = $1 AND v.version = $2 AND {LIVE}",
        name,
        number,
    )


async def version_by_alias(db: Executor, name: str, alias: str) -> Row | None:
    return await db.fetchrow(
        f"SELECT {VERSION_COLUMNS} FROM registered_model_aliases a"
        " JOIN model_versions v ON v.name = a.name AND v.version = a.version"
        f" WHERE a.name = $1 AND a.alias = $2 AND {LIVE}",
        name,
        alias,
    )


async def search_models(db: Executor, search: Search) -> list[Row]:
    """One page and one look-ahead row of ``search``."""
    sql, args = rs.models_query(
        MODEL_COLUMNS,
        rs.parse_models_filter(search.filter),
        rs.models_order(search.order_by),
        search.max_results + 1,
        search.offset,
    )
    return list(await db.fetch(sql, *args))


async def search_versions(db: Executor, search: Search) -> list[Row]:
    sql, args = rs.versions_query(
        VERSION_COLUMNS,
        rs.parse_versions_filter(search.filter),
        rs.versions_order(search.order_by),
        search.max_results + 1,
        search.offset,
    )
    return list(await db.fetch(sql, *args))


async def logged_model_location(db: Executor, model_id: str) -> tuple[str, str | None] | None:
    """(artifact location, source run id) of a logged model, deleted or not."""
    row = await db.fetchrow(
        "SELECT artifact_location, source_run_id FROM logged_models WHERE model_id = $1",
        model_id,
    )
    return None if row is None else (row["artifact_location"], row["source_run_id"])


async def logged_model_tag(db: Executor, model_id: str, key: str) -> str | None:
    value: str | None = await db.fetchval(
        "SELECT value FROM logged_model_tags WHERE model_id = $1 AND key = $2", model_id, key
    )
    return value


async def run_artifact_uri(db: Executor, run_id: str) -> str | None:
    value: str | None = await db.fetchval("SELECT artifact_uri FROM runs WHERE run_id = $1", run_id)
    return value
