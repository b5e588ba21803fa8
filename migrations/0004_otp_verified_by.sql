-- What a verified code produced: the session id (login) or the hash of the
-- verification token (register, verify, reset). The statements that open the
-- session or issue the token run in the same transaction as the one that
-- marks the code used, and only when this column holds their own id, so of
-- many parallel correct verifies exactly one produces anything.
ALTER TABLE otp_requests ADD COLUMN verified_by TEXT;
