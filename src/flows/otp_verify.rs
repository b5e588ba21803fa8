//! `POST /api/auth/otp/verify/`: check a code, atomically, and act on its purpose.

use serde::Serialize;

use super::error::{db_down, Error};
use super::App;
use crate::audit::Event;
use crate::domain::account::Device;
use crate::domain::crypto::{hex, random_bytes_from, sha256};
use crate::domain::destination::Destination;
use crate::domain::otp::{self, OtpCode, Purpose, VerifyFailure};
use crate::store::otp::{stored_destination, LoginOutcome};

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
        Some((destination, user_id)) => event.destination(destination).user(user_id.as_deref()),
        None => event,
    };
    app.audit(event.otp(&otp_id));
    if let Ok(Verified::Login(logged_in)) = &result {
        app.audit(super::session::created(logged_in));
    }
    result
}

/// The verification itself; `concerns` learns the code's destination and
/// account as soon as they are read, for the audit trail.
async fn verify(
    app: &App,
    otp_id: &str,
    input: OtpVerifyInput,
    concerns: &mut Option<(Destination, Option<String>)>,
) -> Result<Verified, Error> {
    let otp_id = otp_id.to_string();
    let db = &app.db;
    let passed = super::abuse::check_turnstile(app, input.turnstile_token.as_deref(), false).await?;
    let slot = super::abuse::admit_verify(app).await?;

    // One attempt, taken atomically before the code is even looked at.
    let Some(row) = db.consume_attempt(&otp_id, app.now_ms).await.map_err(db_down)? else {
        let state = db.otp_state(&otp_id).await.map_err(db_down)?;
        return Err(invalid(otp::refusal_reason(state.as_ref(), app.now_ms)));
    };
    let (Some(purpose), Some(destination)) =
        (Purpose::parse(&row.purpose), stored_destination(&row.otp_type, &row.destination))
    else {
        return Err(Error::internal(format!("otp row {otp_id} holds an unreadable purpose or destination")));
    };
    *concerns = Some((destination.clone(), row.user_id.clone()));
    // The guess is compared here, but judged by the destination's object
    // (refused while locked out; counted if wrong) before anything acts on it.
    let pepper = app.config.otp_pepper.expose();
    // A login code requested for no active account (enumeration protection)
    // was never sent and never verifies.
    let decoy = purpose == Purpose::Login && row.user_id.is_none();
    let matches = !decoy && otp::code_matches(pepper, &otp_id, purpose, &destination, &input.code, &row.otp_hash);
    if let Err(refusal) = super::abuse::judge_guess(app, &destination, !matches, slot, passed).await {
        // Refused: the guess was not judged, so its attempt is given back.
        db.refund_attempt(&otp_id).await.map_err(db_down)?;
        return Err(refusal);
    }
    if !matches {
        return Err(invalid(VerifyFailure::WrongCode));
    }
    complete(app, &otp_id, purpose, &destination, row.user_id.as_deref(), &input.device).await
}

/// Marks the code used and does what its purpose asks, in one D1
/// transaction; exactly one of many parallel correct verifies gets here
/// with an effect, the others get "OTP already used".
async fn complete(
    app: &App,
    otp_id: &str,
    purpose: Purpose,
    destination: &Destination,
    user_id: Option<&str>,
    device: &Device,
) -> Result<Verified, Error> {
    let db = &app.db;
    match (purpose, user_id) {
        (Purpose::Login, Some(user_id)) => {
            let session = super::session::Opening::new(app, user_id, device);
            match db.complete_login(otp_id, destination, &session.row()).await.map_err(db_down)? {
                LoginOutcome::LoggedIn(user) => Ok(Verified::Login(session.logged_in(app, &user))),
                LoginOutcome::AlreadyUsed => Err(invalid(VerifyFailure::AlreadyUsed)),
                LoginOutcome::NoActiveUser => match db.user_by_id(user_id).await.map_err(db_down)? {
                    Some(_) => Err(Error::AccountDisabled),
                    None => Err(Error::UserNotFound),
                },
            }
        }
        (Purpose::Login, None) => Err(invalid(VerifyFailure::WrongCode)),
        (Purpose::Register | Purpose::Verify | Purpose::Reset, _) => {
            // A single-use token proving control of the destination for this
            // purpose: 256 random bits, base64url; only its SHA-256 is stored.
            let token = Base64UrlUnpadded::encode_string(&random_bytes_from::<32>(&*app.ports.entropy));
            let ttl_ms = app.config.otp.verification_token_ttl_seconds as i64 * 1000;
            let done = db
                .complete_verification(
                    otp_id,
                    purpose,
                    destination,
                    &verification_token_hash(&token),
                    app.now_ms,
                    app.now_ms + ttl_ms,
                )
                .await
                .map_err(db_down)?;
            if !done {
                return Err(invalid(VerifyFailure::AlreadyUsed));
            }
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
