-- Sesame schema, version 1 (PostgreSQL). The same tables as SQLite's:
-- times are BIGINT unix seconds (store time), ids and hashes BYTEA of fixed
-- length. No column holds a usable token: refresh secrets are stored as
-- SHA-256 only, signing keys sealed with the master key.

CREATE TABLE users (
    id             BYTEA PRIMARY KEY CHECK (octet_length(id) = 16),
    email          TEXT NOT NULL,
    email_key      TEXT NOT NULL UNIQUE,   -- lower-cased address: unique case-insensitively
    password_hash  TEXT NOT NULL,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE sessions (
    id              BYTEA PRIMARY KEY CHECK (octet_length(id) = 16),
    user_id         BYTEA NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    transport       TEXT NOT NULL,
    gen             BIGINT NOT NULL,
    cur             BYTEA NOT NULL CHECK (octet_length(cur) = 32),   -- SHA-256(secret_gen)
    prev            BYTEA CHECK (octet_length(prev) = 32),           -- SHA-256(secret_gen-1)
    rotated_at      BIGINT NOT NULL,
    rotated_ua_hash BYTEA,
    grace_answers   BIGINT NOT NULL DEFAULT 0,
    key_ver         BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    idle_expires_at BIGINT,
    expires_at      BIGINT NOT NULL,
    auth_time       BIGINT NOT NULL,
    aal             TEXT NOT NULL,
    revoked_at      BIGINT,
    revoke_reason   TEXT,
    ip              TEXT,
    user_agent      TEXT,
    claims          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX sessions_by_user ON sessions (user_id, last_seen_at);

-- One row per revocation, for liveness sets and the revocation feed.
CREATE TABLE revocations (
    seq        BIGSERIAL PRIMARY KEY,
    session_id BYTEA NOT NULL,
    reason     TEXT NOT NULL,
    not_after  BIGINT NOT NULL
);

-- One row, locked (FOR UPDATE) by every transaction that writes revocation
-- rows, before it touches a session. Sequence numbers are handed out at
-- insert time but become visible at commit; without this lock two revoking
-- transactions could commit out of `seq` order, and a feed reader that has
-- already seen the higher `seq` would never read the lower one.
CREATE TABLE revocation_order (
    id SMALLINT PRIMARY KEY
);
INSERT INTO revocation_order (id) VALUES (1);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    state          TEXT NOT NULL,
    sealed_private BYTEA NOT NULL,
    public         BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    retired_at     BIGINT
);

CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    user_id    BYTEA,
    session_id BYTEA,
    ip         TEXT,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_user ON audit_log (user_id, at);
CREATE INDEX audit_by_time ON audit_log (at);
