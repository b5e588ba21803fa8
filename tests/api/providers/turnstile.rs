//! A fake of Cloudflare Turnstile's siteverify that keeps its documented
//! rules and records every check it answers, so tests can see what the
//! Worker sent.
//!
//! Sources: developers.cloudflare.com/turnstile/get-started/server-side-validation
//! (`POST /turnstile/v0/siteverify`; form or JSON; `secret` and `response`
//! required, `remoteip` and `idempotency_key` optional, the key "a UUID";
//! a token is at most 2048 characters and single use, "a replayed token
//! will be rejected with the `timeout-or-duplicate` error code"; answers
//! `{success, error-codes, challenge_ts, hostname}`), and
//! developers.cloudflare.com/turnstile/troubleshooting/testing (the test
//! secret keys: `1x0000000000000000000000000000000AA` "always passes
//! validation", `2x...AA` "always fails validation", `3x...AA` returns
//! "token already spent"; the dummy site keys' token is
//! `XXXX.DUMMY.TOKEN.XXXX`, which a production secret refuses).
//!
//! Besides the test secrets the fake has one production-like secret,
//! [`SECRET`], that accepts only the tokens it issued ([`Siteverify::issue`]),
//! each once: what a real widget token is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const PASSES: &str = "1x0000000000000000000000000000000AA";
pub const FAILS: &str = "2x0000000000000000000000000000000AA";
pub const SPENT: &str = "3x0000000000000000000000000000000AA";
/// The fake's production-like secret: single-use tokens it issued.
pub const SECRET: &str = "0x4AAAAAAAfakeSecretForTheTestSuite";
/// What the test site keys' widget hands the page.
pub const DUMMY_TOKEN: &str = "XXXX.DUMMY.TOKEN.XXXX";

/// One check the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub secret: Option<String>,
    pub response: Option<String>,
    pub remoteip: Option<String>,
    pub idempotency_key: Option<String>,
    pub user_agent: Option<String>,
    pub success: bool,
}

#[derive(Default)]
pub struct Siteverify {
    pub checks: Mutex<Vec<Check>>,
    /// Tokens issued for [`SECRET`], and the idempotency key that redeemed each (once redeemed).
    issued: Mutex<HashMap<String, Option<Option<String>>>>,
}

fn fields(request: &Request) -> HashMap<String, String> {
    let content_type = request.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        body.as_object()
            .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default()
    } else {
        form_urlencoded::parse(&request.body).into_owned().collect()
    }
}

fn answer(success: bool, codes: &[&str]) -> ResponseTemplate {
    let mut body = json!({ "success": success, "error-codes": codes });
    if success {
        body["challenge_ts"] = json!("2026-12-01T00:00:00.000Z");
        body["hostname"] = json!("example.com");
    }
    ResponseTemplate::new(200).set_body_json(body)
}

impl Siteverify {
    fn judge(&self, f: &HashMap<String, String>) -> (bool, &'static str) {
        let (Some(secret), Some(token)) = (f.get("secret"), f.get("response")) else {
            return (false, if f.contains_key("secret") { "missing-input-response" } else { "missing-input-secret" });
        };
        if token.len() > 2048 {
            return (false, "invalid-input-response");
        }
        // The docs give the key as "a UUID"; what another answers is not
        // documented: the fake answers `bad-request` ("the request was
        // rejected because it was malformed").
        if f.get("idempotency_key").is_some_and(|k| uuid::Uuid::try_parse(k).is_err()) {
            return (false, "bad-request");
        }
        match secret.as_str() {
            // The test secrets ignore the token: no single use, no check.
            PASSES => (true, ""),
            FAILS => (false, "invalid-input-response"),
            SPENT => (false, "timeout-or-duplicate"),
            SECRET => {
                let key = f.get("idempotency_key").cloned();
                let mut issued = self.issued.lock().unwrap();
                match issued.get_mut(token) {
                    None => (false, "invalid-input-response"),
                    Some(redeemed @ None) => {
                        *redeemed = Some(key);
                        (true, "")
                    }
                    // A repeat with the same idempotency key gets the first answer again.
                    Some(Some(earlier)) if earlier.is_some() && *earlier == key => (true, ""),
                    Some(Some(_)) => (false, "timeout-or-duplicate"),
                }
            }
            _ => (false, "invalid-input-secret"),
        }
    }

    /// A fresh token, as a widget would hand the page, valid once with [`SECRET`].
    pub fn issue(&self) -> String {
        let token = format!("0.fake-widget-token.{}", crate::helpers::random_hex(32));
        self.issued.lock().unwrap().insert(token.clone(), None);
        token
    }

    /// The checks of `token`, oldest first.
    pub fn checks_of(&self, token: &str) -> Vec<Check> {
        self.checks.lock().unwrap().iter().filter(|c| c.response.as_deref() == Some(token)).cloned().collect()
    }
}

struct Answer(Arc<Siteverify>);

impl Respond for Answer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() != "POST" || request.url.path() != "/turnstile/v0/siteverify" {
            return ResponseTemplate::new(404);
        }
        let f = fields(request);
        let (success, code) = self.0.judge(&f);
        self.0.checks.lock().unwrap().push(Check {
            secret: f.get("secret").cloned(),
            response: f.get("response").cloned(),
            remoteip: f.get("remoteip").cloned(),
            idempotency_key: f.get("idempotency_key").cloned(),
            user_agent: request.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string),
            success,
        });
        if success {
            answer(true, &[])
        } else {
            answer(false, &[code])
        }
    }
}

/// Starts a fake siteverify; a test may mount a more specific answer first
/// (priority 1), e.g. an outage.
pub async fn start() -> (MockServer, Arc<Siteverify>) {
    let fake = Arc::new(Siteverify::default());
    let server = MockServer::builder().start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(Answer(fake.clone()))
        .with_priority(u8::MAX)
        .mount(&server)
        .await;
    (server, fake)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_fake_keeps_cloudflares_rules() {
        let s = Siteverify::default();
        let key = "5f0c3a1e-8d2b-4c7a-9e1f-0123456789ab";
        let token = s.issue();
        let check = |s: &Siteverify, pairs: &[(&str, &str)]| s.judge(&form(pairs));
        assert_eq!(check(&s, &[("secret", SECRET), ("response", &token), ("idempotency_key", key)]), (true, ""));
        assert_eq!(
            check(&s, &[("secret", SECRET), ("response", &token), ("idempotency_key", key)]),
            (true, ""),
            "the same key: the same answer"
        );
        assert_eq!(check(&s, &[("secret", SECRET), ("response", &token)]), (false, "timeout-or-duplicate"));
        assert_eq!(
            check(
                &s,
                &[
                    ("secret", SECRET),
                    ("response", &token),
                    ("idempotency_key", "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b")
                ]
            ),
            (false, "timeout-or-duplicate")
        );
        assert_eq!(check(&s, &[("secret", SECRET), ("response", DUMMY_TOKEN)]), (false, "invalid-input-response"));
        assert_eq!(check(&s, &[("secret", SECRET), ("response", "made-up")]), (false, "invalid-input-response"));
        for _ in 0..2 {
            assert_eq!(check(&s, &[("secret", PASSES), ("response", DUMMY_TOKEN)]), (true, ""), "always passes");
        }
        assert_eq!(check(&s, &[("secret", FAILS), ("response", DUMMY_TOKEN)]), (false, "invalid-input-response"));
        assert_eq!(check(&s, &[("secret", SPENT), ("response", DUMMY_TOKEN)]), (false, "timeout-or-duplicate"));
        assert_eq!(check(&s, &[("secret", "other"), ("response", "t4")]), (false, "invalid-input-secret"));
        assert_eq!(check(&s, &[("secret", PASSES)]), (false, "missing-input-response"));
        assert_eq!(check(&s, &[("response", "t5")]), (false, "missing-input-secret"));
        let long = "x".repeat(2049);
        assert_eq!(check(&s, &[("secret", PASSES), ("response", &long)]), (false, "invalid-input-response"));
        assert_eq!(
            check(&s, &[("secret", PASSES), ("response", "t6"), ("idempotency_key", "not-a-uuid")]),
            (false, "bad-request")
        );
    }
}
