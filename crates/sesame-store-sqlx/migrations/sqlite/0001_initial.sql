-- Sesame schema, version 1. Times are INTEGER unix seconds (store time);
-- ids and hashes are BLOBs. No column holds a usable token: refresh secrets
-- are stored as SHA-256 only, signing keys sealed with the master key.

CREATE TABLE users (
    id             BLOB PRIMARY KEY,
    email          TEXT NOT NULL,
    email_key      TEXT NOT NULL UNIQUE,   -- lower-cased address: unique case-insensitively
    password_hash  TEXT NOT NULL,
    email_verified INTEGER NOT NULL DEFAULT 0,
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE sessions (
    id              BLOB PRIMARY KEY,
    user_id         BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    transport       TEXT NOT NULL,
    gen             INTEGER NOT NULL,
    cur             BLOB NOT NULL,          -- SHA-256(secret_gen)
    prev            BLOB,                   -- SHA-256(secret_gen-1)
    rotated_at      INTEGER NOT NULL,
    rotated_ua_hash BLOB,
    grace_answers   INTEGER NOT NULL DEFAULT 0,
    key_ver         INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    idle_expires_at INTEGER,
    expires_at      INTEGER NOT NULL,
    auth_time       INTEGER NOT NULL,
    aal             TEXT NOT NULL,
    revoked_at      INTEGER,
    revoke_reason   TEXT,
    ip              TEXT,
    user_agent      TEXT,
    claims          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX sessions_by_user ON sessions (user_id, last_seen_at);

-- One row per revocation, for liveness sets and the revocation feed.
CREATE TABLE revocations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id BLOB NOT NULL,
    reason     TEXT NOT NULL,
    not_after  INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    state          TEXT NOT NULL,
    sealed_private BLOB NOT NULL,
    public         BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    retired_at     INTEGER
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    user_id    BLOB,
    session_id BLOB,
    ip         TEXT,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_user ON audit_log (user_id, at);
CREATE INDEX audit_by_time ON audit_log (at);
