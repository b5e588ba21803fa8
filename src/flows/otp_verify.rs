//! `POST /api/auth/otp/verify/`: check a code, atomically, and act on its purpose.

use serde::Serialize;

use super::abuse::{self, Compared};
use super::error::{db_down, Error};
use super::App;
use crate::audit::Event;
use crate::domain::account::Device;
use crate::domain::crypto::{hex, random_bytes_from, sha256};
use crate::domain::destination::Destination;
use crate::domain::otp::{self, OtpCode, Purpose, VerifyFailure};
use crate::store::otp::{Attempt, CodeAttempt, Completion};
use crate::store::sessions::{AuthChannel, SessionUser};

use base64ct::{Base64UrlUnpadded, Encoding};

/// A successful verification, shaped per purpose as in the reference.
#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(untagged)]
pub enum Verified {
    Login(super::session::LoggedIn),
    Register { message: &'static str, verified_destination: String, verification_token: String },
    Other { message: &'static str, verification_token: String },
}

/// A verification, parsed.
#[derive(Debug)]
pub struct OtpVerifyInput {
    pub otp_id: uuid::Uuid,
    pub code: OtpCode,
    pub device: Device,
    /// A Turnstile token: what lets a client past the destination's breaker
    /// when it asks for one (400 CAPTCHA_FAILED).
    pub turnstile_token: Option<String>,
}

fn invalid(f: VerifyFailure) -> Error {
    Error::Otp(f)
}

pub async fn verify_otp(app: &App, input: OtpVerifyInput) -> Result<Verified, Error> {
    let otp_id = input.otp_id.hyphenated().to_string();
    let mut concerns = None;
    let result = verify(app, &otp_id, input, &mut concerns).await;
    let event = match &result {
        Ok(_) => Event::new("otp_verified", "ok"),
        // A limit's refusal is its own rate_limited event; a fault is logged.
        Err(e) if e.recorded_elsewhere() => return result,
        Err(e) => Event::new("otp_failed", e.audit_outcome()),
    };
    let event = match &concerns {
        Some((Some(destination), user_id)) => event.destination(destination).user(user_id.as_deref()),
        Some((None, user_id)) => event.user(user_id.as_deref()),
        None => event,
    };
    app.audit(event.otp(&otp_id));
    if let Ok(Verified::Login(logged_in)) = &result {
        app.audit(super::session::created(logged_in));
    }
    result
}

/// The verification itself, in two sequential round trips: the limits
/// (the client network's budget and the destination's object, side by
/// side), then one D1 transaction that takes an attempt, compares and
/// completes. `concerns` learns the code's destination and account from
/// that transaction, for the audit trail.
async fn verify(
    app: &App,
    otp_id: &str,
    input: OtpVerifyInput,
    concerns: &mut Option<(Option<Destination>, Option<String>)>,
) -> Result<Verified, Error> {
    let db = &app.db;
    let passed = abuse::check_turnstile(app, input.turnstile_token.as_deref(), false).await?;
    // The guess is judged by the destination's object before the code is
    // even looked at (refused while locked out), and held as a failure.
    let Some(held) = abuse::hold_guess(app, &input.otp_id, passed).await? else {
        // No object knows the code: say why, as the row does.
        let state = db.otp_state(otp_id).await.map_err(db_down)?;
        return Err(invalid(otp::refusal_reason(state.as_ref(), app.now_ms)));
    };
    let (purpose, channel) = (held.purpose, held.channel);
    let guess_hash = otp::code_hash(app.config.otp_pepper.expose(), otp_id, purpose, &input.code);
    // Made before the transaction, so that it can store it: the session a
    // login opens, or the single-use token other purposes issue (256 random
    // bits, base64url; only its SHA-256 is stored). Only the one the
    // purpose needs.
    let (session, token) = match purpose {
        Purpose::Login => {
            let user = SessionUser::OfCode(otp_id);
            (Some(super::session::Opening::new(app, user, AuthChannel::Of(channel), &input.device)), String::new())
        }
        Purpose::Register | Purpose::Verify | Purpose::Reset => {
            (None, Base64UrlUnpadded::encode_string(&random_bytes_from::<32>(&*app.ports.entropy)))
        }
    };
    let token_hash = if session.is_none() { verification_token_hash(&token) } else { String::new() };
    let completion = match &session {
        Some(session) => Completion::Login(session.row()),
        None => Completion::Token {
            hash: &token_hash,
            expires_at_ms: app.now_ms + app.config.otp.verification_token_ttl_seconds as i64 * 1000,
        },
    };
    let attempt = CodeAttempt { otp_id, purpose, channel, guess_hash: &guess_hash, now_ms: app.now_ms, completion };
    let attempted = match db.attempt_code(&attempt).await {
        Ok(attempted) => attempted,
        Err(e) => {
            held.settle(app, Compared::NotJudged);
            return Err(db_down(e));
        }
    };
    *concerns = Some((attempted.destination.clone(), attempted.user_id.clone()));
    let compared = match &attempted.attempt {
        Attempt::Refused(_) => Compared::NotJudged,
        Attempt::Wrong => Compared::Wrong,
        Attempt::LoggedIn(_) | Attempt::NoActiveUser | Attempt::Verified => Compared::Right,
    };
    held.settle(app, compared);
    match attempted.attempt {
        Attempt::Refused(state) => Err(invalid(otp::refusal_reason(state.as_ref(), app.now_ms))),
        Attempt::Wrong => Err(invalid(VerifyFailure::WrongCode)),
        Attempt::LoggedIn(user) => match session {
            Some(session) => Ok(Verified::Login(session.logged_in(app, &user, channel))),
            None => Err(Error::internal(format!("otp row {otp_id} logged in for purpose {}", purpose.as_str()))),
        },
        Attempt::NoActiveUser => match attempted.user_id {
            Some(user_id) if db.user_by_id(&user_id).await.map_err(db_down)?.is_some() => Err(Error::AccountDisabled),
            _ => Err(Error::UserNotFound),
        },
        Attempt::Verified => {
            let Some(destination) = attempted.destination else {
                return Err(Error::internal(format!("otp row {otp_id} holds an unreadable destination")));
            };
            Ok(match purpose {
                Purpose::Register => Verified::Register {
                    message: "OTP verified",
                    verified_destination: destination.as_str().to_string(),
                    verification_token: token,
                },
                _ => Verified::Other { message: "OTP verified successfully", verification_token: token },
            })
        }
    }
}

pub fn verification_token_hash(token: &str) -> String {
    hex(&sha256(token.as_bytes()))
}
