//! D1 access: every SQL statement the Worker runs against the `DB` binding.
//! Read-modify-write steps are single statements (`UPDATE ... RETURNING`) or
//! one `batch` (a transaction), so parallel requests cannot interleave them.

use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::domain::destination::{Channel, Destination};
use crate::domain::otp::{Purpose, RowState};

pub struct Db {
    inner: D1Database,
}

/// A user row, as the API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub phone_e164: Option<String>,
    pub status: String,
    pub email_verified: i64,
    pub phone_verified: i64,
}

impl UserRow {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// A new OTP request row.
pub struct NewOtp<'a> {
    pub id: &'a str,
    /// Link the row to the active account with this destination, if any (login).
    pub link_user: bool,
    pub destination: &'a Destination,
    pub purpose: Purpose,
    pub otp_hash: &'a str,
    pub max_attempts: u32,
    pub now_ms: i64,
    pub expires_at_ms: i64,
    pub ip: &'a str,
    pub user_agent: &'a str,
}

/// Whether a queued delivery try may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryClaim {
    Claimed,
    /// Another delivery of the same queue message made this try.
    AlreadyTried,
    /// The code no longer waits for its message: used, superseded, expired, deleted.
    NotPending(&'static str),
}

/// What an accepted verification attempt needs to check the code.
#[derive(Debug, Deserialize)]
pub struct AttemptRow {
    pub otp_hash: String,
    pub purpose: String,
    pub otp_type: String,
    pub destination: String,
    pub user_id: Option<String>,
}

#[derive(Deserialize)]
struct StateRow {
    is_verified: i64,
    invalidated_at: Option<i64>,
    expires_at: i64,
    attempts: i64,
    max_attempts: i64,
}

/// A verification token's binding, returned when it is consumed.
#[derive(Debug, Deserialize)]
pub struct VerifiedDestination {
    pub otp_type: String,
    pub destination: String,
}

fn num(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}

fn opt_text(s: Option<&str>) -> JsValue {
    s.map(JsValue::from_str).unwrap_or(JsValue::NULL)
}

impl Db {
    pub fn from_env(env: &Env) -> worker::Result<Db> {
        Ok(Db { inner: env.d1("DB")? })
    }

    fn stmt(&self, sql: &str, args: &[JsValue]) -> worker::Result<D1PreparedStatement> {
        self.inner.prepare(sql).bind(args)
    }

    /// A real query that also proves the migrations ran: counts the tables
    /// the service needs.
    pub async fn ping(&self) -> worker::Result<bool> {
        #[derive(Deserialize)]
        struct Row {
            tables: u32,
        }
        let row: Option<Row> = self
            .inner
            .prepare(
                "SELECT COUNT(*) AS tables FROM sqlite_master WHERE type = 'table' \
                 AND name IN ('users', 'devices', 'sessions', 'otp_requests')",
            )
            .first(None)
            .await?;
        Ok(row.is_some_and(|r| r.tables == 4))
    }

    pub async fn user_by_destination(&self, destination: &Destination) -> worker::Result<Option<UserRow>> {
        let column = user_column(destination);
        self.stmt(
            &format!(
                "SELECT id, username, email, phone_e164, status, email_verified, phone_verified \
                 FROM users WHERE {column} = ?1"
            ),
            &[text(destination.as_str())],
        )?
        .first(None)
        .await
    }

    /// Stores a new code and, in the same transaction, invalidates the older
    /// pending codes for that destination and purpose: only the newest
    /// verifies. With `link_user`, the row is linked to the active account
    /// with that destination, whose id is returned (one round trip for the
    /// lookup and the insert).
    pub async fn insert_otp(&self, otp: &NewOtp<'_>) -> worker::Result<Option<String>> {
        let invalidate = self.stmt(
            "UPDATE otp_requests SET invalidated_at = ?1 \
             WHERE destination = ?2 AND purpose = ?3 AND is_verified = 0 AND invalidated_at IS NULL",
            &[num(otp.now_ms), text(otp.destination.as_str()), text(otp.purpose.as_str())],
        )?;
        let column = user_column(otp.destination);
        let insert = self.stmt(
            &format!(
                "INSERT INTO otp_requests (id, user_id, otp_type, destination, otp_hash, purpose, max_attempts, \
                 created_at, expires_at, ip_address, user_agent) \
                 VALUES (?1, CASE WHEN ?2 THEN (SELECT id FROM users WHERE {column} = ?4 AND status = 'active') END, \
                 ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING user_id"
            ),
            &[
                text(otp.id),
                JsValue::from_bool(otp.link_user),
                text(otp.destination.channel().as_str()),
                text(otp.destination.as_str()),
                text(otp.otp_hash),
                text(otp.purpose.as_str()),
                num(otp.max_attempts as i64),
                num(otp.now_ms),
                num(otp.expires_at_ms),
                text(otp.ip),
                text(otp.user_agent),
            ],
        )?;
        let results = self.inner.batch(vec![invalidate, insert]).await?;
        #[derive(Deserialize)]
        struct Linked {
            user_id: Option<String>,
        }
        let rows: Vec<Linked> = results.get(1).map(|r| r.results()).transpose()?.unwrap_or_default();
        Ok(rows.into_iter().next().and_then(|r| r.user_id))
    }

    /// Makes a code unverifiable (its delivery failed).
    pub async fn invalidate_otp(&self, id: &str, now_ms: i64) -> worker::Result<()> {
        self.stmt(
            "UPDATE otp_requests SET invalidated_at = ?2 WHERE id = ?1 AND invalidated_at IS NULL",
            &[text(id), num(now_ms)],
        )?
        .run()
        .await?;
        Ok(())
    }

    /// Claims delivery try `attempt` of a queued code, atomically: only while
    /// the code is unused, valid and unexpired, and only once per try, so a
    /// queue message delivered twice sends one message.
    pub async fn claim_delivery(&self, id: &str, attempt: u32, now_ms: i64) -> worker::Result<DeliveryClaim> {
        #[derive(Deserialize)]
        struct Claimed {
            #[allow(dead_code)]
            id: String,
        }
        let claimed: Option<Claimed> = self
            .stmt(
                "UPDATE otp_requests SET delivery_attempts = ?2 \
                 WHERE id = ?1 AND delivery_attempts < ?2 AND is_verified = 0 AND invalidated_at IS NULL \
                 AND expires_at > ?3 RETURNING id",
                &[text(id), num(attempt as i64), num(now_ms)],
            )?
            .first(None)
            .await?;
        if claimed.is_some() {
            return Ok(DeliveryClaim::Claimed);
        }
        #[derive(Deserialize)]
        struct Row {
            is_verified: i64,
            invalidated_at: Option<i64>,
            expires_at: i64,
            delivery_attempts: i64,
        }
        let row: Option<Row> = self
            .stmt(
                "SELECT is_verified, invalidated_at, expires_at, delivery_attempts FROM otp_requests WHERE id = ?1",
                &[text(id)],
            )?
            .first(None)
            .await?;
        Ok(match row {
            None => DeliveryClaim::NotPending("unknown_code"),
            Some(r) if r.delivery_attempts >= attempt as i64 => DeliveryClaim::AlreadyTried,
            Some(r) if r.is_verified != 0 => DeliveryClaim::NotPending("used"),
            Some(r) if r.invalidated_at.is_some() => DeliveryClaim::NotPending("superseded"),
            Some(r) if r.expires_at <= now_ms => DeliveryClaim::NotPending("expired"),
            Some(_) => DeliveryClaim::AlreadyTried,
        })
    }

    /// Takes one attempt, atomically: only a live code with attempts left
    /// gives a row, so parallel verifies can never exceed the limit.
    pub async fn consume_attempt(&self, id: &str, now_ms: i64) -> worker::Result<Option<AttemptRow>> {
        self.stmt(
            "UPDATE otp_requests SET attempts = attempts + 1 \
             WHERE id = ?1 AND is_verified = 0 AND invalidated_at IS NULL AND expires_at > ?2 \
             AND attempts < max_attempts \
             RETURNING otp_hash, purpose, otp_type, destination, user_id",
            &[text(id), num(now_ms)],
        )?
        .first(None)
        .await
    }

    /// Gives back an attempt that was refused before its code was compared
    /// (the destination is locked out), so the lockout costs the code nothing.
    pub async fn refund_attempt(&self, id: &str) -> worker::Result<()> {
        self.stmt("UPDATE otp_requests SET attempts = attempts - 1 WHERE id = ?1 AND attempts > 0", &[text(id)])?
            .run()
            .await?;
        Ok(())
    }

    /// Why a row refused an attempt (or `None`: no such row).
    pub async fn otp_state(&self, id: &str) -> worker::Result<Option<RowState>> {
        let row: Option<StateRow> = self
            .stmt(
                "SELECT is_verified, invalidated_at, expires_at, attempts, max_attempts \
                 FROM otp_requests WHERE id = ?1",
                &[text(id)],
            )?
            .first(None)
            .await?;
        Ok(row.map(|r| RowState {
            is_verified: r.is_verified != 0,
            invalidated: r.invalidated_at.is_some(),
            expires_at_ms: r.expires_at,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
        }))
    }

    /// Stores audit events (one transaction).
    pub async fn insert_audit(&self, events: &[crate::audit::AuditEvent]) -> worker::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let statements = events
            .iter()
            .map(|e| {
                self.stmt(
                    "INSERT INTO audit_events (at, request_id, event, outcome, latency_ms, ip_hash, destination, \
                     user_id, session_id, otp_id, provider_code, attempt) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    &[
                        num(e.at_ms),
                        text(&e.request_id),
                        text(e.event),
                        text(&e.outcome),
                        num(e.latency_ms),
                        text(&e.ip_hash),
                        opt_text(e.destination.as_deref()),
                        opt_text(e.user_id.as_deref()),
                        opt_text(e.session_id.as_deref()),
                        opt_text(e.otp_id.as_deref()),
                        opt_text(e.provider_code.as_deref()),
                        e.attempt.map(|n| num(n as i64)).unwrap_or(JsValue::NULL),
                    ],
                )
            })
            .collect::<worker::Result<Vec<_>>>()?;
        self.inner.batch(statements).await?;
        Ok(())
    }

    /// `insert_audit`, tried once more after a short pause: the trail is
    /// written after the response, where a transient failure has no client
    /// to report to.
    pub async fn store_audit(&self, events: &[crate::audit::AuditEvent]) -> worker::Result<()> {
        if self.insert_audit(events).await.is_ok() {
            return Ok(());
        }
        worker::Delay::from(std::time::Duration::from_millis(200)).await;
        self.insert_audit(events).await
    }

    /// The cron cleanup: OTP rows and verification tokens that expired, or
    /// were used, more than `keep_ms` ago, and audit events past retention.
    pub async fn delete_stale(&self, now_ms: i64, keep_ms: i64) -> worker::Result<()> {
        let cutoff = num(now_ms - keep_ms);
        let otps = self.stmt(
            "DELETE FROM otp_requests WHERE expires_at < ?1 OR verified_at < ?1 OR invalidated_at < ?1",
            std::slice::from_ref(&cutoff),
        )?;
        let tokens =
            self.stmt("DELETE FROM verification_tokens WHERE expires_at < ?1 OR consumed_at < ?1", &[cutoff])?;
        let audit = self.stmt("DELETE FROM audit_events WHERE at < ?1", &[num(now_ms - crate::audit::RETENTION_MS)])?;
        self.inner.batch(vec![otps, tokens, audit]).await?;
        Ok(())
    }
}

/// The users column that holds this kind of destination.
fn user_column(destination: &Destination) -> &'static str {
    match destination.channel() {
        Channel::Email => "email",
        Channel::Phone => "phone_e164",
    }
}

fn verified_column(destination: &Destination) -> &'static str {
    match destination.channel() {
        Channel::Email => "email_verified",
        Channel::Phone => "phone_verified",
    }
}

/// How a login verification ended once its code matched.
pub enum LoginOutcome {
    LoggedIn(UserRow),
    /// A parallel verify of the same code won.
    AlreadyUsed,
    /// The code is used up, but its account is gone or disabled.
    NoActiveUser,
}

/// Parses a stored destination back into its type.
pub fn stored_destination(otp_type: &str, value: &str) -> Option<Destination> {
    Destination::from_stored(Channel::parse(otp_type)?, value).ok()
}

/// A live session, as the refresh and auth checks need it.
#[derive(Debug, Deserialize)]
pub struct SessionRef {
    pub id: String,
    pub user_id: String,
}

/// A rotated-out refresh token and the state of its session.
#[derive(Debug, Deserialize)]
pub struct RetiredToken {
    pub session_id: String,
    pub user_id: String,
    pub retired_at: i64,
    pub current_hash: String,
    pub revoked_at: Option<i64>,
    pub expires_at: i64,
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

/// A new session and, when the client names its install, its device.
pub struct NewSession<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub install_id: Option<&'a str>,
    pub platform: &'a str,
    pub app_version: Option<&'a str>,
    pub refresh_hash: &'a str,
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub now_ms: i64,
    pub expires_at_ms: i64,
}

/// Why a new user could not be created.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateUserError {
    /// The verification token is unknown, used, expired or not for registration.
    InvalidToken,
    UsernameTaken,
    AccountExists,
}

const USER_COLUMNS: &str = "id, username, email, phone_e164, status, email_verified, phone_verified";

impl Db {
    pub async fn user_by_id(&self, id: &str) -> worker::Result<Option<UserRow>> {
        self.stmt(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), &[text(id)])?.first(None).await
    }

    /// Exchanges a live session's current refresh token for its successor,
    /// retiring the old one, atomically. `None`: not a current token.
    pub async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> worker::Result<Option<SessionRef>> {
        let live = "refresh_token_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2";
        let retire = self.stmt(
            &format!("INSERT INTO retired_refresh_tokens (token_hash, session_id, retired_at) SELECT ?1, id, ?2 FROM sessions WHERE {live}"),
            &[text(old_hash), num(now_ms)],
        )?;
        let rotate = self.stmt(
            &format!(
                "UPDATE sessions SET refresh_token_hash = ?3, last_used_at = ?2, expires_at = ?4 WHERE {live} \
                 RETURNING id, user_id"
            ),
            &[text(old_hash), num(now_ms), text(new_hash), num(expires_at_ms)],
        )?;
        let results = self.inner.batch(vec![retire, rotate]).await?;
        let rows: Vec<SessionRef> = results.get(1).map(|r| r.results()).transpose()?.unwrap_or_default();
        Ok(rows.into_iter().next())
    }

    pub async fn retired_refresh(&self, hash: &str) -> worker::Result<Option<RetiredToken>> {
        self.stmt(
            "SELECT r.session_id, s.user_id, r.retired_at, s.refresh_token_hash AS current_hash, s.revoked_at, s.expires_at \
             FROM retired_refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = ?1",
            &[text(hash)],
        )?
        .first(None)
        .await
    }

    /// Revokes a session; with `user_id`, only one of that user's. Returns
    /// whether a live session was revoked.
    pub async fn revoke_session(
        &self,
        id: &str,
        user_id: Option<&str>,
        reason: &str,
        now_ms: i64,
    ) -> worker::Result<bool> {
        let rows: Vec<SessionRef> = self
            .stmt(
                "UPDATE sessions SET revoked_at = ?3, revoked_reason = ?4 \
                 WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2) AND revoked_at IS NULL RETURNING id, user_id",
                &[text(id), opt_text(user_id), num(now_ms), text(reason)],
            )?
            .all()
            .await?
            .results()?;
        Ok(!rows.is_empty())
    }

    pub async fn live_sessions(&self, user_id: &str, now_ms: i64) -> worker::Result<Vec<SessionRow>> {
        self.stmt(
            "SELECT s.id, s.ip_address, s.user_agent, s.created_at, s.last_used_at, s.expires_at, s.platform, \
             d.install_id, d.platform AS device_platform, d.app_version \
             FROM sessions s LEFT JOIN devices d ON d.id = s.device_id \
             WHERE s.user_id = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 ORDER BY s.created_at DESC",
            &[text(user_id), num(now_ms)],
        )?
        .all()
        .await?
        .results()
    }
}

/// A further condition on statements in a batch: SQL built from the first
/// free parameter number, and the values it binds.
type Condition<'a> = &'a dyn Fn(usize) -> (String, Vec<JsValue>);

/// The statements that open a session for an active user in a batch:
/// upsert the device by (user, install_id) when one is named, then the
/// session. Both also require `condition`, so the batch can make them
/// depend on its first statement.
fn session_statements(db: &Db, s: &NewSession<'_>, condition: Condition) -> worker::Result<Vec<D1PreparedStatement>> {
    let with = |sql: &str, mut args: Vec<JsValue>| -> worker::Result<D1PreparedStatement> {
        let (extra, extra_args) = condition(args.len() + 1);
        args.extend(extra_args);
        db.stmt(&sql.replace("{condition}", &extra), &args)
    };
    let mut statements = Vec::new();
    if let Some(install_id) = s.install_id {
        statements.push(with(
            "INSERT INTO devices (id, user_id, install_id, platform, app_version, created_at, last_seen_at) \
             SELECT ?1, u.id, ?2, ?3, ?4, ?5, ?5 FROM users u WHERE u.id = ?6 AND u.status = 'active' AND {condition} \
             ON CONFLICT (user_id, install_id) DO UPDATE SET platform = excluded.platform, \
             app_version = excluded.app_version, last_seen_at = excluded.last_seen_at",
            vec![
                text(&crate::domain::crypto::new_uuid().hyphenated().to_string()),
                text(install_id),
                text(s.platform),
                opt_text(s.app_version),
                num(s.now_ms),
                text(s.user_id),
            ],
        )?);
    }
    statements.push(with(
        "INSERT INTO sessions (id, user_id, device_id, refresh_token_hash, ip_address, user_agent, \
         created_at, last_used_at, expires_at, platform) \
         SELECT ?1, u.id, (SELECT d.id FROM devices d WHERE d.user_id = u.id AND d.install_id = ?2), \
         ?3, ?4, ?5, ?6, ?6, ?7, ?9 FROM users u WHERE u.id = ?8 AND u.status = 'active' AND {condition}",
        vec![
            text(s.id),
            opt_text(s.install_id),
            text(s.refresh_hash),
            text(s.ip),
            text(s.user_agent),
            num(s.now_ms),
            num(s.expires_at_ms),
            text(s.user_id),
            text(s.platform),
        ],
    )?);
    Ok(statements)
}

/// Condition: code `otp_id` was marked used by this batch, on behalf of `by`.
fn verified_by(otp_id: &str, by: &str) -> impl Fn(usize) -> (String, Vec<JsValue>) {
    let (otp_id, by) = (otp_id.to_string(), by.to_string());
    move |n| {
        (
            format!(
                "EXISTS (SELECT 1 FROM otp_requests WHERE id = ?{n} AND verified_by = ?{} AND is_verified = 1)",
                n + 1
            ),
            vec![text(&otp_id), text(&by)],
        )
    }
}

/// Marks a code used by `by`, atomically: of many parallel correct
/// verifies, exactly one statement changes the row.
fn mark_verified(db: &Db, otp_id: &str, by: &str, now_ms: i64) -> worker::Result<D1PreparedStatement> {
    db.stmt(
        "UPDATE otp_requests SET is_verified = 1, verified_at = ?2, verified_by = ?3 \
         WHERE id = ?1 AND is_verified = 0 AND invalidated_at IS NULL AND expires_at > ?2 RETURNING id",
        &[text(otp_id), num(now_ms), text(by)],
    )
}

fn first_row<T: serde::de::DeserializeOwned>(results: &[worker::D1Result], index: usize) -> worker::Result<Option<T>> {
    let rows: Vec<T> = results.get(index).map(|r| r.results()).transpose()?.unwrap_or_default();
    Ok(rows.into_iter().next())
}

impl Db {
    /// Completes a login whose code matched, in one transaction: marks the
    /// code used, marks the destination verified on the account, upserts the
    /// device and opens the session. Everything after the first statement
    /// happens only if that statement changed the row (`verified_by`).
    pub async fn complete_login(
        &self,
        otp_id: &str,
        destination: &Destination,
        session: &NewSession<'_>,
    ) -> worker::Result<LoginOutcome> {
        let column = verified_column(destination);
        let condition = verified_by(otp_id, session.id);
        let (marker, marker_args) = condition(3);
        let mut user_args = vec![text(session.user_id), num(session.now_ms)];
        user_args.extend(marker_args);
        let mut statements = vec![
            mark_verified(self, otp_id, session.id, session.now_ms)?,
            self.stmt(
                &format!(
                    "UPDATE users SET {column} = 1, updated_at = ?2 WHERE id = ?1 AND status = 'active' AND {marker} \
                     RETURNING {USER_COLUMNS}"
                ),
                &user_args,
            )?,
        ];
        statements.extend(session_statements(self, session, &condition)?);
        let results = self.inner.batch(statements).await?;
        #[derive(Deserialize)]
        struct Id {
            #[allow(dead_code)]
            id: String,
        }
        if first_row::<Id>(&results, 0)?.is_none() {
            return Ok(LoginOutcome::AlreadyUsed);
        }
        Ok(match first_row::<UserRow>(&results, 1)? {
            Some(user) => LoginOutcome::LoggedIn(user),
            None => LoginOutcome::NoActiveUser,
        })
    }

    /// Completes a register, verify or reset code that matched, in one
    /// transaction: marks it used and issues the verification token; for
    /// `verify`, also marks the destination verified on its account.
    /// `false`: a parallel verify of the same code won.
    pub async fn complete_verification(
        &self,
        otp_id: &str,
        purpose: Purpose,
        destination: &Destination,
        token_hash: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> worker::Result<bool> {
        let marker = "EXISTS (SELECT 1 FROM otp_requests WHERE id = ?1 AND verified_by = ?2 AND is_verified = 1)";
        let mut statements = vec![
            mark_verified(self, otp_id, token_hash, now_ms)?,
            self.stmt(
                &format!(
                    "INSERT INTO verification_tokens (token_hash, otp_request_id, purpose, otp_type, destination, \
                     created_at, expires_at) SELECT ?2, ?1, ?3, ?4, ?5, ?6, ?7 WHERE {marker}"
                ),
                &[
                    text(otp_id),
                    text(token_hash),
                    text(purpose.as_str()),
                    text(destination.channel().as_str()),
                    text(destination.as_str()),
                    num(now_ms),
                    num(expires_at_ms),
                ],
            )?,
        ];
        if purpose == Purpose::Verify {
            let (column, verified) = (user_column(destination), verified_column(destination));
            statements.push(self.stmt(
                &format!("UPDATE users SET {verified} = 1, updated_at = ?4 WHERE {column} = ?3 AND {marker}"),
                &[text(otp_id), text(token_hash), text(destination.as_str()), num(now_ms)],
            )?);
        }
        let results = self.inner.batch(statements).await?;
        #[derive(Deserialize)]
        struct Id {
            #[allow(dead_code)]
            id: String,
        }
        Ok(first_row::<Id>(&results, 0)?.is_some())
    }

    /// Consumes a register verification token, creates the user it verified
    /// and opens the user's first session, in one transaction: a taken
    /// username or destination rolls back all of it, so the token can be
    /// used again with another username.
    pub async fn create_user(
        &self,
        token_hash: &str,
        username: &str,
        session: &NewSession<'_>,
    ) -> worker::Result<Result<UserRow, CreateUserError>> {
        let now_ms = session.now_ms;
        let consume = self.stmt(
            "UPDATE verification_tokens SET consumed_at = ?2 \
             WHERE token_hash = ?1 AND purpose = 'register' AND consumed_at IS NULL AND expires_at > ?2",
            &[text(token_hash), num(now_ms)],
        )?;
        let insert = self.stmt(
            &format!(
                "INSERT INTO users (id, username, email, phone_e164, status, email_verified, phone_verified, created_at, updated_at) \
                 SELECT ?1, ?2, CASE WHEN otp_type = 'email' THEN destination END, \
                 CASE WHEN otp_type = 'phone' THEN destination END, 'active', otp_type = 'email', otp_type = 'phone', ?4, ?4 \
                 FROM verification_tokens WHERE token_hash = ?3 AND purpose = 'register' AND consumed_at = ?4 \
                 RETURNING {USER_COLUMNS}"
            ),
            &[text(session.user_id), text(username), text(token_hash), num(now_ms)],
        )?;
        let mut statements = vec![consume, insert];
        statements.extend(session_statements(self, session, &|_| ("1 = 1".to_string(), Vec::new()))?);
        match self.inner.batch(statements).await {
            Ok(results) => Ok(first_row::<UserRow>(&results, 1)?.ok_or(CreateUserError::InvalidToken)),
            Err(e) => {
                let message = e.to_string();
                if message.contains("users.username") {
                    Ok(Err(CreateUserError::UsernameTaken))
                } else if message.contains("users.email") || message.contains("users.phone_e164") {
                    Ok(Err(CreateUserError::AccountExists))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The user behind a live session (not revoked, not expired), in one
    /// query: what every authenticated request checks.
    pub async fn session_user(&self, session_id: &str, user_id: &str, now_ms: i64) -> worker::Result<Option<UserRow>> {
        self.stmt(
            "SELECT u.id, u.username, u.email, u.phone_e164, u.status, u.email_verified, u.phone_verified \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id = ?1 AND s.user_id = ?2 AND s.revoked_at IS NULL AND s.expires_at > ?3",
            &[text(session_id), text(user_id), num(now_ms)],
        )?
        .first(None)
        .await
    }
}
