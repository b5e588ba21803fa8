-- Users, their devices and sessions, and OTP requests.
-- Times are Unix epoch milliseconds (INTEGER); ids are UUID strings.
-- Read a time with: datetime(created_at / 1000, 'unixepoch').

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    email           TEXT UNIQUE,            -- normalized: trimmed, lower-case
    phone_e164      TEXT UNIQUE,            -- normalized: +<digits>
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    email_verified  INTEGER NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1)),
    phone_verified  INTEGER NOT NULL DEFAULT 0 CHECK (phone_verified IN (0, 1)),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CHECK (email IS NOT NULL OR phone_e164 IS NOT NULL)
);

CREATE TABLE devices (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    install_id      TEXT NOT NULL,
    platform        TEXT NOT NULL DEFAULT 'web',
    app_version     TEXT,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    UNIQUE (user_id, install_id)
);

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id           TEXT REFERENCES devices(id) ON DELETE SET NULL,
    refresh_token_hash  TEXT NOT NULL UNIQUE,   -- keyed hash; the token itself is never stored
    ip_address          TEXT NOT NULL,
    user_agent          TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    last_used_at        INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    revoked_at          INTEGER,
    revoked_reason      TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, revoked_at, expires_at);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- The reference's OTPRequest without its plaintext otp_code: only a keyed
-- hash, HMAC-SHA256(OTP_PEPPER, id | purpose | destination | code).
CREATE TABLE otp_requests (
    id              TEXT PRIMARY KEY,
    user_id         TEXT REFERENCES users(id) ON DELETE CASCADE,
    otp_type        TEXT NOT NULL CHECK (otp_type IN ('email', 'phone')),
    destination     TEXT NOT NULL,          -- normalized email or E.164 phone
    otp_hash        TEXT NOT NULL,
    purpose         TEXT NOT NULL CHECK (purpose IN ('login', 'register', 'verify', 'reset')),
    is_verified     INTEGER NOT NULL DEFAULT 0 CHECK (is_verified IN (0, 1)),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    verified_at     INTEGER,
    invalidated_at  INTEGER,                -- superseded by a newer code, or delivery failed
    ip_address      TEXT NOT NULL,
    user_agent      TEXT NOT NULL
);
-- Newest pending code per destination and purpose; invalidating older ones.
CREATE INDEX otp_requests_destination ON otp_requests (destination, purpose, created_at);
-- The cron cleanup.
CREATE INDEX otp_requests_expires ON otp_requests (expires_at);
