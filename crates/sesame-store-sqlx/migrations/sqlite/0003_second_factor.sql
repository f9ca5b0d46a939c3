-- Version 3: the TOTP second factor and its recovery codes (expand-only).
-- The secret is sealed with the master key; codes are stored as SHA-256.

ALTER TABLE users ADD COLUMN totp_secret BLOB;
ALTER TABLE users ADD COLUMN totp_confirmed INTEGER NOT NULL DEFAULT 0;
-- The last step a code was accepted for: a code works once, never after a newer one.
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;

CREATE TABLE recovery_codes (
    user_id BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    hash    BLOB NOT NULL,
    PRIMARY KEY (user_id, hash)
);
