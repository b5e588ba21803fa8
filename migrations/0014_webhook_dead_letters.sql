-- Signed webhooks whose retries ran out (they reached the webhook queue's
-- dead-letter queue), kept so that none is lost: README "Webhooks". `body`
-- is the JSON the receiver gets, exactly (it is signed anew, under the same
-- `id`, at each attempt): ids, masked destinations and outcomes, never a
-- code, a token, a secret or a signature. A replay: set
-- `replay_requested_at`; the hourly cron puts those rows back on the queue,
-- same id and body, and deletes them.
--   UPDATE webhook_dead_letters SET replay_requested_at = unixepoch() * 1000
--   WHERE dead_at > unixepoch('now', '-1 day') * 1000;
CREATE TABLE webhook_dead_letters (
    id                  TEXT PRIMARY KEY,  -- the webhook-id
    type                TEXT NOT NULL,     -- the event type (session.created ...)
    body                TEXT NOT NULL,
    dead_at             INTEGER NOT NULL,  -- Unix milliseconds
    replay_requested_at INTEGER
);
CREATE INDEX webhook_dead_letters_dead_at ON webhook_dead_letters (dead_at);
CREATE INDEX webhook_dead_letters_replay ON webhook_dead_letters (replay_requested_at)
    WHERE replay_requested_at IS NOT NULL;
