//! The abuse controls both OTP flows run first: per-IP, per-destination and
//! global SMS limits, counted exactly in the rate-limiter Durable Object.
//! If the object cannot be reached the request fails closed (503). Every
//! refusal is a `rate_limited` audit event naming the limit.

use futures_util::future::join;

use super::error::{Dependency, Error};
use super::App;
use crate::audit::Event;
use crate::domain::destination::Destination;
use crate::domain::limits::{self, Limit, Outcome, Rule};
use crate::ports::StoreError;

/// A refusal by a limit, before it is reported.
struct Refused {
    limit: Limit,
    retry_after_ms: i64,
}

impl Refused {
    fn error(&self) -> Error {
        Error::Limited { limit: self.limit, retry_after_seconds: limits::retry_after_seconds(self.retry_after_ms) }
    }
}

/// Reports a refusal: an audit event, and the client's 429.
fn report(app: &App, destination: Option<&Destination>, refused: Refused) -> Error {
    let event = Event::new("rate_limited", refused.limit.bucket());
    app.audit(match destination {
        Some(d) => event.destination(d),
        None => event,
    });
    refused.error()
}

fn unavailable(e: StoreError) -> Error {
    Dependency::RateLimiter.down(e)
}

/// Slots taken in one object, which `release` can give back.
struct Taken {
    object: String,
    ids: Vec<i64>,
}

async fn hit(app: &App, object: &str, limit: Limit, rules: Vec<Rule>) -> Result<Result<Taken, Refused>, Error> {
    match app.ports.limiter.hit(object, rules).await.map_err(unavailable)? {
        Outcome::Refused { retry_after_ms } => Ok(Err(Refused { limit, retry_after_ms })),
        Outcome::Allowed { ids } => Ok(Ok(Taken { object: object.to_string(), ids })),
    }
}

fn ip_object(app: &App) -> String {
    limits::ip_object(app.config.otp_pepper.expose(), &limits::ip_key(&app.client.ip))
}

fn destination_limits(app: &App, destination: &Destination) -> limits::DestinationLimits {
    limits::destination_limits(app.config.otp_pepper.expose(), destination)
}

/// Before an OTP request does anything: the SMS country allow-list, then the
/// client's IP, the destination (rolling hour and resend cooldown) and, for
/// SMS, the service-wide cap. A refusal leaves no row and sends nothing.
pub async fn admit_request(app: &App, destination: &Destination) -> Result<(), Error> {
    let l = &app.config.limits;
    if let Destination::Phone(phone) = destination {
        if !limits::sms_country_allowed(&l.sms_allowed_country_codes, phone) {
            return Err(Error::SmsCountryNotAllowed);
        }
    }
    let dest = Limit::DestinationRequests;
    let at = destination_limits(app, destination);
    let mut rules = vec![Rule::new(&at.bucket(dest), l.request_window_seconds, l.requests_per_destination)];
    if l.resend_cooldown_seconds > 0 {
        rules.push(Rule::new(&at.bucket(dest), l.resend_cooldown_seconds, 1));
    }
    // The client's IP and the destination are separate objects: asked at
    // the same time. A slot taken in one by a request the other refuses is
    // given back, so a refused request costs nothing and waiting its
    // `Retry-After` is always enough.
    let ip = Limit::IpRequests;
    let (ip_hit, destination_hit) = join(
        hit(app, &ip_object(app), ip, vec![Rule::new(ip.bucket(), l.ip_window_seconds, l.ip_requests)]),
        hit(app, &at.object, dest, rules),
    )
    .await;
    let (ip_hit, destination_hit) = match (ip_hit?, destination_hit?) {
        (Ok(ip), Ok(hit)) => (ip, hit),
        (Err(refused), Ok(hit)) | (Ok(hit), Err(refused)) => {
            release(app, &hit).await;
            return Err(report(app, Some(destination), refused));
        }
        // Both refuse: the later one says when the request can succeed.
        (Err(a), Err(b)) => {
            let later = if a.retry_after_ms >= b.retry_after_ms { a } else { b };
            return Err(report(app, Some(destination), later));
        }
    };

    if let Destination::Phone(_) = destination {
        let cap = Limit::SmsCap;
        let rules = vec![Rule::new(cap.bucket(), l.sms_cap_window_seconds, l.sms_cap)];
        if let Err(refused) = hit(app, limits::SMS_CAP_OBJECT, cap, rules).await? {
            // Nothing goes out, so the slots are given back.
            join(release(app, &destination_hit), release(app, &ip_hit)).await;
            return Err(report(app, Some(destination), refused));
        }
    }
    Ok(())
}

/// The client IP's slot taken by a verify, given back if the guess is refused.
pub struct VerifySlot(Taken);

/// Before a verify does anything: the client's IP.
pub async fn admit_verify(app: &App) -> Result<VerifySlot, Error> {
    let l = &app.config.limits;
    let ip = Limit::IpVerifies;
    let rules = vec![Rule::new(ip.bucket(), l.ip_window_seconds, l.ip_verifies)];
    match hit(app, &ip_object(app), ip, rules).await? {
        Ok(taken) => Ok(VerifySlot(taken)),
        Err(refused) => Err(report(app, None, refused)),
    }
}

/// Judges a verification guess against the destination's failed
/// verifications, across all its codes, in one call to its object: refused
/// (429) while `VERIFY_FAILURES_PER_DAY` failures are in the window, even
/// for the right code; otherwise allowed, and counted if it `failed`. The
/// object judges parallel guesses one at a time, so the limit is exact. A
/// refused guess gives its IP `slot` back: it was not judged.
pub async fn judge_guess(app: &App, destination: &Destination, failed: bool, slot: VerifySlot) -> Result<(), Error> {
    let l = &app.config.limits;
    let limit = Limit::VerifyFailures;
    let at = destination_limits(app, destination);
    let rule = Rule::new(&at.bucket(limit), l.verify_failure_window_seconds, l.verify_failures_per_destination);
    match app.ports.limiter.guess(&at.object, rule, failed).await.map_err(unavailable)? {
        Outcome::Allowed { .. } => Ok(()),
        Outcome::Refused { retry_after_ms } => {
            release(app, &slot.0).await;
            Err(report(app, Some(destination), Refused { limit, retry_after_ms }))
        }
    }
}

/// Gives back slots; a failure only over-counts (fails safe), so it is logged.
async fn release(app: &App, taken: &Taken) {
    if let Err(e) = app.ports.limiter.release(&taken.object, taken.ids.clone()).await {
        crate::log::error("rate_limit_release_failed", &e.to_string());
    }
}
