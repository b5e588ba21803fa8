-- A register token records which new account consumed it (the user id that
-- request creates), so the transaction finds its own consumption: two
-- requests with one token in the same millisecond share `consumed_at`.
ALTER TABLE verification_tokens ADD COLUMN consumed_by TEXT;
