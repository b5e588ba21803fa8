//! `POST /api/auth/token/refresh/`: rotate the refresh token. A retired
//! token presented again within the grace window (two tabs racing) gets the
//! same new pair; later, it is theft, and the whole session is revoked.

use super::error::{db_down, AuthFailure, Error};
use super::session::{self, TokenPair};
use super::App;
use crate::audit::Event;
use crate::domain::tokens;
use crate::store::sessions::Rotation;

pub async fn refresh(app: &App, presented: &str) -> Result<TokenPair, Error> {
    let settings = &app.config.tokens;
    let old_hash = tokens::refresh_token_hash(presented);
    let successor = tokens::successor_refresh_token(app.config.otp_pepper.expose(), presented);
    let new_hash = tokens::refresh_token_hash(&successor);
    let at = session::liveness(app);
    let rotation = Rotation {
        old_hash: &old_hash,
        new_hash: &new_hash,
        at,
        // The refresh lifetime from now, cut by the statement to the
        // session's maximum lifetime: a rotation never extends a session.
        expires_at_ms: app.now_ms + settings.refresh_lifetime_seconds as i64 * 1000,
        max_lifetime_ms: settings.session_max_lifetime_ms(),
    };

    if let Some(s) = app.db.rotate_refresh(&rotation).await.map_err(db_down)? {
        app.audit(Event::new("token_refreshed", "ok").session(&s.id).user(Some(&s.user_id)));
        return Ok(session::pair(app, &s.user_id, &s.id, s.created_at, successor, app.now_ms));
    }

    let Some(retired) = app.db.retired_refresh(&old_hash, at).await.map_err(db_down)? else {
        // The current token of a session that ended (revoked, expired, past
        // its maximum lifetime, or its account disabled) says so; any other
        // is unknown.
        if app.db.ended_session_of(&old_hash, at).await.map_err(db_down)? {
            return Err(Error::Auth(AuthFailure::SessionEnded));
        }
        return Err(Error::RefreshTokenInvalid);
    };
    if retired.ended != 0 {
        return Err(Error::Auth(AuthFailure::SessionEnded));
    }
    let within_grace = app.now_ms - retired.retired_at <= settings.refresh_reuse_grace_seconds as i64 * 1000;
    if within_grace && retired.current_hash == new_hash {
        // The same pair the first of the two racing requests received.
        app.audit(
            Event::new("token_refreshed", "grace_reuse").session(&retired.session_id).user(Some(&retired.user_id)),
        );
        return Ok(session::pair(
            app,
            &retired.user_id,
            &retired.session_id,
            retired.created_at,
            successor,
            retired.retired_at,
        ));
    }
    app.db.revoke_session(&retired.session_id, None, "refresh_token_reuse", app.now_ms).await.map_err(db_down)?;
    app.audit(
        Event::new("refresh_reuse_detected", "session_revoked")
            .session(&retired.session_id)
            .user(Some(&retired.user_id)),
    );
    Err(Error::RefreshTokenReused)
}
