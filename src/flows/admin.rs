//! The admin API, for support and operations: look a user up by id, email or
//! phone; disable (every session ends) and enable it; revoke all of its
//! sessions; list its recent audit events. The caller is a service token of
//! `ADMIN_API_TOKENS` (`domain::admin`) with the endpoint's scope.
//!
//! Every action is an audit event naming the token's id (`actor` =
//! `admin:<id>`, never the token): lookups too, since reading a person's
//! data is an action (ASVS 5 V16.3.2, which at L3 asks to log "when
//! sensitive data is accessed"), and so is every refusal of a token
//! (`admin_denied`: V16.3.1 failed authentication, V16.3.2 failed
//! authorization). Answers show the user's email and phone unmasked
//! (support needs them) but never a code, a token hash or a secret.

use serde::Serialize;

use super::error::{db_down, AdminDenied, Error};
use super::{session, App};
use crate::audit::{AuditEvent, Event};
use crate::domain::admin::{self, Scope};
use crate::domain::time::rfc3339_millis;
use crate::store::admin::{AdminUserRow, UserKey};

/// The token a request is acting with, by the name the trail gives it.
#[derive(Debug)]
pub struct Actor(String);

impl Actor {
    /// `admin:<token id>`.
    pub fn name(&self) -> &str {
        &self.0
    }

    fn event(&self, name: &'static str, outcome: &str) -> Event {
        Event::new(name, outcome).actor(&self.0)
    }
}

/// Checks `Authorization: Bearer <token>` against `ADMIN_API_TOKENS` and that
/// the token has `scope`. A refusal is recorded (`admin_denied`) and is 401
/// (no token, or one no entry has; with no tokens configured, every token)
/// or 403 (a valid token without the scope, RFC 6750 3.1).
pub fn authorize(app: &App, authorization: Option<&str>, scope: Scope) -> Result<Actor, Error> {
    let refuse = |outcome: &str, denied: AdminDenied| {
        app.audit(Event::new("admin_denied", outcome));
        Err(Error::Admin(denied))
    };
    let Some(header) = authorization else { return refuse("no_token", AdminDenied::Missing) };
    let Some(token) = super::account::bearer(header).and_then(|t| admin::find(&app.config.admin_tokens, t)) else {
        return refuse("invalid_token", AdminDenied::Invalid);
    };
    let actor = Actor(["admin:", &token.id].concat());
    if !token.allows(scope) {
        app.audit(actor.event("admin_denied", "insufficient_scope"));
        return Err(Error::Admin(AdminDenied::Scope(scope)));
    }
    Ok(actor)
}

/// A user as support sees it: the account, unmasked, its status and times,
/// and how many sessions are live.
#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct AdminUser {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub email_verified: bool,
    pub phone_verified: bool,
    /// `active` or `disabled`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub live_sessions: i64,
}

impl From<AdminUserRow> for AdminUser {
    fn from(u: AdminUserRow) -> Self {
        AdminUser {
            id: u.id,
            username: u.username,
            email: u.email,
            phone: u.phone_e164,
            email_verified: u.email_verified,
            phone_verified: u.phone_verified,
            status: u.status,
            created_at: rfc3339_millis(u.created_at),
            updated_at: rfc3339_millis(u.updated_at),
            live_sessions: u.live_sessions,
        }
    }
}

/// The event of an action on the user named by `key` (a destination
/// masked, as every event names one).
fn about(event: Event, key: UserKey<'_>) -> Event {
    match key {
        UserKey::Id(id) => event.user(Some(id)),
        UserKey::Destination(d) => event.destination(d),
    }
}

/// The user an action is about; none is 404, recorded as the action's
/// event with outcome `not_found`.
async fn target(app: &App, actor: &Actor, action: &'static str, key: UserKey<'_>) -> Result<AdminUserRow, Error> {
    if let Some(user) = app.db.admin_user(key, session::liveness(app)).await.map_err(db_down)? {
        return Ok(user);
    }
    app.audit(about(actor.event(action, "not_found"), key));
    Err(Error::NoSuchUser)
}

/// Looks a user up by id (`GET /api/admin/users/{id}`), or by email or phone
/// (`GET /api/admin/users?email=|phone=`, normalized as a login normalizes
/// it), `users:read`.
pub async fn user(app: &App, actor: &Actor, key: UserKey<'_>) -> Result<AdminUser, Error> {
    const EVENT: &str = "admin_user_viewed";
    let user = target(app, actor, EVENT, key).await?;
    app.audit(about(actor.event(EVENT, "ok"), key).user(Some(&user.id)));
    Ok(user.into())
}

/// Disables the user and revokes every session of it in one transaction
/// (`Db::disable_user`), `users:write`. Disabling a disabled user changes
/// nothing (outcome `unchanged`). The user as it now is.
pub async fn disable(app: &App, actor: &Actor, id: &str) -> Result<AdminUser, Error> {
    const EVENT: &str = "admin_user_disabled";
    let mut user = target(app, actor, EVENT, UserKey::Id(id)).await?;
    let changed = app.db.disable_user(&user.id, app.now_ms).await.map_err(db_down)?;
    if changed {
        (user.status, user.updated_at, user.live_sessions) = ("disabled".into(), app.now_ms, 0);
    }
    app.audit(actor.event(EVENT, if changed { "ok" } else { "unchanged" }).user(Some(&user.id)));
    Ok(user.into())
}

/// Enables a disabled user (`users:write`); its old sessions stay revoked.
/// Enabling an active user changes nothing (outcome `unchanged`).
pub async fn enable(app: &App, actor: &Actor, id: &str) -> Result<AdminUser, Error> {
    const EVENT: &str = "admin_user_enabled";
    let mut user = target(app, actor, EVENT, UserKey::Id(id)).await?;
    let changed = app.db.enable_user(&user.id, app.now_ms).await.map_err(db_down)?;
    if changed {
        (user.status, user.updated_at) = ("active".into(), app.now_ms);
    }
    app.audit(actor.event(EVENT, if changed { "ok" } else { "unchanged" }).user(Some(&user.id)));
    Ok(user.into())
}

/// What revoking a user's sessions did.
#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct Revoked {
    /// Live sessions revoked.
    pub revoked: usize,
}

/// Revokes every live session of the user in one statement
/// (`revoked_reason` `revoked_by_admin`), `sessions:write`.
pub async fn revoke_sessions(app: &App, actor: &Actor, id: &str) -> Result<Revoked, Error> {
    const EVENT: &str = "admin_sessions_revoked";
    let user = target(app, actor, EVENT, UserKey::Id(id)).await?;
    let revoked = app
        .db
        .revoke_user_sessions(&user.id, None, "revoked_by_admin", session::liveness(app))
        .await
        .map_err(db_down)?;
    app.audit(actor.event(EVENT, "ok").user(Some(&user.id)));
    Ok(Revoked { revoked })
}

/// Most events one listing answers, and how many without `limit`.
pub const MAX_EVENTS: u32 = 200;
pub const DEFAULT_EVENTS: u32 = 50;

#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct Events {
    pub events: Vec<AuditEvent>,
}

/// The user's newest `limit` audit events, newest first (`audit:read`):
/// the trail as stored, destinations masked and client IPs hashed.
pub async fn events(app: &App, actor: &Actor, id: &str, limit: u32) -> Result<Events, Error> {
    const EVENT: &str = "admin_events_listed";
    let user = target(app, actor, EVENT, UserKey::Id(id)).await?;
    let events = app.db.user_events(&user.id, limit.clamp(1, MAX_EVENTS)).await.map_err(db_down)?;
    app.audit(actor.event(EVENT, "ok").user(Some(&user.id)));
    Ok(Events { events })
}
