//! The signed-in user's own endpoints: `me`, the sessions list, revoking a
//! session, signing out everywhere, logout, changing the username, adding,
//! changing and removing an email or phone, and deleting the account. All
//! are authenticated with the access token, and a revoked session's token
//! is refused at once (checked against D1).

use serde::Serialize;

use super::error::{db_down, AuthFailure, Error};
use super::session::{self, UserView};
use super::App;
use crate::audit::Event;
use crate::domain::account::Username;
use crate::domain::crypto::uuid_from;
use crate::domain::destination::{Channel, Destination};
use crate::domain::time::rfc3339_millis;
use crate::store::users::{Erased, Erasure, Refused};
use crate::store::UserRow;

/// The caller behind a valid access token of a live session.
pub struct Principal {
    pub user_id: String,
    pub session_id: String,
    pub user: UserRow,
}

/// Checks `Authorization: Bearer <access token>` and that its session is live.
pub async fn authenticate(app: &App, authorization: Option<&str>) -> Result<Principal, Error> {
    let Some(header) = authorization else {
        return Err(Error::Auth(AuthFailure::Missing));
    };
    let token = bearer(header).ok_or(Error::Auth(AuthFailure::Malformed))?;
    let claims = app
        .keys
        .verify_access(&app.config.tokens, token, app.now_ms)
        .map_err(|e| Error::Auth(AuthFailure::Token(e)))?;
    let Some(user) = app.db.session_user(&claims.sid, &claims.sub, session::liveness(app)).await.map_err(db_down)?
    else {
        return Err(Error::Auth(AuthFailure::SessionEnded));
    };
    Ok(Principal { user_id: claims.sub, session_id: claims.sid, user })
}

/// The token of an `Authorization: Bearer <token>` header (RFC 6750 2.1;
/// the scheme in any case), if it is one.
pub fn bearer(header: &str) -> Option<&str> {
    match header.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Some(token.trim())
        }
        _ => None,
    }
}

pub fn me(who: &Principal) -> UserView {
    UserView::from(&who.user)
}

#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct SessionView {
    pub id: String,
    pub current: bool,
    pub device: Option<DeviceView>,
    pub platform: String,
    pub ip_address: String,
    pub user_agent: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
}

#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct DeviceView {
    pub install_id: String,
    pub platform: Option<String>,
    pub app_version: Option<String>,
}

#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct Sessions {
    pub sessions: Vec<SessionView>,
}

pub async fn sessions(app: &App, who: &Principal) -> Result<Sessions, Error> {
    let rows = app.db.live_sessions(&who.user_id, session::liveness(app)).await.map_err(db_down)?;
    let sessions = rows
        .into_iter()
        .map(|s| SessionView {
            current: s.id == who.session_id,
            platform: s.platform,
            device: s.install_id.map(|install_id| DeviceView {
                install_id,
                platform: s.device_platform,
                app_version: s.app_version,
            }),
            id: s.id,
            ip_address: s.ip_address,
            user_agent: s.user_agent,
            created_at: rfc3339_millis(s.created_at),
            last_used_at: rfc3339_millis(s.last_used_at),
            expires_at: rfc3339_millis(s.expires_at),
        })
        .collect();
    Ok(Sessions { sessions })
}

#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct Done {
    pub message: &'static str,
}

/// Revokes one of the caller's sessions (possibly the current one).
pub async fn revoke(app: &App, who: &Principal, session_id: &str) -> Result<Done, Error> {
    if !app.db.revoke_session(session_id, Some(&who.user_id), "revoked_by_user", app.now_ms).await.map_err(db_down)? {
        return Err(Error::SessionNotFound);
    }
    app.audit(Event::new("session_revoked", "revoked_by_user").session(session_id).user(Some(&who.user_id)));
    Ok(Done { message: "Session revoked" })
}

pub async fn logout(app: &App, who: &Principal) -> Result<Done, Error> {
    app.db.revoke_session(&who.session_id, Some(&who.user_id), "logout", app.now_ms).await.map_err(db_down)?;
    app.audit(Event::new("session_revoked", "logout").session(&who.session_id).user(Some(&who.user_id)));
    Ok(Done { message: "Logged out" })
}

/// What signing out everywhere did.
#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct SignedOut {
    /// Live sessions revoked (the caller's own included when asked).
    pub revoked: usize,
    pub include_current: bool,
}

/// Revokes every other live session of the caller, and with
/// `include_current` the caller's own too: one statement.
pub async fn sign_out_everywhere(app: &App, who: &Principal, include_current: bool) -> Result<SignedOut, Error> {
    let keep = (!include_current).then_some(who.session_id.as_str());
    let revoked = app
        .db
        .revoke_user_sessions(&who.user_id, keep, "signed_out_everywhere", session::liveness(app))
        .await
        .map_err(db_down)?;
    let outcome = if include_current { "everywhere" } else { "others" };
    app.audit(Event::new("sessions_revoked", outcome).session(&who.session_id).user(Some(&who.user_id)));
    Ok(SignedOut { revoked, include_current })
}

/// An account change the store refused, in the flows' terms.
fn refused(r: Refused) -> Error {
    match r {
        Refused::UsernameTaken => Error::UsernameTaken,
        Refused::DestinationTaken => Error::DestinationTaken,
        Refused::InvalidToken => Error::VerificationTokenInvalid,
        Refused::LastDestination => Error::LastDestination,
        Refused::NoSuchDestination => Error::DestinationNotFound,
        // Deleted or disabled since this request was authenticated.
        Refused::Gone => Error::Auth(AuthFailure::SessionEnded),
    }
}

/// Changes the caller's username (register's rules, already parsed into
/// `Username`); the updated user, as `me` shows it.
pub async fn rename(app: &App, who: &Principal, username: &Username) -> Result<UserView, Error> {
    let user =
        app.db.set_username(&who.user_id, username.as_str(), app.now_ms).await.map_err(db_down)?.map_err(refused)?;
    app.audit(Event::new("username_changed", "ok").session(&who.session_id).user(Some(&who.user_id)));
    Ok(UserView::from(&user))
}

/// Attaches the email or phone a `verify` verification token proves to the
/// caller's account, verified; it replaces the one of its kind the account
/// had (an account has at most one email and one phone). The updated user.
pub async fn attach_destination(app: &App, who: &Principal, verification_token: &str) -> Result<UserView, Error> {
    let by = uuid_from(&*app.ports.entropy).hyphenated().to_string();
    let token_hash = super::otp_verify::verification_token_hash(verification_token);
    let (user, destination) = app
        .db
        .attach_destination(&who.user_id, &token_hash, &by, app.now_ms)
        .await
        .map_err(db_down)?
        .map_err(refused)?;
    app.audit(
        Event::new("destination_added", destination.channel().as_str())
            .destination(&destination)
            .session(&who.session_id)
            .user(Some(&who.user_id)),
    );
    Ok(UserView::from(&user))
}

/// Removes the caller's email or phone, unless it is the account's last
/// destination. The updated user.
pub async fn remove_destination(app: &App, who: &Principal, channel: Channel) -> Result<UserView, Error> {
    let user = app.db.remove_destination(&who.user_id, channel, app.now_ms).await.map_err(db_down)?.map_err(refused)?;
    let removed = match channel {
        Channel::Email => who.user.email.as_deref(),
        Channel::Phone => who.user.phone_e164.as_deref(),
    };
    let event = Event::new("destination_removed", channel.as_str()).session(&who.session_id).user(Some(&who.user_id));
    app.audit(match removed.and_then(|value| Destination::from_stored(channel, value).ok()) {
        Some(destination) => event.destination(&destination),
        None => event,
    });
    Ok(UserView::from(&user))
}

/// How recent the step-up proof of deleting the account must be: its
/// `verify` token issued (its code verified) within the last 5 minutes.
/// A bearer token shows only that the session lives, possibly for weeks;
/// NIST SP 800-63B (4.2.3, 7.2) asks for reauthentication before such an
/// operation, and a code just sent to one of the account's destinations is
/// one.
pub const STEP_UP_MS: i64 = 5 * 60 * 1000;

/// What deleting the account did: rows deleted, and rows kept with no link
/// to the person.
#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct AccountDeleted {
    pub message: &'static str,
    pub deleted: DeletedRows,
    pub anonymised: AnonymisedRows,
}

#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct DeletedRows {
    pub users: i64,
    pub sessions: i64,
    pub devices: i64,
}

#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct AnonymisedRows {
    pub otp_requests: i64,
    pub verification_tokens: i64,
    pub audit_events: i64,
}

/// Deletes the caller's account, given a fresh `verify` verification token
/// for one of its destinations (`STEP_UP_MS`): one D1 transaction
/// (`Db::delete_user`). Its stored audit event names neither the user nor
/// a destination.
pub async fn delete_account<'a>(
    app: &App,
    who: &'a Principal,
    verification_token: &str,
) -> Result<AccountDeleted, Error> {
    let pepper = app.config.otp_pepper.expose();
    let keyed = |d: Option<&'a str>| d.map(|d| (d, crate::audit::destination_hash(pepper, d)));
    let (by, token_hash) = (
        uuid_from(&*app.ports.entropy).hyphenated().to_string(),
        super::otp_verify::verification_token_hash(verification_token),
    );
    let erasure = Erasure {
        user_id: &who.user_id,
        token_hash: &token_hash,
        by: &by,
        proved_after_ms: app.now_ms - STEP_UP_MS,
        now_ms: app.now_ms,
        email: keyed(who.user.email.as_deref()),
        phone: keyed(who.user.phone_e164.as_deref()),
    };
    let Some(erased) = app.db.delete_user(&erasure).await.map_err(db_down)? else {
        return Err(Error::VerificationTokenInvalid);
    };
    // Its D1 row keeps no user id (the account is gone when it is stored:
    // `Db::insert_audit`); its webhook tells receivers which account to erase.
    app.audit(Event::new("account_deleted", "ok").user(Some(&who.user_id)));
    let Erased { sessions, devices, otp_requests, verification_tokens, audit_events } = erased;
    Ok(AccountDeleted {
        message: "Account deleted",
        deleted: DeletedRows { users: 1, sessions, devices },
        anonymised: AnonymisedRows { otp_requests, verification_tokens, audit_events },
    })
}
