//! Twilio's status callbacks: the URL each SMS asks Twilio to report to, the
//! check of Twilio's `X-Twilio-Signature`, and what a report says. Pure.
//!
//! Twilio signs every callback: base64 of HMAC-SHA1, keyed with the account's
//! auth token, over the full URL it called followed by each POST parameter's
//! name and value, sorted by name (twilio.com/docs/usage/webhooks/webhooks-security).

use base64ct::{Base64, Encoding};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::crypto::ct_eq;

/// Where Twilio reports the fate of each SMS.
pub const STATUS_CALLBACK_PATH: &str = "/api/webhooks/twilio/status";

/// The `StatusCallback` of the SMS carrying code `otp_id`. The id rides in
/// the URL, which Twilio's signature covers, so a report cannot be moved to
/// another code.
pub fn status_callback_url(public_base_url: &str, otp_id: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("otp_id", otp_id);
    format!("{public_base_url}{STATUS_CALLBACK_PATH}?{}", query.finish())
}

/// `X-Twilio-Signature` of a form POST to `url` with `params`.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Base64::encode_string(&mac.finalize().into_bytes())
}

/// Whether `signature` is Twilio's for this request, compared in constant time.
pub fn valid_twilio_signature(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    ct_eq(twilio_signature(auth_token, url, params).as_bytes(), signature.trim().as_bytes())
}

/// The fates worth recording; the intermediate ones (queued, sending,
/// sent, accepted ...) are acknowledged and not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalStatus {
    Delivered,
    Undelivered,
    Failed,
}

impl FinalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FinalStatus::Delivered => "delivered",
            FinalStatus::Undelivered => "undelivered",
            FinalStatus::Failed => "failed",
        }
    }
}

/// What a status callback reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub account_sid: String,
    pub status: Option<FinalStatus>,
    /// Twilio's error code for undelivered and failed messages (30003
    /// unreachable, 30005 unknown number, 30007 filtered ...): digits only.
    pub error_code: Option<String>,
    pub to: Option<String>,
}

pub fn status_report(params: &[(String, String)]) -> StatusReport {
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let status = match field("MessageStatus").or(field("SmsStatus")) {
        Some("delivered") => Some(FinalStatus::Delivered),
        Some("undelivered") => Some(FinalStatus::Undelivered),
        Some("failed") => Some(FinalStatus::Failed),
        _ => None,
    };
    let error_code =
        field("ErrorCode").filter(|c| !c.is_empty() && c.len() <= 8 && c.bytes().all(|b| b.is_ascii_digit()));
    StatusReport {
        account_sid: field("AccountSid").unwrap_or_default().to_string(),
        status,
        error_code: error_code.map(str::to_string),
        to: field("To").map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_callback_url_carries_the_code_id() {
        assert_eq!(
            status_callback_url("https://auth.acme.test", "5f0c-1"),
            "https://auth.acme.test/api/webhooks/twilio/status?otp_id=5f0c-1"
        );
    }

    #[test]
    fn signatures_cover_the_url_and_every_parameter_whatever_their_order() {
        let params = pairs(&[("MessageStatus", "delivered"), ("AccountSid", "AC1"), ("To", "+15551234567")]);
        let url = "https://auth.acme.test/api/webhooks/twilio/status?otp_id=1";
        let sig = twilio_signature("token", url, &params);
        let mut reordered = params.clone();
        reordered.reverse();
        assert!(valid_twilio_signature("token", url, &reordered, &sig));
        assert!(!valid_twilio_signature("other-token", url, &params, &sig));
        assert!(!valid_twilio_signature("token", &url.replace("otp_id=1", "otp_id=2"), &params, &sig));
        let mut forged = params.clone();
        forged[0].1 = "failed".into();
        assert!(!valid_twilio_signature("token", url, &forged, &sig));
        assert!(!valid_twilio_signature("token", url, &params, ""));
    }

    #[test]
    fn a_report_keeps_final_statuses_and_numeric_error_codes() {
        let r = status_report(&pairs(&[
            ("AccountSid", "AC1"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
            ("To", "+15551234567"),
        ]));
        assert_eq!(r.status, Some(FinalStatus::Undelivered));
        assert_eq!(r.error_code.as_deref(), Some("30003"));
        assert_eq!(r.account_sid, "AC1");
        assert_eq!(status_report(&pairs(&[("MessageStatus", "sent")])).status, None);
        assert_eq!(status_report(&pairs(&[("ErrorCode", "30003<script>")])).error_code, None);
    }
}
