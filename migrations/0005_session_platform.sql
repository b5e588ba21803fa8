-- The platform a session was opened from, also when the client names no
-- install (and so no device row): `{"platform": "android"}` without an
-- install_id is still an Android session.
ALTER TABLE sessions ADD COLUMN platform TEXT NOT NULL DEFAULT 'web';
