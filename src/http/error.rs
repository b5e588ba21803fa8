//! The one error type of the HTTP boundary, its JSON shape, the registry of
//! error codes, and the one mapping of every flow error to its status, code
//! and message.
//!
//! Every failure a client can see is an `ApiError`: a status, a stable
//! `code` from `ErrorCode` (checked by a test against the codes in
//! `src/http/assets/openapi.json`) and a human message. Internal causes are
//! logged where they happen, never sent.

use serde::Serialize;

use crate::domain::destination::Channel;
use crate::domain::limits::Limit;
use crate::domain::outbound::Undeliverable;
use crate::flows::error::{AdminDenied, AuthFailure, Error};

/// Every error code the API answers: clients may rely on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ValidationError,
    InvalidOtp,
    InvalidVerificationToken,
    NotAuthenticated,
    TokenMalformed,
    TokenAlgorithmRejected,
    TokenKeyUnknown,
    TokenSignatureInvalid,
    TokenExpired,
    TokenClaimsInvalid,
    SessionRevoked,
    RefreshTokenInvalid,
    RefreshTokenReused,
    AccountDisabled,
    NotFound,
    UserNotFound,
    SessionNotFound,
    MethodNotAllowed,
    UsernameTaken,
    AccountExists,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimit,
    SmsCapReached,
    ConfigurationError,
    InternalError,
    SendFailed,
    ServiceUnavailable,
    SmsOptedOut,
    EmailUndeliverable,
    SignatureInvalid,
    CaptchaFailed,
    DestinationTaken,
    LastDestination,
    DestinationNotFound,
    AdminTokenInvalid,
    InsufficientScope,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 37] = [
        ErrorCode::ValidationError,
        ErrorCode::InvalidOtp,
        ErrorCode::InvalidVerificationToken,
        ErrorCode::NotAuthenticated,
        ErrorCode::TokenMalformed,
        ErrorCode::TokenAlgorithmRejected,
        ErrorCode::TokenKeyUnknown,
        ErrorCode::TokenSignatureInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::TokenClaimsInvalid,
        ErrorCode::SessionRevoked,
        ErrorCode::RefreshTokenInvalid,
        ErrorCode::RefreshTokenReused,
        ErrorCode::AccountDisabled,
        ErrorCode::NotFound,
        ErrorCode::UserNotFound,
        ErrorCode::SessionNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UsernameTaken,
        ErrorCode::AccountExists,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimit,
        ErrorCode::SmsCapReached,
        ErrorCode::ConfigurationError,
        ErrorCode::InternalError,
        ErrorCode::SendFailed,
        ErrorCode::ServiceUnavailable,
        ErrorCode::SmsOptedOut,
        ErrorCode::EmailUndeliverable,
        ErrorCode::SignatureInvalid,
        ErrorCode::CaptchaFailed,
        ErrorCode::DestinationTaken,
        ErrorCode::LastDestination,
        ErrorCode::DestinationNotFound,
        ErrorCode::AdminTokenInvalid,
        ErrorCode::InsufficientScope,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::InvalidOtp => "INVALID_OTP",
            ErrorCode::InvalidVerificationToken => "INVALID_VERIFICATION_TOKEN",
            ErrorCode::NotAuthenticated => "NOT_AUTHENTICATED",
            ErrorCode::TokenMalformed => "TOKEN_MALFORMED",
            ErrorCode::TokenAlgorithmRejected => "TOKEN_ALGORITHM_REJECTED",
            ErrorCode::TokenKeyUnknown => "TOKEN_KEY_UNKNOWN",
            ErrorCode::TokenSignatureInvalid => "TOKEN_SIGNATURE_INVALID",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::TokenClaimsInvalid => "TOKEN_CLAIMS_INVALID",
            ErrorCode::SessionRevoked => "SESSION_REVOKED",
            ErrorCode::RefreshTokenInvalid => "REFRESH_TOKEN_INVALID",
            ErrorCode::RefreshTokenReused => "REFRESH_TOKEN_REUSED",
            ErrorCode::AccountDisabled => "ACCOUNT_DISABLED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::UserNotFound => "USER_NOT_FOUND",
            ErrorCode::SessionNotFound => "SESSION_NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::UsernameTaken => "USERNAME_TAKEN",
            ErrorCode::AccountExists => "ACCOUNT_EXISTS",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimit => "RATE_LIMIT",
            ErrorCode::SmsCapReached => "SMS_CAP_REACHED",
            ErrorCode::ConfigurationError => "CONFIGURATION_ERROR",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::SendFailed => "SEND_FAILED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::SmsOptedOut => "SMS_OPTED_OUT",
            ErrorCode::EmailUndeliverable => "EMAIL_UNDELIVERABLE",
            ErrorCode::SignatureInvalid => "SIGNATURE_INVALID",
            ErrorCode::CaptchaFailed => "CAPTCHA_FAILED",
            ErrorCode::DestinationTaken => "DESTINATION_TAKEN",
            ErrorCode::LastDestination => "LAST_DESTINATION",
            ErrorCode::DestinationNotFound => "DESTINATION_NOT_FOUND",
            ErrorCode::AdminTokenInvalid => "ADMIN_TOKEN_INVALID",
            ErrorCode::InsufficientScope => "INSUFFICIENT_SCOPE",
        }
    }

    /// The code of a refused access token.
    fn of_token(e: crate::domain::tokens::TokenError) -> ErrorCode {
        let name = e.code();
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name).unwrap_or(ErrorCode::TokenMalformed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Seconds until a refused request can succeed (429 and 503 answers).
    pub retry_after: Option<u64>,
    /// For 405: the methods the path accepts.
    pub allow: Option<&'static str>,
    /// For 401: the `WWW-Authenticate` challenge (RFC 6750).
    pub www_authenticate: Option<&'static str>,
    /// The OAuth 2.0 `error` (RFC 6749 5.2) where an endpoint follows an
    /// OAuth RFC (token revocation, RFC 7009 2.2.1).
    pub oauth_error: Option<&'static str>,
}

/// The JSON body of an error: `{code, message}` plus `retry_after` when known.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.as_str(),
            message: message.into(),
            retry_after: None,
            allow: None,
            www_authenticate: None,
            oauth_error: None,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, ErrorCode::ValidationError, message)
    }

    pub fn not_found() -> Self {
        Self::new(404, ErrorCode::NotFound, "No such endpoint")
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..Self::new(405, ErrorCode::MethodNotAllowed, format!("Method not allowed; use {allow}"))
        }
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(413, ErrorCode::PayloadTooLarge, format!("Request body must be at most {limit} bytes"))
    }

    /// 415 for a body not declared as JSON (see `input::is_json`).
    pub fn unsupported_media_type() -> Self {
        Self::unsupported_media_type_of("application/json")
    }

    /// 415 for a body of none of the media types an endpoint takes.
    pub fn unsupported_media_type_of(types: &str) -> Self {
        Self::new(415, ErrorCode::UnsupportedMediaType, format!("Content-Type must be {types}"))
    }

    /// 401 for a missing or refused access token.
    fn unauthorized(code: ErrorCode, message: &str) -> Self {
        let challenge = if code == ErrorCode::NotAuthenticated { "Bearer" } else { "Bearer error=\"invalid_token\"" };
        ApiError { www_authenticate: Some(challenge), ..Self::new(401, code, message) }
    }

    /// 429 with the seconds after which the same request can succeed.
    fn rate_limited(code: ErrorCode, message: &str, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after), ..Self::new(429, code, message) }
    }

    /// A server-side fault. The cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        crate::log::error("internal_error", &cause.to_string());
        Self::new(500, ErrorCode::InternalError, "Internal error")
    }

    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody { code: self.code, message: &self.message, retry_after: self.retry_after, error: self.oauth_error }
    }
}

/// Every flow error, as the client sees it: the only place statuses, codes
/// and messages are chosen.
impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        use ErrorCode as C;
        match e {
            Error::SmsCountryNotAllowed => ApiError::validation("SMS to this country is not supported"),
            Error::CaptchaFailed => ApiError::new(
                400,
                C::CaptchaFailed,
                "Complete the challenge to show you are not a bot (turnstile_token), then ask again",
            ),
            Error::Undeliverable(reason) => match reason {
                Undeliverable::NotSmsCapable => ApiError::validation("This phone number cannot receive SMS messages"),
                Undeliverable::RegionNotSupported => {
                    ApiError::validation("SMS to this phone number's country is not supported")
                }
                Undeliverable::OptedOut => ApiError::new(
                    400,
                    C::SmsOptedOut,
                    "This phone number has opted out of our messages; reply START to our last message to receive \
                     codes again",
                ),
                Undeliverable::MailboxInactive | Undeliverable::InvalidAddress => ApiError::new(
                    400,
                    C::EmailUndeliverable,
                    "This email address cannot receive messages from us (it bounced, or unsubscribed, before)",
                ),
            },
            Error::SendFailed(channel) => {
                let channel = match channel {
                    Channel::Email => "email",
                    Channel::Phone => "phone",
                };
                ApiError::new(502, C::SendFailed, format!("Failed to send OTP to {channel}"))
            }
            Error::Limited { limit, retry_after_seconds } => {
                let (code, message) = match limit {
                    Limit::IpRequests | Limit::IpVerifies | Limit::Ip48Requests | Limit::Ip48Verifies => {
                        (C::RateLimit, "Too many requests from this network. Please try again later.")
                    }
                    Limit::DestinationRequests | Limit::DestinationRequestsAll => {
                        (C::RateLimit, "Too many OTP requests. Please try again later.")
                    }
                    Limit::VerifyFailures | Limit::VerifyFailuresAll => {
                        (C::RateLimit, "Too many failed verifications. Please try again later.")
                    }
                    Limit::SmsCap => {
                        (C::SmsCapReached, "SMS sending is paused for now. Please try again later or use email.")
                    }
                    Limit::SmsPrefixCap | Limit::SmsCountryCap => {
                        (C::SmsCapReached, "SMS to this number is paused for now. Please try again later or use email.")
                    }
                    Limit::SessionRefreshes => {
                        (C::RateLimit, "Too many refreshes of this session. Please try again later.")
                    }
                };
                ApiError::rate_limited(code, message, retry_after_seconds)
            }
            Error::Otp(failure) => ApiError::new(400, C::InvalidOtp, failure.message()),
            Error::UserNotFound => ApiError::new(404, C::UserNotFound, "No account found with this email/phone"),
            Error::AccountDisabled => ApiError::new(403, C::AccountDisabled, "Account is not active"),
            Error::VerificationTokenInvalid => ApiError::new(
                400,
                C::InvalidVerificationToken,
                "Verification token is invalid, expired or already used",
            ),
            Error::UsernameTaken => ApiError::new(409, C::UsernameTaken, "This username is taken"),
            Error::AccountExists => {
                ApiError::new(409, C::AccountExists, "An account with this email/phone already exists")
            }
            Error::DestinationTaken => ApiError::new(409, C::DestinationTaken, "Another account has this email/phone"),
            Error::LastDestination => ApiError::new(
                409,
                C::LastDestination,
                "This is the account's only email/phone; add another before removing it",
            ),
            Error::DestinationNotFound => {
                ApiError::new(404, C::DestinationNotFound, "The account has no such destination (email or phone)")
            }
            Error::Auth(failure) => match failure {
                AuthFailure::Missing => {
                    ApiError::unauthorized(C::NotAuthenticated, "Authorization: Bearer <access token> is required")
                }
                AuthFailure::Malformed => {
                    ApiError::unauthorized(C::TokenMalformed, "Authorization must be: Bearer <access token>")
                }
                AuthFailure::Token(e) => ApiError::unauthorized(ErrorCode::of_token(e), e.message()),
                AuthFailure::SessionEnded => {
                    ApiError::unauthorized(C::SessionRevoked, "This session has ended; log in again")
                }
            },
            Error::RefreshTokenInvalid => {
                ApiError::unauthorized(C::RefreshTokenInvalid, "Refresh token is invalid or expired")
            }
            Error::RefreshTokenReused => ApiError::unauthorized(
                C::RefreshTokenReused,
                "Refresh token was already used; the session has been revoked",
            ),
            Error::SessionNotFound => ApiError::new(404, C::SessionNotFound, "No such active session"),
            Error::Admin(denied) => match denied {
                AdminDenied::Missing => {
                    ApiError::unauthorized(C::NotAuthenticated, "Authorization: Bearer <admin token> is required")
                }
                AdminDenied::Invalid => ApiError::unauthorized(C::AdminTokenInvalid, "This admin token is not valid"),
                AdminDenied::Scope(scope) => ApiError {
                    www_authenticate: Some(scope.challenge()),
                    ..ApiError::new(403, C::InsufficientScope, "This admin token lacks the scope this endpoint needs")
                },
            },
            Error::NoSuchUser => ApiError::new(404, C::UserNotFound, "No user has this id, email or phone"),
            Error::NotFound => ApiError::not_found(),
            Error::SignatureInvalid => {
                ApiError::new(403, C::SignatureInvalid, "The request does not carry Twilio's signature")
            }
            Error::Unavailable(dependency) => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    503,
                    C::ServiceUnavailable,
                    format!("{} is unavailable; try again shortly", dependency.name()),
                )
            },
            Error::Internal => ApiError::new(500, C::InternalError, "Internal error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_registry_is_the_documents_list_of_codes() {
        let doc: serde_json::Value = serde_json::from_str(super::super::OPENAPI).unwrap();
        let documented: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("components.schemas.ErrorCode.enum")
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let registered: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(registered.len(), ErrorCode::ALL.len(), "a code registered twice");
        assert_eq!(registered, documented, "src/http/error.rs ErrorCode vs src/http/assets/openapi.json ErrorCode");
    }

    #[test]
    fn every_token_error_has_its_registered_code() {
        use crate::domain::tokens::TokenError;
        for e in [
            TokenError::Malformed,
            TokenError::Algorithm,
            TokenError::UnknownKey,
            TokenError::Signature,
            TokenError::Expired,
            TokenError::Claims,
        ] {
            assert_eq!(ErrorCode::of_token(e).as_str(), e.code(), "{e:?}");
        }
    }

    #[test]
    fn flow_errors_map_to_their_status_and_code() {
        let cases: [(Error, u16, &str); 10] = [
            (Error::DestinationTaken, 409, "DESTINATION_TAKEN"),
            (Error::LastDestination, 409, "LAST_DESTINATION"),
            (Error::DestinationNotFound, 404, "DESTINATION_NOT_FOUND"),
            (Error::Otp(crate::domain::otp::VerifyFailure::Expired), 400, "INVALID_OTP"),
            (Error::Limited { limit: Limit::SmsCap, retry_after_seconds: 7 }, 429, "SMS_CAP_REACHED"),
            (Error::Limited { limit: Limit::SessionRefreshes, retry_after_seconds: 7 }, 429, "RATE_LIMIT"),
            (Error::Undeliverable(Undeliverable::OptedOut), 400, "SMS_OPTED_OUT"),
            (Error::Auth(AuthFailure::Missing), 401, "NOT_AUTHENTICATED"),
            (Error::SendFailed(Channel::Phone), 502, "SEND_FAILED"),
            (Error::Internal, 500, "INTERNAL_ERROR"),
        ];
        for (e, status, code) in cases {
            let api = ApiError::from(e);
            assert_eq!((api.status, api.code), (status, code));
        }
        let admin = |d| ApiError::from(Error::Admin(d));
        assert_eq!(
            (admin(AdminDenied::Missing).code, admin(AdminDenied::Missing).www_authenticate),
            ("NOT_AUTHENTICATED", Some("Bearer"))
        );
        let invalid = admin(AdminDenied::Invalid);
        assert_eq!((invalid.status, invalid.code), (401, "ADMIN_TOKEN_INVALID"));
        assert_eq!(invalid.www_authenticate, Some("Bearer error=\"invalid_token\""));
        let scope = admin(AdminDenied::Scope(crate::domain::admin::Scope::AuditRead));
        assert_eq!((scope.status, scope.code), (403, "INSUFFICIENT_SCOPE"));
        assert_eq!(scope.www_authenticate, Some("Bearer error=\"insufficient_scope\", scope=\"audit:read\""));
        assert_eq!(
            (ApiError::from(Error::NoSuchUser).status, ApiError::from(Error::NoSuchUser).code),
            (404, "USER_NOT_FOUND")
        );
        let limited = ApiError::from(Error::Limited { limit: Limit::IpRequests, retry_after_seconds: 7 });
        assert_eq!(limited.retry_after, Some(7));
        assert_eq!(ApiError::from(Error::Auth(AuthFailure::Missing)).www_authenticate, Some("Bearer"));
    }
}
