-- Refresh tokens that were exchanged for a successor. Presenting one again
-- is token reuse: within REFRESH_REUSE_GRACE_SECONDS of its rotation it is a
-- second tab racing the first (it gets the same new pair); later it is
-- theft, and the whole session is revoked. Only SHA-256 hashes are stored.
CREATE TABLE retired_refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    retired_at  INTEGER NOT NULL
);
CREATE INDEX retired_refresh_tokens_session ON retired_refresh_tokens (session_id);
