//! Opening a session and issuing its token pair: shared by login (OTP
//! verify), registration and refresh.

use serde::Serialize;

use super::otp_verify::UserView;
use super::App;
use crate::domain::crypto::new_uuid;
use crate::domain::tokens::{self, Keys};
use crate::http::input::DeviceInput;
use crate::http::ApiError;
use crate::platform::db::{NewSession, UserRow};
use crate::platform::env;

/// The login answer, as the reference shapes it (plus `user.phone`).
#[derive(Serialize)]
pub struct LoggedIn {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub expires_in: u64,
    pub user: UserView,
}

/// A token pair for a session.
#[derive(Serialize)]
pub struct TokenPair {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub expires_in: u64,
}

pub fn keys(app: &App) -> &'static Keys {
    env::keys(app.config)
}

/// The access token that goes with `refresh`, issued at `issued_at_ms`.
/// Deterministic, so a grace-window re-issue is the same token.
pub fn pair(app: &App, user_id: &str, session_id: &str, refresh: String, issued_at_ms: i64) -> TokenPair {
    let settings = &app.config.tokens;
    let jti = tokens::access_jti(&tokens::refresh_token_hash(&refresh));
    TokenPair {
        access: keys(app).issue_access(settings, user_id, session_id, &jti, issued_at_ms),
        refresh,
        session_id: session_id.to_string(),
        expires_in: settings.access_lifetime_seconds,
    }
}

/// Upserts the device, opens a session and returns the login answer.
pub async fn open(app: &App, user: &UserRow, device: &DeviceInput) -> Result<LoggedIn, ApiError> {
    let session_id = new_uuid().hyphenated().to_string();
    let refresh = tokens::new_refresh_token();
    app.db
        .open_session(&NewSession {
            id: &session_id,
            user_id: &user.id,
            install_id: device.install_id.as_deref(),
            platform: device.platform.as_deref().unwrap_or("web"),
            app_version: device.app_version.as_deref(),
            refresh_hash: &tokens::refresh_token_hash(&refresh),
            ip: &app.client.ip,
            user_agent: &app.client.user_agent,
            now_ms: app.now_ms,
            expires_at_ms: app.now_ms + app.config.tokens.refresh_lifetime_seconds as i64 * 1000,
        })
        .await
        .map_err(|e| ApiError::unavailable("Database", e))?;
    crate::log::info("session_created", serde_json::json!({ "session_id": session_id, "user_id": user.id }));
    let p = pair(app, &user.id, &session_id, refresh, app.now_ms);
    Ok(LoggedIn { access: p.access, refresh: p.refresh, session_id: p.session_id, expires_in: p.expires_in, user: UserView::from(user) })
}
