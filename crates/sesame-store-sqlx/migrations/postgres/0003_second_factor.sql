-- Version 3: the TOTP second factor and its recovery codes (expand-only).
-- The secret is sealed with the master key; codes are stored as SHA-256.

ALTER TABLE users ADD COLUMN totp_secret BYTEA;
ALTER TABLE users ADD COLUMN totp_confirmed BOOLEAN NOT NULL DEFAULT FALSE;
-- The last step a code was accepted for: a code works once, never after a newer one.
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;

CREATE TABLE recovery_codes (
    user_id BYTEA NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    hash    BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (user_id, hash)
);
