-- Users, API tokens and permission grants (docs/auth.md). Not read tables: no event rebuilds
-- them, `runstream replay` leaves them alone; each change is recorded in event_log (shard -1,
-- the audit shard) in the same transaction.

CREATE TABLE auth_users (
    user_id       bigserial   PRIMARY KEY,
    username      text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,   -- argon2id, PHC string
    is_admin      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_tokens (
    token_id    bigserial   PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES auth_users (user_id) ON DELETE CASCADE,
    name        text        NOT NULL,
    token_hash  bytea       NOT NULL UNIQUE,   -- sha256 of the token; the token is shown once
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id);

CREATE TABLE auth_grants (
    user_id       bigint      NOT NULL REFERENCES auth_users (user_id) ON DELETE CASCADE,
    resource_type text        NOT NULL CHECK (resource_type IN ('experiment', 'registered_model')),
    resource_id   text        NOT NULL,   -- experiment id, or registered model name
    permission    text        NOT NULL CHECK (permission IN ('READ', 'USE', 'EDIT', 'MANAGE', 'DENY')),
    granted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, resource_type, resource_id)
);
CREATE INDEX auth_grants_resource ON auth_grants (resource_type, resource_id);

-- Audit entries share event_log with the stream entries; this sequence numbers them.
CREATE SEQUENCE auth_audit_seq;
