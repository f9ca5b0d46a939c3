-- Version 2: shadow users for externally authenticated users (admin API,
-- library mode) and one-time tokens (handoff codes; later mail links).
-- Shadow users keep email = '' and email_key = ' external:<id>' (no
-- normalised address starts with a space), so version 1 still reads them.

ALTER TABLE users ADD COLUMN external_id VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
CREATE UNIQUE INDEX users_by_external_id ON users (external_id);

-- Only the SHA-256 of a one-time token is stored.
CREATE TABLE one_time_tokens (
    hash       BINARY(32) NOT NULL PRIMARY KEY,
    kind       VARCHAR(32) NOT NULL,
    user_id    BINARY(16) NOT NULL,
    payload    TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    KEY one_time_tokens_by_expiry (expires_at),
    CONSTRAINT one_time_tokens_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
