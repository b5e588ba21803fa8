//! Getting a code to its destination: now, while the client waits (register,
//! verify, reset), or after the answer through the delivery queue (a login
//! under enumeration protection, whose failure the client must not see).
//!
//! Every try is in the audit trail. A code whose delivery failed for good is
//! made unverifiable; a queued one is tried again with backoff while it is
//! alive (`domain::delivery::retry_from_queue`), and each try is claimed in
//! D1 first, so a queue message delivered twice sends one message.

use std::time::Duration;

use super::abuse;
use super::error::Error;
use crate::audit::{AuditEvent, Event, Trail};
use crate::config::{Config, MailProvider, SmsProvider};
use crate::domain::delivery::{self, DeliveryJob, Failure, FailureKind, JOB_VERSION};
use crate::domain::destination::{Channel, Destination};
use crate::domain::i18n::{self, Texts};
use crate::domain::message::{self, MessageInput};
use crate::domain::otp::{OtpCode, Purpose};
use crate::domain::outbound::{self, Outcome, Provider, ProviderAnswer, ProviderRequest, SmsOptions};
use crate::domain::webhook;
use crate::ports::{Ports, StoreError};
use crate::store::otp::DeliveryClaim;
use crate::store::Db;

/// What delivery needs, while a client waits or in the queue consumer.
pub struct Courier<'a> {
    pub config: &'a Config,
    pub ports: &'a Ports,
    pub db: Db,
}

impl<'a> Courier<'a> {
    pub fn new(config: &'a Config, ports: &'a Ports) -> Courier<'a> {
        Courier { config, ports, db: Db::new(ports.db.clone()) }
    }

    fn now_ms(&self) -> i64 {
        self.ports.clock.now_ms()
    }
}

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

/// Builds the message of `s` and sends it through the configured provider of
/// its channel (or, in development, prints it).
async fn deliver(c: &Courier<'_>, s: &Sending<'_>) -> Result<(), Failure> {
    let config = c.config;
    let input = MessageInput {
        app_name: &config.app_name,
        purpose: s.purpose,
        code: s.code,
        ttl_seconds: s.ttl_seconds,
        texts: s.texts,
        webotp_domain: config.webotp_domain.as_deref(),
        retriever_hash: config.sms_retriever_hash.as_deref(),
    };
    let destination = s.destination;
    let request = match destination.channel() {
        Channel::Email => {
            let email = message::email(&input);
            if config.mail.provider == MailProvider::Log {
                crate::log::console(&format!(
                    "[otp-edge] message to {}:\nSubject: {}\n{}",
                    destination.as_str(),
                    email.subject,
                    email.text
                ));
                return Ok(());
            }
            let provider = match config.mail.provider {
                MailProvider::Postmark => Provider::Postmark,
                _ => Provider::Resend,
            };
            outbound::mail_request(&config.mail, destination.as_str(), &email, s.otp_id).ok_or(Failure {
                provider,
                outcome: Outcome::Misconfigured { status: 0, code: None },
                idempotent: false,
                tries: 0,
            })?
        }
        Channel::Phone => {
            let text = message::sms(&input);
            match (config.sms.provider, &config.sms.twilio) {
                (SmsProvider::Twilio, Some(twilio)) => {
                    let callback = config.public_base_url.as_deref().map(|b| webhook::status_callback_url(b, s.otp_id));
                    let left_ms = s.expires_at_ms - c.now_ms();
                    let options = SmsOptions {
                        status_callback: callback.as_deref(),
                        // Whole seconds, rounded up: a code sent at once keeps its full lifetime.
                        validity_period_seconds: Some((left_ms.max(0) as u64).div_ceil(1000)),
                    };
                    outbound::twilio_request(twilio, destination.as_str(), &text, options)
                }
                _ => {
                    crate::log::console(&format!("[otp-edge] message to {}:\n{}", destination.as_str(), text));
                    return Ok(());
                }
            }
        }
    };
    send(c, &request, Duration::from_millis(config.delivery_timeout_ms)).await
}

/// Sends `request` within `budget` for every try together: one try, and one
/// retry only as `domain::delivery::retry_in_call` allows.
async fn send(c: &Courier<'_>, request: &ProviderRequest, budget: Duration) -> Result<(), Failure> {
    let clock = &c.ports.clock;
    let started = clock.now_ms();
    let remaining = || {
        let spent = (clock.now_ms() - started).max(0) as u64;
        budget.saturating_sub(Duration::from_millis(spent))
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let outcome = match c.ports.sender.send(request, remaining().as_millis() as u64).await {
            Ok(answer) => outbound::classify(
                request.provider,
                &ProviderAnswer {
                    status: answer.status,
                    retry_after: answer.retry_after.as_deref(),
                    body: &answer.body,
                },
            ),
            Err(timed_out) => Outcome::Unanswered { timed_out },
        };
        if outcome == Outcome::Sent {
            return Ok(());
        }
        match delivery::retry_in_call(&outcome, request.idempotent(), remaining()) {
            Some(wait) if tries == 1 => clock.sleep(wait.as_millis() as u64).await,
            _ => return Err(Failure { provider: request.provider, outcome, idempotent: request.idempotent(), tries }),
        }
    }
}

fn event(name: &'static str, outcome: &str, s: &Sending<'_>, attempt: u32) -> Event {
    Event::new(name, outcome).destination(s.destination).otp(s.otp_id).user(s.user_id).attempt(attempt)
}

/// Records a failed try: the audit event, and a log line with the provider's
/// status and error code (never its body or our credentials). A provider
/// refusing our credentials or sender is the operator's to fix: logged as
/// an error of its own.
fn record_failure(c: &Courier<'_>, trail: &Trail, name: &'static str, s: &Sending<'_>, f: &Failure, attempt: u32) {
    trail.record(event(name, f.audit_outcome(), s, attempt).provider_code(f.provider_code()), c.now_ms());
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

/// A queued login code whose delivery failed for good answers like a decoy
/// from then on (`Db::withdraw_otp`).
async fn withdraw(c: &Courier<'_>, otp_id: &str) {
    if let Err(e) = c.db.withdraw_otp(otp_id, c.now_ms()).await {
        crate::log::error("otp_withdraw_failed", &e.to_string());
    }
}

async fn invalidate(c: &Courier<'_>, otp_id: &str) {
    if let Err(e) = c.db.invalidate_otp(otp_id, c.now_ms()).await {
        crate::log::error("otp_invalidate_failed", &e.to_string());
    }
}

/// Takes the pumping caps' slots for an SMS about to go out; refused
/// (`Error::Limited`, recorded) if a cap filled since the request looked.
async fn take_caps(c: &Courier<'_>, trail: &Trail, s: &Sending<'_>) -> Result<Vec<abuse::Taken>, Error> {
    let Destination::Phone(phone) = s.destination else { return Ok(Vec::new()) };
    match abuse::take_sms_caps(c.config, &*c.ports.limiter, phone).await? {
        Ok(taken) => Ok(taken),
        Err(refused) => {
            let limit = refused.limit.bucket();
            trail.record(Event::new("rate_limited", limit).destination(s.destination).otp(s.otp_id), c.now_ms());
            crate::log::emit("error", "sms_cap_reached", serde_json::json!({ "otp_id": s.otp_id, "cap": limit }));
            Err(refused.error())
        }
    }
}

/// Delivers before answering. On failure the code is made unverifiable (the
/// client gets an error, not the code's id), the failure is recorded, and
/// an SMS's cap slots are given back (nothing was sent).
pub async fn send_now(c: &Courier<'_>, trail: &Trail, s: &Sending<'_>) -> Result<(), Error> {
    let taken = match take_caps(c, trail, s).await {
        Ok(taken) => taken,
        Err(e) => {
            invalidate(c, s.otp_id).await;
            return Err(e);
        }
    };
    match deliver(c, s).await {
        Ok(()) => {
            trail.record(event("otp_delivered", "ok", s, 1), c.now_ms());
            Ok(())
        }
        Err(f) => {
            record_failure(c, trail, "otp_delivery_failed", s, &f, 1);
            invalidate(c, s.otp_id).await;
            abuse::release_all(&*c.ports.limiter, &taken).await;
            Err(match f.kind() {
                FailureKind::Undeliverable(reason) => Error::Undeliverable(reason),
                FailureKind::Misconfigured | FailureKind::Unavailable => Error::SendFailed(s.destination.channel()),
            })
        }
    }
}

/// The queue message for a code to deliver after the answer; its code sealed.
pub fn job(config: &Config, ports: &Ports, trail: &Trail, s: &Sending<'_>) -> DeliveryJob {
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
        sealed_code: delivery::seal_code(config.otp_pepper.expose(), s.otp_id, s.code, &*ports.entropy),
        tries: 0,
        decoy: false,
        request_id,
        ip_hash,
        requested_at_ms,
        trail: Vec::new(),
    }
}

/// The audit events a job carries from its request (`DeliveryJob::trail`),
/// taken out of it, so that a retry of the job does not carry them again.
pub fn carried(job: &mut DeliveryJob) -> Vec<AuditEvent> {
    std::mem::take(&mut job.trail).iter().filter_map(AuditEvent::from_json).collect()
}

/// Events as a job carries them.
pub fn to_carry(events: &[AuditEvent]) -> Vec<serde_json::Value> {
    events.iter().filter_map(|e| serde_json::to_value(e).ok()).collect()
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
pub async fn run_job(c: &Courier<'_>, job: &DeliveryJob, trail: &Trail) -> Result<Processed, StoreError> {
    if job.decoy {
        return Ok(Processed::Done);
    }
    let attempt = job.tries + 1;
    let Some(opened) = open(c.config, job) else {
        // Not sealed by this service with this pepper: nothing can be sent.
        crate::log::emit("error", "delivery_job_unreadable", serde_json::json!({ "otp_id": job.otp_id }));
        withdraw(c, &job.otp_id).await;
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
    match c.db.claim_delivery(&job.otp_id, attempt, c.now_ms()).await? {
        DeliveryClaim::Claimed => {}
        DeliveryClaim::AlreadyTried => return Ok(Processed::Done),
        DeliveryClaim::NotPending(why) => {
            trail.record(event("otp_delivery_skipped", why, &s, attempt), c.now_ms());
            return Ok(Processed::Done);
        }
    }
    // The first try takes the SMS caps' slots: a real message, about to go out.
    let taken = if attempt == 1 {
        match take_caps(c, trail, &s).await {
            Ok(taken) => taken,
            Err(Error::Limited { .. }) => {
                trail.record(event("otp_delivery_failed", "sms_cap_reached", &s, attempt), c.now_ms());
                withdraw(c, &job.otp_id).await;
                return Ok(Processed::Done);
            }
            Err(_) => return Err(StoreError("the rate limiter is unavailable".into())),
        }
    } else {
        Vec::new()
    };
    let failure = match deliver(c, &s).await {
        Ok(()) => {
            trail.record(event("otp_delivered", "ok", &s, attempt), c.now_ms());
            return Ok(Processed::Done);
        }
        Err(f) => f,
    };
    if let Some(wait) = delivery::retry_from_queue(&failure, attempt, c.now_ms(), job.expires_at_ms) {
        record_failure(c, trail, "otp_delivery_retry", &s, &failure, attempt);
        return Ok(Processed::RetryIn(wait));
    }
    if failure.fate_unknown() {
        // The provider may have sent it: repeating could send it twice, and
        // the code stays valid for the user who got it.
        record_failure(c, trail, "otp_delivery_unconfirmed", &s, &failure, attempt);
    } else {
        record_failure(c, trail, "otp_delivery_failed", &s, &failure, attempt);
        withdraw(c, &job.otp_id).await;
        // Nothing went out: the caps' slots of this first try are given back.
        abuse::release_all(&*c.ports.limiter, &taken).await;
    }
    Ok(Processed::Done)
}

/// Hands the code to the delivery queue after the answer, so that a
/// provider outage delays it rather than losing it; without a queue (or if
/// it refuses the job), delivers it directly, once.
pub fn send_after_response(config: &'static Config, ports: &Ports, trail: &Trail, s: &Sending<'_>) {
    let job = job(config, ports, trail, s);
    let (ports, trail) = (ports.clone(), trail.follow_up());
    let background = ports.background.clone();
    background.spawn(Box::pin(async move {
        queue_login(config, &ports, &trail, &job).await;
        super::keep_events(config, &ports, &trail.take()).await;
    }));
}

/// A login job's way out, after the answer: the queue, a decoy too (the
/// consumer drops it); without a queue, or if the queue refuses the job, a
/// real code is delivered directly, once (the outcome is on the row,
/// withdrawn on failure, and in the trail), and a decoy is dropped.
/// `true` when the job is queued (its carried events with it).
pub async fn queue_login(config: &'static Config, ports: &Ports, trail: &Trail, job: &DeliveryJob) -> bool {
    if let Some(queue) = &ports.queue {
        match queue.enqueue(job, config.login_delivery_delay_seconds).await {
            Ok(()) => return true,
            Err(e) => crate::log::error("delivery_queue_unavailable", &e.to_string()),
        }
    }
    if job.decoy {
        return false;
    }
    let c = Courier::new(config, ports);
    // Without a queue there is no later try.
    if let Ok(Processed::RetryIn(_)) = run_job(&c, job, trail).await {
        give_up(&c, job, trail).await;
    }
    false
}

/// The decoy of `send_after_response`: the same job, sealed the same way,
/// queued the same way, but marked so that the consumer drops it unsent.
/// Without a queue, nothing (the direct delivery of a real login is then
/// the one difference left; README "Delivery and enumeration").
pub fn queue_decoy(config: &'static Config, ports: &Ports, trail: &Trail, s: &Sending<'_>) {
    let job = DeliveryJob { decoy: true, ..job(config, ports, trail, s) };
    let (ports, trail) = (ports.clone(), trail.follow_up());
    let background = ports.background.clone();
    background.spawn(Box::pin(async move {
        queue_login(config, &ports, &trail, &job).await;
    }));
}

/// A job that reached the dead-letter queue: its tries failed without a
/// decision (D1 or the Worker failing). Its code is made unverifiable.
pub async fn dead_letter(c: &Courier<'_>, job: &DeliveryJob, trail: &Trail) {
    if job.decoy {
        return;
    }
    abandon(c, job, trail, "dead_lettered").await
}

/// A job whose retry could not be queued: its code is made unverifiable.
pub async fn give_up(c: &Courier<'_>, job: &DeliveryJob, trail: &Trail) {
    abandon(c, job, trail, "queue_unavailable").await
}

async fn abandon(c: &Courier<'_>, job: &DeliveryJob, trail: &Trail, outcome: &'static str) {
    withdraw(c, &job.otp_id).await;
    let mut e = Event::new("otp_delivery_failed", outcome).otp(&job.otp_id).user(job.user_id.as_deref());
    if let Ok(d) = Destination::parse(&job.destination) {
        e = e.destination(&d);
    }
    trail.record(e.attempt(job.tries + 1), c.now_ms());
}
