//! Opening a session and issuing its token pair: shared by login (OTP
//! verify), registration and refresh.

use serde::Serialize;

use super::App;
use crate::audit::Event;

/// The audit event of a login answer.
pub fn created(logged_in: &LoggedIn) -> Event {
    Event::new("session_created", "ok").session(&logged_in.session_id).user(Some(&logged_in.user.id))
}
use crate::domain::account::Device;
use crate::domain::crypto::uuid_from;
use crate::domain::destination::Channel;
use crate::domain::tokens;
use crate::store::sessions::{AuthChannel, Liveness, NewSession, SessionRef, SessionUser};
use crate::store::UserRow;

/// The user, as login answers and `me` show it.
#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub email_verified: bool,
    pub phone_verified: bool,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> Self {
        UserView {
            id: u.id.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            phone: u.phone_e164.clone(),
            email_verified: u.email_verified != 0,
            phone_verified: u.phone_verified != 0,
        }
    }
}

/// The login answer, as the reference shapes it (plus `user.phone`).
#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct LoggedIn {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub expires_in: u64,
    pub user: UserView,
}

/// A token pair for a session.
#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct TokenPair {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub expires_in: u64,
}

/// What makes a session live at this request's time (`store::sessions::live`).
pub fn liveness(app: &App) -> Liveness {
    Liveness { now_ms: app.now_ms, created_after_ms: app.config.tokens.live_sessions_created_after_ms(app.now_ms) }
}

/// The access token that goes with `refresh`, issued at `issued_at_ms`, for
/// the session `s` (the token does not outlive it, and carries its
/// `auth_time` and `amr`). Deterministic, so a grace-window re-issue is the
/// same token.
pub fn pair(app: &App, s: &SessionRef, refresh: String, issued_at_ms: i64) -> TokenPair {
    let settings = &app.config.tokens;
    let jti = tokens::access_jti(&tokens::refresh_token_hash(&refresh));
    let session_end = settings.session_end_ms(s.created_at);
    let (iat, exp) = settings.access_times(issued_at_ms, session_end);
    // A session is opened only by an authentication (a login, a
    // registration, a recovery), so its opening is its `auth_time`; a
    // refresh keeps it.
    let subject = tokens::Subject {
        user_id: &s.user_id,
        session_id: &s.id,
        auth_time_ms: s.created_at,
        amr: tokens::amr(s.auth_channel.as_deref()),
    };
    TokenPair {
        access: app.keys.issue_access_within(settings, subject, &jti, issued_at_ms, session_end),
        refresh,
        session_id: s.id.clone(),
        expires_in: (exp - iat) as u64,
    }
}

/// A session about to be opened: its id and refresh token are made first,
/// so the statements that store it can join the transaction of the step
/// that justifies it (the code that verified, the user that registered).
pub struct Opening<'a> {
    pub id: String,
    /// A new device row's id, if the client names an install not seen before.
    device_id: String,
    refresh: String,
    refresh_hash: String,
    user: SessionUser<'a>,
    channel: AuthChannel<'a>,
    device: &'a Device,
    app: &'a App,
}

impl<'a> Opening<'a> {
    /// A session for `user`, authenticated by a code sent over `channel`.
    pub fn new(app: &'a App, user: SessionUser<'a>, channel: AuthChannel<'a>, device: &'a Device) -> Opening<'a> {
        let entropy = &*app.ports.entropy;
        let refresh = tokens::new_refresh_token_from(entropy);
        Opening {
            id: uuid_from(entropy).hyphenated().to_string(),
            device_id: uuid_from(entropy).hyphenated().to_string(),
            refresh_hash: tokens::refresh_token_hash(&refresh),
            refresh,
            user,
            channel,
            device,
            app,
        }
    }

    /// The rows to store: the session and, when the client names its
    /// install, its device.
    pub fn row(&self) -> NewSession<'_> {
        let app = self.app;
        NewSession {
            id: &self.id,
            device_id: &self.device_id,
            user: self.user,
            channel: self.channel,
            install_id: self.device.install_id.as_deref(),
            platform: self.device.platform.as_deref().unwrap_or("web"),
            app_version: self.device.app_version.as_deref(),
            refresh_hash: &self.refresh_hash,
            ip: &app.client.ip,
            user_agent: &app.client.user_agent,
            now_ms: app.now_ms,
            expires_at_ms: app.config.tokens.refresh_expiry_ms(app.now_ms, app.now_ms),
        }
    }

    /// The login answer, once the session is stored; `channel` is the one
    /// the session row names (`AuthChannel`).
    pub fn logged_in(self, app: &App, user: &UserRow, channel: Channel) -> LoggedIn {
        let s = SessionRef {
            id: self.id,
            user_id: user.id.clone(),
            created_at: app.now_ms,
            auth_channel: Some(channel.as_str().to_string()),
        };
        let p = pair(app, &s, self.refresh, app.now_ms);
        LoggedIn {
            access: p.access,
            refresh: p.refresh,
            session_id: p.session_id,
            expires_in: p.expires_in,
            user: UserView::from(user),
        }
    }
}
