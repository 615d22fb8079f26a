"""Writes a segment's ``ModelRows``: one statement per table over arrays, bound parameters only.

Called by ``store._apply_segment`` inside the projector's transaction, after the segment's run
rows (a dataset input reads its run's experiment from ``runs``).
"""

from __future__ import annotations

import asyncpg

from runstream.projector.models_plan import ModelRows

INSERT_MODELS = """
INSERT INTO logged_models (model_id, experiment_id, name, artifact_location,
                           creation_timestamp_ms, last_updated_timestamp_ms, status,
                           lifecycle_stage, model_type, source_run_id)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                     $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[])
ON CONFLICT (model_id) DO NOTHING
"""

PATCH_MODELS = """
UPDATE logged_models m SET
    status = COALESCE(u.status, m.status),
    lifecycle_stage = COALESCE(u.lifecycle_stage, m.lifecycle_stage),
    last_updated_timestamp_ms = COALESCE(u.last_updated, m.last_updated_timestamp_ms)
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
    AS u(model_id, status, lifecycle_stage, last_updated)
WHERE m.model_id = u.model_id
"""

UPSERT_MODEL_TAGS = """
INSERT INTO logged_model_tags (model_id, key, value)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT (model_id, key) DO UPDATE SET value = EXCLUDED.value
"""

DELETE_MODEL_TAGS = """
DELETE FROM logged_model_tags t
USING unnest($1::text[], $2::text[]) AS u(model_id, key)
WHERE t.model_id = u.model_id AND t.key = u.key
"""

INSERT_MODEL_PARAMS = """
INSERT INTO logged_model_params (model_id, key, value)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT (model_id, key) DO NOTHING
"""

INSERT_MODEL_METRICS = """
INSERT INTO logged_model_metrics (model_id, key, timestamp_ms, step, run_id, value,
                                  dataset_name, dataset_digest)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                     $6::float8[], $7::text[], $8::text[])
ON CONFLICT DO NOTHING
"""

# Datasets and inputs in one statement: the run gives the experiment; a run's input of a
# dataset is kept from its first logging, and its tags come only with a new input. A dataset
# keeps the fields of its least (logged time, run id) logging, whatever the order in which
# the shards of different runs are applied.
INSERT_DATASET_INPUTS = """
WITH u AS (
    SELECT u.*, r.experiment_id
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::bigint[])
        WITH ORDINALITY AS u(run_id, name, digest, source_type, source, schema, profile,
                             logged_time, i)
    JOIN runs r ON r.run_id = u.run_id
), new_datasets AS (
    INSERT INTO datasets (experiment_id, name, digest, source_type, source, schema, profile,
                          first_logged_time, first_run_id)
    SELECT DISTINCT ON (experiment_id, name, digest)
           experiment_id, name, digest, source_type, source, schema, profile, logged_time,
           run_id
    FROM u ORDER BY experiment_id, name, digest, logged_time, run_id, i
    ON CONFLICT (experiment_id, name, digest) DO UPDATE SET
        source_type = EXCLUDED.source_type,
        source = EXCLUDED.source,
        schema = EXCLUDED.schema,
        profile = EXCLUDED.profile,
        first_logged_time = EXCLUDED.first_logged_time,
        first_run_id = EXCLUDED.first_run_id
    WHERE (EXCLUDED.first_logged_time, EXCLUDED.first_run_id)
        < (datasets.first_logged_time, datasets.first_run_id)
), new_inputs AS (
    INSERT INTO run_dataset_inputs (run_id, experiment_id, name, digest, logged_time)
    SELECT run_id, experiment_id, name, digest, logged_time FROM u ORDER BY i
    ON CONFLICT DO NOTHING
    RETURNING run_id, experiment_id, name, digest
)
INSERT INTO run_dataset_input_tags (run_id, experiment_id, name, digest, key, value)
SELECT n.run_id, n.experiment_id, n.name, n.digest, t.key, t.value
FROM new_inputs n
JOIN unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
    AS t(run_id, name, digest, key, value)
    ON t.run_id = n.run_id AND t.name = n.name AND t.digest = n.digest
ON CONFLICT DO NOTHING
"""

INSERT_MODEL_INPUTS = """
INSERT INTO run_model_inputs (run_id, model_id, logged_time)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
ON CONFLICT DO NOTHING
"""

INSERT_MODEL_OUTPUTS = """
INSERT INTO run_model_outputs (run_id, model_id, step, logged_time)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
ON CONFLICT DO NOTHING
"""


async def apply(conn: asyncpg.Connection, rows: ModelRows) -> None:
    """Write ``rows``; the caller owns the transaction."""
    if rows.models:
        models = list(rows.models.values())
        await conn.execute(
            INSERT_MODELS,
            [m.model_id for m in models],
            [m.experiment_id for m in models],
            [m.name for m in models],
            [m.artifact_location for m in models],
            [m.creation_timestamp_ms for m in models],
            [m.last_updated_timestamp_ms for m in models],
            [m.status for m in models],
            [m.lifecycle_stage for m in models],
            [m.model_type for m in models],
            [m.source_run_id for m in models],
        )
    if rows.model_patches:
        patches = list(rows.model_patches.values())
        await conn.execute(
            PATCH_MODELS,
            [p.model_id for p in patches],
            [p.status for p in patches],
            [p.lifecycle_stage for p in patches],
            [p.last_updated_timestamp_ms for p in patches],
        )
    if rows.model_tags:
        sets = [(k, v) for k, v in rows.model_tags.items() if v is not None]
        deletes = [k for k, v in rows.model_tags.items() if v is None]
        if sets:
            await conn.execute(
                UPSERT_MODEL_TAGS,
                [k[0] for k, _ in sets],
                [k[1] for k, _ in sets],
                [v for _, v in sets],
            )
        if deletes:
            await conn.execute(DELETE_MODEL_TAGS, [k[0] for k in deletes], [k[1] for k in deletes])
    if rows.model_params:
        keys = list(rows.model_params)
        await conn.execute(
            INSERT_MODEL_PARAMS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            list(rows.model_params.values()),
        )
    if rows.model_metrics:
        items = list(rows.model_metrics.items())
        await conn.execute(
            INSERT_MODEL_METRICS,
            [k[0] for k, _ in items],
            [k[1] for k, _ in items],
            [k[2] for k, _ in items],
            [k[3] for k, _ in items],
            [k[4] for k, _ in items],
            [m.value for _, m in items],
            [m.dataset_name for _, m in items],
            [m.dataset_digest for _, m in items],
        )
    if rows.dataset_inputs:
        await _dataset_inputs(conn, rows)
    if rows.model_inputs:
        keys2 = list(rows.model_inputs)
        await conn.execute(
            INSERT_MODEL_INPUTS,
            [k[0] for k in keys2],
            [k[1] for k in keys2],
            list(rows.model_inputs.values()),
        )
    if rows.model_outputs:
        keys3 = list(rows.model_outputs)
        await conn.execute(
            INSERT_MODEL_OUTPUTS,
            [k[0] for k in keys3],
            [k[1] for k in keys3],
            [k[2] for k in keys3],
            list(rows.model_outputs.values()),
        )


async def _dataset_inputs(conn: asyncpg.Connection, rows: ModelRows) -> None:
    events = list(rows.dataset_inputs.values())
    tags = [(e.run_id, e.name, e.digest, k, v) for e in events for k, v in e.tags]
    await conn.execute(
        INSERT_DATASET_INPUTS,
        [e.run_id for e in events],
        [e.name for e in events],
        [e.digest for e in events],
        [e.source_type for e in events],
        [e.source for e in events],
        [e.schema or None for e in events],
        [e.profile or None for e in events],
        [e.time for e in events],
        [t[0] for t in tags],
        [t[1] for t in tags],
        [t[2] for t in tags],
        [t[3] for t in tags],
        [t[4] for t in tags],
    )
