//! The providers' wire formats: the HTTP request that sends a message, and
//! what a provider's answer means. Pure; `platform::delivery` performs it.
//!
//! Each rule below cites the provider's own documentation or specification;
//! the black-box tests' fakes (tests/api/providers) enforce the same rules
//! against the vendored specs in tests/fixtures/providers.

use base64ct::{Base64, Encoding};
use serde_json::json;

use super::message::EmailMessage;
use super::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailProvider {
    Resend,
    Postmark,
    /// Prints messages to the console. Development only.
    Log,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    pub provider: MailProvider,
    pub api_base: String,
    /// Present whenever `provider` is not `Log`.
    pub api_key: Option<Secret>,
    pub from: String,
}

/// Where Twilio sends from: a `From` value (an E.164 number, a short code
/// or an alphanumeric sender ID), or a Messaging Service (which picks one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioSender {
    Address(String),
    MessagingService(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioConfig {
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: Secret,
    pub sender: TwilioSender,
}

/// Sent on every provider call. Resend refuses requests without a
/// `User-Agent` (403, error 1010: resend.com/docs/api-reference/introduction,
/// "User-Agent"), and a Worker's `fetch` sends none of its own.
pub const USER_AGENT: &str = concat!("otp-edge/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Resend,
    Postmark,
    Twilio,
    /// Cloudflare Turnstile's siteverify (not a delivery provider).
    Turnstile,
    /// The operator's webhook receiver (`flows::webhooks`; not a delivery provider).
    Webhook,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Resend => "resend",
            Provider::Postmark => "postmark",
            Provider::Twilio => "twilio",
            Provider::Turnstile => "turnstile",
            Provider::Webhook => "webhook",
        }
    }
}

/// One HTTP request to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequest {
    pub provider: Provider,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl ProviderRequest {
    /// Whether sending this request twice sends one message: only Resend
    /// with an `Idempotency-Key`, which it honours for 24 hours
    /// (resend.com/docs/dashboard/emails/idempotency-keys). Twilio's Messages
    /// API and Postmark have no such key, so a request whose fate is unknown
    /// (a timeout, a dropped connection) is not repeated to them.
    pub fn idempotent(&self) -> bool {
        self.headers.iter().any(|(name, _)| *name == "idempotency-key")
    }
}

/// The headers of every provider request, after its authentication.
fn common_headers(auth: (&'static str, String), content_type: &str) -> Vec<(&'static str, String)> {
    vec![
        auth,
        ("content-type", content_type.to_string()),
        ("accept", "application/json".to_string()),
        ("user-agent", USER_AGENT.to_string()),
    ]
}

/// The mail APIs: Resend (`POST /emails`) and Postmark (`POST /email`).
/// `idempotency_key` (the code's id) makes Resend send one email however
/// often the request is repeated, so a retry cannot send a code twice.
pub fn mail_request(
    config: &MailConfig,
    to: &str,
    message: &EmailMessage,
    idempotency_key: &str,
) -> Option<ProviderRequest> {
    let key = config.api_key.as_ref()?.expose().to_string();
    let request = match config.provider {
        MailProvider::Log => return None,
        MailProvider::Resend => {
            let mut headers = common_headers(("authorization", format!("Bearer {key}")), "application/json");
            // At most 256 characters (Resend, "invalid_idempotency_key"); an id is 36.
            headers.push(("idempotency-key", idempotency_key.chars().take(256).collect()));
            ProviderRequest {
                provider: Provider::Resend,
                url: format!("{}/emails", config.api_base),
                headers,
                body: json!({
                    "from": config.from,
                    "to": [to],
                    "subject": message.subject,
                    "text": message.text,
                    "html": message.html,
                })
                .to_string(),
            }
        }
        MailProvider::Postmark => ProviderRequest {
            provider: Provider::Postmark,
            url: format!("{}/email", config.api_base),
            headers: common_headers(("x-postmark-server-token", key), "application/json"),
            body: json!({
                "From": config.from,
                "To": to,
                "Subject": message.subject,
                "TextBody": message.text,
                "HtmlBody": message.html,
                "MessageStream": "outbound",
            })
            .to_string(),
        },
    };
    Some(request)
}

/// What an SMS asks of Twilio beside its text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmsOptions<'a> {
    /// `StatusCallback`: where Twilio reports delivered / undelivered / failed.
    pub status_callback: Option<&'a str>,
    /// `ValidityPeriod`: seconds the message may wait in Twilio's queue; a
    /// code sent after it expired would only confuse. Twilio accepts 1 to
    /// 36000 (CreateMessage in twilio_api_v2010.json).
    pub validity_period_seconds: Option<u64>,
}

/// Twilio's Messages API: form-encoded, HTTP Basic auth with the account SID
/// (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, CreateMessage).
pub fn twilio_request(config: &TwilioConfig, to: &str, text: &str, options: SmsOptions) -> ProviderRequest {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("To", to);
    match &config.sender {
        TwilioSender::Address(from) => form.append_pair("From", from),
        TwilioSender::MessagingService(sid) => form.append_pair("MessagingServiceSid", sid),
    };
    form.append_pair("Body", text);
    if let Some(url) = options.status_callback {
        form.append_pair("StatusCallback", url);
    }
    if let Some(seconds) = options.validity_period_seconds {
        form.append_pair("ValidityPeriod", &seconds.clamp(1, 36_000).to_string());
    }
    let credentials = format!("{}:{}", config.account_sid, config.auth_token.expose());
    ProviderRequest {
        provider: Provider::Twilio,
        url: format!("{}/2010-04-01/Accounts/{}/Messages.json", config.api_base, config.account_sid),
        headers: common_headers(
            ("authorization", format!("Basic {}", Base64::encode_string(credentials.as_bytes()))),
            "application/x-www-form-urlencoded",
        ),
        body: form.finish(),
    }
}

/// A provider's own name for an error, for the log: Twilio's numeric `code`,
/// Postmark's `ErrorCode`, Resend's `name`. Never the message or the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderCode {
    Number(i64),
    Name(String),
}

impl std::fmt::Display for ProviderCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderCode::Number(n) => write!(f, "{n}"),
            ProviderCode::Name(s) => f.write_str(s),
        }
    }
}

/// Why a recipient cannot get a message that way; retrying cannot help, and
/// the client can act on it (another number, another address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undeliverable {
    /// Not a number that can receive SMS: invalid, landline, not mobile, unreachable.
    NotSmsCapable,
    /// SMS to the number's country is not enabled on the account.
    RegionNotSupported,
    /// The recipient replied STOP; only they can undo it (by replying START).
    OptedOut,
    /// The mailbox bounced or unsubscribed before (Postmark's inactive recipient).
    MailboxInactive,
    /// The provider does not accept the address.
    InvalidAddress,
}

/// What a provider's answer means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// An outage or a rate limit: a later try may work, after
    /// `retry_after_seconds` when the provider said so.
    Transient {
        status: u16,
        code: Option<ProviderCode>,
        retry_after_seconds: Option<u64>,
    },
    /// A quota that is used up (Resend's daily or monthly quota): tried again
    /// only when the provider says when, and that is soon enough.
    Quota {
        status: u16,
        code: Option<ProviderCode>,
        retry_after_seconds: Option<u64>,
    },
    /// The recipient cannot receive it: the client's problem to solve.
    Undeliverable {
        reason: Undeliverable,
        status: u16,
        code: Option<ProviderCode>,
    },
    /// Our account or settings are wrong (credentials, sender, trial
    /// account): the operator's problem, logged as such.
    Misconfigured {
        status: u16,
        code: Option<ProviderCode>,
    },
    /// Any other refusal; repeating the same request cannot help.
    Refused {
        status: u16,
        code: Option<ProviderCode>,
    },
    /// No answer: the try timed out or the connection failed. The provider
    /// may or may not have sent the message.
    Unanswered {
        timed_out: bool,
    },
}

/// A provider's answer, as far as the rules need it.
#[derive(Debug, Clone, Copy)]
pub struct ProviderAnswer<'a> {
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<&'a str>,
    pub body: &'a str,
}

/// `Retry-After` in delta-seconds (RFC 9110 10.2.3), as Resend and Twilio
/// send it. An HTTP date is not used by either and is not trusted here.
pub fn retry_after_seconds(value: Option<&str>) -> Option<u64> {
    value?.trim().parse::<u64>().ok()
}

pub fn classify(provider: Provider, answer: &ProviderAnswer) -> Outcome {
    let status = answer.status;
    if (200..300).contains(&status) {
        return Outcome::Sent;
    }
    let body: serde_json::Value = serde_json::from_str(answer.body).unwrap_or_default();
    let retry_after = retry_after_seconds(answer.retry_after);
    match provider {
        Provider::Twilio => twilio(status, body.get("code").and_then(|c| c.as_i64()), retry_after),
        Provider::Postmark => postmark(status, body.get("ErrorCode").and_then(|c| c.as_i64()), retry_after),
        Provider::Resend => resend(status, body.get("name").and_then(|n| n.as_str()), retry_after),
        Provider::Turnstile | Provider::Webhook => by_status(status, None, retry_after),
    }
}

/// Twilio's create-message errors (twilio.com/docs/api/errors/<code>).
fn twilio(status: u16, code: Option<i64>, retry_after_seconds: Option<u64>) -> Outcome {
    let undeliverable = |reason| Outcome::Undeliverable { reason, status, code: code.map(ProviderCode::Number) };
    let provider_code = code.map(ProviderCode::Number);
    match code {
        // 21211 invalid 'To'; 21614 not a mobile number; 21635 a landline
        // (split from 21614 in 2024); 21612 not reachable by SMS; 21217 and
        // 21401 not a valid phone number.
        Some(21211 | 21614 | 21635 | 21612 | 21217 | 21401) => undeliverable(Undeliverable::NotSmsCapable),
        // 21408: permission to send to this region is not enabled (geo permissions).
        Some(21408) => undeliverable(Undeliverable::RegionNotSupported),
        // 21610: the recipient replied STOP.
        Some(21610) => undeliverable(Undeliverable::OptedOut),
        // 20003 authentication; 20404 no such account (a wrong SID); 21606 and
        // 21212 a 'From' that is not ours or not valid; 21659 'From' is not
        // a Twilio number; 21608 a trial account sending to an unverified
        // number; 21603/21604 a sender or 'To' missing; 21703/21704/21705 the
        // Messaging Service is unusable.
        Some(20003 | 20404 | 21606 | 21212 | 21659 | 21608 | 21603 | 21604 | 21703 | 21704 | 21705) => {
            Outcome::Misconfigured { status, code: provider_code }
        }
        // 20429 too many requests.
        Some(20429) => Outcome::Transient { status, code: provider_code, retry_after_seconds },
        _ => by_status(status, provider_code, retry_after_seconds),
    }
}

/// Postmark's API error codes (postmarkapp.com/developer/api/overview#error-codes).
fn postmark(status: u16, code: Option<i64>, retry_after_seconds: Option<u64>) -> Outcome {
    let provider_code = code.map(ProviderCode::Number);
    match code {
        // 406: inactive recipient (hard bounce, spam complaint or unsubscribe).
        Some(406) => Outcome::Undeliverable { reason: Undeliverable::MailboxInactive, status, code: provider_code },
        // 10 bad or missing server token; 400 sender signature not found; 401
        // sender signature not confirmed; 412 account pending approval; 1235
        // no such message stream.
        Some(10 | 400 | 401 | 412 | 1235) => Outcome::Misconfigured { status, code: provider_code },
        // 405: the account ran out of credits.
        Some(405) => Outcome::Quota { status, code: provider_code, retry_after_seconds },
        _ => by_status(status, provider_code, retry_after_seconds),
    }
}

/// Resend's error names (resend.com/docs/api-reference/errors).
fn resend(status: u16, name: Option<&str>, retry_after_seconds: Option<u64>) -> Outcome {
    let provider_code = name.map(|n| ProviderCode::Name(n.chars().take(64).collect()));
    match name {
        Some("daily_quota_exceeded" | "monthly_quota_exceeded") => {
            Outcome::Quota { status, code: provider_code, retry_after_seconds }
        }
        Some("rate_limit_exceeded") => Outcome::Transient { status, code: provider_code, retry_after_seconds },
        // 401/403: a missing, invalid or restricted key; 403 `validation_error`
        // is a sender domain that is not verified, or a test key sending to
        // others; `invalid_from_address` our sender.
        Some(
            "missing_api_key" | "invalid_api_key" | "restricted_api_key" | "invalid_from_address" | "invalid_access",
        ) => Outcome::Misconfigured { status, code: provider_code },
        Some("validation_error") if status == 401 || status == 403 => {
            Outcome::Misconfigured { status, code: provider_code }
        }
        // 422 `validation_error` / `invalid_to_address`: every field but `to`
        // is ours and fixed, so a refused field is the recipient's address.
        Some("invalid_to_address") => {
            Outcome::Undeliverable { reason: Undeliverable::InvalidAddress, status, code: provider_code }
        }
        Some("validation_error") if status == 422 => {
            Outcome::Undeliverable { reason: Undeliverable::InvalidAddress, status, code: provider_code }
        }
        _ => by_status(status, provider_code, retry_after_seconds),
    }
}

/// The HTTP status alone: 429 and 5xx may pass, 401/403 are our
/// credentials, other 4xx are refusals.
fn by_status(status: u16, code: Option<ProviderCode>, retry_after_seconds: Option<u64>) -> Outcome {
    match status {
        429 | 500..=599 => Outcome::Transient { status, code, retry_after_seconds },
        401 | 403 => Outcome::Misconfigured { status, code },
        _ => Outcome::Refused { status, code },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn twilio_config(sender: TwilioSender) -> TwilioConfig {
        TwilioConfig {
            api_base: "http://127.0.0.1:9".into(),
            account_sid: SID.into(),
            auth_token: Secret::new("tok"),
            sender,
        }
    }

    fn header<'a>(r: &'a ProviderRequest, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn answer(status: u16, body: &str) -> ProviderAnswer<'_> {
        ProviderAnswer { status, retry_after: None, body }
    }

    #[test]
    fn the_user_agent_names_this_service_and_its_version() {
        assert_eq!(USER_AGENT, format!("otp-edge/{}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn twilio_request_is_form_encoded_with_basic_auth_and_a_user_agent() {
        let config = twilio_config(TwilioSender::Address("+15005550006".into()));
        let r = twilio_request(&config, "+15551234567", "Code: 1 & 2", SmsOptions::default());
        assert_eq!(r.url, format!("http://127.0.0.1:9/2010-04-01/Accounts/{SID}/Messages.json"));
        assert_eq!(r.body, "To=%2B15551234567&From=%2B15005550006&Body=Code%3A+1+%26+2");
        let basic = Base64::encode_string(format!("{SID}:tok").as_bytes());
        assert_eq!(header(&r, "authorization"), Some(format!("Basic {basic}").as_str()));
        assert_eq!(header(&r, "content-type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(header(&r, "user-agent"), Some(USER_AGENT));
        assert!(!r.idempotent());

        let config = twilio_config(TwilioSender::MessagingService("MG9".into()));
        let options =
            SmsOptions { status_callback: Some("https://a.example/cb?otp_id=1"), validity_period_seconds: Some(300) };
        let r = twilio_request(&config, "+15551234567", "x", options);
        assert_eq!(
            r.body,
            "To=%2B15551234567&MessagingServiceSid=MG9&Body=x\
             &StatusCallback=https%3A%2F%2Fa.example%2Fcb%3Fotp_id%3D1&ValidityPeriod=300"
        );
        let r = twilio_request(
            &config,
            "+15551234567",
            "x",
            SmsOptions { status_callback: None, validity_period_seconds: Some(0) },
        );
        assert!(r.body.ends_with("&ValidityPeriod=1"), "Twilio's minimum: {}", r.body);
    }

    #[test]
    fn mail_requests_follow_each_provider_and_only_resend_is_idempotent() {
        let msg = EmailMessage { subject: "S".into(), text: "T".into(), html: "H".into() };
        let mut cfg = MailConfig {
            provider: MailProvider::Resend,
            api_base: "https://api.resend.com".into(),
            api_key: Some(Secret::new("re_1")),
            from: "A <a@b.co>".into(),
        };
        let r = mail_request(&cfg, "u@x.io", &msg, "otp-1").unwrap();
        assert_eq!(r.url, "https://api.resend.com/emails");
        assert_eq!(header(&r, "authorization"), Some("Bearer re_1"));
        assert_eq!(header(&r, "idempotency-key"), Some("otp-1"));
        assert_eq!(header(&r, "user-agent"), Some(USER_AGENT));
        assert!(r.idempotent());
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body, json!({"from": "A <a@b.co>", "to": ["u@x.io"], "subject": "S", "text": "T", "html": "H"}));

        cfg.provider = MailProvider::Postmark;
        cfg.api_base = "https://api.postmarkapp.com".into();
        let r = mail_request(&cfg, "u@x.io", &msg, "otp-1").unwrap();
        assert_eq!(r.url, "https://api.postmarkapp.com/email");
        assert_eq!(header(&r, "x-postmark-server-token"), Some("re_1"));
        assert_eq!(header(&r, "user-agent"), Some(USER_AGENT));
        assert_eq!(header(&r, "idempotency-key"), None);
        assert!(!r.idempotent());
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["To"], "u@x.io");
        assert_eq!(body["TextBody"], "T");
        assert_eq!(body["MessageStream"], "outbound");

        cfg.provider = MailProvider::Log;
        assert!(mail_request(&cfg, "u@x.io", &msg, "otp-1").is_none());
    }

    #[test]
    fn twilio_errors_are_told_apart_by_code() {
        let twilio_error = |status, code: i64| {
            let body = format!(
                r#"{{"code":{code},"message":"m","more_info":"https://www.twilio.com/docs/errors/{code}","status":{status}}}"#
            );
            classify(Provider::Twilio, &answer(status, &body))
        };
        for code in [21211, 21614, 21635, 21612, 21217, 21401] {
            assert!(
                matches!(twilio_error(400, code), Outcome::Undeliverable { reason: Undeliverable::NotSmsCapable, .. }),
                "{code}"
            );
        }
        assert!(matches!(
            twilio_error(400, 21408),
            Outcome::Undeliverable { reason: Undeliverable::RegionNotSupported, .. }
        ));
        assert_eq!(
            twilio_error(400, 21610),
            Outcome::Undeliverable {
                reason: Undeliverable::OptedOut,
                status: 400,
                code: Some(ProviderCode::Number(21610))
            }
        );
        for (status, code) in [(401, 20003), (400, 21606), (400, 21608), (404, 20404)] {
            assert_eq!(
                twilio_error(status, code),
                Outcome::Misconfigured { status, code: Some(ProviderCode::Number(code)) },
                "{code}"
            );
        }
        let limited = ProviderAnswer { status: 429, retry_after: Some("2"), body: r#"{"code":20429}"# };
        assert_eq!(
            classify(Provider::Twilio, &limited),
            Outcome::Transient { status: 429, code: Some(ProviderCode::Number(20429)), retry_after_seconds: Some(2) }
        );
        assert_eq!(
            classify(Provider::Twilio, &answer(503, "<html>")),
            Outcome::Transient { status: 503, code: None, retry_after_seconds: None }
        );
        assert_eq!(classify(Provider::Twilio, &answer(201, r#"{"sid":"SM1"}"#)), Outcome::Sent);
        assert_eq!(classify(Provider::Twilio, &answer(422, "not json")), Outcome::Refused { status: 422, code: None });
    }

    #[test]
    fn postmark_errors_are_told_apart_by_error_code() {
        let postmark_error = |status, code: i64| {
            classify(Provider::Postmark, &answer(status, &format!(r#"{{"ErrorCode":{code},"Message":"m"}}"#)))
        };
        assert_eq!(
            postmark_error(422, 406),
            Outcome::Undeliverable {
                reason: Undeliverable::MailboxInactive,
                status: 422,
                code: Some(ProviderCode::Number(406))
            }
        );
        assert_eq!(
            postmark_error(401, 10),
            Outcome::Misconfigured { status: 401, code: Some(ProviderCode::Number(10)) }
        );
        assert!(matches!(postmark_error(422, 405), Outcome::Quota { .. }));
        assert_eq!(postmark_error(422, 300), Outcome::Refused { status: 422, code: Some(ProviderCode::Number(300)) });
        assert!(matches!(postmark_error(500, 0), Outcome::Transient { .. }));
        assert_eq!(classify(Provider::Postmark, &answer(200, r#"{"ErrorCode":0,"Message":"OK"}"#)), Outcome::Sent);
    }

    #[test]
    fn resend_errors_are_told_apart_by_name_and_quotas_keep_their_retry_after() {
        let resend_error = |status, name: &str, retry_after| {
            let body = format!(r#"{{"statusCode":{status},"name":"{name}","message":"m"}}"#);
            classify(Provider::Resend, &ProviderAnswer { status, retry_after, body: &body })
        };
        let name = |n: &str| Some(ProviderCode::Name(n.to_string()));
        assert_eq!(
            resend_error(429, "daily_quota_exceeded", Some("86400")),
            Outcome::Quota { status: 429, code: name("daily_quota_exceeded"), retry_after_seconds: Some(86_400) }
        );
        assert!(matches!(resend_error(429, "monthly_quota_exceeded", None), Outcome::Quota { .. }));
        assert_eq!(
            resend_error(429, "rate_limit_exceeded", Some("1")),
            Outcome::Transient { status: 429, code: name("rate_limit_exceeded"), retry_after_seconds: Some(1) }
        );
        assert_eq!(
            resend_error(403, "invalid_api_key", None),
            Outcome::Misconfigured { status: 403, code: name("invalid_api_key") }
        );
        assert!(matches!(resend_error(403, "validation_error", None), Outcome::Misconfigured { .. }));
        assert!(matches!(
            resend_error(422, "validation_error", None),
            Outcome::Undeliverable { reason: Undeliverable::InvalidAddress, .. }
        ));
        assert!(matches!(resend_error(500, "internal_server_error", None), Outcome::Transient { .. }));
        assert_eq!(classify(Provider::Resend, &answer(200, r#"{"id":"4ef9"}"#)), Outcome::Sent);
    }

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        assert_eq!(retry_after_seconds(Some(" 30 ")), Some(30));
        assert_eq!(retry_after_seconds(Some("Wed, 21 Oct 2026 07:28:00 GMT")), None);
        assert_eq!(retry_after_seconds(Some("-1")), None);
        assert_eq!(retry_after_seconds(None), None);
    }
}
