//! Accounts.

use serde::Deserialize;

use super::sessions::{session_statements, NewSession};
use super::{user_column, Db, UserRow, USER_COLUMNS};
use crate::domain::destination::{Channel, Destination};
use crate::ports::{first, first_of, Arg, Stmt, StoreError};

/// Why a new user could not be created.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateUserError {
    /// The verification token is unknown, used, expired or not for registration.
    InvalidToken,
    UsernameTaken,
    AccountExists,
}

impl Db {
    pub async fn user_by_destination(&self, destination: &Destination) -> Result<Option<UserRow>, StoreError> {
        let column = user_column(destination);
        first(
            self.db
                .all(Stmt::new(
                    format!("SELECT {USER_COLUMNS} FROM users WHERE {column} = ?1"),
                    vec![destination.as_str().into()],
                ))
                .await?,
        )
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        first(self.db.all(Stmt::new(format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), vec![id.into()])).await?)
    }

    /// Consumes a register verification token, creates the user it verified
    /// and opens the user's first session, in one transaction. A taken
    /// username or an account already at the destination creates nothing:
    /// the same transaction counts the failure on the token and gives the
    /// token back, unless it has now failed `max_failures` times, when it
    /// stays consumed (spent). No statement fails on the way, so the batch
    /// is never rolled back and the count stays.
    pub async fn create_user(
        &self,
        token_hash: &str,
        user_id: &str,
        username: &str,
        session: &NewSession<'_>,
        max_failures: u32,
    ) -> Result<Result<UserRow, CreateUserError>, StoreError> {
        #[derive(Deserialize)]
        struct Refused {
            account_exists: i64,
        }
        let now_ms = session.now_ms;
        // The token is marked consumed by this request's new user id, so the
        // statements below find this request's consumption and no other's
        // (two requests in one millisecond share `consumed_at`).
        let consume = Stmt::new(
            "UPDATE verification_tokens SET consumed_at = ?2, consumed_by = ?3 \
             WHERE token_hash = ?1 AND purpose = 'register' AND consumed_at IS NULL AND expires_at > ?2",
            vec![token_hash.into(), now_ms.into(), user_id.into()],
        );
        let insert = Stmt::new(
            format!(
                "INSERT INTO users (id, username, email, phone_e164, status, email_verified, phone_verified, \
                 created_at, updated_at) \
                 SELECT ?1, ?2, CASE WHEN t.otp_type = 'email' THEN t.destination END, \
                 CASE WHEN t.otp_type = 'phone' THEN t.destination END, 'active', t.otp_type = 'email', \
                 t.otp_type = 'phone', ?4, ?4 \
                 FROM verification_tokens t WHERE t.token_hash = ?3 AND t.purpose = 'register' AND t.consumed_by = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM users u WHERE u.username = ?2) \
                 AND NOT EXISTS (SELECT 1 FROM users u WHERE u.email = t.destination) \
                 AND NOT EXISTS (SELECT 1 FROM users u WHERE u.phone_e164 = t.destination) \
                 RETURNING {USER_COLUMNS}"
            ),
            vec![user_id.into(), username.into(), token_hash.into(), now_ms.into()],
        );
        // Claimed by this request but no user made: one more failure, and
        // the token back unless that was the last one allowed.
        let refuse = Stmt::new(
            "UPDATE verification_tokens SET register_failures = register_failures + 1, \
             consumed_at = CASE WHEN register_failures + 1 >= ?3 THEN consumed_at END, \
             consumed_by = CASE WHEN register_failures + 1 >= ?3 THEN consumed_by END \
             WHERE token_hash = ?1 AND consumed_by = ?2 AND NOT EXISTS (SELECT 1 FROM users WHERE id = ?2) \
             RETURNING EXISTS (SELECT 1 FROM users u WHERE u.email = verification_tokens.destination \
             OR u.phone_e164 = verification_tokens.destination) AS account_exists",
            vec![token_hash.into(), user_id.into(), max_failures.into()],
        );
        let mut statements = vec![consume, insert, refuse];
        statements.extend(session_statements(session, &|_| ("1 = 1".to_string(), Vec::new())));
        match self.db.batch(statements).await {
            Ok(mut results) => {
                if let Some(user) = first_of::<UserRow>(&mut results, 1)? {
                    return Ok(Ok(user));
                }
                Ok(Err(match first_of::<Refused>(&mut results, 2)? {
                    Some(refused) if refused.account_exists != 0 => CreateUserError::AccountExists,
                    Some(_) => CreateUserError::UsernameTaken,
                    None => CreateUserError::InvalidToken,
                }))
            }
            // Not expected (the insert checks first), kept as a backstop.
            Err(e) if e.is_unique_violation("users.username") => Ok(Err(CreateUserError::UsernameTaken)),
            Err(e) if e.is_unique_violation("users.email") || e.is_unique_violation("users.phone_e164") => {
                Ok(Err(CreateUserError::AccountExists))
            }
            Err(e) => Err(e),
        }
    }
}

/// Why an account change was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another account has this username (the UNIQUE constraint said so).
    UsernameTaken,
    /// Another account has this email or phone (the UNIQUE constraint said so).
    DestinationTaken,
    /// The verification token is unknown, used, expired, of another
    /// purpose, or not for what it is asked to prove.
    InvalidToken,
    /// Removing it would leave the account with neither email nor phone.
    LastDestination,
    /// The account has no destination of that kind.
    NoSuchDestination,
    /// The account is gone (deleted, or disabled, since the request was authenticated).
    Gone,
}

/// What deleting an account removed (its sessions, with their retired
/// refresh tokens, and devices) and what it kept anonymised: codes and
/// verification tokens of its destinations (keyed hash, no user id) and
/// its audit events (no user id; their destinations were masked already).
#[derive(Debug, PartialEq, Eq)]
pub struct Erased {
    pub sessions: i64,
    pub devices: i64,
    pub otp_requests: i64,
    pub verification_tokens: i64,
    pub audit_events: i64,
}

/// An account to delete: the step-up proof and how its destinations are kept.
pub struct Erasure<'a> {
    pub user_id: &'a str,
    /// The `verify` verification token's hash: for one of the account's
    /// destinations, issued after `proved_after_ms`.
    pub token_hash: &'a str,
    /// This request's mark on the token it consumes.
    pub by: &'a str,
    pub proved_after_ms: i64,
    pub now_ms: i64,
    /// The account's email and phone, each with the keyed hash its rows keep.
    pub email: Option<(&'a str, String)>,
    pub phone: Option<(&'a str, String)>,
}

impl Db {
    /// Renames an active account; the UNIQUE constraint on `users.username`
    /// decides between two accounts asking for one name at once.
    pub async fn set_username(
        &self,
        user_id: &str,
        username: &str,
        now_ms: i64,
    ) -> Result<Result<UserRow, Refused>, StoreError> {
        let rename = Stmt::new(
            format!(
                "UPDATE users SET username = ?2, updated_at = ?3 WHERE id = ?1 AND status = 'active' \
                 RETURNING {USER_COLUMNS}"
            ),
            vec![user_id.into(), username.into(), now_ms.into()],
        );
        match self.db.all(rename).await {
            Ok(rows) => Ok(first(rows)?.ok_or(Refused::Gone)),
            Err(e) if e.is_unique_violation("users.username") => Ok(Err(Refused::UsernameTaken)),
            Err(e) => Err(e),
        }
    }

    /// Spends a `verify` verification token and makes its destination the
    /// account's email or phone, verified (replacing the one it had), in one
    /// transaction. If another account holds it, the UNIQUE constraint fails
    /// the transaction and it rolls back whole: nothing changes and the
    /// token is not spent (it serves again, while it lives, once the
    /// destination is free). `by` marks this request's consumption, since
    /// two requests in one millisecond share `consumed_at`.
    pub async fn attach_destination(
        &self,
        user_id: &str,
        token_hash: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<Result<(UserRow, Destination), Refused>, StoreError> {
        let consume = Stmt::new(
            "UPDATE verification_tokens SET consumed_at = ?2, consumed_by = ?3 \
             WHERE token_hash = ?1 AND purpose = 'verify' AND consumed_at IS NULL AND expires_at > ?2 \
             RETURNING otp_type, destination",
            vec![token_hash.into(), now_ms.into(), by.into()],
        );
        let proved = |kind: &str| {
            format!(
                "(SELECT t.destination FROM verification_tokens t \
                 WHERE t.token_hash = ?2 AND t.consumed_by = ?3 AND t.otp_type = '{kind}')"
            )
        };
        let (email, phone) = (proved("email"), proved("phone"));
        let attach = Stmt::new(
            format!(
                "UPDATE users SET email = COALESCE({email}, email), \
                 email_verified = CASE WHEN {email} IS NULL THEN email_verified ELSE 1 END, \
                 phone_e164 = COALESCE({phone}, phone_e164), \
                 phone_verified = CASE WHEN {phone} IS NULL THEN phone_verified ELSE 1 END, updated_at = ?4 \
                 WHERE id = ?1 AND status = 'active' \
                 AND EXISTS (SELECT 1 FROM verification_tokens t WHERE t.token_hash = ?2 AND t.consumed_by = ?3) \
                 RETURNING {USER_COLUMNS}"
            ),
            vec![user_id.into(), token_hash.into(), by.into(), now_ms.into()],
        );
        match self.db.batch(vec![consume, attach]).await {
            Ok(mut results) => {
                // Read by hand: a derived Deserialize costs the bundle more.
                let text = |k: &str| results[0].first().and_then(|row| row.get(k)?.as_str().map(str::to_string));
                let (Some(kind), Some(value)) = (text("otp_type"), text("destination")) else {
                    return Ok(Err(Refused::InvalidToken));
                };
                let Some(user) = first_of::<UserRow>(&mut results, 1)? else {
                    return Ok(Err(Refused::Gone));
                };
                let destination = super::otp::stored_destination(&kind, &value)
                    .ok_or_else(|| StoreError("a verification token holds an unreadable destination".into()))?;
                Ok(Ok((user, destination)))
            }
            Err(e) if e.is_unique_violation("users.email") || e.is_unique_violation("users.phone_e164") => {
                Ok(Err(Refused::DestinationTaken))
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the account's email or phone with one statement that requires
    /// the other to stay, so an account never loses its last destination,
    /// also when both are removed at once (the second statement finds the
    /// first's work done). What is left is read in the same transaction, to
    /// tell a last destination from one the account does not have.
    pub async fn remove_destination(
        &self,
        user_id: &str,
        channel: Channel,
        now_ms: i64,
    ) -> Result<Result<UserRow, Refused>, StoreError> {
        let (column, verified, other) = match channel {
            Channel::Email => ("email", "email_verified", "phone_e164"),
            Channel::Phone => ("phone_e164", "phone_verified", "email"),
        };
        let remove = Stmt::new(
            format!(
                "UPDATE users SET {column} = NULL, {verified} = 0, updated_at = ?2 \
                 WHERE id = ?1 AND status = 'active' AND {column} IS NOT NULL AND {other} IS NOT NULL \
                 RETURNING {USER_COLUMNS}"
            ),
            vec![user_id.into(), now_ms.into()],
        );
        let left = Stmt::new(
            format!("SELECT {column} IS NOT NULL AS has FROM users WHERE id = ?1 AND status = 'active'"),
            vec![user_id.into()],
        );
        let mut results = self.db.batch(vec![remove, left]).await?;
        if let Some(user) = first_of::<UserRow>(&mut results, 0)? {
            return Ok(Ok(user));
        }
        Ok(Err(match results[1].first().map(|row| row.get("has").and_then(serde_json::Value::as_i64)) {
            Some(Some(1)) => Refused::LastDestination,
            Some(_) => Refused::NoSuchDestination,
            None => Refused::Gone,
        }))
    }

    /// Deletes an account, in one transaction, if the step-up proof holds
    /// (`Erasure::token_hash`, consumed here): the user row, and with it
    /// (ON DELETE CASCADE) its devices and sessions and their retired
    /// refresh tokens, so every token of it stops working at once. Its
    /// codes (linked by user id, or sent to its destinations) lose the user
    /// id (else the cascade would delete them), their destination becomes
    /// its keyed hash (`erased` for one the account no longer had) and a
    /// pending one is invalidated; verification tokens of its destinations
    /// keep only the hash; its audit events lose the user id. `None`: the
    /// proof does not hold, and nothing changed.
    pub async fn delete_user(&self, e: &Erasure<'_>) -> Result<Option<Erased>, StoreError> {
        let (email, email_hash) = (e.email.as_ref().map(|d| d.0), e.email.as_ref().map(|d| d.1.as_str()));
        let (phone, phone_hash) = (e.phone.as_ref().map(|d| d.0), e.phone.as_ref().map(|d| d.1.as_str()));
        // Every statement after the first: only if it consumed the token for this request.
        let proved = "EXISTS (SELECT 1 FROM verification_tokens p WHERE p.token_hash = ?1 AND p.consumed_by = ?2)";
        let base = || -> Vec<Arg> { vec![e.token_hash.into(), e.by.into(), e.user_id.into()] };
        let with = |sql: String, more: Vec<Arg>| Stmt::new(sql, [base(), more].concat());
        // From parameter `n`: the account's email, its hash, its phone, its hash.
        let keyed = |n: usize| {
            format!("CASE destination WHEN ?{n} THEN ?{} WHEN ?{} THEN ?{} ELSE 'erased' END", n + 1, n + 2, n + 3)
        };
        let destinations = || -> Vec<Arg> { vec![email.into(), email_hash.into(), phone.into(), phone_hash.into()] };
        let consume = with(
            "UPDATE verification_tokens SET consumed_at = ?4, consumed_by = ?2 \
             WHERE token_hash = ?1 AND purpose = 'verify' AND consumed_at IS NULL AND expires_at > ?4 \
             AND created_at > ?5 AND destination IN \
             (SELECT email FROM users WHERE id = ?3 AND status = 'active' \
             UNION ALL SELECT phone_e164 FROM users WHERE id = ?3 AND status = 'active')"
                .to_string(),
            vec![e.now_ms.into(), e.proved_after_ms.into()],
        );
        let counts = with(
            format!(
                "SELECT (SELECT COUNT(*) FROM sessions WHERE user_id = ?3) AS sessions, \
                 (SELECT COUNT(*) FROM devices WHERE user_id = ?3) AS devices, \
                 (SELECT COUNT(*) FROM otp_requests WHERE user_id = ?3 OR destination IN (?4, ?5)) AS otp_requests, \
                 (SELECT COUNT(*) FROM verification_tokens WHERE destination IN (?4, ?5)) AS verification_tokens, \
                 (SELECT COUNT(*) FROM audit_events WHERE user_id = ?3) AS audit_events WHERE {proved}"
            ),
            vec![email.into(), phone.into()],
        );
        let codes = with(
            format!(
                "UPDATE otp_requests SET user_id = NULL, destination = {}, \
                 invalidated_at = COALESCE(invalidated_at, ?8) \
                 WHERE (user_id = ?3 OR destination IN (?4, ?6)) AND {proved}",
                keyed(4)
            ),
            [destinations(), vec![e.now_ms.into()]].concat(),
        );
        // No user id here: parameters renumbered from ?3.
        let tokens = Stmt::new(
            format!(
                "UPDATE verification_tokens SET destination = {} WHERE destination IN (?3, ?5) AND {proved}",
                keyed(3)
            ),
            [vec![e.token_hash.into(), e.by.into()], destinations()].concat(),
        );
        let audit = with(format!("UPDATE audit_events SET user_id = NULL WHERE user_id = ?3 AND {proved}"), vec![]);
        let delete = with(format!("DELETE FROM users WHERE id = ?3 AND {proved} RETURNING id"), vec![]);
        let results = self.db.batch(vec![consume, counts, codes, tokens, audit, delete]).await?;
        if results[5].is_empty() {
            return Ok(None);
        }
        // Read by hand: a derived Deserialize costs the bundle more.
        let count = |k: &str| results[1].first().and_then(|row| row.get(k)?.as_i64()).unwrap_or(0);
        Ok(Some(Erased {
            sessions: count("sessions"),
            devices: count("devices"),
            otp_requests: count("otp_requests"),
            verification_tokens: count("verification_tokens"),
            audit_events: count("audit_events"),
        }))
    }
}
