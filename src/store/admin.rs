//! What the admin API reads and changes beyond the other aggregates: an
//! account as support sees it, re-enabling it, and its audit trail.
//! (Disabling is `Db::disable_user`; revoking sessions `revoke_user_sessions`.)

use super::sessions::{live, Liveness};
use super::{channel_column, Db, UserRow, USER_COLUMNS};
use crate::domain::destination::Destination;
use crate::ports::{first, int, Row, Stmt, StoreError};

/// A user row with its times and how many live sessions it has.
#[derive(Debug, Clone)]
pub struct AdminUserRow {
    pub user: UserRow,
    pub created_at: i64,
    pub updated_at: i64,
    pub live_sessions: i64,
}

/// Which user: by id, or by its (normalized) email or phone.
#[derive(Clone, Copy)]
pub enum UserKey<'a> {
    Id(&'a str),
    Destination(&'a Destination),
}

impl Db {
    /// The user with this id, email or phone, and its live sessions (`live`), in one query.
    pub async fn admin_user(&self, key: UserKey<'_>, at: Liveness) -> Result<Option<AdminUserRow>, StoreError> {
        let (column, value) = match key {
            UserKey::Id(id) => ("id", id),
            UserKey::Destination(d) => (channel_column(d.channel()), d.as_str()),
        };
        let rows = self
            .db
            .all(Stmt::new(
                format!(
                    "SELECT {USER_COLUMNS}, created_at, updated_at, \
                     (SELECT COUNT(*) FROM sessions s WHERE s.user_id = users.id AND {}) AS live_sessions \
                     FROM users WHERE {column} = ?1",
                    live("s", "?2", "?3")
                ),
                vec![value.into(), at.now_ms.into(), at.created_after_ms.into()],
            ))
            .await?;
        let extra = rows.first().map(|r| (int(r, "created_at"), int(r, "updated_at"), int(r, "live_sessions")));
        let user: Option<UserRow> = first(rows)?;
        Ok(user.zip(extra).map(|(user, (created_at, updated_at, live_sessions))| AdminUserRow {
            user,
            created_at,
            updated_at,
            live_sessions,
        }))
    }

    /// Enables a disabled account; whether one was. Its sessions stay
    /// revoked (disabling ended them for good): its user signs in anew.
    pub async fn enable_user(&self, user_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let rows = self
            .db
            .all(Stmt::new(
                "UPDATE users SET status = 'active', updated_at = ?2 WHERE id = ?1 AND status = 'disabled' RETURNING id",
                vec![user_id.into(), now_ms.into()],
            ))
            .await?;
        Ok(!rows.is_empty())
    }

    /// The user's newest `limit` audit events, newest first (index
    /// `audit_events_user`), by `AuditEvent`'s field names (a field the
    /// event has not is null).
    pub async fn user_events(&self, user_id: &str, limit: u32) -> Result<Vec<Row>, StoreError> {
        self.db
            .all(Stmt::new(
                "SELECT event, outcome, request_id, at AS at_ms, latency_ms, ip_hash, destination, user_id, \
                 session_id, otp_id, provider_code, attempt, actor FROM audit_events WHERE user_id = ?1 \
                 ORDER BY at DESC, id DESC LIMIT ?2",
                vec![user_id.into(), limit.into()],
            ))
            .await
    }
}
