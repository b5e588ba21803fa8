-- How a session authenticated: the channel (`otp_type`, 'email' or 'phone')
-- of the code that opened it, by a login or the verification token of a
-- registration. Its access tokens carry it as `amr` (RFC 8176: `otp`, plus
-- `sms` for a phone), and the session's `created_at` as `auth_time`; a
-- refresh keeps both. NULL for sessions opened before this column, whose
-- tokens say `otp` alone.
ALTER TABLE sessions ADD COLUMN auth_channel TEXT CHECK (auth_channel IN ('email', 'phone'));
