//! The providers' wire formats: the HTTP request that sends a message, and
//! what a provider's answer means. Pure; `platform::delivery` performs it.

use base64ct::{Base64, Encoding};
use serde_json::json;

use super::message::EmailMessage;
use crate::config::{MailConfig, MailProvider, TwilioConfig, TwilioSender};

/// One HTTP request to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The mail APIs: Resend (`POST /emails`) and Postmark (`POST /email`).
pub fn mail_request(config: &MailConfig, to: &str, message: &EmailMessage) -> Option<ProviderRequest> {
    let key = config.api_key.as_ref()?.expose().to_string();
    let (path, auth, body) = match config.provider {
        MailProvider::Log => return None,
        MailProvider::Resend => (
            "/emails",
            ("authorization", format!("Bearer {key}")),
            json!({
                "from": config.from,
                "to": [to],
                "subject": message.subject,
                "text": message.text,
                "html": message.html,
            }),
        ),
        MailProvider::Postmark => (
            "/email",
            ("x-postmark-server-token", key),
            json!({
                "From": config.from,
                "To": to,
                "Subject": message.subject,
                "TextBody": message.text,
                "HtmlBody": message.html,
                "MessageStream": "outbound",
            }),
        ),
    };
    Some(ProviderRequest {
        url: format!("{}{path}", config.api_base),
        headers: vec![
            auth,
            ("content-type", "application/json".to_string()),
            ("accept", "application/json".to_string()),
        ],
        body: body.to_string(),
    })
}

/// Twilio's Messages API: form-encoded, HTTP Basic auth with the account SID.
pub fn twilio_request(config: &TwilioConfig, to: &str, text: &str) -> ProviderRequest {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("To", to);
    match &config.sender {
        TwilioSender::PhoneNumber(number) => form.append_pair("From", number),
        TwilioSender::MessagingService(sid) => form.append_pair("MessagingServiceSid", sid),
    };
    form.append_pair("Body", text);
    let credentials = format!("{}:{}", config.account_sid, config.auth_token.expose());
    ProviderRequest {
        url: format!("{}/2010-04-01/Accounts/{}/Messages.json", config.api_base, config.account_sid),
        headers: vec![
            ("authorization", format!("Basic {}", Base64::encode_string(credentials.as_bytes()))),
            ("content-type", "application/x-www-form-urlencoded".to_string()),
            ("accept", "application/json".to_string()),
        ],
        body: form.finish(),
    }
}

/// What a provider's answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// 429 or 5xx: worth one more try.
    Retry,
    /// Any other refusal; `provider_code` is Twilio's error code when given.
    Failed {
        status: u16,
        provider_code: Option<i64>,
    },
    /// Twilio says the number can never receive SMS.
    InvalidNumber {
        provider_code: i64,
    },
}

/// Twilio error codes for a number that is not a valid mobile number:
/// 21211 invalid 'To', 21614 not a mobile number, 21217 not a valid number,
/// 21401 invalid phone number.
const INVALID_NUMBER_CODES: [i64; 4] = [21211, 21614, 21217, 21401];

pub fn classify(status: u16, body: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        429 | 500..=599 => Outcome::Retry,
        _ => {
            // Twilio's error body: {code, message, more_info, status}.
            let provider_code = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("code").and_then(|c| c.as_i64()));
            match provider_code {
                Some(code) if INVALID_NUMBER_CODES.contains(&code) => Outcome::InvalidNumber { provider_code: code },
                _ => Outcome::Failed { status, provider_code },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn twilio(sender: TwilioSender) -> TwilioConfig {
        TwilioConfig {
            api_base: "http://127.0.0.1:9".into(),
            account_sid: "AC123".into(),
            auth_token: Secret::new("tok"),
            sender,
        }
    }

    #[test]
    fn twilio_request_is_form_encoded_with_basic_auth() {
        let r =
            twilio_request(&twilio(TwilioSender::PhoneNumber("+15005550006".into())), "+15551234567", "Code: 1 & 2");
        assert_eq!(r.url, "http://127.0.0.1:9/2010-04-01/Accounts/AC123/Messages.json");
        assert_eq!(r.body, "To=%2B15551234567&From=%2B15005550006&Body=Code%3A+1+%26+2");
        assert_eq!(r.headers[0], ("authorization", "Basic QUMxMjM6dG9r".to_string())); // AC123:tok
        let r = twilio_request(&twilio(TwilioSender::MessagingService("MG9".into())), "+15551234567", "x");
        assert_eq!(r.body, "To=%2B15551234567&MessagingServiceSid=MG9&Body=x");
    }

    #[test]
    fn mail_requests_follow_each_provider() {
        let msg = EmailMessage { subject: "S".into(), text: "T".into(), html: "H".into() };
        let mut cfg = MailConfig {
            provider: MailProvider::Resend,
            api_base: "https://api.resend.com".into(),
            api_key: Some(Secret::new("re_1")),
            from: "A <a@b.co>".into(),
        };
        let r = mail_request(&cfg, "u@x.io", &msg).unwrap();
        assert_eq!(r.url, "https://api.resend.com/emails");
        assert_eq!(r.headers[0], ("authorization", "Bearer re_1".to_string()));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body, json!({"from": "A <a@b.co>", "to": ["u@x.io"], "subject": "S", "text": "T", "html": "H"}));

        cfg.provider = MailProvider::Postmark;
        cfg.api_base = "https://api.postmarkapp.com".into();
        let r = mail_request(&cfg, "u@x.io", &msg).unwrap();
        assert_eq!(r.url, "https://api.postmarkapp.com/email");
        assert_eq!(r.headers[0], ("x-postmark-server-token", "re_1".to_string()));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["To"], "u@x.io");
        assert_eq!(body["TextBody"], "T");

        cfg.provider = MailProvider::Log;
        assert!(mail_request(&cfg, "u@x.io", &msg).is_none());
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(201, ""), Outcome::Sent);
        assert_eq!(classify(429, ""), Outcome::Retry);
        assert_eq!(classify(503, "<html>"), Outcome::Retry);
        assert_eq!(
            classify(400, r#"{"code":21211,"message":"Invalid 'To' Phone Number","status":400}"#),
            Outcome::InvalidNumber { provider_code: 21211 }
        );
        assert_eq!(classify(401, r#"{"code":20003}"#), Outcome::Failed { status: 401, provider_code: Some(20003) });
        assert_eq!(classify(422, "not json"), Outcome::Failed { status: 422, provider_code: None });
    }
}
