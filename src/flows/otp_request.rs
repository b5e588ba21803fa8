//! `POST /api/auth/otp/request/`: make a code, store its keyed hash, send it.

use serde::Serialize;

use super::delivery::{self, Courier, Sending};
use super::error::{db_down, Error};
use super::App;
use crate::audit::Event;
use crate::domain::crypto::uuid_from;
use crate::domain::destination::Channel;
use crate::domain::destination::Destination;
use crate::domain::i18n;
use crate::domain::limits;
use crate::domain::otp::{self, OtpCode, Purpose};
use crate::store::otp::NewOtp;

#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
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
    /// A login under enumeration protection that sends nothing (an unknown
    /// or disabled account, or a test identity): the same job is queued as
    /// for a real login, marked as a decoy, which the consumer drops. The
    /// request does the same work either way, so its latency does not tell
    /// them apart (measured: `make timing`).
    Decoy,
    /// A test identity outside a login: nothing is sent.
    Nothing,
}

/// An OTP request, parsed.
#[derive(Debug)]
pub struct OtpRequestInput {
    pub destination: Destination,
    pub purpose: Purpose,
    /// A BCP 47 language tag the client asked for, if any.
    pub locale: Option<String>,
    /// The Turnstile widget's token, when the deployment asks for one.
    pub turnstile_token: Option<String>,
}

pub async fn request_otp(app: &App, input: OtpRequestInput) -> Result<OtpRequested, Error> {
    let config = app.config;
    let OtpRequestInput { destination, purpose, locale, turnstile_token } = input;
    let texts = i18n::negotiate(locale.as_deref(), app.client.accept_language.as_deref());
    let channel = destination.channel();
    // Before anything is counted: the bot check, then the limits.
    let required = super::abuse::turnstile_required(config, channel);
    let passed = super::abuse::check_turnstile(app, turnstile_token.as_deref(), required).await?;
    super::abuse::admit_request(app, &destination, passed).await?;

    // With enumeration protection, a login for an unknown or disabled account
    // does the same work as a real one (one D1 round trip that links the
    // account if there is an active one) and answers the same; its row has
    // no account, so its code never verifies, and nothing is sent.
    if purpose == Purpose::Login && !config.enumeration_protection {
        let user = app.db.user_by_destination(&destination).await.map_err(db_down)?;
        match user {
            None => return Err(Error::UserNotFound),
            Some(u) if !u.is_active() => return Err(Error::AccountDisabled),
            Some(_) => {}
        }
    }

    let test_identity = config.test_identity(&destination, app.now_ms);
    let code = match test_identity {
        Some(t) => t.code.clone(),
        None => OtpCode::generate_from(config.otp.length, &*app.ports.entropy),
    };
    let otp_id = uuid_from(&*app.ports.entropy).hyphenated().to_string();
    let otp_hash = otp::code_hash(config.otp_pepper.expose(), &otp_id, purpose, &destination, &code);
    let ttl_seconds = match channel {
        Channel::Phone => config.otp.ttl_phone_seconds,
        Channel::Email => config.otp.ttl_email_seconds,
    };
    let expires_at_ms = app.now_ms + (ttl_seconds as i64) * 1000;
    let linked_user = app
        .db
        .insert_otp(&NewOtp {
            id: &otp_id,
            link_user: purpose == Purpose::Login,
            destination: &destination,
            network: &limits::network_id(config.otp_pepper.expose(), &app.client.ip),
            purpose,
            otp_hash: &otp_hash,
            max_attempts: config.otp.max_attempts,
            now_ms: app.now_ms,
            expires_at_ms,
            ip: &app.client.ip,
            user_agent: &app.client.user_agent,
        })
        .await
        .map_err(db_down)?;
    let decoy = purpose == Purpose::Login && linked_user.is_none();
    let outcome = match (decoy, test_identity.is_some()) {
        (true, _) => "no_active_account",
        (false, true) => "test_identity",
        (false, false) => "ok",
    };
    app.audit(Event::new("otp_requested", outcome).destination(&destination).otp(&otp_id).user(linked_user.as_deref()));

    let protected_login = purpose == Purpose::Login && config.enumeration_protection;
    let send = if decoy || test_identity.is_some() {
        if protected_login {
            Send::Decoy
        } else {
            Send::Nothing
        }
    } else if protected_login {
        Send::AfterResponse
    } else {
        Send::Now
    };
    let sending = Sending {
        otp_id: &otp_id,
        destination: &destination,
        user_id: linked_user.as_deref(),
        purpose,
        code: &code,
        ttl_seconds,
        expires_at_ms,
        texts,
    };
    match send {
        Send::Nothing => {}
        Send::Now => delivery::send_now(&Courier::new(config, &app.ports), &app.trail, &sending).await?,
        Send::AfterResponse => delivery::send_after_response(config, &app.ports, &app.trail, &sending),
        Send::Decoy => delivery::queue_decoy(config, &app.ports, &app.trail, &sending),
    }

    Ok(OtpRequested {
        message: format!("OTP sent to {}", channel.as_str()),
        otp_id,
        expires_in: ttl_seconds,
        destination_masked: destination.masked(),
    })
}
