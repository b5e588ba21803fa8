//! Cloudflare Turnstile's server-side check: the siteverify request, and
//! what its answer means. Pure; the flow sends it through the `Sender` port.
//!
//! Source: developers.cloudflare.com/turnstile/get-started/server-side-validation
//! (`POST /turnstile/v0/siteverify`, form or JSON, `secret`, `response`,
//! optional `remoteip` and `idempotency_key`; answers JSON `success` and
//! `error-codes`; a token is at most 2048 characters, valid 300 s, single use).

use super::outbound::{Provider, ProviderRequest, USER_AGENT};

pub const SITEVERIFY_PATH: &str = "/turnstile/v0/siteverify";
/// The longest token Turnstile issues.
pub const MAX_TOKEN_LEN: usize = 2048;

/// The siteverify request for `token` from the client at `remote_ip`. The
/// idempotency key makes a repeated check of one token answer the same.
pub fn siteverify_request(
    api_base: &str,
    secret: &str,
    token: &str,
    remote_ip: Option<&str>,
    idempotency_key: &str,
) -> ProviderRequest {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("secret", secret).append_pair("response", token);
    if let Some(ip) = remote_ip {
        form.append_pair("remoteip", ip);
    }
    form.append_pair("idempotency_key", idempotency_key);
    ProviderRequest {
        provider: Provider::Turnstile,
        url: format!("{api_base}{SITEVERIFY_PATH}"),
        headers: vec![
            ("content-type", "application/x-www-form-urlencoded".to_string()),
            ("accept", "application/json".to_string()),
            ("user-agent", USER_AGENT.to_string()),
        ],
        body: form.finish(),
    }
}

/// What siteverify said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// The token is missing, invalid, expired or already used: the client's to redo.
    Refused {
        error_code: String,
    },
    /// No usable answer, or our secret refused: fail closed.
    Unavailable {
        reason: String,
    },
}

pub fn verdict(status: u16, body: &str) -> Verdict {
    if status != 200 {
        return Verdict::Unavailable { reason: format!("siteverify answered HTTP {status}") };
    }
    let Ok(answer) = serde_json::from_str::<serde_json::Value>(body) else {
        return Verdict::Unavailable { reason: "siteverify answered no JSON".into() };
    };
    if answer.get("success").and_then(|s| s.as_bool()) == Some(true) {
        return Verdict::Passed;
    }
    let codes: Vec<&str> =
        answer.get("error-codes").and_then(|c| c.as_array()).into_iter().flatten().filter_map(|c| c.as_str()).collect();
    // Our secret refused, or Cloudflare's own failure: not the client's fault.
    if let Some(ours) =
        codes.iter().find(|c| matches!(**c, "missing-input-secret" | "invalid-input-secret" | "internal-error"))
    {
        return Verdict::Unavailable { reason: format!("siteverify: {ours}") };
    }
    let error_code = codes.first().map_or("unknown".to_string(), |c| c.chars().take(40).collect());
    Verdict::Refused { error_code }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_a_form_with_the_secret_the_token_the_ip_and_a_key() {
        let r = siteverify_request("https://challenges.cloudflare.com", "s3cret", "tok.en", Some("203.0.113.7"), "k-1");
        assert_eq!(r.url, "https://challenges.cloudflare.com/turnstile/v0/siteverify");
        assert_eq!(r.body, "secret=s3cret&response=tok.en&remoteip=203.0.113.7&idempotency_key=k-1");
        assert!(r.headers.contains(&("user-agent", USER_AGENT.to_string())));
        assert!(!r.idempotent(), "no provider Idempotency-Key header: the key is in the form");
    }

    #[test]
    fn answers_pass_refuse_or_fail_closed() {
        assert_eq!(verdict(200, r#"{"success":true,"error-codes":[],"hostname":"a.test"}"#), Verdict::Passed);
        assert_eq!(
            verdict(200, r#"{"success":false,"error-codes":["timeout-or-duplicate"]}"#),
            Verdict::Refused { error_code: "timeout-or-duplicate".into() }
        );
        assert_eq!(
            verdict(200, r#"{"success":false,"error-codes":["invalid-input-response"]}"#),
            Verdict::Refused { error_code: "invalid-input-response".into() }
        );
        for ours in ["invalid-input-secret", "missing-input-secret", "internal-error"] {
            let body = format!(r#"{{"success":false,"error-codes":["{ours}"]}}"#);
            assert!(matches!(verdict(200, &body), Verdict::Unavailable { .. }), "{ours}");
        }
        assert!(matches!(verdict(503, "{}"), Verdict::Unavailable { .. }));
        assert!(matches!(verdict(200, "<html>"), Verdict::Unavailable { .. }));
    }
}
