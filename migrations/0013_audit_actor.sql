-- Who acted, for events that someone other than the user or its client
-- caused: `admin:<token id>` for the admin API's actions (the id of an entry
-- of ADMIN_API_TOKENS, never the token). NULL for every other event.
-- "What did this token do":
--   SELECT datetime(at / 1000, 'unixepoch') AS at, event, outcome, user_id, request_id
--   FROM audit_events WHERE actor = 'admin:support' ORDER BY at DESC LIMIT 50;
ALTER TABLE audit_events ADD COLUMN actor TEXT;
CREATE INDEX audit_events_actor ON audit_events (actor, at) WHERE actor IS NOT NULL;
