//! The one error type of the HTTP boundary and its JSON shape.
//!
//! Every failure a client can see is an `ApiError`: a status, a stable `code`
//! and a human message. Internal causes are logged, never sent.

use serde::Serialize;

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
}

/// The JSON body of an error: `{code, message}` plus `retry_after` when known.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None, allow: None, www_authenticate: None }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "VALIDATION_ERROR", message)
    }

    pub fn not_found() -> Self {
        Self::new(404, "NOT_FOUND", "No such endpoint")
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..Self::new(405, "METHOD_NOT_ALLOWED", format!("Method not allowed; use {allow}"))
        }
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(413, "PAYLOAD_TOO_LARGE", format!("Request body must be at most {limit} bytes"))
    }

    /// 401 for a missing or refused access token.
    pub fn unauthorized(code: &'static str, message: &str) -> Self {
        let challenge = if code == "NOT_AUTHENTICATED" { "Bearer" } else { "Bearer error=\"invalid_token\"" };
        ApiError { www_authenticate: Some(challenge), ..Self::new(401, code, message) }
    }

    /// 429 with the seconds after which the same request can succeed.
    pub fn rate_limited(code: &'static str, message: &str, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after), ..Self::new(429, code, message) }
    }

    /// A server-side fault. The cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        crate::log::error("internal_error", &cause.to_string());
        Self::new(500, "INTERNAL_ERROR", "Internal error")
    }

    /// A dependency (D1, the Durable Object) did not answer: fail closed.
    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        crate::log::error("dependency_unavailable", &format!("{what}: {cause}"));
        ApiError {
            retry_after: Some(5),
            ..Self::new(503, "SERVICE_UNAVAILABLE", format!("{what} is unavailable; try again shortly"))
        }
    }

    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody { code: self.code, message: &self.message, retry_after: self.retry_after }
    }
}
