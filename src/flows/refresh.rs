//! `POST /api/auth/token/refresh/`: rotate the refresh token. A retired
//! token presented again within the grace window (two tabs racing) gets the
//! same new pair; later, it is theft, and the whole session is revoked. A
//! session rotates at most `REFRESH_PER_SESSION_PER_MINUTE` times a minute
//! (429 after), and not past its end.

use super::error::{db_down, AuthFailure, Error};
use super::session::{self, TokenPair};
use super::App;
use crate::audit::Event;
use crate::domain::limits::Limit;
use crate::domain::tokens;
use crate::store::sessions::{CurrentToken, RefreshBudget, Rotation, SessionRef};

pub async fn refresh(app: &App, presented: &str) -> Result<TokenPair, Error> {
    let settings = &app.config.tokens;
    let old_hash = tokens::refresh_token_hash(presented);
    let successor = tokens::successor_refresh_token(app.config.otp_pepper.expose(), presented);
    let new_hash = tokens::refresh_token_hash(&successor);
    let at = session::liveness(app);
    let budget =
        RefreshBudget { limit: settings.refreshes_per_session_per_minute, window_ms: tokens::REFRESH_WINDOW_MS };
    let rotation = Rotation {
        old_hash: &old_hash,
        new_hash: &new_hash,
        at,
        // The refresh lifetime from now, cut by the statement to the
        // session's maximum lifetime: a rotation never extends a session.
        expires_at_ms: app.now_ms + settings.refresh_lifetime_seconds as i64 * 1000,
        max_lifetime_ms: settings.session_max_lifetime_ms(),
        budget,
    };

    if let Some(s) = app.db.rotate_refresh(&rotation).await.map_err(db_down)? {
        app.audit(Event::new("token_refreshed", "ok").session(&s.id).user(Some(&s.user_id)));
        return Ok(session::pair(app, &s, successor, app.now_ms));
    }

    let found = app.db.presented_refresh(&old_hash, at, budget).await.map_err(db_down)?;
    let Some(retired) = found.retired else {
        return match found.current {
            // The current token of a session that ended (revoked, expired,
            // past its maximum lifetime, or its account disabled) says so.
            Some(current) if current.ended != 0 => Err(Error::Auth(AuthFailure::SessionEnded)),
            Some(CurrentToken { budget_spent_until: Some(until), session_id, user_id, .. }) => {
                let limit = Limit::SessionRefreshes;
                app.audit(Event::new("rate_limited", limit.bucket()).session(&session_id).user(Some(&user_id)));
                Err(Error::Limited { limit, retry_after_seconds: seconds_until(until, app.now_ms) })
            }
            // Never issued (or its session pruned long after it ended).
            _ => Err(Error::RefreshTokenInvalid),
        };
    };
    if retired.ended != 0 {
        return Err(Error::Auth(AuthFailure::SessionEnded));
    }
    let within_grace = app.now_ms - retired.retired_at <= settings.refresh_reuse_grace_seconds as i64 * 1000;
    if within_grace && retired.current_hash == new_hash {
        // The same pair the first of the two racing requests received; not
        // a rotation, so it takes nothing from the session's budget.
        app.audit(
            Event::new("token_refreshed", "grace_reuse").session(&retired.session_id).user(Some(&retired.user_id)),
        );
        let s = SessionRef {
            id: retired.session_id,
            user_id: retired.user_id,
            created_at: retired.created_at,
            auth_channel: retired.auth_channel,
        };
        return Ok(session::pair(app, &s, successor, retired.retired_at));
    }
    app.db.revoke_session(&retired.session_id, None, "refresh_token_reuse", app.now_ms).await.map_err(db_down)?;
    app.audit(
        Event::new("refresh_reuse_detected", "session_revoked")
            .session(&retired.session_id)
            .user(Some(&retired.user_id)),
    );
    Err(Error::RefreshTokenReused)
}

/// Whole seconds from `now_ms` until `until_ms`, at least one.
fn seconds_until(until_ms: i64, now_ms: i64) -> u64 {
    ((until_ms - now_ms).max(1) as u64).div_ceil(1000)
}

/// `POST /api/auth/token/revoke/` (RFC 7009): ends the session of a refresh
/// token, current or retired, or of a valid access token (a JWT: the
/// session it names, so its refresh token dies too, as RFC 7009 2.1 asks).
/// The answer is the same whatever the token was (RFC 7009 2.2: 200 for an
/// invalid token too), so it tells nobody anything about a token they hold
/// or guessed; the audit trail records the revocations that happened.
pub async fn revoke(app: &App, token: &str) -> Result<(), Error> {
    let revoked = if token.contains('.') {
        match app.keys.verify_access(&app.config.tokens, token, app.now_ms) {
            Ok(c) => {
                let live = app.db.revoke_session(&c.sid, Some(&c.sub), "token_revoked", app.now_ms).await;
                live.map_err(db_down)?.then_some((c.sid, c.sub))
            }
            Err(_) => None,
        }
    } else {
        app.db.revoke_by_refresh(&tokens::refresh_token_hash(token), app.now_ms).await.map_err(db_down)?
    };
    if let Some((session_id, user_id)) = revoked {
        app.audit(Event::new("session_revoked", "token_revoked").session(&session_id).user(Some(&user_id)));
    }
    Ok(())
}
