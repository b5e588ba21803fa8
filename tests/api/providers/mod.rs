//! Fake Resend, Postmark and Twilio servers that keep the real services'
//! rules: a fake is only as good as its rules, so each refuses what the real
//! service refuses, with the real service's status and error body, and every
//! rule cites its source (`tests/fixtures/providers/README.md` lists them).
//! The request bodies are checked against the providers' own published
//! specifications, vendored under `tests/fixtures/providers/`.
//!
//! On each fake server (wiremock) three kinds of mock answer, tried in this
//! order. wiremock 0.6 sorts its mocks by priority on every request with a
//! stable sort, so among equal priorities the one mounted first is tried
//! first (`MountedMockSet::handle_request`, and `Mock::with_priority`'s doc):
//! 1. the contract check, priority 1, mounted when the server starts, so
//!    before any test's own mock: it matches a request the real service
//!    would refuse, answers the real refusal, and records the violation; it
//!    also answers an idempotent Resend retry with the original answer;
//! 2. a test's answer for its destination (`provider_answers` in
//!    delivery.rs), priority 1, mounted later: only for requests that kept
//!    the contract;
//! 3. the default answer, priority 255: the real success body, and the
//!    message recorded as delivered.
//!
//! The contract check's matcher runs exactly once per request (it is always
//! tried first), so it also records breaches of rules the real service does
//! not enforce itself (this project's `User-Agent`, a Twilio parameter that
//! Twilio would silently ignore): those requests are answered as the real
//! service would, and still fail the test through the recorded violation.

pub mod postmark;
pub mod resend;
pub mod spec;
#[cfg(test)]
mod tests;
pub mod turnstile;
pub mod twilio;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{TestApp, MAIL_KEY, TWILIO_SID, TWILIO_TOKEN};

/// What this project sends as `User-Agent` to every provider.
pub const USER_AGENT: &str = concat!("otp-edge/", env!("CARGO_PKG_VERSION"));
/// This project's own rule (Resend's is only "present": `resend::USER_AGENT_REQUIRED`).
pub const PROJECT_USER_AGENT_RULE: &str =
    "tests/fixtures/providers/README.md, project rule: every provider call carries User-Agent: otp-edge/<crate version>";

/// The credentials the fakes accept: the ones the suite's Workers are given.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub mail_key: String,
    pub twilio_sid: String,
    pub twilio_token: String,
}

impl Default for Credentials {
    fn default() -> Credentials {
        Credentials { mail_key: MAIL_KEY.into(), twilio_sid: TWILIO_SID.into(), twilio_token: TWILIO_TOKEN.into() }
    }
}

/// One rule a request broke.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub rule: &'static str,
    /// Where the rule is documented: a URL, or a spec path and version.
    pub source: &'static str,
    pub detail: String,
}

impl Breach {
    pub fn new(rule: &'static str, source: &'static str, detail: impl Into<String>) -> Breach {
        Breach { rule, source, detail: detail.into() }
    }
}

/// An HTTP answer of a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Body,
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    Text(String),
}

impl Answer {
    pub fn json(status: u16, body: Value) -> Answer {
        Answer { status, body: Body::Json(body), headers: vec![] }
    }

    pub fn text(status: u16, body: &str) -> Answer {
        Answer { status, body: Body::Text(body.into()), headers: vec![] }
    }

    pub fn json_body(&self) -> &Value {
        match &self.body {
            Body::Json(v) => v,
            Body::Text(t) => panic!("a text answer, not JSON: {t}"),
        }
    }

    pub fn template(&self) -> ResponseTemplate {
        let template = match &self.body {
            Body::Json(v) => ResponseTemplate::new(self.status).set_body_json(v),
            Body::Text(t) => ResponseTemplate::new(self.status).set_body_raw(t.clone(), "text/plain; charset=UTF-8"),
        };
        self.headers.iter().fold(template, |t, (k, v)| t.insert_header(*k, v.as_str()))
    }
}

/// What checking one request against its provider's rules found.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub provider: &'static str,
    /// Who the message is for (addresses without a display name, or numbers).
    pub destinations: Vec<String>,
    /// The text that carries the code: Resend `text`, Postmark `TextBody`, Twilio `Body`.
    pub text: Option<String>,
    pub breaches: Vec<Breach>,
    /// How the real service refuses the request, if it does.
    pub refusal: Option<Answer>,
    /// Resend's `Idempotency-Key` and the payload it covers.
    pub idempotency: Option<(String, Value)>,
}

impl Checked {
    pub fn new(provider: &'static str) -> Checked {
        Checked { provider, ..Default::default() }
    }

    /// Records a breach the real service answers with `answer`; the first such answer wins.
    pub fn refuse(&mut self, breach: Breach, answer: Answer) {
        self.breaches.push(breach);
        self.refusal.get_or_insert(answer);
    }

    /// Records a breach the real service does not refuse.
    pub fn flag(&mut self, breach: Breach) {
        self.breaches.push(breach);
    }

    /// The rules broken, one a line.
    pub fn describe(&self) -> String {
        self.breaches.iter().map(|b| format!("{}: {} [{}]", b.rule, b.detail, b.source)).collect::<Vec<_>>().join("\n")
    }
}

/// A header's value, if present and text.
pub fn header<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// This project's `User-Agent` rule, for the providers that do not require one themselves.
pub fn check_project_user_agent(request: &Request, checked: &mut Checked) {
    match header(request, "user-agent") {
        Some(USER_AGENT) => {}
        Some(other) => checked.flag(Breach::new(
            "User-Agent is otp-edge/<crate version>",
            PROJECT_USER_AGENT_RULE,
            format!("User-Agent is {other:?}, not {USER_AGENT:?}"),
        )),
        None => checked.flag(Breach::new(
            "User-Agent is present",
            PROJECT_USER_AGENT_RULE,
            format!("no User-Agent header (expected {USER_AGENT:?})"),
        )),
    }
}

/// A broken rule as recorded by a fake server.
#[derive(Debug, Clone)]
pub struct Violation {
    pub provider: &'static str,
    pub destinations: Vec<String>,
    pub request: String,
    pub breach: Breach,
    /// The status the fake answered (the real refusal, or the success answer).
    pub answered: Option<u16>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let answered =
            self.answered.map_or("answered by the default or a test's mock".into(), |s| format!("answered {s}"));
        write!(
            f,
            "{} {} ({answered}): broke \"{}\": {}\n    source: {}",
            self.provider, self.request, self.breach.rule, self.breach.detail, self.breach.source
        )
    }
}

/// A message the fake accepted and, as the real service would, sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub destinations: Vec<String>,
    pub text: String,
}

/// Resend keeps an idempotency key 24 hours (resend::IDEMPOTENCY_SOURCE).
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone)]
struct Stored {
    payload: Value,
    answer: Answer,
    at: SystemTime,
}

#[derive(Default)]
struct State {
    violations: Vec<Violation>,
    sent: Vec<Sent>,
    idempotency: HashMap<String, Stored>,
}

/// How a fake answers a request, before any test's mock.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The real service's refusal.
    Refuse(Answer),
    /// Resend's answer to an idempotent retry: the original answer, nothing sent again.
    Replay(Answer),
    /// The request kept the contract: a test's mock or the default answer.
    Pass,
}

/// One fake server's rules and records.
pub struct Fake {
    pub name: &'static str,
    credentials: Credentials,
    state: Mutex<State>,
}

impl Fake {
    pub fn new(name: &'static str, credentials: Credentials) -> Arc<Fake> {
        Arc::new(Fake { name, credentials, state: Default::default() })
    }

    /// Checks a request against the rules of the provider its path belongs to.
    pub fn check(&self, request: &Request) -> Checked {
        let path = request.url.path();
        if self.name == "sms" {
            twilio::check(request, &self.credentials)
        } else if path == "/email" || path.starts_with("/email/") {
            postmark::check(request, &self.credentials)
        } else {
            resend::check(request, &self.credentials)
        }
    }

    /// The check, and for Resend the idempotency rules, which need what was sent before.
    pub fn verdict(&self, request: &Request, now: SystemTime) -> (Checked, Verdict) {
        let mut checked = self.check(request);
        if let Some(answer) = checked.refusal.clone() {
            return (checked, Verdict::Refuse(answer));
        }
        if let Some((key, payload)) = &checked.idempotency {
            let state = self.state.lock().unwrap();
            let stored = state
                .idempotency
                .get(key)
                .filter(|s| now.duration_since(s.at).unwrap_or_default() < IDEMPOTENCY_WINDOW);
            if let Some(stored) = stored {
                if &stored.payload != payload {
                    let answer = resend::invalid_idempotent_request();
                    checked.refuse(
                        Breach::new(
                            "the same Idempotency-Key is only reused with the same payload",
                            resend::IDEMPOTENCY_SOURCE,
                            format!("Idempotency-Key {key:?} was used with another payload"),
                        ),
                        answer.clone(),
                    );
                    return (checked, Verdict::Refuse(answer));
                }
                return (checked, Verdict::Replay(stored.answer.clone()));
            }
        }
        (checked, Verdict::Pass)
    }

    fn record_breaches(&self, request: &Request, checked: &Checked, answered: Option<u16>) {
        let summary = format!("{} {}", request.method, request.url.path());
        let mut state = self.state.lock().unwrap();
        for breach in &checked.breaches {
            state.violations.push(Violation {
                provider: checked.provider,
                destinations: checked.destinations.clone(),
                request: summary.clone(),
                breach: breach.clone(),
                answered,
            });
        }
    }

    /// Every violation recorded so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.state.lock().unwrap().violations.clone()
    }

    /// Violations by requests for `destination`, or whose destination could not be read.
    pub fn violations_for(&self, destination: &str) -> Vec<Violation> {
        let all = self.violations();
        all.into_iter()
            .filter(|v| v.destinations.is_empty() || v.destinations.iter().any(|d| d == destination))
            .collect()
    }

    /// The messages accepted and sent, oldest first.
    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    /// The real success answer for a request that kept the contract; records it as sent.
    fn accept(&self, request: &Request, now: SystemTime) -> Answer {
        let checked = self.check(request);
        let answer = match checked.provider {
            "Twilio" => twilio::created(request, &self.credentials),
            "Postmark" => postmark::accepted(&checked),
            _ => resend::accepted(),
        };
        let mut state = self.state.lock().unwrap();
        state
            .sent
            .push(Sent { destinations: checked.destinations.clone(), text: checked.text.clone().unwrap_or_default() });
        if let Some((key, payload)) = checked.idempotency {
            state.idempotency.insert(key, Stored { payload, answer: answer.clone(), at: now });
        }
        answer
    }
}

/// Mock 1: matches what the contract check answers itself (see the module comment).
struct ContractCheck(Arc<Fake>);

impl Match for ContractCheck {
    fn matches(&self, request: &Request) -> bool {
        let (checked, verdict) = self.0.verdict(request, SystemTime::now());
        let answered = match &verdict {
            Verdict::Refuse(a) | Verdict::Replay(a) => Some(a.status),
            Verdict::Pass => None,
        };
        self.0.record_breaches(request, &checked, answered);
        verdict != Verdict::Pass
    }
}

impl Respond for ContractCheck {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match self.0.verdict(request, SystemTime::now()).1 {
            Verdict::Refuse(answer) | Verdict::Replay(answer) => answer.template(),
            Verdict::Pass => unreachable!("the contract check answers only what it matched"),
        }
    }
}

/// Mock 3: the real success answer.
struct Accept(Arc<Fake>);

impl Respond for Accept {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.accept(request, SystemTime::now()).template()
    }
}

/// The two fakes of one Worker: the mail API (Resend and Postmark) and Twilio.
#[derive(Clone)]
pub struct Fakes {
    pub mail: Arc<Fake>,
    pub sms: Arc<Fake>,
}

/// Starts a fake mail API and a fake Twilio, each with its contract check and default answer.
pub async fn start_fakes() -> (MockServer, MockServer, Fakes) {
    let fakes =
        Fakes { mail: Fake::new("mail", Credentials::default()), sms: Fake::new("sms", Credentials::default()) };
    let mail = serve(fakes.mail.clone()).await;
    let sms = serve(fakes.sms.clone()).await;
    (mail, sms, fakes)
}

pub async fn serve(fake: Arc<Fake>) -> MockServer {
    let server = MockServer::builder().start().await;
    // Mounted first, so tried before any test's priority-1 mock (see the module comment).
    Mock::given(ContractCheck(fake.clone()))
        .respond_with(ContractCheck(fake.clone()))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any()).respond_with(Accept(fake)).with_priority(u8::MAX).mount(&server).await;
    server
}

impl Fakes {
    /// Texts of the messages sent to `destination`, oldest first (refused
    /// requests and idempotent replays sent nothing).
    pub fn texts_sent_to(&self, destination: &str) -> Vec<String> {
        let sent = self.mail.sent().into_iter().chain(self.sms.sent());
        sent.filter(|s| s.destinations.iter().any(|d| d == destination)).map(|s| s.text).collect()
    }

    fn violations_for(&self, destination: &str) -> Vec<Violation> {
        self.mail.violations_for(destination).into_iter().chain(self.sms.violations_for(destination)).collect()
    }
}

/// Fails with every violation, naming the rule and its source.
fn assert_none(violations: &[Violation], whose: &str) {
    if !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(|v| format!("  - {v}")).collect();
        panic!(
            "the Worker broke the provider contract {whose} ({} violation(s)); the real service would refuse or \
             mishandle these requests:\n{}",
            violations.len(),
            list.join("\n")
        );
    }
}

impl TestApp {
    /// No request the Worker sent to a fake provider broke a rule of the real
    /// service (or this project's), for any destination: on a shared Worker,
    /// other tests' requests count too.
    #[allow(dead_code)] // for tests to call
    pub fn assert_provider_contract_kept(&self) {
        let fakes = &self.worker.providers;
        let all: Vec<Violation> = fakes.mail.violations().into_iter().chain(fakes.sms.violations()).collect();
        assert_none(&all, "on this Worker's fake providers");
    }

    /// No request for `destination` (or without a readable destination) broke a rule.
    pub fn assert_provider_contract_kept_for(&self, destination: &str) {
        assert_none(&self.worker.providers.violations_for(destination), &format!("for {destination}"));
    }
}

// ---------------------------------------------------------------------------
// Realistic failures for tests to mount
// ---------------------------------------------------------------------------

/// Resend's error body `{statusCode, name, message}` (resend::ERRORS_SOURCE),
/// with `retry-after` when given (Resend's rate-limit headers are lower-case:
/// https://resend.com/docs/api-reference/rate-limit).
pub fn resend_error(status: u16, name: &str, message: &str, retry_after: Option<u32>) -> ResponseTemplate {
    let template = resend::error(status, name, message).template();
    match retry_after {
        Some(s) => template.insert_header("retry-after", s.to_string().as_str()),
        None => template,
    }
}

/// Postmark's error body `{ErrorCode, Message}` (postmark::ERRORS_SOURCE), with `Retry-After` when given.
pub fn postmark_error(status: u16, error_code: i64, message: &str, retry_after: Option<u32>) -> ResponseTemplate {
    let template = postmark::error(status, error_code, message).template();
    match retry_after {
        Some(s) => template.insert_header("Retry-After", s.to_string().as_str()),
        None => template,
    }
}

/// Twilio's error body `{code, message, more_info, status}` (https://www.twilio.com/docs/usage/twilios-response), with `Retry-After` when given.
pub fn twilio_error(status: u16, code: i64, message: &str, retry_after: Option<u32>) -> ResponseTemplate {
    let template = twilio::error(status, code, message).template();
    match retry_after {
        Some(s) => template.insert_header("Retry-After", s.to_string().as_str()),
        None => template,
    }
}

/// `Name <address>` or `address`: the address.
pub fn bare_address(mailbox: &str) -> String {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(open), Some(close)) if open < close => mailbox[open + 1..close].trim().to_string(),
        _ => mailbox.trim().to_string(),
    }
}

/// A plausible email address, as the providers check them: `Name <local@domain>` or `local@domain`.
pub fn is_mailbox(mailbox: &str) -> bool {
    let address = bare_address(mailbox);
    let Some((local, domain)) = address.split_once('@') else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
}

/// A JSON value's type, as a JSON Schema names it.
pub fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A Twilio-style SID: the prefix and 32 hex digits.
pub fn random_sid(prefix: &str) -> String {
    format!("{prefix}{}", crate::helpers::random_hex(32))
}
