-- Failed register attempts per verification token (a taken username, or a
-- destination that already has an account). Counted in the transaction of
-- the attempt; at the limit the token stays consumed, so one verified code
-- cannot probe usernames without end.
ALTER TABLE verification_tokens ADD COLUMN register_failures INTEGER NOT NULL DEFAULT 0;
