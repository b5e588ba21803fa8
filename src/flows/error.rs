//! Why a flow refused: one error type for every flow, in the flows' own
//! terms. `http::error` maps each to its status, stable code and message,
//! in one place; the audit trail takes its outcome from here
//! (`Error::audit_outcome`), never from a message text.

use crate::domain::admin::Scope;
use crate::domain::destination::Channel;
use crate::domain::limits::Limit;
use crate::domain::otp::VerifyFailure;
use crate::domain::outbound::Undeliverable;
use crate::domain::tokens::TokenError;
use crate::ports::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// SMS to the destination's country is not allowed (`SMS_ALLOWED_COUNTRY_CODES`).
    SmsCountryNotAllowed,
    /// The Turnstile token is missing or was refused.
    CaptchaFailed,
    /// The provider says the destination cannot receive the code.
    Undeliverable(Undeliverable),
    /// The provider did not take the message (or refused our credentials).
    SendFailed(Channel),
    /// A rate limit refused; waiting `retry_after_seconds` is enough.
    Limited {
        limit: Limit,
        retry_after_seconds: u64,
    },
    /// A verification the code does not pass.
    Otp(VerifyFailure),
    UserNotFound,
    AccountDisabled,
    VerificationTokenInvalid,
    UsernameTaken,
    AccountExists,
    /// Another account has this email or phone.
    DestinationTaken,
    /// The account's only destination cannot be removed.
    LastDestination,
    /// The account has no such destination (or the path names no kind of one).
    DestinationNotFound,
    /// The request's access token does not stand for a live session.
    Auth(AuthFailure),
    RefreshTokenInvalid,
    RefreshTokenReused,
    SessionNotFound,
    /// The admin API refused the caller's service token.
    Admin(AdminDenied),
    /// The admin API found no user with this id, email or phone.
    NoSuchUser,
    /// No such endpoint here (Twilio callbacks without `PUBLIC_BASE_URL`).
    NotFound,
    /// A webhook not signed by its provider.
    SignatureInvalid,
    /// A dependency did not answer: the request fails closed.
    Unavailable(Dependency),
    /// A fault of the service itself; the cause is in the log.
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <token>`.
    Malformed,
    /// The token itself is refused.
    Token(TokenError),
    /// The token's session was revoked or has ended.
    SessionEnded,
}

/// Why the admin API refused a request's service token (`flows::admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminDenied {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <token>`, or a token no entry of `ADMIN_API_TOKENS` has.
    Invalid,
    /// A valid token without the scope the endpoint needs.
    Scope(Scope),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Database,
    RateLimiter,
    /// Turnstile's siteverify.
    Captcha,
}

impl Dependency {
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Database => "Database",
            Dependency::RateLimiter => "Rate limiter",
            Dependency::Captcha => "Captcha verification",
        }
    }

    /// The dependency failing: logged with its cause, which the client never sees.
    pub fn down(self, cause: StoreError) -> Error {
        crate::log::error("dependency_unavailable", &format!("{}: {cause}", self.name()));
        Error::Unavailable(self)
    }
}

/// The database failing.
pub fn db_down(cause: StoreError) -> Error {
    Dependency::Database.down(cause)
}

impl Error {
    /// A fault of the service, logged with its cause.
    pub fn internal(cause: impl std::fmt::Display) -> Error {
        crate::log::error("internal_error", &cause.to_string());
        Error::Internal
    }

    /// The outcome of an `otp_failed` audit event: a stable word per reason.
    pub fn audit_outcome(&self) -> &'static str {
        match self {
            Error::Otp(f) => f.audit_outcome(),
            Error::UserNotFound => "user_not_found",
            Error::AccountDisabled => "account_disabled",
            Error::SmsCountryNotAllowed | Error::Undeliverable(_) => "validation_error",
            Error::Limited { .. } => "rate_limit",
            Error::Unavailable(_) => "service_unavailable",
            _ => "internal_error",
        }
    }

    /// Whether the refusal is recorded by the step that refused (a limit's
    /// `rate_limited` event) or is the service's own failure, so the flow
    /// does not record it again.
    pub fn recorded_elsewhere(&self) -> bool {
        matches!(self, Error::Limited { .. } | Error::Unavailable(_) | Error::Internal)
    }
}
