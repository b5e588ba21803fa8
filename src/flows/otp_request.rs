//! `POST /api/auth/otp/request/`: make a code, store its keyed hash, send it.

use serde::Serialize;

use super::App;
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
            if let Err(e) = send_code(app.config, &app.db, &otp_id, &destination, purpose, &code, ttl_seconds, texts, app.now_ms).await {
                return Err(send_failed(channel, e));
            }
        }
        Send::AfterResponse => {
            let (env, otp_id, destination) = (app.env.clone(), otp_id.clone(), destination.clone());
            let now_ms = app.now_ms;
            app.ctx.wait_until(async move {
                let Ok(db) = Db::from_env(&env) else { return };
                // The outcome is on the row (invalidated on failure) and in the log.
                let _ = send_code(config, &db, &otp_id, &destination, purpose, &code, ttl_seconds, texts, now_ms).await;
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

/// Delivers the code; on failure makes it unverifiable and logs why.
#[allow(clippy::too_many_arguments)]
async fn send_code(
    config: &crate::config::Config,
    db: &Db,
    otp_id: &str,
    destination: &Destination,
    purpose: Purpose,
    code: &OtpCode,
    ttl_seconds: u64,
    texts: &'static Texts,
    now_ms: i64,
) -> Result<(), DeliveryError> {
    let input = MessageInput {
        app_name: &config.app_name,
        purpose,
        code,
        ttl_seconds,
        texts,
        webotp_domain: config.webotp_domain.as_deref(),
    };
    let result = delivery::deliver(config, destination, &input).await;
    let masked = destination.masked();
    match &result {
        Ok(()) => crate::log::info("otp_delivered", serde_json::json!({ "otp_id": otp_id, "destination": masked })),
        Err(e) => {
            crate::log::emit(
                "warn",
                "otp_delivery_failed",
                serde_json::json!({ "otp_id": otp_id, "destination": masked, "reason": format!("{e:?}") }),
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
        DeliveryError::InvalidNumber { .. } => {
            ApiError::validation("This phone number cannot receive SMS messages")
        }
        DeliveryError::Failed(_) => ApiError::new(502, "SEND_FAILED", format!("Failed to send OTP to {}", channel.as_str())),
    }
}
