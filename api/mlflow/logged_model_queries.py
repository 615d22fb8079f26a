"""Read SQL of logged models and of a run's inputs and outputs, bound parameters only.

A model comes back in one round trip with its tags, params and metrics as arrays of records
(ordered by key), as ``queries`` does for runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg

from runstream.api.mlflow import logged_model_search as lms
from runstream.schemas import constants as c

Executor: TypeAlias = "asyncpg.Pool | asyncpg.Connection"
Row: TypeAlias = asyncpg.Record

_MODEL = """
SELECT m.model_id, m.experiment_id, m.name, m.artifact_location, m.creation_timestamp_ms,
       m.last_updated_timestamp_ms, m.status, m.lifecycle_stage, m.model_type,
       m.source_run_id, m.status_message,
       ARRAY(SELECT (t.key, t.value) FROM logged_model_tags t
             WHERE t.model_id = m.model_id ORDER BY t.key) AS tags,
       ARRAY(SELECT (p.key, p.value) FROM logged_model_params p
             WHERE p.model_id = m.model_id ORDER BY p.key) AS params,
       ARRAY(SELECT (x.key, x.value, x.timestamp_ms, x.step, x.run_id, x.dataset_name,
                     x.dataset_digest)
             FROM logged_model_metrics x WHERE x.model_id = m.model_id
             ORDER BY x.key, x.timestamp_ms, x.step, x.run_id) AS metrics
FROM logged_models m
"""

RUN_IO_COLUMNS = """
       ARRAY(SELECT (i.name, i.digest, d.source_type, d.source, d.schema, d.profile,
                     ARRAY(SELECT (t.key, t.value) FROM run_dataset_input_tags t
                           WHERE t.run_id = i.run_id AND t.experiment_id = i.experiment_id
                             AND t.name = i.name AND t.digest = i.digest
                           ORDER BY t.key))
             FROM run_dataset_inputs i
             JOIN datasets d ON d.experiment_id = i.experiment_id AND d.name = i.name
                            AND d.digest = i.digest
             WHERE i.run_id = r.run_id
             ORDER BY i.logged_time, i.name, i.digest) AS dataset_inputs,
       ARRAY(SELECT mi.model_id FROM run_model_inputs mi
             WHERE mi.run_id = r.run_id ORDER BY mi.logged_time, mi.model_id) AS model_inputs,
       ARRAY(SELECT (mo.model_id, mo.step) FROM run_model_outputs mo
             WHERE mo.run_id = r.run_id
             ORDER BY mo.logged_time, mo.model_id, mo.step) AS model_outputs"""
"""Columns of a run's inputs and outputs for a SELECT over ``runs r`` (``queries._RUN``);
``run_io_views.run_io_to_json`` shapes them."""


async def model(db: Executor, model_id: str) -> Row | None:
    """Columns of ``logged_models`` plus ``tags``, ``params`` and ``metrics``, deleted or not."""
    row: Row | None = await db.fetchrow(_MODEL + "WHERE m.model_id = $1", model_id)
    return row


async def models_by_ids(db: Executor, model_ids: Sequence[str]) -> list[Row]:
    rows: list[Row] = await db.fetch(_MODEL + "WHERE m.model_id = ANY($1::text[])", list(model_ids))
    return rows


async def search(db: Executor, request: lms.SearchRequest, offset: int) -> list[Row]:
    """Matching models in the request's order, up to ``max_results + 1`` from ``offset``."""
    sql, args = lms.build_query(request, offset)
    ids: list[Any] = await db.fetch(sql, *args)
    full = {r["model_id"]: r for r in await models_by_ids(db, [r["model_id"] for r in ids])}
    return [full[r["model_id"]] for r in ids if r["model_id"] in full]


async def model_tag_exists(db: Executor, model_id: str, key: str) -> bool:
    found = await db.fetchval(
        "SELECT 1 FROM logged_model_tags WHERE model_id = $1 AND key = $2", model_id, key
    )
    return found is not None


async def run_state(db: Executor, run_id: str) -> Row | None:
    """(experiment_id, lifecycle_stage, log-model history tag value) of a run."""
    row: Row | None = await db.fetchrow(
        "SELECT r.experiment_id, r.lifecycle_stage,"
        " (SELECT t.value FROM run_tags t WHERE t.run_id = r.run_id AND t.key = $2) AS history"
        " FROM runs r WHERE r.run_id = $1",
        run_id,
        c.LOG_MODEL_HISTORY_TAG,
    )
    return row
