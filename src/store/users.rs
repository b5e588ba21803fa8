//! Accounts.

use serde::Deserialize;

use super::sessions::{session_statements, NewSession};
use super::{user_column, Db, UserRow, USER_COLUMNS};
use crate::domain::destination::Destination;
use crate::ports::{first, first_of, Stmt, StoreError};

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
            vec![token_hash.into(), now_ms.into(), session.user_id.into()],
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
            vec![session.user_id.into(), username.into(), token_hash.into(), now_ms.into()],
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
            vec![token_hash.into(), session.user_id.into(), max_failures.into()],
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
    /// The account is gone (deleted, or disabled, since the request was authenticated).
    Gone,
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
}
