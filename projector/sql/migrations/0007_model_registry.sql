-- MLflow's model registry: registered models, their versions, tags and aliases
-- (schemas/registry.py; projected by projector/registry_plan.py).
--
-- Every registry event travels on one shard, so rows are applied in the order the names were
-- checked: foreign keys hold, and a rename cascades to the versions, tags and aliases.

CREATE TABLE registered_models (
    name              text   PRIMARY KEY,
    creation_time     bigint NOT NULL,
    last_updated_time bigint NOT NULL,
    description       text
);
-- search_registered_models orders by name (default) or last_updated_timestamp.
CREATE INDEX registered_models_last_updated ON registered_models (last_updated_time, name);

CREATE TABLE registered_model_tags (
    name  text NOT NULL REFERENCES registered_models (name) ON UPDATE CASCADE ON DELETE CASCADE,
    key   text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (name, key)
);

CREATE TABLE model_versions (
    name              text    NOT NULL
        REFERENCES registered_models (name) ON UPDATE CASCADE ON DELETE CASCADE,
    version           integer NOT NULL,
    creation_time     bigint  NOT NULL,
    last_updated_time bigint  NOT NULL,
    description       text,
    user_id           text,
    current_stage     text    NOT NULL DEFAULT 'None',  -- 'Deleted_Internal' once deleted
    source            text    NOT NULL,
    storage_location  text,
    run_id            text,
    run_link          text,
    status            text    NOT NULL DEFAULT 'READY',
    status_message    text,
    model_id          text,
    PRIMARY KEY (name, version)
);
-- search_model_versions by run_id (the UI's run page lists the versions of its run).
CREATE INDEX model_versions_run ON model_versions (run_id);
CREATE INDEX model_versions_last_updated ON model_versions (last_updated_time);

CREATE TABLE model_version_tags (
    name    text    NOT NULL,
    version integer NOT NULL,
    key     text    NOT NULL,
    value   text    NOT NULL,
    PRIMARY KEY (name, version, key),
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
        ON UPDATE CASCADE ON DELETE CASCADE
);

CREATE TABLE registered_model_aliases (
    name    text    NOT NULL
        REFERENCES registered_models (name) ON UPDATE CASCADE ON DELETE CASCADE,
    alias   text    NOT NULL,
    version integer NOT NULL,
    PRIMARY KEY (name, alias)
);
