//! The rules of getting a code out: when a failed try is tried again (in the
//! call, and later from the delivery queue), and the queued job itself, whose
//! code is sealed so that no queue message, dashboard or log holds it.
//! Pure; `platform::delivery` sends, `platform::queue` carries the jobs.

use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

use super::crypto::{hmac_sha256, random_bytes_from, Entropy};
use super::otp::OtpCode;
use super::outbound::{Outcome, Provider, ProviderCode, Undeliverable};

/// A delivery that did not happen: the last try's outcome (never `Sent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub provider: Provider,
    pub outcome: Outcome,
    /// Whether the request may be repeated without sending twice.
    pub idempotent: bool,
    pub tries: u32,
}

/// What the client of a synchronous delivery is told, and what is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The recipient cannot receive it this way (a 400 for the client).
    Undeliverable(Undeliverable),
    /// Our credentials or sender are wrong (a 502, logged as a configuration error).
    Misconfigured,
    /// The provider is down, limited, refused or did not answer (a 502).
    Unavailable,
}

/// Whether the provider may have sent the message although the try failed:
/// no answer at all, or a 5xx other than 503. Twilio warns that repeating a
/// message POST after a 500 can deliver it twice (twilio.com/docs/api/errors/20500);
/// 429 and 503 say the request was not taken.
pub fn fate_unknown(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Unanswered { .. } => true,
        Outcome::Transient { status, .. } => *status >= 500 && *status != 503,
        _ => false,
    }
}

impl Failure {
    /// Whether the message may have gone out (see `fate_unknown`).
    pub fn fate_unknown(&self) -> bool {
        fate_unknown(&self.outcome)
    }

    pub fn kind(&self) -> FailureKind {
        match self.outcome {
            Outcome::Undeliverable { reason, .. } => FailureKind::Undeliverable(reason),
            Outcome::Misconfigured { .. } => FailureKind::Misconfigured,
            _ => FailureKind::Unavailable,
        }
    }

    /// The provider's own error code or name, as audited and logged:
    /// `twilio:21610`, `postmark:406`, `resend:daily_quota_exceeded`.
    pub fn provider_code(&self) -> Option<String> {
        let code: Option<&ProviderCode> = match &self.outcome {
            Outcome::Transient { code, .. }
            | Outcome::Quota { code, .. }
            | Outcome::Undeliverable { code, .. }
            | Outcome::Misconfigured { code, .. }
            | Outcome::Refused { code, .. } => code.as_ref(),
            Outcome::Sent | Outcome::Unanswered { .. } => None,
        };
        code.map(|c| format!("{}:{c}", self.provider.as_str()))
    }

    /// The audit outcome: a short, stable word.
    pub fn audit_outcome(&self) -> &'static str {
        match &self.outcome {
            Outcome::Undeliverable { reason, .. } => match reason {
                Undeliverable::NotSmsCapable => "not_sms_capable",
                Undeliverable::RegionNotSupported => "region_not_supported",
                Undeliverable::OptedOut => "opted_out",
                Undeliverable::MailboxInactive => "mailbox_inactive",
                Undeliverable::InvalidAddress => "invalid_address",
            },
            Outcome::Misconfigured { .. } => "misconfigured",
            Outcome::Quota { .. } => "quota_exceeded",
            Outcome::Transient { .. } => "provider_unavailable",
            Outcome::Unanswered { timed_out: true } => "timed_out",
            Outcome::Unanswered { timed_out: false } => "network_error",
            Outcome::Refused { .. } => "refused",
            Outcome::Sent => "ok",
        }
    }

    /// For the log: the provider, the HTTP status and its error code; never
    /// its message or body, nor our credentials.
    pub fn log_detail(&self) -> String {
        let provider = self.provider.as_str();
        let tries = self.tries;
        match &self.outcome {
            Outcome::Unanswered { timed_out: true } => format!("{provider}: timed out ({tries} tries)"),
            Outcome::Unanswered { timed_out: false } => format!("{provider}: network error ({tries} tries)"),
            Outcome::Transient { status, .. }
            | Outcome::Quota { status, .. }
            | Outcome::Undeliverable { status, .. }
            | Outcome::Misconfigured { status, .. }
            | Outcome::Refused { status, .. } => {
                let code = self.provider_code().unwrap_or_else(|| "no error code".into());
                format!("{provider}: HTTP {status}, {code} ({tries} tries)")
            }
            Outcome::Sent => format!("{provider}: sent"),
        }
    }
}

/// The pause before the one retry of a call, after 429 or 5xx without a
/// `Retry-After`.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(300);

/// The least time a try is worth starting with.
const MIN_TRY: Duration = Duration::from_millis(250);

/// After a failed try within one call: how long to wait before the single
/// retry, or `None`. A `Retry-After` is honoured, and the retry happens only
/// if it still fits in what is left of `DELIVERY_TIMEOUT_MS`; a quota is
/// never retried in the call; a request whose fate is unknown (no answer, or
/// a 5xx but 503) is repeated only when the provider deduplicates it.
pub fn retry_in_call(outcome: &Outcome, idempotent: bool, remaining: Duration) -> Option<Duration> {
    if fate_unknown(outcome) && !idempotent {
        return None;
    }
    let wait = match outcome {
        Outcome::Transient { retry_after_seconds: Some(s), .. } => Duration::from_secs(*s),
        Outcome::Transient { retry_after_seconds: None, .. } => RETRY_BACKOFF,
        Outcome::Unanswered { .. } if idempotent => RETRY_BACKOFF,
        _ => return None,
    };
    (wait + MIN_TRY <= remaining).then_some(wait)
}

/// Tries of one queued delivery, the first included.
pub const MAX_QUEUE_TRIES: u32 = 8;

/// The pause before queued try `tries + 1`: 2, 4, 8 ... seconds, at most a minute.
pub fn queue_backoff_seconds(tries: u32) -> u64 {
    (1u64 << tries.clamp(1, 6)).min(60)
}

/// After a queued try failed: the seconds to wait before trying again, or
/// `None` when trying again cannot help or would come too late (the code
/// would expire first). Refusals, misconfiguration and undeliverable
/// recipients are final; a quota is retried only when the provider says
/// when; an unanswered request only when the provider deduplicates it.
pub fn retry_from_queue(failure: &Failure, tries: u32, now_ms: i64, expires_at_ms: i64) -> Option<u64> {
    if tries >= MAX_QUEUE_TRIES || (failure.fate_unknown() && !failure.idempotent) {
        return None;
    }
    let backoff = queue_backoff_seconds(tries);
    let wait = match &failure.outcome {
        Outcome::Transient { retry_after_seconds, .. } => retry_after_seconds.unwrap_or(backoff).max(1),
        Outcome::Quota { retry_after_seconds: Some(s), .. } => (*s).max(1),
        Outcome::Unanswered { .. } if failure.idempotent => backoff,
        _ => return None,
    };
    // The retry must run while the code is still alive, with time to use it.
    let retry_at_ms = now_ms.saturating_add((wait as i64).saturating_mul(1000));
    (retry_at_ms + USE_MARGIN_MS < expires_at_ms).then_some(wait)
}

/// A code delivered later than this before it expires is of no use.
const USE_MARGIN_MS: i64 = 30_000;

/// A login code waiting in the delivery queue. The code itself is sealed
/// (ChaCha20-Poly1305 under a key derived from `OTP_PEPPER`, bound to the
/// code's id), so a queue message read in the dashboard or a dead-letter
/// queue reveals no code (OWASP ASVS 5 V11.3 / V14.2: sensitive data
/// protected at rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// Format version of this message.
    pub v: u8,
    pub otp_id: String,
    /// Normalized email or E.164 number.
    pub destination: String,
    pub purpose: String,
    pub user_id: Option<String>,
    /// The message's language (BCP 47 primary subtag).
    pub lang: String,
    /// The code's lifetime as the message states it.
    pub ttl_seconds: u64,
    pub expires_at_ms: i64,
    pub sealed_code: String,
    /// Tries made so far.
    pub tries: u32,
    /// The stand-in for a login that sends nothing (flows::otp_request's
    /// `Send::Decoy`): dropped by the consumer. Absent in older messages.
    #[serde(default)]
    pub decoy: bool,
    /// The request that asked for the code, for the audit trail.
    pub request_id: String,
    pub ip_hash: String,
    pub requested_at_ms: i64,
    /// The request's own audit events (`audit::AuditEvent`, masked: no
    /// code, no token), stored by the consumer in the same D1 write as the
    /// delivery's: a login request then costs no write of its own for its
    /// trail. Only a job's first try carries them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trail: Vec<serde_json::Value>,
}

pub const JOB_VERSION: u8 = 1;

fn sealing_key(pepper: &str) -> Key {
    Key::from(hmac_sha256(pepper.as_bytes(), &[b"otp-edge/delivery-queue/v1"]))
}

/// `base64url(nonce || ciphertext)`, bound to `otp_id`.
pub fn seal_code(pepper: &str, otp_id: &str, code: &OtpCode, entropy: &dyn Entropy) -> String {
    let nonce = random_bytes_from::<12>(entropy);
    let cipher = ChaCha20Poly1305::new(&sealing_key(pepper));
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: code.expose().as_bytes(), aad: otp_id.as_bytes() })
        .expect("ChaCha20-Poly1305 encrypts any short message");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Base64UrlUnpadded::encode_string(&out)
}

/// The code sealed for `otp_id`, or `None` if it was not sealed with this
/// pepper for this id (tampered, or the pepper changed).
pub fn open_code(pepper: &str, otp_id: &str, sealed: &str, code_length: usize) -> Option<OtpCode> {
    let bytes = Base64UrlUnpadded::decode_vec(sealed).ok()?;
    if bytes.len() < 12 {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(12);
    let cipher = ChaCha20Poly1305::new(&sealing_key(pepper));
    let plain = cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: otp_id.as_bytes() }).ok()?;
    OtpCode::parse(std::str::from_utf8(&plain).ok()?, code_length)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEPPER: &str = "pepper-0123456789abcdefghijklmnopqrstuvwxyz";

    fn failure(outcome: Outcome, idempotent: bool) -> Failure {
        Failure { provider: Provider::Resend, outcome, idempotent, tries: 1 }
    }

    fn transient(retry_after_seconds: Option<u64>) -> Outcome {
        Outcome::Transient { status: 503, code: None, retry_after_seconds }
    }

    #[test]
    fn a_call_retries_once_only_when_the_wait_fits_the_time_left() {
        let left = Duration::from_millis(4000);
        assert_eq!(retry_in_call(&transient(None), false, left), Some(RETRY_BACKOFF), "503: not taken");
        let server_error = Outcome::Transient { status: 500, code: None, retry_after_seconds: None };
        assert_eq!(retry_in_call(&server_error, false, left), None, "Twilio may have sent it");
        assert_eq!(retry_in_call(&server_error, true, left), Some(RETRY_BACKOFF), "Resend deduplicates");
        let limited = Outcome::Transient { status: 429, code: None, retry_after_seconds: None };
        assert_eq!(retry_in_call(&limited, false, left), Some(RETRY_BACKOFF));
        assert_eq!(retry_in_call(&transient(Some(2)), false, left), Some(Duration::from_secs(2)));
        assert_eq!(retry_in_call(&transient(Some(4)), false, left), None, "Retry-After beyond the budget");
        assert_eq!(retry_in_call(&transient(None), false, Duration::from_millis(400)), None);
        let quota = Outcome::Quota { status: 429, code: None, retry_after_seconds: Some(1) };
        assert_eq!(retry_in_call(&quota, true, left), None, "a quota is never retried in the call");
        let timeout = Outcome::Unanswered { timed_out: true };
        assert_eq!(retry_in_call(&timeout, true, left), Some(RETRY_BACKOFF));
        assert_eq!(retry_in_call(&timeout, false, left), None, "Twilio and Postmark might have sent it");
        let refused = Outcome::Misconfigured { status: 401, code: None };
        assert_eq!(retry_in_call(&refused, true, left), None);
    }

    #[test]
    fn the_queue_backs_off_and_stops_before_the_code_expires() {
        assert_eq!((1..=7).map(queue_backoff_seconds).collect::<Vec<_>>(), [2, 4, 8, 16, 32, 60, 60]);
        let now = 1_000_000;
        let expires = now + 600_000;
        assert_eq!(retry_from_queue(&failure(transient(None), false), 1, now, expires), Some(2));
        assert_eq!(retry_from_queue(&failure(transient(Some(20)), false), 1, now, expires), Some(20));
        assert_eq!(retry_from_queue(&failure(transient(None), false), MAX_QUEUE_TRIES, now, expires), None);
        // A wait that ends within 30 s of the expiry is no use.
        assert_eq!(retry_from_queue(&failure(transient(Some(571)), false), 1, now, expires), None);
        assert_eq!(retry_from_queue(&failure(transient(Some(569)), false), 1, now, expires), Some(569));
        // Resend's daily quota says 86400 s: far past any code's life.
        let daily = Outcome::Quota { status: 429, code: None, retry_after_seconds: Some(86_400) };
        assert_eq!(retry_from_queue(&failure(daily, true), 1, now, expires), None);
        let unknown_quota = Outcome::Quota { status: 429, code: None, retry_after_seconds: None };
        assert_eq!(retry_from_queue(&failure(unknown_quota, true), 1, now, expires), None);
        let timeout = Outcome::Unanswered { timed_out: true };
        assert_eq!(retry_from_queue(&failure(timeout.clone(), true), 2, now, expires), Some(4));
        assert_eq!(retry_from_queue(&failure(timeout, false), 2, now, expires), None);
        let server_error = Outcome::Transient { status: 502, code: None, retry_after_seconds: None };
        assert_eq!(retry_from_queue(&failure(server_error.clone(), false), 1, now, expires), None);
        assert_eq!(retry_from_queue(&failure(server_error, true), 1, now, expires), Some(2));
        let opted_out = Outcome::Undeliverable {
            reason: Undeliverable::OptedOut,
            status: 400,
            code: Some(ProviderCode::Number(21610)),
        };
        assert_eq!(retry_from_queue(&failure(opted_out, false), 1, now, expires), None);
    }

    #[test]
    fn failures_name_the_provider_code_never_the_message() {
        let f = Failure {
            provider: Provider::Twilio,
            outcome: Outcome::Undeliverable {
                reason: Undeliverable::OptedOut,
                status: 400,
                code: Some(ProviderCode::Number(21610)),
            },
            idempotent: false,
            tries: 1,
        };
        assert_eq!(f.provider_code().as_deref(), Some("twilio:21610"));
        assert_eq!(f.audit_outcome(), "opted_out");
        assert_eq!(f.log_detail(), "twilio: HTTP 400, twilio:21610 (1 tries)");
        assert_eq!(f.kind(), FailureKind::Undeliverable(Undeliverable::OptedOut));
        let q = Failure {
            provider: Provider::Resend,
            outcome: Outcome::Quota {
                status: 429,
                code: Some(ProviderCode::Name("daily_quota_exceeded".into())),
                retry_after_seconds: Some(86_400),
            },
            idempotent: true,
            tries: 1,
        };
        assert_eq!(q.provider_code().as_deref(), Some("resend:daily_quota_exceeded"));
        assert_eq!(q.kind(), FailureKind::Unavailable);
        let t = Failure {
            provider: Provider::Postmark,
            outcome: Outcome::Unanswered { timed_out: true },
            idempotent: false,
            tries: 1,
        };
        assert_eq!(t.provider_code(), None);
        assert_eq!(t.log_detail(), "postmark: timed out (1 tries)");
    }

    #[test]
    fn a_sealed_code_opens_only_for_its_id_and_pepper() {
        let code = OtpCode::parse("123456", 6).unwrap();
        let sealed = seal_code(PEPPER, "otp-1", &code, &super::super::crypto::Csprng);
        assert!(!sealed.contains("123456"));
        assert_ne!(sealed, seal_code(PEPPER, "otp-1", &code, &super::super::crypto::Csprng), "a fresh nonce each time");
        assert_eq!(open_code(PEPPER, "otp-1", &sealed, 6), Some(code));
        assert_eq!(open_code(PEPPER, "otp-2", &sealed, 6), None, "bound to its id");
        assert_eq!(open_code("another-pepper-0123456789abcdefghijklmn", "otp-1", &sealed, 6), None);
        let mut tampered = Base64UrlUnpadded::decode_vec(&sealed).unwrap();
        tampered[14] ^= 1;
        assert_eq!(open_code(PEPPER, "otp-1", &Base64UrlUnpadded::encode_string(&tampered), 6), None);
        assert_eq!(open_code(PEPPER, "otp-1", "AAAA", 6), None);
        assert_eq!(open_code(PEPPER, "otp-1", "not base64!", 6), None);
    }

    #[test]
    fn a_job_round_trips_through_json() {
        let job = DeliveryJob {
            v: JOB_VERSION,
            otp_id: "otp-1".into(),
            destination: "a@b.co".into(),
            purpose: "login".into(),
            user_id: Some("u-1".into()),
            lang: "en".into(),
            ttl_seconds: 600,
            expires_at_ms: 5,
            sealed_code: "x".into(),
            tries: 0,
            decoy: false,
            request_id: "r".into(),
            ip_hash: "h".into(),
            requested_at_ms: 1,
            trail: vec![serde_json::json!({ "event": "otp_requested" })],
        };
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(serde_json::from_str::<DeliveryJob>(&text).unwrap(), job);
        // A message queued before decoys existed is a real job.
        let mut older: serde_json::Value = serde_json::from_str(&text).unwrap();
        older.as_object_mut().unwrap().remove("decoy");
        assert_eq!(serde_json::from_value::<DeliveryJob>(older).unwrap(), job);
    }
}
