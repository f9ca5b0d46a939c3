-- Sesame schema, version 1 (MariaDB; MySQL 8 expected to work). The same
-- tables as SQLite's: times are BIGINT unix seconds (store time), ids and
-- hashes fixed-length BINARY. No column holds a usable token: refresh
-- secrets are stored as SHA-256 only, signing keys sealed with the master key.
-- TEXT columns carry no DEFAULT (MySQL 8 allows only expression defaults
-- there); the store always writes them.

CREATE TABLE users (
    id             BINARY(16) NOT NULL PRIMARY KEY,
    email          VARCHAR(254) NOT NULL,
    -- The lower-cased address, compared byte for byte: uniqueness is exactly
    -- on the key the engine computed, not on a collation's idea of equality.
    email_key      VARCHAR(254) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    password_hash  TEXT NOT NULL,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE KEY users_email_key (email_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE sessions (
    id              BINARY(16) NOT NULL PRIMARY KEY,
    user_id         BINARY(16) NOT NULL,
    transport       VARCHAR(16) NOT NULL,
    gen             BIGINT NOT NULL,
    cur             BINARY(32) NOT NULL,     -- SHA-256(secret_gen)
    prev            BINARY(32) NULL,         -- SHA-256(secret_gen-1)
    rotated_at      BIGINT NOT NULL,
    rotated_ua_hash BINARY(32) NULL,
    grace_answers   BIGINT NOT NULL DEFAULT 0,
    key_ver         BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    idle_expires_at BIGINT NULL,
    expires_at      BIGINT NOT NULL,
    auth_time       BIGINT NOT NULL,
    aal             VARCHAR(16) NOT NULL,
    revoked_at      BIGINT NULL,
    revoke_reason   VARCHAR(32) NULL,
    ip              TEXT NULL,
    user_agent      TEXT NULL,
    claims          TEXT NOT NULL,
    KEY sessions_by_user (user_id, last_seen_at),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- One row per revocation, for liveness sets and the revocation feed.
CREATE TABLE revocations (
    seq        BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    session_id BINARY(16) NOT NULL,
    reason     VARCHAR(32) NOT NULL,
    not_after  BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- One row, locked (FOR UPDATE) by every transaction that writes revocation
-- rows, before it touches a session. Sequence numbers are handed out at
-- insert time but become visible at commit; without this lock two revoking
-- transactions could commit out of `seq` order, and a feed reader that has
-- already seen the higher `seq` would never read the lower one.
CREATE TABLE revocation_order (
    id SMALLINT NOT NULL PRIMARY KEY
) ENGINE = InnoDB;
INSERT INTO revocation_order (id) VALUES (1);

CREATE TABLE signing_keys (
    kid            VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    alg            VARCHAR(16) NOT NULL,
    state          VARCHAR(16) NOT NULL,
    sealed_private BLOB NOT NULL,
    public         BLOB NOT NULL,
    created_at     BIGINT NOT NULL,
    retired_at     BIGINT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE audit_log (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       VARCHAR(64) NOT NULL,
    user_id    BINARY(16) NULL,
    session_id BINARY(16) NULL,
    ip         TEXT NULL,
    detail     TEXT NOT NULL,
    KEY audit_by_user (user_id, at),
    KEY audit_by_time (at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
