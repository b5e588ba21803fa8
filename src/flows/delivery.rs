//! Getting a code to its destination: now, while the client waits (register,
//! verify, reset), or after the answer through the delivery queue (a login
//! under enumeration protection, whose failure the client must not see).
//!
//! Every try is in the audit trail. A code whose delivery failed for good is
//! made unverifiable; a queued one is tried again with backoff while it is
//! alive (`domain::delivery::retry_from_queue`), and each try is claimed in
//! D1 first, so a queue message delivered twice sends one message.

use crate::audit::{Event, Trail};
use crate::config::Config;
use crate::domain::delivery::{self, DeliveryJob, Failure, JOB_VERSION};
use crate::domain::destination::Destination;
use crate::domain::i18n::{self, Texts};
use crate::domain::message::MessageInput;
use crate::domain::otp::{OtpCode, Purpose};
use crate::domain::outbound::Outcome;
use crate::platform::db::{Db, DeliveryClaim};
use crate::platform::delivery::{self as send, Outgoing};

/// A code on its way out, and what its message and audit events need.
pub struct Sending<'a> {
    pub otp_id: &'a str,
    pub destination: &'a Destination,
    pub user_id: Option<&'a str>,
    pub purpose: Purpose,
    pub code: &'a OtpCode,
    pub ttl_seconds: u64,
    pub expires_at_ms: i64,
    pub texts: &'static Texts,
}

fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

fn outgoing<'a>(config: &'a Config, s: &Sending<'a>) -> Outgoing<'a> {
    Outgoing {
        otp_id: s.otp_id,
        destination: s.destination,
        message: MessageInput {
            app_name: &config.app_name,
            purpose: s.purpose,
            code: s.code,
            ttl_seconds: s.ttl_seconds,
            texts: s.texts,
            webotp_domain: config.webotp_domain.as_deref(),
        },
        expires_at_ms: s.expires_at_ms,
    }
}

fn event(name: &'static str, outcome: &str, s: &Sending<'_>, attempt: u32) -> Event {
    Event::new(name, outcome).destination(s.destination).otp(s.otp_id).user(s.user_id).attempt(attempt)
}

/// Records a failed try: the audit event, and a log line with the provider's
/// status and error code (never its body or our credentials). A provider
/// refusing our credentials or sender is the operator's to fix: logged as
/// an error of its own.
fn record_failure(trail: &Trail, name: &'static str, s: &Sending<'_>, f: &Failure, attempt: u32) {
    trail.record(event(name, f.audit_outcome(), s, attempt).provider_code(f.provider_code()), now_ms());
    let (level, log_event) = match f.outcome {
        Outcome::Misconfigured { .. } => ("error", "delivery_misconfigured"),
        _ => ("warn", "otp_delivery_error"),
    };
    crate::log::emit(
        level,
        log_event,
        serde_json::json!({ "otp_id": s.otp_id, "attempt": attempt, "reason": f.log_detail() }),
    );
}

async fn invalidate(db: &Db, otp_id: &str) {
    if let Err(e) = db.invalidate_otp(otp_id, now_ms()).await {
        crate::log::error("otp_invalidate_failed", &e.to_string());
    }
}

/// Delivers before answering. On failure the code is made unverifiable (the
/// client gets an error, not the code's id) and the failure is recorded.
pub async fn send_now(config: &Config, db: &Db, trail: &Trail, s: &Sending<'_>) -> Result<(), Failure> {
    let result = send::deliver(config, &outgoing(config, s)).await;
    match &result {
        Ok(()) => trail.record(event("otp_delivered", "ok", s, 1), now_ms()),
        Err(f) => {
            record_failure(trail, "otp_delivery_failed", s, f, 1);
            invalidate(db, s.otp_id).await;
        }
    }
    result
}

/// The queue message for a code to deliver after the answer; its code sealed.
pub fn job(config: &Config, trail: &Trail, s: &Sending<'_>) -> DeliveryJob {
    let (request_id, ip_hash, requested_at_ms) = trail.origin();
    DeliveryJob {
        v: JOB_VERSION,
        otp_id: s.otp_id.to_string(),
        destination: s.destination.as_str().to_string(),
        purpose: s.purpose.as_str().to_string(),
        user_id: s.user_id.map(str::to_string),
        lang: s.texts.lang.to_string(),
        ttl_seconds: s.ttl_seconds,
        expires_at_ms: s.expires_at_ms,
        sealed_code: delivery::seal_code(config.otp_pepper.expose(), s.otp_id, s.code),
        tries: 0,
        request_id,
        ip_hash,
        requested_at_ms,
    }
}

/// What became of one queued job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// Delivered, given up, or nothing left to do: acknowledge it.
    Done,
    /// Try again after this many seconds.
    RetryIn(u64),
}

/// The parts of a job the flow works with.
struct Opened {
    destination: Destination,
    purpose: Purpose,
    code: OtpCode,
}

fn open(config: &Config, job: &DeliveryJob) -> Option<Opened> {
    let destination = Destination::parse(&job.destination).ok()?;
    let purpose = Purpose::parse(&job.purpose)?;
    let code = delivery::open_code(config.otp_pepper.expose(), &job.otp_id, &job.sealed_code, config.otp.length)?;
    Some(Opened { destination, purpose, code })
}

/// One try of a queued job. `Err` is D1 failing: the message is retried.
pub async fn run_job(config: &Config, db: &Db, job: &DeliveryJob, trail: &Trail) -> worker::Result<Processed> {
    let attempt = job.tries + 1;
    let Some(opened) = open(config, job) else {
        // Not sealed by this service with this pepper: nothing can be sent.
        crate::log::emit("error", "delivery_job_unreadable", serde_json::json!({ "otp_id": job.otp_id }));
        invalidate(db, &job.otp_id).await;
        return Ok(Processed::Done);
    };
    let s = Sending {
        otp_id: &job.otp_id,
        destination: &opened.destination,
        user_id: job.user_id.as_deref(),
        purpose: opened.purpose,
        code: &opened.code,
        ttl_seconds: job.ttl_seconds,
        expires_at_ms: job.expires_at_ms,
        texts: i18n::negotiate(Some(&job.lang), None),
    };
    // Claims this try, atomically, only while the code still waits for it.
    match db.claim_delivery(&job.otp_id, attempt, now_ms()).await? {
        DeliveryClaim::Claimed => {}
        DeliveryClaim::AlreadyTried => return Ok(Processed::Done),
        DeliveryClaim::NotPending(why) => {
            trail.record(event("otp_delivery_skipped", why, &s, attempt), now_ms());
            return Ok(Processed::Done);
        }
    }
    let failure = match send::deliver(config, &outgoing(config, &s)).await {
        Ok(()) => {
            trail.record(event("otp_delivered", "ok", &s, attempt), now_ms());
            return Ok(Processed::Done);
        }
        Err(f) => f,
    };
    if let Some(wait) = delivery::retry_from_queue(&failure, attempt, now_ms(), job.expires_at_ms) {
        record_failure(trail, "otp_delivery_retry", &s, &failure, attempt);
        return Ok(Processed::RetryIn(wait));
    }
    if failure.fate_unknown() {
        // The provider may have sent it: repeating could send it twice, and
        // the code stays valid for the user who got it.
        record_failure(trail, "otp_delivery_unconfirmed", &s, &failure, attempt);
    } else {
        record_failure(trail, "otp_delivery_failed", &s, &failure, attempt);
        invalidate(db, &job.otp_id).await;
    }
    Ok(Processed::Done)
}

/// A job that reached the dead-letter queue: its tries failed without a
/// decision (D1 or the Worker failing). Its code is made unverifiable.
pub async fn dead_letter(db: &Db, job: &DeliveryJob, trail: &Trail) {
    abandon(db, job, trail, "dead_lettered").await
}

/// A job whose retry could not be queued: its code is made unverifiable.
pub async fn give_up(db: &Db, job: &DeliveryJob, trail: &Trail) {
    abandon(db, job, trail, "queue_unavailable").await
}

async fn abandon(db: &Db, job: &DeliveryJob, trail: &Trail, outcome: &'static str) {
    invalidate(db, &job.otp_id).await;
    let mut e = Event::new("otp_delivery_failed", outcome).otp(&job.otp_id).user(job.user_id.as_deref());
    if let Ok(d) = Destination::parse(&job.destination) {
        e = e.destination(&d);
    }
    trail.record(e.attempt(job.tries + 1), now_ms());
}
