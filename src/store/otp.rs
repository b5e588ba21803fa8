//! Codes: storing one (superseding older ones), delivery claims, attempts,
//! and the two transactions that complete a matched code.

use serde::Deserialize;

use super::sessions::{session_statements, NewSession};
use super::{user_column, verified_column, Db, Id, UserRow, USER_COLUMNS};
use crate::domain::destination::{Channel, Destination};
use crate::domain::otp::{Purpose, RowState};
use crate::ports::{first, first_of, Arg, Stmt, StoreError};

/// A new OTP request row. Owned, so that a protected login can store it
/// after its answer.
pub struct NewOtp {
    pub id: String,
    /// Link the row to the active account with this destination, if any (login).
    pub link_user: bool,
    pub destination: Destination,
    /// The requesting client's network (`limits::network_id`): a new code
    /// supersedes only the pending codes requested from the same network.
    pub network: String,
    pub purpose: Purpose,
    pub otp_hash: String,
    pub max_attempts: u32,
    pub now_ms: i64,
    pub expires_at_ms: i64,
    pub ip: String,
    pub user_agent: String,
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

/// Whether a queued delivery try may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryClaim {
    Claimed,
    /// Another delivery of the same queue message made this try.
    AlreadyTried,
    /// The code no longer waits for its message: used, superseded, expired, deleted.
    NotPending(&'static str),
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

/// Condition: code `otp_id` was marked used by this batch, on behalf of `by`,
/// written from parameter number `n`.
fn verified_by(otp_id: &str, by: &str, n: usize) -> (String, Vec<Arg>) {
    (
        format!("EXISTS (SELECT 1 FROM otp_requests WHERE id = ?{n} AND verified_by = ?{} AND is_verified = 1)", n + 1),
        vec![otp_id.into(), by.into()],
    )
}

/// Marks a code used by `by`, atomically: of many parallel correct
/// verifies, exactly one statement changes the row.
fn mark_verified(otp_id: &str, by: &str, now_ms: i64) -> Stmt {
    Stmt::new(
        "UPDATE otp_requests SET is_verified = 1, verified_at = ?2, verified_by = ?3 \
         WHERE id = ?1 AND is_verified = 0 AND invalidated_at IS NULL AND expires_at > ?2 RETURNING id",
        vec![otp_id.into(), now_ms.into(), by.into()],
    )
}

impl Db {
    /// Stores a new code and, in the same transaction, invalidates the older
    /// pending codes for that destination and purpose requested from the
    /// same client network: only its newest verifies, and a stranger's
    /// request cannot void the owner's pending code. With `link_user`, the
    /// row is linked to the active account with that destination, whose id
    /// is returned (one round trip for the lookup and the insert).
    pub async fn insert_otp(&self, otp: &NewOtp) -> Result<Option<String>, StoreError> {
        let invalidate = Stmt::new(
            "UPDATE otp_requests SET invalidated_at = ?1 \
             WHERE destination = ?2 AND purpose = ?3 AND client_network = ?4 \
             AND is_verified = 0 AND invalidated_at IS NULL",
            vec![
                otp.now_ms.into(),
                otp.destination.as_str().into(),
                otp.purpose.as_str().into(),
                otp.network.as_str().into(),
            ],
        );
        let column = user_column(&otp.destination);
        let insert = Stmt::new(
            format!(
                "INSERT INTO otp_requests (id, user_id, otp_type, destination, otp_hash, purpose, max_attempts, \
                 created_at, expires_at, ip_address, user_agent, client_network) \
                 VALUES (?1, CASE WHEN ?2 THEN (SELECT id FROM users WHERE {column} = ?4 AND status = 'active') END, \
                 ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING user_id"
            ),
            vec![
                otp.id.as_str().into(),
                otp.link_user.into(),
                otp.destination.channel().as_str().into(),
                otp.destination.as_str().into(),
                otp.otp_hash.as_str().into(),
                otp.purpose.as_str().into(),
                otp.max_attempts.into(),
                otp.now_ms.into(),
                otp.expires_at_ms.into(),
                otp.ip.as_str().into(),
                otp.user_agent.as_str().into(),
                otp.network.as_str().into(),
            ],
        );
        let mut results = self.db.batch(vec![invalidate, insert]).await?;
        #[derive(Deserialize)]
        struct Linked {
            user_id: Option<String>,
        }
        Ok(first_of::<Linked>(&mut results, 1)?.and_then(|r| r.user_id))
    }

    /// Makes a code unverifiable (its delivery failed).
    pub async fn invalidate_otp(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.db
            .all(Stmt::new(
                "UPDATE otp_requests SET invalidated_at = ?2 WHERE id = ?1 AND invalidated_at IS NULL",
                vec![id.into(), now_ms.into()],
            ))
            .await?;
        Ok(())
    }

    /// Withdraws a queued login code whose delivery failed for good: it is
    /// unlinked from its account, so it answers every verify as the decoy
    /// of an unknown destination does ("Invalid OTP", then "Too many
    /// attempts", then "OTP expired", each when the decoy would), and no
    /// further try is claimed. Invalidating it instead would answer
    /// "OTP expired" at once: an oracle for who has an account.
    pub async fn withdraw_otp(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.db
            .all(Stmt::new(
                "UPDATE otp_requests SET user_id = NULL, withdrawn_at = ?2 WHERE id = ?1 AND withdrawn_at IS NULL",
                vec![id.into(), now_ms.into()],
            ))
            .await?;
        Ok(())
    }

    /// Claims delivery try `attempt` of a queued code, atomically: only while
    /// the code is unused, valid and unexpired, and only once per try, so a
    /// queue message delivered twice sends one message.
    pub async fn claim_delivery(&self, id: &str, attempt: u32, now_ms: i64) -> Result<DeliveryClaim, StoreError> {
        let claimed: Option<Id> = first(
            self.db
                .all(Stmt::new(
                    "UPDATE otp_requests SET delivery_attempts = ?2 \
                     WHERE id = ?1 AND delivery_attempts < ?2 AND is_verified = 0 AND invalidated_at IS NULL \
                     AND withdrawn_at IS NULL AND expires_at > ?3 RETURNING id",
                    vec![id.into(), attempt.into(), now_ms.into()],
                ))
                .await?,
        )?;
        if claimed.is_some() {
            return Ok(DeliveryClaim::Claimed);
        }
        #[derive(Deserialize)]
        struct Row {
            is_verified: i64,
            invalidated_at: Option<i64>,
            withdrawn_at: Option<i64>,
            expires_at: i64,
            delivery_attempts: i64,
        }
        let row: Option<Row> = first(
            self.db
                .all(Stmt::new(
                    "SELECT is_verified, invalidated_at, withdrawn_at, expires_at, delivery_attempts \
                     FROM otp_requests WHERE id = ?1",
                    vec![id.into()],
                ))
                .await?,
        )?;
        Ok(match row {
            None => DeliveryClaim::NotPending("unknown_code"),
            Some(r) if r.delivery_attempts >= attempt as i64 => DeliveryClaim::AlreadyTried,
            Some(r) if r.is_verified != 0 => DeliveryClaim::NotPending("used"),
            Some(r) if r.invalidated_at.is_some() => DeliveryClaim::NotPending("superseded"),
            Some(r) if r.withdrawn_at.is_some() => DeliveryClaim::NotPending("withdrawn"),
            Some(r) if r.expires_at <= now_ms => DeliveryClaim::NotPending("expired"),
            Some(_) => DeliveryClaim::AlreadyTried,
        })
    }

    /// Takes one attempt, atomically: only a live code with attempts left
    /// gives a row, so parallel verifies can never exceed the limit.
    pub async fn consume_attempt(&self, id: &str, now_ms: i64) -> Result<Option<AttemptRow>, StoreError> {
        first(
            self.db
                .all(Stmt::new(
                    "UPDATE otp_requests SET attempts = attempts + 1 \
                     WHERE id = ?1 AND is_verified = 0 AND invalidated_at IS NULL AND expires_at > ?2 \
                     AND attempts < max_attempts \
                     RETURNING otp_hash, purpose, otp_type, destination, user_id",
                    vec![id.into(), now_ms.into()],
                ))
                .await?,
        )
    }

    /// Gives back an attempt that was refused before its code was compared
    /// (the destination is locked out), so the lockout costs the code nothing.
    pub async fn refund_attempt(&self, id: &str) -> Result<(), StoreError> {
        self.db
            .all(Stmt::new(
                "UPDATE otp_requests SET attempts = attempts - 1 WHERE id = ?1 AND attempts > 0",
                vec![id.into()],
            ))
            .await?;
        Ok(())
    }

    /// Why a row refused an attempt (or `None`: no such row).
    pub async fn otp_state(&self, id: &str) -> Result<Option<RowState>, StoreError> {
        #[derive(Deserialize)]
        struct StateRow {
            is_verified: i64,
            invalidated_at: Option<i64>,
            expires_at: i64,
            attempts: i64,
            max_attempts: i64,
        }
        let row: Option<StateRow> = first(
            self.db
                .all(Stmt::new(
                    "SELECT is_verified, invalidated_at, expires_at, attempts, max_attempts \
                     FROM otp_requests WHERE id = ?1",
                    vec![id.into()],
                ))
                .await?,
        )?;
        Ok(row.map(|r| RowState {
            is_verified: r.is_verified != 0,
            invalidated: r.invalidated_at.is_some(),
            expires_at_ms: r.expires_at,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
        }))
    }

    /// Completes a login whose code matched, in one transaction: marks the
    /// code used, marks the destination verified on the account, upserts the
    /// device and opens the session. Everything after the first statement
    /// happens only if that statement changed the row (`verified_by`).
    pub async fn complete_login(
        &self,
        otp_id: &str,
        destination: &Destination,
        session: &NewSession<'_>,
    ) -> Result<LoginOutcome, StoreError> {
        let column = verified_column(destination);
        let (marker, marker_args) = verified_by(otp_id, session.id, 3);
        let mut user_args: Vec<Arg> = vec![session.user_id.into(), session.now_ms.into()];
        user_args.extend(marker_args);
        let mut statements = vec![
            mark_verified(otp_id, session.id, session.now_ms),
            Stmt::new(
                format!(
                    "UPDATE users SET {column} = 1, updated_at = ?2 WHERE id = ?1 AND status = 'active' AND {marker} \
                     RETURNING {USER_COLUMNS}"
                ),
                user_args,
            ),
        ];
        statements.extend(session_statements(session, &|n| verified_by(otp_id, session.id, n)));
        let mut results = self.db.batch(statements).await?;
        if first_of::<Id>(&mut results, 0)?.is_none() {
            return Ok(LoginOutcome::AlreadyUsed);
        }
        Ok(match first_of::<UserRow>(&mut results, 1)? {
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
    ) -> Result<bool, StoreError> {
        let marker = "EXISTS (SELECT 1 FROM otp_requests WHERE id = ?1 AND verified_by = ?2 AND is_verified = 1)";
        let mut statements = vec![
            mark_verified(otp_id, token_hash, now_ms),
            Stmt::new(
                format!(
                    "INSERT INTO verification_tokens (token_hash, otp_request_id, purpose, otp_type, destination, \
                     created_at, expires_at) SELECT ?2, ?1, ?3, ?4, ?5, ?6, ?7 WHERE {marker}"
                ),
                vec![
                    otp_id.into(),
                    token_hash.into(),
                    purpose.as_str().into(),
                    destination.channel().as_str().into(),
                    destination.as_str().into(),
                    now_ms.into(),
                    expires_at_ms.into(),
                ],
            ),
        ];
        if purpose == Purpose::Verify {
            let (column, verified) = (user_column(destination), verified_column(destination));
            statements.push(Stmt::new(
                format!("UPDATE users SET {verified} = 1, updated_at = ?4 WHERE {column} = ?3 AND {marker}"),
                vec![otp_id.into(), token_hash.into(), destination.as_str().into(), now_ms.into()],
            ));
        }
        let mut results = self.db.batch(statements).await?;
        Ok(first_of::<Id>(&mut results, 0)?.is_some())
    }
}
