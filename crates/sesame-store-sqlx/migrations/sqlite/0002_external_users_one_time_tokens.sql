-- Version 2: shadow users for externally authenticated users (admin API,
-- library mode) and one-time tokens (handoff codes; later mail links).
-- Shadow users keep email = '' and email_key = ' external:<id>' (no
-- normalised address starts with a space), so version 1 still reads them.

ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_by_external_id ON users (external_id);

-- Only the SHA-256 of a one-time token is stored.
CREATE TABLE one_time_tokens (
    hash       BLOB PRIMARY KEY,
    kind       TEXT NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    payload    TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX one_time_tokens_by_expiry ON one_time_tokens (expires_at);
