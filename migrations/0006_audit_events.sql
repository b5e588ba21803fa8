-- The audit trail: one row per auth event, kept 30 days (the cron prunes).
-- Destinations are masked and client IPs hashed; no code, token or secret.
-- "What happened to this user's login":
--   SELECT datetime(a.at / 1000, 'unixepoch') AS at, a.event, a.outcome, a.destination, a.ip_hash, a.request_id
--   FROM audit_events a JOIN users u ON u.id = a.user_id
--   WHERE u.email = 'alice@example.com' ORDER BY a.at DESC LIMIT 50;
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    request_id  TEXT NOT NULL,
    event       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    latency_ms  INTEGER NOT NULL,
    ip_hash     TEXT NOT NULL,
    destination TEXT,
    user_id     TEXT,
    session_id  TEXT,
    otp_id      TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_user ON audit_events (user_id, at);
CREATE INDEX audit_events_otp ON audit_events (otp_id);
