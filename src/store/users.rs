//! Accounts.

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
    /// and opens the user's first session, in one transaction: a taken
    /// username or destination rolls back all of it, so the token can be
    /// used again with another username.
    pub async fn create_user(
        &self,
        token_hash: &str,
        username: &str,
        session: &NewSession<'_>,
    ) -> Result<Result<UserRow, CreateUserError>, StoreError> {
        let now_ms = session.now_ms;
        // The token is marked consumed by this request's new user id, so the
        // insert below finds this request's consumption and no other's (two
        // requests in one millisecond share `consumed_at`).
        let consume = Stmt::new(
            "UPDATE verification_tokens SET consumed_at = ?2, consumed_by = ?3 \
             WHERE token_hash = ?1 AND purpose = 'register' AND consumed_at IS NULL AND expires_at > ?2",
            vec![token_hash.into(), now_ms.into(), session.user_id.into()],
        );
        let insert = Stmt::new(
            format!(
                "INSERT INTO users (id, username, email, phone_e164, status, email_verified, phone_verified, \
                 created_at, updated_at) \
                 SELECT ?1, ?2, CASE WHEN otp_type = 'email' THEN destination END, \
                 CASE WHEN otp_type = 'phone' THEN destination END, 'active', otp_type = 'email', \
                 otp_type = 'phone', ?4, ?4 \
                 FROM verification_tokens WHERE token_hash = ?3 AND purpose = 'register' AND consumed_by = ?1 \
                 RETURNING {USER_COLUMNS}"
            ),
            vec![session.user_id.into(), username.into(), token_hash.into(), now_ms.into()],
        );
        let mut statements = vec![consume, insert];
        statements.extend(session_statements(session, &|_| ("1 = 1".to_string(), Vec::new())));
        match self.db.batch(statements).await {
            Ok(mut results) => Ok(first_of::<UserRow>(&mut results, 1)?.ok_or(CreateUserError::InvalidToken)),
            Err(e) if e.is_unique_violation("users.username") => Ok(Err(CreateUserError::UsernameTaken)),
            Err(e) if e.is_unique_violation("users.email") || e.is_unique_violation("users.phone_e164") => {
                Ok(Err(CreateUserError::AccountExists))
            }
            Err(e) => Err(e),
        }
    }
}
