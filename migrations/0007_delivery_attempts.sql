-- Queued delivery (src/flows/delivery.rs): each try of a code's message is
-- claimed here first (UPDATE ... WHERE delivery_attempts < n), so a queue
-- message handled twice sends one message.
ALTER TABLE otp_requests ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0;

-- Delivery events name the provider's own error code (`twilio:21610`,
-- `resend:daily_quota_exceeded`, a status callback's `twilio:30003`) and
-- which try they were.
ALTER TABLE audit_events ADD COLUMN provider_code TEXT;
ALTER TABLE audit_events ADD COLUMN attempt INTEGER;
