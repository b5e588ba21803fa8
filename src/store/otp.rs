//! Codes: storing one (superseding older ones), delivery claims, and the
//! one transaction that takes a guess at a code and completes a match.

use super::sessions::{session_statements, NewSession};
use super::{channel_column, channel_verified_column, user_column, Db, Id, UserRow, USER_COLUMNS};
use crate::domain::destination::{Channel, Destination};
use crate::domain::otp::{Purpose, RowState};
use crate::ports::{first, first_of, int, opt_int, row_of, text, Arg, Row, Stmt, StoreError};

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

/// A guess at a code (`Db::attempt_code`). Its purpose and channel come
/// from the destination's rate-limit object, which judged the guess first.
pub struct CodeAttempt<'a> {
    pub otp_id: &'a str,
    pub purpose: Purpose,
    pub channel: Channel,
    /// The keyed hash of the guessed code (`otp::code_hash`).
    pub guess_hash: &'a str,
    pub now_ms: i64,
    pub completion: Completion<'a>,
}

/// What a right guess does.
pub enum Completion<'a> {
    /// A login opens this session for the code's account.
    Login(NewSession<'a>),
    /// Register, verify and reset issue a verification token (its hash).
    Token { hash: &'a str, expires_at_ms: i64 },
}

impl Completion<'_> {
    /// What marks this attempt's take on the row (`verified_by`): the new
    /// session's id, or the token's hash, both fresh for every request.
    fn by(&self) -> &str {
        match self {
            Completion::Login(session) => session.id,
            Completion::Token { hash, .. } => hash,
        }
    }
}

/// How a guess ended.
pub enum Attempt {
    /// No attempt was taken (used, superseded, expired, out of attempts,
    /// or no such row): the row's state says why.
    Refused(Option<RowState>),
    /// An attempt was taken, and the guess was wrong (or the code was a
    /// login code linked to no account, which never verifies).
    Wrong,
    LoggedIn(UserRow),
    /// The code is used up, but its account is gone or disabled.
    NoActiveUser,
    /// A register, verify or reset code: the token is issued.
    Verified,
}

/// A guess's end, and whose code it was (for the audit trail).
pub struct Attempted {
    pub attempt: Attempt,
    pub destination: Option<Destination>,
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

/// Why a row (`is_verified`, `invalidated_at`, `expires_at`, `attempts`,
/// `max_attempts`) refuses an attempt.
fn row_state(r: &Row) -> RowState {
    RowState {
        is_verified: int(r, "is_verified") != 0,
        invalidated: opt_int(r, "invalidated_at").is_some(),
        expires_at_ms: int(r, "expires_at"),
        attempts: int(r, "attempts"),
        max_attempts: int(r, "max_attempts"),
    }
}

/// Condition: code `otp_id` was marked used by this batch, on behalf of `by`,
/// written from parameter number `n`.
fn verified_by(otp_id: &str, by: &str, n: usize) -> (String, Vec<Arg>) {
    (
        format!("EXISTS (SELECT 1 FROM otp_requests WHERE id = ?{n} AND verified_by = ?{} AND is_verified = 1)", n + 1),
        vec![otp_id.into(), by.into()],
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
        Ok(row_of(&mut results, 1).and_then(|r| text(&r, "user_id")))
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
        let row = self
            .db
            .all(Stmt::new(
                "SELECT is_verified, invalidated_at, withdrawn_at, expires_at, delivery_attempts \
                 FROM otp_requests WHERE id = ?1",
                vec![id.into()],
            ))
            .await?
            .into_iter()
            .next();
        Ok(match row {
            None => DeliveryClaim::NotPending("unknown_code"),
            Some(r) if int(&r, "delivery_attempts") >= attempt as i64 => DeliveryClaim::AlreadyTried,
            Some(r) if int(&r, "is_verified") != 0 => DeliveryClaim::NotPending("used"),
            Some(r) if opt_int(&r, "invalidated_at").is_some() => DeliveryClaim::NotPending("superseded"),
            Some(r) if opt_int(&r, "withdrawn_at").is_some() => DeliveryClaim::NotPending("withdrawn"),
            Some(r) if int(&r, "expires_at") <= now_ms => DeliveryClaim::NotPending("expired"),
            Some(_) => DeliveryClaim::AlreadyTried,
        })
    }

    /// Why a row refused an attempt (or `None`: no such row).
    pub async fn otp_state(&self, id: &str) -> Result<Option<RowState>, StoreError> {
        let rows = self
            .db
            .all(Stmt::new(
                "SELECT is_verified, invalidated_at, expires_at, attempts, max_attempts FROM otp_requests WHERE id = ?1",
                vec![id.into()],
            ))
            .await?;
        Ok(rows.first().map(row_state))
    }

    /// A guess at a code, in one transaction: takes one attempt (only from
    /// a live code with attempts left, so parallel guesses never exceed its
    /// limit), compares the guess with the stored keyed hash, and, if it
    /// matches, marks the code used and does what its purpose asks: a login
    /// marks the destination verified on the account, upserts the device and
    /// opens the session; register, verify and reset issue the verification
    /// token (verify also marks the destination verified). Of many parallel
    /// right guesses exactly one marks the code used; every later statement
    /// requires that mark, made by this attempt (`verified_by`). The last
    /// statement reads the row back, so the caller learns in the same round
    /// trip why no attempt was taken, or whose code it was.
    ///
    /// The comparison is SQL equality of two keyed hashes (HMAC-SHA256 under
    /// `OTP_PEPPER`): without the pepper, timing the comparison tells nothing
    /// about a code.
    pub async fn attempt_code(&self, a: &CodeAttempt<'_>) -> Result<Attempted, StoreError> {
        let by = a.completion.by();
        let take = Stmt::new(
            "UPDATE otp_requests SET attempts = attempts + 1, verified_by = ?3 \
             WHERE id = ?1 AND purpose = ?4 AND is_verified = 0 AND invalidated_at IS NULL AND expires_at > ?2 \
             AND attempts < max_attempts",
            vec![a.otp_id.into(), a.now_ms.into(), by.into(), a.purpose.as_str().into()],
        );
        // A login or reset code linked to no account (the decoy of an
        // unknown one, or a withdrawn code) never matches.
        let matched = Stmt::new(
            "UPDATE otp_requests SET is_verified = 1, verified_at = ?2 \
             WHERE id = ?1 AND verified_by = ?3 AND is_verified = 0 AND otp_hash = ?4 \
             AND (purpose NOT IN ('login', 'reset') OR user_id IS NOT NULL)",
            vec![a.otp_id.into(), a.now_ms.into(), by.into(), a.guess_hash.into()],
        );
        let mut statements = vec![take, matched];
        let (marker, marker_args) = verified_by(a.otp_id, by, 3);
        let code_column = |column: &str| format!("(SELECT {column} FROM otp_requests WHERE id = ?1)");
        match &a.completion {
            Completion::Login(session) => {
                let verified = channel_verified_column(a.channel);
                let mut args: Vec<Arg> = vec![a.otp_id.into(), a.now_ms.into()];
                args.extend(marker_args);
                statements.push(Stmt::new(
                    format!(
                        "UPDATE users SET {verified} = 1, updated_at = ?2 WHERE id = {} AND status = 'active' \
                         AND {marker} RETURNING {USER_COLUMNS}",
                        code_column("user_id")
                    ),
                    args,
                ));
                statements.extend(session_statements(session, &|n| verified_by(a.otp_id, by, n)));
            }
            Completion::Token { hash, expires_at_ms } => {
                statements.push(Stmt::new(
                    "INSERT INTO verification_tokens (token_hash, otp_request_id, purpose, otp_type, destination, \
                     created_at, expires_at) SELECT ?2, id, purpose, otp_type, destination, ?3, ?4 \
                     FROM otp_requests WHERE id = ?1 AND verified_by = ?2 AND is_verified = 1",
                    vec![a.otp_id.into(), (*hash).into(), a.now_ms.into(), (*expires_at_ms).into()],
                ));
                if a.purpose == Purpose::Verify {
                    let (column, verified) = (channel_column(a.channel), channel_verified_column(a.channel));
                    let mut args: Vec<Arg> = vec![a.otp_id.into(), a.now_ms.into()];
                    args.extend(marker_args);
                    statements.push(Stmt::new(
                        format!(
                            "UPDATE users SET {verified} = 1, updated_at = ?2 WHERE {column} = {} AND {marker}",
                            code_column("destination")
                        ),
                        args,
                    ));
                }
            }
        }
        let read_back = statements.len();
        statements.push(Stmt::new(
            "SELECT otp_type, destination, user_id, is_verified, invalidated_at, expires_at, attempts, max_attempts, \
             verified_by IS ?2 AS attempted FROM otp_requests WHERE id = ?1",
            vec![a.otp_id.into(), by.into()],
        ));
        let mut results = self.db.batch(statements).await?;
        let Some(row) = row_of(&mut results, read_back) else {
            return Ok(Attempted { attempt: Attempt::Refused(None), destination: None, user_id: None });
        };
        let attempt = match (int(&row, "attempted") != 0, int(&row, "is_verified") != 0, &a.completion) {
            (false, ..) => Attempt::Refused(Some(row_state(&row))),
            (true, false, _) => Attempt::Wrong,
            (true, true, Completion::Login(_)) => match first_of::<UserRow>(&mut results, 2)? {
                Some(user) => Attempt::LoggedIn(user),
                None => Attempt::NoActiveUser,
            },
            (true, true, Completion::Token { .. }) => Attempt::Verified,
        };
        let destination = stored_destination(
            &text(&row, "otp_type").unwrap_or_default(),
            &text(&row, "destination").unwrap_or_default(),
        );
        Ok(Attempted { attempt, destination, user_id: text(&row, "user_id") })
    }
}
