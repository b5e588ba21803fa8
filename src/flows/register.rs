//! `POST /api/auth/register/`: turn a register verification token into an
//! account with that email or phone already verified, and log it in.

use super::session::{LoggedIn, Opening};
use super::App;
use crate::domain::crypto::new_uuid;
use crate::flows::otp_verify::verification_token_hash;
use crate::http::input::RegisterInput;
use crate::http::ApiError;
use crate::store::users::CreateUserError;

pub async fn register(app: &App, input: RegisterInput) -> Result<LoggedIn, ApiError> {
    let user_id = new_uuid().hyphenated().to_string();
    let session = Opening::new(app, &user_id, &input.device);
    let created = app
        .db
        .create_user(&verification_token_hash(&input.verification_token), &input.username, &session.row())
        .await
        .map_err(|e| ApiError::unavailable("Database", e))?;
    let user = match created {
        Ok(user) => user,
        Err(CreateUserError::InvalidToken) => {
            return Err(ApiError::new(
                400,
                "INVALID_VERIFICATION_TOKEN",
                "Verification token is invalid, expired or already used",
            ))
        }
        Err(CreateUserError::UsernameTaken) => {
            return Err(ApiError::new(409, "USERNAME_TAKEN", "This username is taken"))
        }
        Err(CreateUserError::AccountExists) => {
            return Err(ApiError::new(409, "ACCOUNT_EXISTS", "An account with this email/phone already exists"))
        }
    };
    let logged_in = session.logged_in(app, &user);
    app.audit(super::session::created(&logged_in));
    Ok(logged_in)
}
