//! `POST /api/auth/otp/request/`: make a code, store its keyed hash, send it.

use serde::Serialize;

use super::delivery::{self, Courier, Sending};
use super::error::{db_down, Error};
use super::App;
use crate::audit::Event;
use crate::domain::delivery::DeliveryJob;
use crate::domain::destination::Channel;
use crate::domain::destination::Destination;
use crate::domain::i18n;
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
    /// A test identity's login under enumeration protection: the same job
    /// is queued as for a real login, marked as a decoy, which the consumer
    /// drops. (A real login and the decoy of an unknown account are stored
    /// and queued after the answer: `store_after_response`.)
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
    let ttl_seconds = match channel {
        Channel::Phone => config.otp.ttl_phone_seconds,
        Channel::Email => config.otp.ttl_email_seconds,
    };
    let expires_at_ms = app.now_ms + (ttl_seconds as i64) * 1000;
    // The id names the object that keeps the destination's limits, which
    // learns the code when it allows the request: a verify asks it first.
    let otp_id = super::abuse::code_id(app, &destination);
    let note = super::abuse::code_note(purpose, channel);
    super::abuse::admit_request(app, &destination, passed, (&otp_id, note, expires_at_ms)).await?;

    // Without enumeration protection, a login says at once whether there is
    // an active account.
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
    let otp_hash = otp::code_hash(config.otp_pepper.expose(), &otp_id, purpose, &code);
    // A login's and a reset's code is linked to the active account at its
    // destination; one linked to none never verifies (`Db::attempt_code`).
    // A reset is sent like any other code, to any destination, so an
    // unknown one answers (and fails) as a real one does; only recovery
    // (`flows::recover`) gives a reset code its use.
    let row = NewOtp {
        id: otp_id.clone(),
        link_user: matches!(purpose, Purpose::Login | Purpose::Reset),
        destination: destination.clone(),
        network: app.network().to_string(),
        purpose,
        otp_hash,
        max_attempts: config.otp.max_attempts,
        now_ms: app.now_ms,
        expires_at_ms,
        ip: app.client.ip.clone(),
        user_agent: app.client.user_agent.clone(),
    };
    let sending = Sending {
        otp_id: &otp_id,
        destination: &destination,
        user_id: None,
        purpose,
        code: &code,
        ttl_seconds,
        expires_at_ms,
        texts,
    };
    let answer = OtpRequested {
        message: format!("OTP sent to {}", channel.as_str()),
        otp_id: otp_id.clone(),
        expires_in: ttl_seconds,
        destination_masked: destination.masked(),
    };

    let protected_login = purpose == Purpose::Login && config.enumeration_protection;
    if protected_login && test_identity.is_none() {
        // One storage round trip before the answer (the limits, above). The
        // row, which links the account if there is an active one, and the
        // delivery come after it: a real login and the decoy of an unknown
        // or disabled account answer after the same work, and the code
        // leaves only once its row is stored.
        store_after_response(app, row, delivery::job(config, &app.ports, &app.trail, &sending));
        return Ok(answer);
    }

    // With enumeration protection, a login for a test identity does the same
    // work as a real one and answers the same; its row has no account, so
    // its code never verifies, and nothing is sent.
    let linked_user = app.db.insert_otp(&row).await.map_err(db_down)?;
    let decoy = purpose == Purpose::Login && linked_user.is_none();
    app.audit(requested(&row, decoy, test_identity.is_some(), linked_user.as_deref()));
    let send = if decoy || test_identity.is_some() {
        if protected_login {
            Send::Decoy
        } else {
            Send::Nothing
        }
    } else {
        Send::Now
    };
    let sending = Sending { user_id: linked_user.as_deref(), ..sending };
    match send {
        Send::Nothing => {}
        Send::Now => delivery::send_now(&Courier::new(config, &app.ports), &app.trail, &sending).await?,
        Send::Decoy => delivery::queue_decoy(config, &app.ports, &app.trail, &sending),
    }
    Ok(answer)
}

/// The audit event of a stored code.
fn requested(row: &NewOtp, decoy: bool, test_identity: bool, user: Option<&str>) -> Event {
    let outcome = match (decoy, test_identity) {
        (true, _) => "no_active_account",
        (false, true) => "test_identity",
        (false, false) => "ok",
    };
    Event::new("otp_requested", outcome).destination(&row.destination).otp(&row.id).user(user)
}

/// A protected login after its answer: stores the row (linking the active
/// account, if any), then queues the job, real or, for no active account,
/// the decoy the consumer drops. If D1 fails, nothing is sent: the client
/// was told what a failed delivery tells it (nothing), and the log says why.
fn store_after_response(app: &App, row: NewOtp, job: DeliveryJob) {
    let (config, ports, trail, db) = (app.config, app.ports.clone(), app.trail.follow_up(), app.db.clone());
    let background = ports.background.clone();
    background.spawn(Box::pin(async move {
        match db.insert_otp(&row).await {
            Ok(linked_user) => {
                trail.record(
                    requested(&row, linked_user.is_none(), false, linked_user.as_deref()),
                    ports.clock.now_ms(),
                );
                // The request's events ride in the job, stored with the
                // delivery's: no D1 write of their own (real and decoy alike).
                let own = trail.take();
                let job = DeliveryJob {
                    decoy: linked_user.is_none(),
                    user_id: linked_user,
                    trail: delivery::to_carry(&own),
                    ..job
                };
                if !delivery::queue_login(config, &ports, &trail, &job).await {
                    super::keep_events(config, &ports, &[own, trail.take()].concat()).await;
                }
            }
            Err(e) => {
                crate::log::error("otp_store_failed", &format!("{}: {e}", row.id));
                super::keep_events(config, &ports, &trail.take()).await;
            }
        }
    }));
}
