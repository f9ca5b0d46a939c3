-- Version 3: the TOTP second factor and its recovery codes (expand-only).
-- The secret is sealed with the master key; codes are stored as SHA-256.

ALTER TABLE users
    ADD COLUMN totp_secret VARBINARY(255) NULL,
    ADD COLUMN totp_confirmed BOOLEAN NOT NULL DEFAULT FALSE,
    -- The last step a code was accepted for: a code works once, never after a newer one.
    ADD COLUMN totp_last_step BIGINT NULL;

CREATE TABLE recovery_codes (
    user_id BINARY(16) NOT NULL,
    hash    BINARY(32) NOT NULL,
    PRIMARY KEY (user_id, hash),
    CONSTRAINT recovery_codes_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
