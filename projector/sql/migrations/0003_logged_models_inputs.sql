-- MLflow 3 logged models, and the datasets and models runs use and produce
-- (schemas/models.py, schemas/inputs.py; projected by projector/models_plan.py).
--
-- No foreign keys: a model's events travel on the model's shard and a run's inputs on the
-- run's, so rows of one may be applied before the rows they point to; reads join.

CREATE TABLE logged_models (
    model_id                  text   PRIMARY KEY,
    experiment_id             bigint NOT NULL,
    name                      text   NOT NULL,
    artifact_location         text   NOT NULL,
    creation_timestamp_ms     bigint NOT NULL,
    last_updated_timestamp_ms bigint NOT NULL,
    status                    text   NOT NULL,            -- PENDING, READY, FAILED
    lifecycle_stage           text   NOT NULL DEFAULT 'active',
    model_type                text,
    source_run_id             text,
    status_message            text
);
-- search_logged_models: one experiment's live models, newest first (MLflow's default order).
CREATE INDEX logged_models_search
    ON logged_models (experiment_id, lifecycle_stage, creation_timestamp_ms DESC, model_id);
CREATE INDEX logged_models_source_run ON logged_models (source_run_id);

CREATE TABLE logged_model_tags (
    model_id text NOT NULL,
    key      text NOT NULL,
    value    text NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE logged_model_params (
    model_id text NOT NULL,
    key      text NOT NULL,
    value    text NOT NULL,
    PRIMARY KEY (model_id, key)
);

-- Metrics a run logged against a model (MLflow's logged_model_metrics, same key).
CREATE TABLE logged_model_metrics (
    model_id       text   NOT NULL,
    key            text   NOT NULL,
    timestamp_ms   bigint NOT NULL,
    step           bigint NOT NULL,
    run_id         text   NOT NULL,
    value          double precision NOT NULL,
    dataset_name   text,
    dataset_digest text,
    PRIMARY KEY (model_id, key, timestamp_ms, step, run_id)
);

-- Datasets, one per experiment, name and digest: the first one logged keeps its fields.
-- "First" is the least (first_logged_time, first_run_id), not the first applied: runs of
-- one experiment travel on different shards, and replay must rebuild the same row.
CREATE TABLE datasets (
    experiment_id     bigint NOT NULL,
    name              text   NOT NULL,
    digest            text   NOT NULL,
    source_type       text   NOT NULL,
    source            text   NOT NULL,
    schema            text,
    profile           text,
    first_logged_time bigint NOT NULL,
    first_run_id      text   NOT NULL,
    PRIMARY KEY (experiment_id, name, digest)
);

-- A run's use of a dataset, once per run and dataset, with the tags of its first logging.
CREATE TABLE run_dataset_inputs (
    run_id        text   NOT NULL,
    experiment_id bigint NOT NULL,
    name          text   NOT NULL,
    digest        text   NOT NULL,
    logged_time   bigint NOT NULL,
    PRIMARY KEY (run_id, experiment_id, name, digest)
);

CREATE TABLE run_dataset_input_tags (
    run_id        text   NOT NULL,
    experiment_id bigint NOT NULL,
    name          text   NOT NULL,
    digest        text   NOT NULL,
    key           text   NOT NULL,
    value         text   NOT NULL,
    PRIMARY KEY (run_id, experiment_id, name, digest, key)
);

-- Logged models a run used (model inputs) and produced (model outputs, at a step).
CREATE TABLE run_model_inputs (
    run_id      text   NOT NULL,
    model_id    text   NOT NULL,
    logged_time bigint NOT NULL,
    PRIMARY KEY (run_id, model_id)
);

CREATE TABLE run_model_outputs (
    run_id      text   NOT NULL,
    model_id    text   NOT NULL,
    step        bigint NOT NULL,
    logged_time bigint NOT NULL,
    PRIMARY KEY (run_id, model_id, step)
);
CREATE INDEX run_model_outputs_model ON run_model_outputs (model_id);
