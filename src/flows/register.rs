//! `POST /api/auth/register/`: turn a register verification token into an
//! account with that email or phone already verified, and log it in.

use super::error::{db_down, Error};
use super::session::{LoggedIn, Opening};
use super::App;
use crate::audit::Event;
use crate::domain::account::{Device, Username};
use crate::domain::crypto::uuid_from;
use crate::domain::destination::{Channel, Destination};
use crate::flows::otp_verify::verification_token_hash;
use crate::store::sessions::{AuthChannel, SessionUser};
use crate::store::users::CreateUserError;

/// Failed tries (a taken username, or an account already at the
/// destination) one register verification token allows; the last one
/// spends it, so a verified code cannot probe usernames without end.
pub const FAILURES_PER_TOKEN: u32 = 10;

/// A register request, parsed.
#[derive(Debug)]
pub struct RegisterInput {
    pub verification_token: String,
    pub username: Username,
    pub device: Device,
}

pub async fn register(app: &App, input: RegisterInput) -> Result<LoggedIn, Error> {
    let user_id = uuid_from(&*app.ports.entropy).hyphenated().to_string();
    let token_hash = verification_token_hash(&input.verification_token);
    let session = Opening::new(app, SessionUser::Id(&user_id), AuthChannel::OfToken(&token_hash), &input.device);
    let created = app
        .db
        .create_user(&token_hash, &user_id, input.username.as_str(), &session.row(), FAILURES_PER_TOKEN)
        .await
        .map_err(db_down)?;
    let user = match created {
        Ok(user) => user,
        Err(CreateUserError::InvalidToken) => return Err(Error::VerificationTokenInvalid),
        Err(CreateUserError::UsernameTaken) => return Err(Error::UsernameTaken),
        Err(CreateUserError::AccountExists) => return Err(Error::AccountExists),
    };
    // The token's channel: a new account has that one destination only.
    let channel = if user.email.is_some() { Channel::Email } else { Channel::Phone };
    let logged_in = session.logged_in(app, &user, channel);
    let destination = user.email.as_deref().or(user.phone_e164.as_deref());
    let created = Event::new("user_created", "ok").user(Some(&user.id));
    app.audit(match destination.and_then(|d| Destination::from_stored(channel, d).ok()) {
        Some(d) => created.destination(&d),
        None => created,
    });
    app.audit(super::session::created(&logged_in));
    Ok(logged_in)
}
