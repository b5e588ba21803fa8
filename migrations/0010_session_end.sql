-- Disabling an account ends its sessions at once, however it is disabled:
-- by `Db::disable_user` (the admin API) or by an operator's own
--   npx wrangler d1 execute DB --remote --command "UPDATE users SET status = 'disabled' WHERE email = 'mallory@example.com'"
-- Every authenticated request and every refresh also requires an active
-- account, so a session this trigger did not reach is refused all the same;
-- the trigger makes the end final: enabling the account again does not
-- bring its old sessions back. The time is Unix milliseconds, as every time
-- here (julianday 2440587.5 is the Unix epoch).
CREATE TRIGGER users_disabled_end_sessions AFTER UPDATE OF status ON users
WHEN NEW.status <> 'active'
BEGIN
    UPDATE sessions
    SET revoked_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), revoked_reason = 'account_disabled'
    WHERE user_id = NEW.id AND revoked_at IS NULL;
END;

-- Refreshes per session (REFRESH_PER_SESSION_PER_MINUTE): each refresh is
-- counted in its session's row by the rotate UPDATE itself, which refuses
-- once `refresh_window_count` reached the limit while the window that
-- `refresh_window_start` opened (a minute) lasts. One statement, so exact
-- under concurrency, and no round trip more.
ALTER TABLE sessions ADD COLUMN refresh_window_start INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN refresh_window_count INTEGER NOT NULL DEFAULT 0;

-- The cron prunes retired refresh tokens of ended sessions and sessions a
-- month after their end (src/store/maintenance.rs): "ended" is revoked,
-- expired, or opened longer than SESSION_MAX_LIFETIME_SECONDS ago, one
-- indexed comparison each (expires_at has sessions_expires).
CREATE INDEX sessions_revoked ON sessions (revoked_at);
CREATE INDEX sessions_created ON sessions (created_at);
