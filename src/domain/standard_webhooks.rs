//! Outgoing webhooks as the Standard Webhooks specification has them
//! (github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md,
//! version 1.0.0): the `whsec_` secret, the `v1` signature, the event types,
//! the retry schedule and the queue message that carries one webhook. Pure.
//!
//! A webhook is a POST of its JSON body with three headers: `webhook-id`
//! (the same on every attempt of one event, for the receiver's idempotency),
//! `webhook-timestamp` (Unix seconds of the attempt, against replays) and
//! `webhook-signature` (`v1,` and the base64 HMAC-SHA256, keyed with the
//! secret's bytes, of `id.timestamp.body`).

use std::fmt;
use std::ops::RangeInclusive;

use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The spec's serialization of a symmetric secret: this prefix, then base64.
pub const SECRET_PREFIX: &str = "whsec_";

/// "Random. Between 24 bytes (192 bits) and 64 bytes (512 bits)" (the spec's
/// table of signature schemes).
pub const KEY_BYTES: RangeInclusive<usize> = 24..=64;

/// The key behind a `whsec_` secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// `whsec_` and the standard base64 (padded or not, as the spec's
    /// libraries accept it) of 24 to 64 bytes. Decoded as its URL-safe
    /// spelling, whose decoder the bundle has already (`+/` are `-_` there;
    /// a `-` or `_` in the secret is refused first).
    pub fn parse(secret: &str) -> Option<SigningKey> {
        let encoded = secret.strip_prefix(SECRET_PREFIX)?.trim_end_matches('=');
        if encoded.contains(['-', '_']) {
            return None;
        }
        let url_safe = encoded.replace('+', "-").replace('/', "_");
        let bytes = Base64UrlUnpadded::decode_vec(&url_safe).ok()?;
        KEY_BYTES.contains(&bytes.len()).then_some(SigningKey(bytes))
    }

    /// The `webhook-signature` of `body` sent as message `id` at
    /// `timestamp` (Unix seconds): "The content to be signed is therefore:
    /// `msg_id.timestamp.payload`", signed with HMAC-SHA256, as `v1,<base64>`.
    /// (Plain HMAC over the concatenation: `crypto::hmac_sha256`
    /// length-prefixes its parts, which no receiver would.)
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in [id, ".", &timestamp.to_string(), ".", body] {
            mac.update(part.as_bytes());
        }
        format!("v1,{}", Base64::encode_string(&mac.finalize().into_bytes()))
    }
}

/// What a receiver can subscribe to (`WEBHOOK_EVENTS`): full-stop delimited
/// and grouped hierarchically, as the spec recommends for event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    UserCreated,
    SessionCreated,
    SessionRevoked,
    RefreshTokenReuseDetected,
    DestinationAdded,
    AccountDeleted,
    DeliveryFailed,
    RateLimitExceeded,
}

pub const EVENT_TYPES: [EventType; 8] = [
    EventType::UserCreated,
    EventType::SessionCreated,
    EventType::SessionRevoked,
    EventType::RefreshTokenReuseDetected,
    EventType::DestinationAdded,
    EventType::AccountDeleted,
    EventType::DeliveryFailed,
    EventType::RateLimitExceeded,
];

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UserCreated => "user.created",
            EventType::SessionCreated => "session.created",
            EventType::SessionRevoked => "session.revoked",
            EventType::RefreshTokenReuseDetected => "refresh_token.reuse_detected",
            EventType::DestinationAdded => "destination.added",
            EventType::AccountDeleted => "account.deleted",
            EventType::DeliveryFailed => "delivery.failed",
            EventType::RateLimitExceeded => "rate_limit.exceeded",
        }
    }

    /// The one place that decides which audit events become which webhooks
    /// (audit event names: `crate::audit`).
    pub fn of_audit(event: &str, outcome: &str) -> Option<EventType> {
        Some(match event {
            "user_created" => EventType::UserCreated,
            "session_created" => EventType::SessionCreated,
            // One session ended, or every other one (or all) of the user's;
            // or an admin ended them all (revoking them, or disabling the user).
            "session_revoked" | "sessions_revoked" => EventType::SessionRevoked,
            "admin_sessions_revoked" | "admin_user_disabled" if outcome == "ok" => EventType::SessionRevoked,
            "refresh_reuse_detected" => EventType::RefreshTokenReuseDetected,
            "destination_added" => EventType::DestinationAdded,
            "account_deleted" => EventType::AccountDeleted,
            // Given up by the service, or reported failed by Twilio later.
            "otp_delivery_failed" => EventType::DeliveryFailed,
            "otp_delivery_status" if outcome == "undelivered" || outcome == "failed" => EventType::DeliveryFailed,
            "rate_limited" => EventType::RateLimitExceeded,
            _ => return None,
        })
    }
}

/// `WEBHOOK_EVENTS`: `all`, or event types separated by commas.
pub fn parse_event_types(value: &str) -> Result<Vec<EventType>, String> {
    if value.trim().eq_ignore_ascii_case("all") {
        return Ok(EVENT_TYPES.to_vec());
    }
    let mut types = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(t) = EVENT_TYPES.iter().find(|t| t.as_str() == name) else {
            let known: Vec<&str> = EVENT_TYPES.iter().map(|t| t.as_str()).collect();
            return Err(format!("{name} is not an event type (all, or some of {})", known.join(", ")));
        };
        if !types.contains(t) {
            types.push(*t);
        }
    }
    if types.is_empty() {
        return Err("must be all or name at least one event type".into());
    }
    Ok(types)
}

/// The longest delay Cloudflare Queues allows on a send or a retry: 12 hours
/// (developers.cloudflare.com/queues/platform/limits, `delaySeconds`).
pub const MAX_DELAY_SECONDS: u32 = 12 * 3600;

/// The delays before each retry: the spec's example schedule (5 s, 5 min,
/// 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h; "Deliverability and
/// reliability"), each cut to `MAX_DELAY_SECONDS`: 10 attempts over about 54
/// hours, within the queue's 4-day message retention. `max_retries` of the
/// webhook queue's consumer (wrangler.toml) is this list's length.
pub const DEFAULT_RETRY_DELAYS: [u32; 9] = [5, 300, 1800, 7200, 18_000, 36_000, 43_200, 43_200, 43_200];

/// "A webhook delivery is considered successful if it was responded to with
/// a 2xx status code (status codes 200-299), and it is considered a failure
/// in any other scenario" (redirects included: the spec recommends not
/// following them).
pub fn delivered(status: u16) -> bool {
    (200..300).contains(&status)
}

/// How long to wait after failed attempt number `attempts` (1 is the
/// first): the schedule's entry for it (its last one past its end); at least
/// what a `Retry-After` in seconds asks ("should be taken into consideration
/// when scheduling the next attempt"); plus up to a tenth of it from
/// `random`, the jitter the spec recommends against synchronized retries;
/// at most `MAX_DELAY_SECONDS`.
pub fn retry_delay(schedule: &[u32], attempts: u32, retry_after: Option<&str>, random: u32) -> u32 {
    let index = (attempts.max(1) as usize - 1).min(schedule.len().saturating_sub(1));
    let scheduled = schedule.get(index).copied().unwrap_or(MAX_DELAY_SECONDS);
    let asked = retry_after.and_then(|v| v.trim().parse::<u32>().ok()).unwrap_or(0);
    let base = scheduled.max(asked).min(MAX_DELAY_SECONDS);
    (base + random % (base / 10 + 1)).min(MAX_DELAY_SECONDS)
}

/// One webhook on the queue: its id and its body, exactly as they are
/// signed and sent on every attempt (and on a replay from the dead letters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: String,
    pub body: String,
}

impl Queued {
    /// The queue message: the id, a line break, the body.
    pub fn to_message(&self) -> String {
        format!("{}\n{}", self.id, self.body)
    }

    /// A queue message back; `None` if it is not one (or its id could be
    /// confused with the signed content's delimiter, which the spec forbids).
    pub fn from_message(message: &str) -> Option<Queued> {
        let (id, body) = message.split_once('\n')?;
        let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        id_ok.then(|| Queued { id: id.to_string(), body: body.to_string() })
    }
}

/// Cloudflare Queues' `sendBatch` takes at most 100 messages and 256 KB
/// (developers.cloudflare.com/queues/platform/limits).
pub const BATCH_MESSAGES: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_specifications_published_test_vectors() {
        // libraries/python/tests/test_webhooks.py and
        // libraries/javascript/src/webhook.test.ts, "sign function".
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, r#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // libraries/rust/src/lib.rs, test_sign.
        let key = SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            key.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                r#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn a_secret_is_whsec_and_the_base64_of_24_to_64_bytes() {
        let b64 = |n: usize| Base64::encode_string(&vec![7u8; n]);
        assert!(SigningKey::parse(&format!("whsec_{}", b64(24))).is_some());
        assert!(SigningKey::parse(&format!("whsec_{}", b64(64))).is_some());
        // 32 bytes, as `head -c 32 /dev/urandom | base64` makes them, padded or not.
        let padded = b64(32);
        assert!(padded.ends_with('='));
        assert!(SigningKey::parse(&format!("whsec_{padded}")).is_some());
        assert!(SigningKey::parse(&format!("whsec_{}", padded.trim_end_matches('='))).is_some());
        for bad in [
            format!("whsec_{}", b64(23)),
            format!("whsec_{}", b64(65)),
            b64(32),
            format!("whsk_{}", b64(32)),
            "whsec_not base64!".to_string(),
            // The URL-safe spelling of a valid secret is not the spec's.
            "whsec_C2FVsBQIhrscChlQIMV-b5sSYspob7oD".to_string(),
            "whsec_".to_string(),
        ] {
            assert_eq!(SigningKey::parse(&bad), None, "{bad}");
        }
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey([redacted])");
    }

    #[test]
    fn audit_events_map_to_the_issues_event_types_and_nothing_else() {
        let t = |e, o| EventType::of_audit(e, o).map(EventType::as_str);
        assert_eq!(t("user_created", "ok"), Some("user.created"));
        assert_eq!(t("session_created", "ok"), Some("session.created"));
        assert_eq!(t("session_revoked", "logout"), Some("session.revoked"));
        assert_eq!(t("sessions_revoked", "others"), Some("session.revoked"));
        assert_eq!(t("session_revoked", "token_revoked"), Some("session.revoked"));
        assert_eq!(t("admin_sessions_revoked", "ok"), Some("session.revoked"));
        assert_eq!(t("admin_user_disabled", "ok"), Some("session.revoked"));
        assert_eq!(t("refresh_reuse_detected", "session_revoked"), Some("refresh_token.reuse_detected"));
        assert_eq!(t("destination_added", "phone"), Some("destination.added"));
        assert_eq!(t("account_deleted", "ok"), Some("account.deleted"));
        assert_eq!(t("otp_delivery_failed", "provider_unavailable"), Some("delivery.failed"));
        assert_eq!(t("otp_delivery_status", "undelivered"), Some("delivery.failed"));
        assert_eq!(t("otp_delivery_status", "failed"), Some("delivery.failed"));
        assert_eq!(t("rate_limited", "ip_requests"), Some("rate_limit.exceeded"));
        for (event, outcome) in [
            ("otp_delivery_status", "delivered"),
            ("otp_requested", "ok"),
            ("otp_verified", "ok"),
            ("otp_failed", "wrong_code"),
            ("token_refreshed", "ok"),
            ("username_changed", "ok"),
            ("destination_removed", "email"),
            ("otp_delivered", "ok"),
            ("otp_delivery_retry", "provider_unavailable"),
            ("webhook_dead_lettered", "session.created"),
            // An admin's look, a change that changed nothing, a refusal.
            ("admin_user_viewed", "ok"),
            ("admin_user_enabled", "ok"),
            ("admin_user_disabled", "unchanged"),
            ("admin_sessions_revoked", "not_found"),
            ("admin_denied", "insufficient_scope"),
        ] {
            assert_eq!(t(event, outcome), None, "{event}");
        }
        // Every type is reachable from some audit event, and names itself.
        assert_eq!(EVENT_TYPES.len(), 8);
        for ty in EVENT_TYPES {
            assert!(
                ty.as_str().contains('.') && ty.as_str().bytes().all(|b| b.is_ascii_lowercase() || b"._".contains(&b))
            );
        }
    }

    #[test]
    fn webhook_events_are_all_or_a_list_of_known_types() {
        assert_eq!(parse_event_types("all").unwrap(), EVENT_TYPES.to_vec());
        assert_eq!(parse_event_types(" ALL ").unwrap(), EVENT_TYPES.to_vec());
        assert_eq!(
            parse_event_types("session.created, account.deleted,session.created,").unwrap(),
            vec![EventType::SessionCreated, EventType::AccountDeleted]
        );
        let e = parse_event_types("session.created,user.deleted").unwrap_err();
        assert!(e.contains("user.deleted is not an event type") && e.contains("rate_limit.exceeded"), "{e}");
        assert!(parse_event_types(" , ").is_err());
    }

    #[test]
    fn retries_back_off_on_the_specs_schedule_within_the_queues_limit() {
        let s = &DEFAULT_RETRY_DELAYS;
        let without_jitter: Vec<u32> = (1..=11).map(|n| retry_delay(s, n, None, 0)).collect();
        assert_eq!(without_jitter, [5, 300, 1800, 7200, 18_000, 36_000, 43_200, 43_200, 43_200, 43_200, 43_200]);
        assert!(DEFAULT_RETRY_DELAYS.windows(2).all(|w| w[0] <= w[1]));
        let hours: u32 = DEFAULT_RETRY_DELAYS.iter().sum::<u32>() / 3600;
        assert!((48..96).contains(&hours), "{hours} h of retries: several days, within the 4-day retention");
        // Jitter adds at most a tenth, never past 12 hours.
        assert_eq!(retry_delay(s, 2, None, 30), 330);
        assert_eq!(retry_delay(s, 2, None, 31), 300);
        assert_eq!(retry_delay(s, 2, None, u32::MAX) / 10, 30);
        assert_eq!(retry_delay(s, 9, None, 4000), MAX_DELAY_SECONDS);
        // Retry-After (seconds) lengthens a delay, never shortens it, and is capped.
        assert_eq!(retry_delay(s, 1, Some("120"), 0), 120);
        assert_eq!(retry_delay(s, 3, Some("120"), 0), 1800);
        assert_eq!(retry_delay(s, 1, Some("999999"), 0), MAX_DELAY_SECONDS);
        assert_eq!(retry_delay(s, 1, Some("Wed, 21 Oct 2015 07:28:00 GMT"), 0), 5);
        // A short schedule (tests) repeats its last delay; attempt 0 counts as the first.
        assert_eq!(retry_delay(&[1], 7, None, 0), 1);
        assert_eq!(retry_delay(&[2, 4], 0, None, 0), 2);
    }

    #[test]
    fn only_2xx_is_delivered() {
        for ok in [200, 201, 202, 204, 299] {
            assert!(delivered(ok), "{ok}");
        }
        for failed in [0, 100, 199, 300, 301, 304, 400, 404, 410, 429, 500, 502, 503] {
            assert!(!delivered(failed), "{failed}");
        }
    }

    #[test]
    fn a_queued_webhook_comes_back_from_its_message_whole() {
        let q = Queued { id: "msg_0123abcd".into(), body: r#"{"type":"session.created","data":{"a":"\"x\""}}"#.into() };
        assert_eq!(Queued::from_message(&q.to_message()), Some(q));
        for bad in ["", "{}", "msg_1", "a.b\n{}", "\n{}", "msg 1\n{}"] {
            assert_eq!(Queued::from_message(bad), None, "{bad}");
        }
    }
}
