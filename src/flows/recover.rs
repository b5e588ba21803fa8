//! `POST /api/auth/recover/`: a `reset` verification token for a destination
//! of an active account signs that account out everywhere and in again, in
//! one D1 transaction: the token is spent, every session of the account is
//! revoked, and a new one opened (the login answer).

use super::error::{db_down, Error};
use super::session::{self, LoggedIn, Opening};
use super::App;
use crate::audit::Event;
use crate::domain::account::Device;
use crate::flows::otp_verify::verification_token_hash;
use crate::store::sessions::{AuthChannel, SessionUser};

pub async fn recover(app: &App, token: &str) -> Result<LoggedIn, Error> {
    let hash = verification_token_hash(token);
    let device = Device::default();
    let opening = Opening::new(app, SessionUser::OfToken(&hash), AuthChannel::OfToken(&hash), &device);
    let Some((user, channel)) = app.db.recover(&hash, &opening.id, &opening.row()).await.map_err(db_down)? else {
        return Err(Error::VerificationTokenInvalid);
    };
    let logged_in = opening.logged_in(app, &user, channel);
    app.audit(Event::new("account_recovered", "ok").session(&logged_in.session_id).user(Some(&user.id)));
    app.audit(session::created(&logged_in));
    Ok(logged_in)
}
