"""The projector's SQL, one statement per table operation, bound parameters only.

Each batch writes a table with one statement over arrays (``unnest``), never one per row;
metric chunks are written with COPY (see ``store``).
"""

from __future__ import annotations

import re

# -- event log ----------------------------------------------------------------------------------

RECORD_ENTRIES = """
INSERT INTO event_log (shard, entry_ms, entry_seq, accepted_at, payload)
SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[])
ON CONFLICT DO NOTHING
RETURNING entry_ms, entry_seq
"""

# -- experiments --------------------------------------------------------------------------------

INSERT_EXPERIMENTS = """
INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage,
                         creation_time, last_update_time, deleted_time)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                     $5::bigint[], $6::bigint[], $7::bigint[])
"""

PATCH_EXPERIMENTS = """
UPDATE experiments e SET
    name = COALESCE(u.name, e.name),
    last_update_time = COALESCE(u.last_update_time, e.last_update_time),
    lifecycle_stage = COALESCE(u.lifecycle_stage, e.lifecycle_stage),
    deleted_time = CASE WHEN u.set_deleted_time THEN u.deleted_time ELSE e.deleted_time END
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bool[], $6::bigint[])
    AS u(experiment_id, name, last_update_time, lifecycle_stage, set_deleted_time, deleted_time)
WHERE e.experiment_id = u.experiment_id
"""

UPSERT_EXPERIMENT_TAGS = """
INSERT INTO experiment_tags (experiment_id, key, value)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
ON CONFLICT (experiment_id, key) DO UPDATE SET value = EXCLUDED.value
"""

DELETE_EXPERIMENT_TAGS = """
DELETE FROM experiment_tags t
USING unnest($1::bigint[], $2::text[]) AS u(experiment_id, key)
WHERE t.experiment_id = u.experiment_id AND t.key = u.key
"""

# -- runs ---------------------------------------------------------------------------------------

# A run whose creation is applied after its experiment was deleted is deleted with it: the
# experiment's events travel on another shard, which may be applied first, and ingest accepts
# no run in a deleted experiment, so such a run was created before the delete cascaded.
INSERT_RUNS = """
INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, end_time,
                  lifecycle_stage, artifact_uri, deleted_time)
SELECT u.run_id, u.experiment_id, u.name, u.user_id, u.status, u.start_time, u.end_time,
       CASE WHEN e.lifecycle_stage = 'deleted' THEN 'deleted' ELSE u.lifecycle_stage END,
       u.artifact_uri,
       CASE WHEN e.lifecycle_stage = 'deleted' AND u.lifecycle_stage <> 'deleted'
            THEN e.deleted_time ELSE u.deleted_time END
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
            $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::bigint[])
    AS u(run_id, experiment_id, name, user_id, status, start_time, end_time,
         lifecycle_stage, artifact_uri, deleted_time)
LEFT JOIN experiments e ON e.experiment_id = u.experiment_id
"""

PATCH_RUNS = """
UPDATE runs r SET
    name = COALESCE(u.name, r.name),
    status = COALESCE(u.status, r.status),
    end_time = COALESCE(u.end_time, r.end_time),
    lifecycle_stage = COALESCE(u.lifecycle_stage, r.lifecycle_stage),
    deleted_time = CASE WHEN u.set_deleted_time THEN u.deleted_time ELSE r.deleted_time END
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bool[],
            $7::bigint[])
    AS u(run_id, name, status, end_time, lifecycle_stage, set_deleted_time, deleted_time)
WHERE r.run_id = u.run_id
"""

CASCADE_RUNS = """
UPDATE runs SET lifecycle_stage = $2, deleted_time = $3 WHERE experiment_id = $1
"""

# After INSERT_RUNS: rows of these runs written before them (none, unless entries of a run were
# applied out of order) get the run's experiment. One statement; each probe is a run_id prefix
# of a primary or unique key.
BACKFILL_RUN_EXPERIMENT = """
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::bigint[]) AS u(run_id, experiment_id)
), p AS (
    UPDATE params t SET experiment_id = u.experiment_id FROM u
    WHERE t.run_id = u.run_id AND t.experiment_id IS NULL
), g AS (
    UPDATE run_tags t SET experiment_id = u.experiment_id FROM u
    WHERE t.run_id = u.run_id AND t.experiment_id IS NULL
)
UPDATE metric_series t SET experiment_id = u.experiment_id FROM u
WHERE t.run_id = u.run_id AND t.experiment_id IS NULL
"""

# params, run_tags and metric_series carry their run's experiment for search (migration 0006),
# taken from the runs row: a run's events follow its RunCreated on its shard, and segments write
# runs before tags and params. A run not projected yet leaves it NULL (LEFT JOIN), and
# BACKFILL_RUN_EXPERIMENT fills it when the run arrives, so the result does not depend on the
# order entries of different shards were applied in (live and replay agree).
UPSERT_RUN_TAGS = """
INSERT INTO run_tags (run_id, key, value, experiment_id)
SELECT u.run_id, u.key, u.value, r.experiment_id
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(run_id, key, value)
LEFT JOIN runs r ON r.run_id = u.run_id
ON CONFLICT (run_id, key) DO UPDATE SET value = EXCLUDED.value
"""

DELETE_RUN_TAGS = """
DELETE FROM run_tags t
USING unnest($1::text[], $2::text[]) AS u(run_id, key)
WHERE t.run_id = u.run_id AND t.key = u.key
"""

# Ingest already refused a changed value, so an existing param is the same one.
# ORDER BY the arrays' order: params.seq (migration 0008) is taken in insertion order, and
# keeps a run's params in the order they were logged, as MLflow lists them.
INSERT_PARAMS = """
INSERT INTO params (run_id, key, value, experiment_id)
SELECT u.run_id, u.key, u.value, r.experiment_id
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(run_id, key, value, i)
LEFT JOIN runs r ON r.run_id = u.run_id
ORDER BY u.i
ON CONFLICT (run_id, key) DO NOTHING
"""

# -- metrics ------------------------------------------------------------------------------------

_SERIES_COLUMNS = (
    "series_id, run_id, key, point_count, chunk_count, tail_count, latest_step, "
    "latest_timestamp, latest_value, min_value, max_value"
)

# Reads the state of every series of the batch, creating the missing ones first. A plain
# INSERT ... ON CONFLICT would burn an identity value per existing series per batch.
SERIES_STATE = f"""
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(run_id, key, i)
), created AS (
    INSERT INTO metric_series (run_id, key, experiment_id)
    SELECT u.run_id, u.key, r.experiment_id FROM u LEFT JOIN runs r ON r.run_id = u.run_id
    WHERE NOT EXISTS (
        SELECT 1 FROM metric_series s WHERE s.run_id = u.run_id AND s.key = u.key
    )
    ORDER BY u.i
    RETURNING {_SERIES_COLUMNS}
)
SELECT {_SERIES_COLUMNS} FROM created
UNION ALL
SELECT {", ".join("s." + c.strip() for c in _SERIES_COLUMNS.split(","))}
FROM metric_series s JOIN u ON s.run_id = u.run_id AND s.key = u.key
"""

UPDATE_SERIES = """
UPDATE metric_series s SET
    point_count = u.point_count,
    chunk_count = u.chunk_count,
    tail_count = u.tail_count,
    latest_step = u.latest_step,
    latest_timestamp = u.latest_timestamp,
    latest_value = u.latest_value,
    min_value = u.min_value,
    max_value = u.max_value
FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::integer[], $5::bigint[],
            $6::bigint[], $7::float8[], $8::float8[], $9::float8[])
    AS u(series_id, point_count, chunk_count, tail_count, latest_step, latest_timestamp,
         latest_value, min_value, max_value)
WHERE s.series_id = u.series_id
"""

# Appends to tail chunks by bytea concatenation; LEAST/GREATEST skip the NULL of an all-NaN side.
FILL_TAILS = """
UPDATE metric_chunks c SET
    n = c.n + u.n,
    min_step = LEAST(c.min_step, u.min_step),
    max_step = GREATEST(c.max_step, u.max_step),
    last_step = u.last_step,
    min_value = LEAST(c.min_value, u.min_value),
    max_value = GREATEST(c.max_value, u.max_value),
    last_value = u.last_value,
    steps = c.steps || u.steps,
    timestamps = c.timestamps || u.timestamps,
    vals = c.vals || u.vals,
    -- Extrema (0005): the appended piece's wins only when strictly beyond (first occurrence).
    min_value_pos = CASE WHEN u.min_value < c.min_value OR c.min_value IS NULL
                         THEN c.n + u.min_value_pos ELSE c.min_value_pos END,
    min_value_step = CASE WHEN u.min_value < c.min_value OR c.min_value IS NULL
                          THEN u.min_value_step ELSE c.min_value_step END,
    min_value_ts = CASE WHEN u.min_value < c.min_value OR c.min_value IS NULL
                        THEN u.min_value_ts ELSE c.min_value_ts END,
    max_value_pos = CASE WHEN u.max_value > c.max_value OR c.max_value IS NULL
                         THEN c.n + u.max_value_pos ELSE c.max_value_pos END,
    max_value_step = CASE WHEN u.max_value > c.max_value OR c.max_value IS NULL
                          THEN u.max_value_step ELSE c.max_value_step END,
    max_value_ts = CASE WHEN u.max_value > c.max_value OR c.max_value IS NULL
                        THEN u.max_value_ts ELSE c.max_value_ts END
FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::bigint[], $5::bigint[],
            $6::bigint[], $7::float8[], $8::float8[], $9::float8[], $10::bytea[],
            $11::bytea[], $12::bytea[], $13::integer[], $14::integer[], $15::bigint[],
            $16::bigint[], $17::bigint[], $18::bigint[])
    AS u(series_id, chunk_no, n, min_step, max_step, last_step, min_value, max_value,
         last_value, steps, timestamps, vals, min_value_pos, max_value_pos, min_value_step,
         max_value_step, min_value_ts, max_value_ts)
WHERE c.series_id = u.series_id AND c.chunk_no = u.chunk_no
"""


def _then(first: str, second: str) -> str:
    """``first`` as a data-modifying CTE, then ``second`` with its parameters numbered on."""
    taken = max(int(n) for n in re.findall(r"\$(\d+)", first))
    shifted = re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + taken}", second)
    return f"WITH done AS ({first})\n{shifted}"


FILL_TAILS_AND_UPDATE_SERIES = _then(FILL_TAILS, UPDATE_SERIES)
"""``FILL_TAILS`` then ``UPDATE_SERIES`` in one statement (parameters ``$1``-``$18`` then
``$19``-``$27``): they write different tables, so neither reads what the other writes."""


# -- replay -------------------------------------------------------------------------------------

READ_TABLES = (
    "experiments",
    "experiment_tags",
    "runs",
    "run_tags",
    "params",
    "metric_series",
    "metric_chunks",
    # projector/models_store.py
    "logged_models",
    "logged_model_tags",
    "logged_model_params",
    "logged_model_metrics",
    "datasets",
    "run_dataset_inputs",
    "run_dataset_input_tags",
    "run_model_inputs",
    "run_model_outputs",
    # projector/registry_plan.py
    "registered_models",
    "registered_model_tags",
    "model_versions",
    "model_version_tags",
    "registered_model_aliases",
)

TRUNCATE_READ_TABLES = f"TRUNCATE {', '.join(READ_TABLES)} RESTART IDENTITY"

# The Default experiment as migration 0001 creates it; replay keeps its original creation time.
INSERT_DEFAULT_EXPERIMENT = """
INSERT INTO experiments (experiment_id, name, artifact_location, creation_time, last_update_time)
VALUES (0, 'Default', 'mlflow-artifacts:/0', $1, $1)
"""

DEFAULT_EXPERIMENT_CREATION = """
SELECT COALESCE(
    (SELECT creation_time FROM experiments WHERE experiment_id = 0),
    (extract(epoch FROM now()) * 1000)::bigint)
"""

EVENT_LOG_IN_ORDER = """
SELECT shard, entry_ms, entry_seq, payload FROM event_log
WHERE shard >= 0  -- negative shards hold audit entries (docs/auth.md), which no table projects
ORDER BY entry_ms, shard, entry_seq
"""
