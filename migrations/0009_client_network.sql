-- Codes remember the requesting client's network (a keyed hash of its IPv4
-- address or IPv6 /48, as the rate limits key it): a new request supersedes
-- only the pending codes requested from the same network, so a stranger's
-- request cannot void the owner's code.
ALTER TABLE otp_requests ADD COLUMN client_network TEXT;
-- A login code whose delivery failed for good is withdrawn: unlinked from its
-- account, so it answers every verify exactly as the decoy of an unknown
-- destination does (a failed delivery must not tell who has an account), and
-- never tried again.
ALTER TABLE otp_requests ADD COLUMN withdrawn_at INTEGER;
