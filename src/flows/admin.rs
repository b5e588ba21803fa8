//! The admin API, for support and operations: look a user up by id, email or
//! phone; disable (every session ends) and enable it; revoke all of its
//! sessions; list its recent audit events. The caller is a service token of
//! `ADMIN_API_TOKENS` (`domain::admin`) with the endpoint's scope.
//!
//! Every action is an audit event naming the token's id (`actor` =
//! `admin:<id>`, never the token): lookups too, since reading a person's
//! data is an action (ASVS 5 V16.3.2, which at L3 asks to log "when
//! sensitive data is accessed"). Every refusal of a token is logged
//! (`admin_denied`: V16.3.1 failed authentication, V16.3.2 failed
//! authorization): a valid token's (403) as an audit event, one without a
//! valid token (401) as a log line only. Answers show the user's email and
//! phone unmasked (support needs them) but never a code, a token hash or a
//! secret.

use serde::Serialize;

use super::error::{db_down, AdminDenied, Error};
use super::{session, App};
use crate::audit::Event;
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
/// the token has `scope`. A refusal is logged (`admin_denied`) and is 401
/// (no token, or one no entry has; with no tokens configured, every token)
/// or 403 (a valid token without the scope, RFC 6750 3.1).
pub fn authorize(app: &App, authorization: Option<&str>, scope: Scope) -> Result<Actor, Error> {
    // Anyone can send these, so they are a log line only: a D1 row each
    // would let strangers make the service write without limit.
    let refuse = |outcome: &str, denied: AdminDenied| {
        let (request_id, ip_hash, _) = app.trail.origin();
        let line = serde_json::json!({ "outcome": outcome, "request_id": request_id, "ip_hash": ip_hash });
        crate::log::emit("warn", "admin_denied", line);
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

/// A user as support sees it: the account as its owner sees it (unmasked),
/// its status and times, and how many sessions are live.
#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
pub struct AdminUser {
    #[serde(flatten)]
    pub user: session::UserView,
    /// `active` or `disabled`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub live_sessions: i64,
}

impl From<AdminUserRow> for AdminUser {
    fn from(u: AdminUserRow) -> Self {
        AdminUser {
            user: session::UserView::from(&u.user),
            status: u.user.status,
            created_at: rfc3339_millis(u.created_at),
            updated_at: rfc3339_millis(u.updated_at),
            live_sessions: u.live_sessions,
        }
    }
}

/// What an admin request does to the user it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `GET /api/admin/users/{id}`, and by email or phone
    /// (`GET /api/admin/users?email=|phone=`), `users:read`.
    View,
    /// Disables the user and revokes every session of it in one
    /// transaction (`Db::disable_user`), `users:write`.
    Disable,
    /// Enables a disabled user, `users:write`; its old sessions stay revoked.
    Enable,
    /// Revokes every live session of the user in one statement
    /// (`revoked_reason` `revoked_by_admin`), `sessions:write`.
    RevokeSessions,
    /// The user's newest `limit` audit events, newest first, `audit:read`:
    /// the trail as stored, destinations masked and client IPs hashed.
    Events { limit: u32 },
}

impl Action {
    /// The scope a token needs for it.
    pub fn scope(self) -> Scope {
        match self {
            Action::View => Scope::UsersRead,
            Action::Disable | Action::Enable => Scope::UsersWrite,
            Action::RevokeSessions => Scope::SessionsWrite,
            Action::Events { .. } => Scope::AuditRead,
        }
    }

    /// Its audit event.
    fn event(self) -> &'static str {
        match self {
            Action::View => "admin_user_viewed",
            Action::Disable => "admin_user_disabled",
            Action::Enable => "admin_user_enabled",
            Action::RevokeSessions => "admin_sessions_revoked",
            Action::Events { .. } => "admin_events_listed",
        }
    }
}

/// Most events one listing answers, and how many without `limit`.
pub const MAX_EVENTS: u32 = 200;
pub const DEFAULT_EVENTS: u32 = 50;

/// What an admin action answers: the user as it now is (viewing, disabling,
/// enabling), how many sessions were revoked, or the user's events.
#[derive(Serialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(untagged)]
pub enum Answer {
    User(AdminUser),
    Revoked { revoked: usize },
    Events { events: Vec<crate::ports::Row> },
}

/// Does `action` to the user `key` names, and records it as the action's
/// audit event naming the actor: outcome `ok`, `unchanged` (disabling a
/// disabled user, enabling an active one) or `not_found` (404, no such user;
/// a lookup by destination names it masked, as every event does).
pub async fn act(app: &App, actor: &Actor, key: UserKey<'_>, action: Action) -> Result<Answer, Error> {
    let record = |outcome: &str, user: Option<&str>| {
        let event = actor.event(action.event(), outcome);
        app.audit(match key {
            UserKey::Id(id) => event.user(user.or(Some(id))),
            UserKey::Destination(d) => event.destination(d).user(user),
        })
    };
    let Some(mut user) = app.db.admin_user(key, session::liveness(app)).await.map_err(db_down)? else {
        record("not_found", None);
        return Err(Error::NoSuchUser);
    };
    let (db, now, id) = (&app.db, app.now_ms, user.user.id.clone());
    let mut answer = None;
    let changed = match action {
        Action::View => true,
        Action::Disable => db.disable_user(&id, now).await.map_err(db_down)?,
        Action::Enable => db.enable_user(&id, now).await.map_err(db_down)?,
        Action::RevokeSessions => {
            let revoked = db.revoke_user_sessions(&id, None, "revoked_by_admin", session::liveness(app));
            answer = Some(Answer::Revoked { revoked: revoked.await.map_err(db_down)? });
            true
        }
        Action::Events { limit } => {
            let events = db.user_events(&id, limit.clamp(1, MAX_EVENTS)).await.map_err(db_down)?;
            answer = Some(Answer::Events { events });
            true
        }
    };
    // The user as the change left it (the statements that made it say so).
    match action {
        Action::Disable if changed => {
            (user.user.status, user.updated_at, user.live_sessions) = ("disabled".into(), now, 0)
        }
        Action::Enable if changed => (user.user.status, user.updated_at) = ("active".into(), now),
        _ => {}
    }
    record(if changed { "ok" } else { "unchanged" }, Some(&id));
    Ok(answer.unwrap_or_else(|| Answer::User(user.into())))
}
