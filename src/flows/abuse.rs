//! The abuse controls both OTP flows run first: per-IP, per-destination and
//! global SMS limits, counted exactly in the rate-limiter Durable Object.
//! If the object cannot be reached the request fails closed (503).

use futures_util::future::join;

use super::App;
use crate::domain::destination::Destination;
use crate::domain::limits::{self, Rule};
use crate::http::ApiError;
use crate::platform::limiter::{Hit, Limiter};

const BUCKET_REQUEST: &str = "otp_request";
const BUCKET_VERIFY_FAILURE: &str = "verify_failure";
const BUCKET_IP_REQUEST: &str = "ip_request";
const BUCKET_IP_VERIFY: &str = "ip_verify";
const BUCKET_SMS: &str = "sms";

fn limiter(app: &App) -> Result<Limiter, ApiError> {
    Limiter::from_env(&app.env).map_err(|e| ApiError::unavailable("Rate limiter", e))
}

async fn hit(limiter: &Limiter, object: &str, rules: Vec<Rule>, refused: impl FnOnce(i64) -> ApiError) -> Result<Hit, ApiError> {
    match limiter.hit(object, rules).await {
        Ok(Hit::Refused { retry_after_ms }) => Err(refused(retry_after_ms)),
        Ok(hit) => Ok(hit),
        Err(e) => Err(ApiError::unavailable("Rate limiter", e)),
    }
}

fn rate_limited(message: &str) -> impl FnOnce(i64) -> ApiError + '_ {
    move |ms| ApiError::rate_limited("RATE_LIMIT", message, limits::retry_after_seconds(ms))
}

fn ip_object(app: &App) -> String {
    limits::ip_object(app.config.otp_pepper.expose(), &limits::ip_key(&app.client.ip))
}

fn destination_object(app: &App, destination: &Destination) -> String {
    limits::destination_object(app.config.otp_pepper.expose(), destination)
}

/// Before an OTP request does anything: the SMS country allow-list, then the
/// client's IP, the destination (rolling hour and resend cooldown) and, for
/// SMS, the service-wide cap. A refusal leaves no row and sends nothing.
pub async fn admit_request(app: &App, destination: &Destination) -> Result<(), ApiError> {
    let l = &app.config.limits;
    if let Destination::Phone(phone) = destination {
        if !limits::sms_country_allowed(&l.sms_allowed_country_codes, phone) {
            return Err(ApiError::validation("SMS to this country is not supported"));
        }
    }
    let limiter = limiter(app)?;
    let mut rules = vec![Rule::new(BUCKET_REQUEST, l.request_window_seconds, l.requests_per_destination)];
    if l.resend_cooldown_seconds > 0 {
        rules.push(Rule::new(BUCKET_REQUEST, l.resend_cooldown_seconds, 1));
    }
    // The client's IP and the destination are separate objects: asked at
    // the same time. The IP counts every attempt; a destination slot taken
    // by a request its IP refuses is given back.
    let (ip_hit, destination_hit) = join(
        hit(
            &limiter,
            &ip_object(app),
            vec![Rule::new(BUCKET_IP_REQUEST, l.ip_window_seconds, l.ip_requests)],
            rate_limited("Too many requests from this network. Please try again later."),
        ),
        hit(
            &limiter,
            &destination_object(app, destination),
            rules,
            rate_limited("Too many OTP requests. Please try again later."),
        ),
    )
    .await;
    let destination_hit = match (ip_hit, destination_hit) {
        (Ok(_), Ok(hit)) => hit,
        (Err(refusal), Ok(hit)) => {
            release(&limiter, &hit).await;
            return Err(refusal);
        }
        (Ok(_), Err(refusal)) => return Err(refusal),
        // Both refuse: the later one says when the request can succeed.
        (Err(a), Err(b)) => return Err(if a.retry_after >= b.retry_after { a } else { b }),
    };

    if let Destination::Phone(_) = destination {
        let cap = hit(
            &limiter,
            limits::SMS_CAP_OBJECT,
            vec![Rule::new(BUCKET_SMS, l.sms_cap_window_seconds, l.sms_cap)],
            |ms| {
                ApiError::rate_limited(
                    "SMS_CAP_REACHED",
                    "SMS sending is paused for now. Please try again later or use email.",
                    limits::retry_after_seconds(ms),
                )
            },
        )
        .await;
        if let Err(refusal) = cap {
            // Nothing goes out, so the destination's slot is given back.
            release(&limiter, &destination_hit).await;
            return Err(refusal);
        }
    }
    Ok(())
}

/// Before a verify does anything: the client's IP.
pub async fn admit_verify(app: &App) -> Result<(), ApiError> {
    let l = &app.config.limits;
    hit(
        &limiter(app)?,
        &ip_object(app),
        vec![Rule::new(BUCKET_IP_VERIFY, l.ip_window_seconds, l.ip_verifies)],
        rate_limited("Too many requests from this network. Please try again later."),
    )
    .await
    .map(|_| ())
}

/// Judges a verification guess against the destination's failed
/// verifications, across all its codes, in one call to its object: refused
/// (429) while `VERIFY_FAILURES_PER_DAY` failures are in the window, even
/// for the right code; otherwise allowed, and counted if it `failed`. The
/// object judges parallel guesses one at a time, so the limit is exact.
pub async fn judge_guess(app: &App, destination: &Destination, failed: bool) -> Result<(), ApiError> {
    let l = &app.config.limits;
    let rule = Rule::new(BUCKET_VERIFY_FAILURE, l.verify_failure_window_seconds, l.verify_failures_per_destination);
    match limiter(app)?.guess(&destination_object(app, destination), rule, failed).await {
        Ok(Hit::Allowed { .. }) => Ok(()),
        Ok(Hit::Refused { retry_after_ms }) => Err(ApiError::rate_limited(
            "RATE_LIMIT",
            "Too many failed verifications. Please try again later.",
            limits::retry_after_seconds(retry_after_ms),
        )),
        Err(e) => Err(ApiError::unavailable("Rate limiter", e)),
    }
}

/// Gives back slots; a failure only over-counts (fails safe), so it is logged.
async fn release(limiter: &Limiter, hit: &Hit) {
    if let Err(e) = limiter.release(hit).await {
        crate::log::error("rate_limit_release_failed", &e.to_string());
    }
}
