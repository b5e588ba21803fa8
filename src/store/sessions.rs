//! Sessions, devices and refresh tokens.

use serde::Deserialize;

use super::{Db, UserRow};
use crate::domain::destination::Channel;
use crate::ports::{first, first_of, text, typed, Arg, Stmt, StoreError};

/// A live session, as the refresh and auth checks need it.
#[derive(Debug, Deserialize)]
pub struct SessionRef {
    pub id: String,
    pub user_id: String,
    /// When it was opened: it ends `SESSION_MAX_LIFETIME_SECONDS` later.
    pub created_at: i64,
    /// The channel of the code that opened it (`AuthChannel`; NULL for a
    /// session opened before migration 0012).
    pub auth_channel: Option<String>,
}

/// A rotated-out refresh token and the state of its session.
#[derive(Debug, Deserialize)]
pub struct RetiredToken {
    pub session_id: String,
    pub user_id: String,
    pub retired_at: i64,
    pub current_hash: String,
    /// When the session was opened.
    pub created_at: i64,
    /// The session's `SessionRef::auth_channel`.
    pub auth_channel: Option<String>,
    /// 1 when the session is no longer live (`live`), else 0.
    pub ended: i64,
}

/// The condition that the session `s` (a table name or alias) is live at
/// `now`: not revoked, not expired, opened after `created_after` (younger
/// than `SESSION_MAX_LIFETIME_SECONDS`), and its account active. `now` and
/// `created_after` are parameters (`?2`). The one definition every
/// authenticated request and every refresh uses.
pub(super) fn live(s: &str, now: &str, created_after: &str) -> String {
    format!(
        "{s}.revoked_at IS NULL AND {s}.expires_at > {now} AND {s}.created_at > {created_after} \
         AND EXISTS (SELECT 1 FROM users a WHERE a.id = {s}.user_id AND a.status = 'active')"
    )
}

/// When a session is live, at `now_ms`: see `live`.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub now_ms: i64,
    /// `TokenSettings::live_sessions_created_after_ms`.
    pub created_after_ms: i64,
}

/// A session's refresh budget: at most `limit` rotations in a window of
/// `window_ms` opened by the first rotation after the previous window
/// closed. Counted in the session's row (`refresh_window_start`,
/// `refresh_window_count`, migration 0010).
#[derive(Debug, Clone, Copy)]
pub struct RefreshBudget {
    pub limit: u32,
    pub window_ms: i64,
}

/// The condition that the session `s` may rotate once more: its window
/// closed at or before `closed_before` (`now - window_ms`, a parameter), or
/// it has rotated fewer than `limit` (a parameter) times in it.
fn within_budget(s: &str, closed_before: &str, limit: &str) -> String {
    format!("({s}.refresh_window_start <= {closed_before} OR {s}.refresh_window_count < {limit})")
}

/// A refresh: the presented token's hash, its successor's, and the session's
/// new expiry, which the statement cuts to `created_at + max_lifetime_ms`.
pub struct Rotation<'a> {
    pub old_hash: &'a str,
    pub new_hash: &'a str,
    pub at: Liveness,
    pub expires_at_ms: i64,
    pub max_lifetime_ms: i64,
    pub budget: RefreshBudget,
}

/// The current refresh token of a session that did not rotate.
#[derive(Debug, Deserialize)]
pub struct CurrentToken {
    pub session_id: String,
    pub user_id: String,
    /// 1 when the session is no longer live (`live`), else 0.
    pub ended: i64,
    /// When the session may rotate again, if its refresh budget is spent.
    pub budget_spent_until: Option<i64>,
}

/// What a presented refresh token that did not rotate is: a retired one,
/// the current one of a session (ended, or out of refreshes), or neither.
#[derive(Debug)]
pub struct Presented {
    pub retired: Option<RetiredToken>,
    pub current: Option<CurrentToken>,
}

/// A session as the sessions list shows it.
#[derive(Debug, Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub ip_address: String,
    pub user_agent: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    /// The platform the session was opened from.
    pub platform: String,
    pub install_id: Option<String>,
    pub device_platform: Option<String>,
    pub app_version: Option<String>,
}

/// Whose session it is: an account by id, the account a login code was
/// linked to (known to D1 only, in the batch that verifies the code), or
/// the active account at the destination of a verification token (by its
/// hash; a recovery's).
#[derive(Debug, Clone, Copy)]
pub enum SessionUser<'a> {
    Id(&'a str),
    OfCode(&'a str),
    OfToken(&'a str),
}

impl SessionUser<'_> {
    /// The account's id as SQL, from parameter `?n`, and what `?n` binds.
    fn sql(self, n: usize) -> (String, Arg) {
        match self {
            SessionUser::Id(id) => (format!("?{n}"), id.into()),
            SessionUser::OfCode(otp_id) => {
                (format!("(SELECT user_id FROM otp_requests WHERE id = ?{n})"), otp_id.into())
            }
            SessionUser::OfToken(hash) => (account_of_token(n), hash.into()),
        }
    }
}

/// The id of the active account whose email or phone is the destination of
/// the verification token whose hash is parameter `?n`, as SQL.
fn account_of_token(n: usize) -> String {
    format!(
        "(SELECT u.id FROM users u JOIN verification_tokens t ON t.destination IN (u.email, u.phone_e164) \
         WHERE t.token_hash = ?{n} AND u.status = 'active')"
    )
}

/// How a new session authenticated, as `sessions.auth_channel` stores it
/// (the code's `otp_type`, `email` or `phone`): a code sent over a known
/// channel, or the one behind the verification token (by its hash) that
/// the same batch consumes.
#[derive(Debug, Clone, Copy)]
pub enum AuthChannel<'a> {
    Of(Channel),
    OfToken(&'a str),
}

impl AuthChannel<'_> {
    /// The channel as SQL, from parameter `?n`, and what `?n` binds.
    fn sql(self, n: usize) -> (String, Arg) {
        match self {
            AuthChannel::Of(channel) => (format!("?{n}"), channel.as_str().into()),
            AuthChannel::OfToken(hash) => {
                (format!("(SELECT otp_type FROM verification_tokens WHERE token_hash = ?{n})"), hash.into())
            }
        }
    }
}

/// A new session and, when the client names its install, its device.
pub struct NewSession<'a> {
    pub id: &'a str,
    /// The id a new device row gets (an existing one keeps its own).
    pub device_id: &'a str,
    pub user: SessionUser<'a>,
    pub channel: AuthChannel<'a>,
    pub install_id: Option<&'a str>,
    pub platform: &'a str,
    pub app_version: Option<&'a str>,
    pub refresh_hash: &'a str,
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub now_ms: i64,
    pub expires_at_ms: i64,
}

/// A further condition on statements in a batch: SQL written from the
/// first free parameter number, and the values it binds.
pub(super) type Condition<'a> = &'a dyn Fn(usize) -> (String, Vec<Arg>);

/// The statements that open a session for an active user in a batch:
/// upsert the device by (user, install_id) when one is named, then the
/// session. Both also require `condition`, so the batch can make them
/// depend on its first statement.
pub(super) fn session_statements(s: &NewSession<'_>, condition: Condition) -> Vec<Stmt> {
    let with = |sql: &str, mut args: Vec<Arg>| {
        let (extra, extra_args) = condition(args.len() + 1);
        args.extend(extra_args);
        Stmt::new(sql.replace("{condition}", &extra), args)
    };
    let mut statements = Vec::new();
    if let Some(install_id) = s.install_id {
        let (user, user_arg) = s.user.sql(6);
        statements.push(with(
            &format!(
                "INSERT INTO devices (id, user_id, install_id, platform, app_version, created_at, last_seen_at) \
                 SELECT ?1, u.id, ?2, ?3, ?4, ?5, ?5 FROM users u WHERE u.id = {user} AND u.status = 'active' \
                 AND {{condition}} ON CONFLICT (user_id, install_id) DO UPDATE SET platform = excluded.platform, \
                 app_version = excluded.app_version, last_seen_at = excluded.last_seen_at"
            ),
            vec![
                s.device_id.into(),
                install_id.into(),
                s.platform.into(),
                s.app_version.into(),
                s.now_ms.into(),
                user_arg,
            ],
        ));
    }
    let (user, user_arg) = s.user.sql(8);
    let (channel, channel_arg) = s.channel.sql(10);
    statements.push(with(
        &format!(
            "INSERT INTO sessions (id, user_id, device_id, refresh_token_hash, ip_address, user_agent, \
             created_at, last_used_at, expires_at, platform, auth_channel) \
             SELECT ?1, u.id, (SELECT d.id FROM devices d WHERE d.user_id = u.id AND d.install_id = ?2), \
             ?3, ?4, ?5, ?6, ?6, ?7, ?9, {channel} FROM users u WHERE u.id = {user} AND u.status = 'active' \
             AND {{condition}}"
        ),
        vec![
            s.id.into(),
            s.install_id.into(),
            s.refresh_hash.into(),
            s.ip.into(),
            s.user_agent.into(),
            s.now_ms.into(),
            s.expires_at_ms.into(),
            user_arg,
            s.platform.into(),
            channel_arg,
        ],
    ));
    statements
}

impl Db {
    /// Exchanges a live session's current refresh token for its successor,
    /// retiring the old one and counting the refresh in the session's
    /// budget, atomically: one batch, one round trip. `None`: not the current
    /// token of a live session with refreshes left (`presented_refresh` says which).
    pub async fn rotate_refresh(&self, r: &Rotation<'_>) -> Result<Option<SessionRef>, StoreError> {
        let may_rotate = format!(
            "sessions.refresh_token_hash = ?1 AND {} AND {}",
            live("sessions", "?2", "?3"),
            within_budget("sessions", "?4", "?5")
        );
        let closed_before = r.at.now_ms - r.budget.window_ms;
        let args: Vec<Arg> = vec![
            r.old_hash.into(),
            r.at.now_ms.into(),
            r.at.created_after_ms.into(),
            closed_before.into(),
            r.budget.limit.into(),
        ];
        let retire = Stmt::new(
            format!(
                "INSERT INTO retired_refresh_tokens (token_hash, session_id, retired_at) \
                 SELECT ?1, id, ?2 FROM sessions WHERE {may_rotate}"
            ),
            args.clone(),
        );
        // A closed window: this refresh opens a new one.
        let rotate = Stmt::new(
            format!(
                "UPDATE sessions SET refresh_token_hash = ?6, last_used_at = ?2, \
                 expires_at = MIN(?7, created_at + ?8), \
                 refresh_window_count = CASE WHEN refresh_window_start <= ?4 THEN 1 ELSE refresh_window_count + 1 END, \
                 refresh_window_start = CASE WHEN refresh_window_start <= ?4 THEN ?2 ELSE refresh_window_start END \
                 WHERE {may_rotate} RETURNING id, user_id, created_at, auth_channel"
            ),
            [args, vec![r.new_hash.into(), r.expires_at_ms.into(), r.max_lifetime_ms.into()]].concat(),
        );
        let mut results = self.db.batch(vec![retire, rotate]).await?;
        first_of(&mut results, 1)
    }

    /// What a refresh token that did not rotate is (`Presented`), in one
    /// round trip: the retired token and its session, or the session whose
    /// current token it is, with whether it ended or spent its budget.
    pub async fn presented_refresh(
        &self,
        hash: &str,
        at: Liveness,
        budget: RefreshBudget,
    ) -> Result<Presented, StoreError> {
        let retired = Stmt::new(
            format!(
                "SELECT r.session_id, s.user_id, r.retired_at, s.refresh_token_hash AS current_hash, \
                 s.created_at, s.auth_channel, NOT ({}) AS ended \
                 FROM retired_refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = ?1",
                live("s", "?2", "?3")
            ),
            vec![hash.into(), at.now_ms.into(), at.created_after_ms.into()],
        );
        let current = Stmt::new(
            format!(
                "SELECT s.id AS session_id, s.user_id, NOT ({}) AS ended, \
                 CASE WHEN NOT {} THEN s.refresh_window_start + ?6 END AS budget_spent_until \
                 FROM sessions s WHERE s.refresh_token_hash = ?1",
                live("s", "?2", "?3"),
                within_budget("s", "?4", "?5")
            ),
            vec![
                hash.into(),
                at.now_ms.into(),
                at.created_after_ms.into(),
                (at.now_ms - budget.window_ms).into(),
                budget.limit.into(),
                budget.window_ms.into(),
            ],
        );
        let mut results = self.db.batch(vec![retired, current]).await?;
        Ok(Presented { retired: first_of(&mut results, 0)?, current: first_of(&mut results, 1)? })
    }

    /// Recovers an account, in one transaction: spends a `reset`
    /// verification token (single use, unexpired) for a destination of an
    /// active account, revokes every session of that account, and opens
    /// `session` (whose user is `SessionUser::OfToken`). `by` marks this
    /// request's consumption (two requests in one millisecond share
    /// `consumed_at`). The account and the token's channel, or `None`: the
    /// token does not hold, and nothing changed.
    pub async fn recover(
        &self,
        token_hash: &str,
        by: &str,
        session: &NewSession<'_>,
    ) -> Result<Option<(UserRow, Channel)>, StoreError> {
        let account = account_of_token(1);
        let proved = "EXISTS (SELECT 1 FROM verification_tokens WHERE token_hash = ?1 AND consumed_by = ?3)";
        let args = || -> Vec<Arg> { vec![token_hash.into(), session.now_ms.into(), by.into()] };
        let consume = Stmt::new(
            format!(
                "UPDATE verification_tokens SET consumed_at = ?2, consumed_by = ?3 \
                 WHERE token_hash = ?1 AND purpose = 'reset' AND consumed_at IS NULL AND expires_at > ?2 \
                 AND {account} IS NOT NULL RETURNING otp_type"
            ),
            args(),
        );
        let revoke = Stmt::new(
            format!(
                "UPDATE sessions SET revoked_at = ?2, revoked_reason = 'recovered' \
                 WHERE user_id = {account} AND revoked_at IS NULL AND {proved}"
            ),
            args(),
        );
        let read =
            Stmt::new(format!("SELECT {} FROM users WHERE id = {account} AND {proved}", super::USER_COLUMNS), args());
        let mut statements = vec![consume, revoke];
        statements.extend(session_statements(session, &|n| {
            (
                format!(
                    "EXISTS (SELECT 1 FROM verification_tokens WHERE token_hash = ?{n} AND consumed_by = ?{})",
                    n + 1
                ),
                vec![token_hash.into(), by.into()],
            )
        }));
        let read_back = statements.len();
        statements.push(read);
        let mut results = self.db.batch(statements).await?;
        // Read by hand: a derived Deserialize costs the bundle more.
        let kind = results[0].first().and_then(|row| Channel::parse(row.get("otp_type")?.as_str()?));
        Ok(match (kind, first_of::<UserRow>(&mut results, read_back)?) {
            (Some(channel), Some(user)) => Some((user, channel)),
            _ => None,
        })
    }

    /// Revokes a session; with `user_id`, only one of that user's. Returns
    /// whether a live session was revoked.
    pub async fn revoke_session(
        &self,
        id: &str,
        user_id: Option<&str>,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let rows = self
            .db
            .all(Stmt::new(
                "UPDATE sessions SET revoked_at = ?3, revoked_reason = ?4 \
                 WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2) AND revoked_at IS NULL RETURNING id, user_id",
                vec![id.into(), user_id.into(), now_ms.into(), reason.into()],
            ))
            .await?;
        Ok(!rows.is_empty())
    }

    /// Revokes the session a refresh token belongs to, whether it is the
    /// session's current token or one it retired (RFC 7009 2.1: revoking a
    /// refresh token ends its grant; a retired token ends the session on a
    /// refresh too, as reuse). The session and its user, when one was live.
    pub async fn revoke_by_refresh(&self, hash: &str, now_ms: i64) -> Result<Option<(String, String)>, StoreError> {
        let rows = self
            .db
            .all(Stmt::new(
                "UPDATE sessions SET revoked_at = ?2, revoked_reason = 'token_revoked' \
                 WHERE (refresh_token_hash = ?1 \
                 OR id = (SELECT session_id FROM retired_refresh_tokens WHERE token_hash = ?1)) \
                 AND revoked_at IS NULL RETURNING id, user_id",
                vec![hash.into(), now_ms.into()],
            ))
            .await?;
        Ok(rows.first().and_then(|row| Some((text(row, "id")?, text(row, "user_id")?))))
    }

    /// Revokes every live session (`live`) of the user, but `keep` when
    /// given (the caller's own), in one statement; how many it revoked.
    pub async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        reason: &str,
        at: Liveness,
    ) -> Result<usize, StoreError> {
        let rows = self
            .db
            .all(Stmt::new(
                format!(
                    "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?5 \
                     WHERE user_id = ?1 AND (?4 IS NULL OR id <> ?4) AND {} RETURNING id",
                    live("sessions", "?2", "?3")
                ),
                vec![user_id.into(), at.now_ms.into(), at.created_after_ms.into(), keep.into(), reason.into()],
            ))
            .await?;
        Ok(rows.len())
    }

    pub async fn live_sessions(&self, user_id: &str, at: Liveness) -> Result<Vec<SessionRow>, StoreError> {
        typed(
            self.db
                .all(Stmt::new(
                    format!(
                        "SELECT s.id, s.ip_address, s.user_agent, s.created_at, s.last_used_at, s.expires_at, \
                         s.platform, d.install_id, d.platform AS device_platform, d.app_version \
                         FROM sessions s LEFT JOIN devices d ON d.id = s.device_id \
                         WHERE s.user_id = ?1 AND {} ORDER BY s.created_at DESC",
                        live("s", "?2", "?3")
                    ),
                    vec![user_id.into(), at.now_ms.into(), at.created_after_ms.into()],
                ))
                .await?,
        )
    }

    /// The user behind a live session (`live`), in one query: what every
    /// authenticated request checks.
    pub async fn session_user(
        &self,
        session_id: &str,
        user_id: &str,
        at: Liveness,
    ) -> Result<Option<UserRow>, StoreError> {
        first(
            self.db
                .all(Stmt::new(
                    format!(
                        "SELECT u.id, u.username, u.email, u.phone_e164, u.status, u.email_verified, u.phone_verified \
                         FROM sessions s JOIN users u ON u.id = s.user_id \
                         WHERE s.id = ?1 AND s.user_id = ?2 AND {}",
                        live("s", "?3", "?4")
                    ),
                    vec![session_id.into(), user_id.into(), at.now_ms.into(), at.created_after_ms.into()],
                ))
                .await?,
        )
    }

    /// Disables an account and revokes every session of it, in one
    /// transaction; whether an active account was disabled. (The admin API
    /// calls this; the `users_disabled_end_sessions` trigger does the same
    /// for an operator's own `UPDATE users SET status = ...`.)
    pub async fn disable_user(&self, user_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        // Sessions first, at this request's time; the trigger then finds none left.
        let revoke = Stmt::new(
            "UPDATE sessions SET revoked_at = ?2, revoked_reason = 'account_disabled' \
             WHERE user_id = ?1 AND revoked_at IS NULL",
            vec![user_id.into(), now_ms.into()],
        );
        let disable = Stmt::new(
            "UPDATE users SET status = 'disabled', updated_at = ?2 WHERE id = ?1 AND status = 'active' RETURNING id",
            vec![user_id.into(), now_ms.into()],
        );
        let mut results = self.db.batch(vec![revoke, disable]).await?;
        Ok(first_of::<super::Id>(&mut results, 1)?.is_some())
    }
}
