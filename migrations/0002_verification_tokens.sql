-- Verification tokens: what a verified register, verify or reset code yields.
-- Single use, short-lived, bound to the destination and purpose. Only a
-- SHA-256 of the token is stored (it is 256 random bits, so a plain hash is
-- enough: nothing to brute-force).
CREATE TABLE verification_tokens (
    token_hash      TEXT PRIMARY KEY,
    otp_request_id  TEXT NOT NULL,
    purpose         TEXT NOT NULL CHECK (purpose IN ('register', 'verify', 'reset')),
    otp_type        TEXT NOT NULL CHECK (otp_type IN ('email', 'phone')),
    destination     TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    consumed_at     INTEGER
);
CREATE INDEX verification_tokens_expires ON verification_tokens (expires_at);
