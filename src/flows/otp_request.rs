//! `POST /api/auth/otp/request/`: make a code, store its keyed hash, send it.

use serde::Serialize;

use super::App;
use crate::audit::{Event, Trail};
use crate::domain::crypto::new_uuid;
use crate::domain::destination::{Channel, Destination};
use crate::domain::i18n::{self, Texts};
use crate::domain::message::MessageInput;
use crate::domain::otp::{self, OtpCode, Purpose};
use crate::http::input::OtpRequestInput;
use crate::http::ApiError;
use crate::platform::db::{Db, NewOtp};
use crate::platform::delivery::{self, DeliveryError};

#[derive(Serialize)]
pub struct OtpRequested {
    pub message: String,
    pub otp_id: String,
    pub expires_in: u64,
    pub destination_masked: String,
}

/// How the code of this request leaves the service.
enum Send {
    /// Deliver before answering; a failure is the client's answer.
    Now,
    /// Answer first, deliver after (`wait_until`): a login under enumeration
    /// protection, where a synchronous failure would reveal the account.
    AfterResponse,
    /// A decoy for an unknown or disabled account, or a test identity.
    Nothing,
}

pub async fn request_otp(app: &App, input: OtpRequestInput) -> Result<OtpRequested, ApiError> {
    let config = app.config;
    let OtpRequestInput { destination, purpose, locale } = input;
    let texts = i18n::negotiate(locale.as_deref(), app.client.accept_language.as_deref());
    let channel = destination.channel();
    super::abuse::admit_request(app, &destination).await?;

    // With enumeration protection, a login for an unknown or disabled account
    // does the same work as a real one (one D1 round trip that links the
    // account if there is an active one) and answers the same; its row has
    // no account, so its code never verifies, and nothing is sent.
    if purpose == Purpose::Login && !config.enumeration_protection {
        let user = app.db.user_by_destination(&destination).await.map_err(|e| ApiError::unavailable("Database", e))?;
        match user {
            None => return Err(ApiError::new(404, "USER_NOT_FOUND", "No account found with this email/phone")),
            Some(u) if !u.is_active() => return Err(ApiError::new(403, "ACCOUNT_DISABLED", "Account is not active")),
            Some(_) => {}
        }
    }

    let test_identity = config.test_identity(&destination, app.now_ms);
    let code = match test_identity {
        Some(t) => t.code.clone(),
        None => OtpCode::generate(config.otp.length),
    };
    let otp_id = new_uuid().hyphenated().to_string();
    let otp_hash = otp::code_hash(config.otp_pepper.expose(), &otp_id, purpose, &destination, &code);
    let ttl_seconds = match channel {
        Channel::Phone => config.otp.ttl_phone_seconds,
        Channel::Email => config.otp.ttl_email_seconds,
    };
    let linked_user = app
        .db
        .insert_otp(&NewOtp {
            id: &otp_id,
            link_user: purpose == Purpose::Login,
            destination: &destination,
            purpose,
            otp_hash: &otp_hash,
            max_attempts: config.otp.max_attempts,
            now_ms: app.now_ms,
            expires_at_ms: app.now_ms + (ttl_seconds as i64) * 1000,
            ip: &app.client.ip,
            user_agent: &app.client.user_agent,
        })
        .await
        .map_err(|e| ApiError::unavailable("Database", e))?;
    let decoy = purpose == Purpose::Login && linked_user.is_none();
    let outcome = match (decoy, test_identity.is_some()) {
        (true, _) => "no_active_account",
        (false, true) => "test_identity",
        (false, false) => "ok",
    };
    app.audit(Event::new("otp_requested", outcome).destination(&destination).otp(&otp_id).user(linked_user.as_deref()));

    let send = if decoy || test_identity.is_some() {
        Send::Nothing
    } else if purpose == Purpose::Login && config.enumeration_protection {
        Send::AfterResponse
    } else {
        Send::Now
    };
    match send {
        Send::Nothing => {}
        Send::Now => {
            let sent = Sending {
                otp_id: &otp_id,
                destination: &destination,
                user_id: linked_user.as_deref(),
                purpose,
                code: &code,
                ttl_seconds,
                texts,
            };
            if let Err(e) = send_code(app.config, &app.db, &app.trail, &sent, app.now_ms).await {
                return Err(send_failed(channel, e));
            }
        }
        Send::AfterResponse => {
            let (env, otp_id, destination, user_id) =
                (app.env.clone(), otp_id.clone(), destination.clone(), linked_user.clone());
            let now_ms = app.now_ms;
            let trail = app.trail.follow_up();
            app.ctx.wait_until(async move {
                let Ok(db) = Db::from_env(&env) else { return };
                // The outcome is on the row (invalidated on failure) and in the trail.
                let sent = Sending {
                    otp_id: &otp_id,
                    destination: &destination,
                    user_id: user_id.as_deref(),
                    purpose,
                    code: &code,
                    ttl_seconds,
                    texts,
                };
                let _ = send_code(config, &db, &trail, &sent, now_ms).await;
                if let Err(e) = db.store_audit(&trail.take()).await {
                    crate::log::error("audit_store_failed", &e.to_string());
                }
            });
        }
    }

    Ok(OtpRequested {
        message: format!("OTP sent to {}", channel.as_str()),
        otp_id,
        expires_in: ttl_seconds,
        destination_masked: destination.masked(),
    })
}

/// A code on its way out, and what its message and audit events need.
struct Sending<'a> {
    otp_id: &'a str,
    destination: &'a Destination,
    user_id: Option<&'a str>,
    purpose: Purpose,
    code: &'a OtpCode,
    ttl_seconds: u64,
    texts: &'static Texts,
}

/// Delivers the code; on failure makes it unverifiable and records why.
async fn send_code(
    config: &crate::config::Config,
    db: &Db,
    trail: &Trail,
    sent: &Sending<'_>,
    now_ms: i64,
) -> Result<(), DeliveryError> {
    let Sending { otp_id, destination, user_id, purpose, code, ttl_seconds, texts } = *sent;
    let input = MessageInput {
        app_name: &config.app_name,
        purpose,
        code,
        ttl_seconds,
        texts,
        webotp_domain: config.webotp_domain.as_deref(),
    };
    let result = delivery::deliver(config, destination, &input).await;
    let event = |name: &'static str, outcome: &str| {
        Event::new(name, outcome).destination(destination).otp(otp_id).user(user_id)
    };
    let now = || worker::Date::now().as_millis() as i64;
    match &result {
        Ok(()) => trail.record(event("otp_delivered", "ok"), now()),
        Err(e) => {
            let outcome = match e {
                DeliveryError::InvalidNumber { .. } => "invalid_number",
                DeliveryError::Failed(_) => "failed",
            };
            trail.record(event("otp_delivery_failed", outcome), now());
            // The provider's status and error code, never its body or our credentials.
            crate::log::emit(
                "warn",
                "otp_delivery_error",
                serde_json::json!({ "otp_id": otp_id, "reason": format!("{e:?}") }),
            );
            if let Err(db_err) = db.invalidate_otp(otp_id, now_ms).await {
                crate::log::error("otp_invalidate_failed", &db_err.to_string());
            }
        }
    }
    result
}

fn send_failed(channel: Channel, e: DeliveryError) -> ApiError {
    match e {
        DeliveryError::InvalidNumber { .. } => ApiError::validation("This phone number cannot receive SMS messages"),
        DeliveryError::Failed(_) => {
            ApiError::new(502, "SEND_FAILED", format!("Failed to send OTP to {}", channel.as_str()))
        }
    }
}
