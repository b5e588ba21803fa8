//! When a provider refuses a code that is sent before the answer (register,
//! verify, reset): what the client is told, read from each provider's own
//! error body; what the log keeps (the provider's code, never its body or our
//! credentials); and how the one retry behaves (`Retry-After` honoured within
//! `DELIVERY_TIMEOUT_MS`, no quota retried, Resend's `Idempotency-Key` kept).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::ResponseTemplate;

use crate::delivery::{
    assert_code_withdrawn, assert_reveals_nothing, assert_send_failed, code_in, deliveries_to, header, message_text,
    provider_answers, request_code, twilio_error, ALWAYS, POSTMARK_AND_MESSAGING_SERVICE, PROVIDER_DETAIL,
};
use crate::delivery_queue::delivery_events;
use crate::helpers::{json_of, random_email, random_phone, spawn_app, TestApp};
use crate::providers;

/// Resend's error body, with details the client must never see.
fn resend_error(status: u16, name: &str, retry_after: Option<u32>) -> ResponseTemplate {
    providers::resend_error(status, name, &format!("refused ({PROVIDER_DETAIL})"), retry_after)
}

/// Postmark's error body, with details the client must never see.
fn postmark_error(status: u16, error_code: i64) -> ResponseTemplate {
    providers::postmark_error(status, error_code, &format!("refused ({PROVIDER_DETAIL})"), None)
}

/// The code sent in the one request the provider received for `destination`.
async fn only_code_sent_to(app: &TestApp, destination: &str) -> String {
    let calls = deliveries_to(app, destination).await;
    assert_eq!(calls.len(), 1, "one try, no retry, for {destination}");
    code_in(&message_text(&calls[0]))
}

/// The Worker's log lines about failed deliveries of `otp_id`; none of them
/// holds a credential, the provider's message or the code.
fn failure_log_lines(app: &TestApp, otp_id: &str, code: &str) -> Vec<Value> {
    let log = app.worker_log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["otp_id"] == otp_id)
        .filter(|l| l["event"] == "otp_delivery_error" || l["event"] == "delivery_misconfigured")
        .collect();
    for line in &lines {
        assert_reveals_nothing(&line.to_string(), code);
    }
    lines
}

#[tokio::test]
async fn numbers_twilio_says_cannot_get_an_sms_are_validation_errors_said_plainly_and_not_retried() {
    let app = spawn_app().await;

    for (twilio_code, message) in [
        (21211, "This phone number cannot receive SMS messages"),
        (21614, "This phone number cannot receive SMS messages"),
        (21635, "This phone number cannot receive SMS messages"),
        (21612, "This phone number cannot receive SMS messages"),
        (21408, "SMS to this phone number's country is not supported"),
    ] {
        let phone = random_phone();
        provider_answers(&app, &phone, twilio_error(400, twilio_code, "Refused"), ALWAYS).await;

        let (status, body) = json_of(request_code(&app, &phone, "register", None, None).await).await;

        assert_eq!(
            (status, &body),
            (400, &json!({ "code": "VALIDATION_ERROR", "message": message })),
            "Twilio {twilio_code}"
        );
        let code = only_code_sent_to(&app, &phone).await;
        let otp_id = assert_code_withdrawn(&app, &phone, &code).await;
        let logged = failure_log_lines(&app, &otp_id, &code);
        assert!(
            logged.iter().any(|l| l["reason"].as_str().unwrap().contains(&format!("twilio:{twilio_code}"))),
            "the log names Twilio's code {twilio_code}: {logged:?}"
        );
    }
}

#[tokio::test]
async fn a_recipient_who_replied_stop_is_told_to_reply_start() {
    let app = spawn_app().await;
    let phone = random_phone();
    provider_answers(&app, &phone, twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"), ALWAYS).await;

    let (status, body) = json_of(request_code(&app, &phone, "verify", None, None).await).await;

    assert_eq!((status, body["code"].as_str()), (400, Some("SMS_OPTED_OUT")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("reply START"), "{body}");
    let code = only_code_sent_to(&app, &phone).await;
    assert_reveals_nothing(&body.to_string(), &code);
    assert_code_withdrawn(&app, &phone, &code).await;
}

#[tokio::test]
async fn twilio_refusing_our_account_or_sender_is_send_failed_and_logged_as_a_configuration_error() {
    let app = spawn_app().await;

    for (status, twilio_code) in [(401, 20003), (400, 21606), (400, 21608)] {
        let phone = random_phone();
        provider_answers(&app, &phone, twilio_error(status, twilio_code, "Refused"), ALWAYS).await;

        assert_send_failed(request_code(&app, &phone, "reset", None, None).await, "phone").await;

        let code = only_code_sent_to(&app, &phone).await;
        let otp_id = assert_code_withdrawn(&app, &phone, &code).await;
        let logged = failure_log_lines(&app, &otp_id, &code);
        assert!(
            logged.iter().any(|l| l["event"] == "delivery_misconfigured"
                && l["level"] == "error"
                && l["reason"].as_str().unwrap().contains(&format!("twilio:{twilio_code}"))),
            "Twilio {twilio_code} is logged as a configuration error: {logged:?}"
        );
    }
}

#[tokio::test]
async fn an_address_postmark_marks_inactive_is_email_undeliverable_and_the_log_names_error_code_406() {
    let app = spawn_app_with_postmark().await;
    let email = random_email();
    provider_answers(&app, &email, postmark_error(422, 406), ALWAYS).await;

    let (status, body) = json_of(request_code(&app, &email, "register", None, None).await).await;

    assert_eq!((status, body["code"].as_str()), (400, Some("EMAIL_UNDELIVERABLE")), "{body}");
    let code = only_code_sent_to(&app, &email).await;
    assert_reveals_nothing(&body.to_string(), &code);
    let otp_id = assert_code_withdrawn(&app, &email, &code).await;
    let logged = failure_log_lines(&app, &otp_id, &code);
    assert!(logged.iter().any(|l| l["reason"].as_str().unwrap().contains("postmark:406")), "{logged:?}");
}

#[tokio::test]
async fn an_address_resend_refuses_is_email_undeliverable_and_the_log_names_resends_error() {
    let app = spawn_app().await;
    let email = random_email();
    provider_answers(&app, &email, resend_error(422, "validation_error", None), ALWAYS).await;

    let (status, body) = json_of(request_code(&app, &email, "register", None, None).await).await;

    assert_eq!((status, body["code"].as_str()), (400, Some("EMAIL_UNDELIVERABLE")), "{body}");
    let code = only_code_sent_to(&app, &email).await;
    let otp_id = assert_code_withdrawn(&app, &email, &code).await;
    let logged = failure_log_lines(&app, &otp_id, &code);
    assert!(logged.iter().any(|l| l["reason"].as_str().unwrap().contains("resend:validation_error")), "{logged:?}");
}

#[tokio::test]
async fn the_retry_after_a_resend_500_carries_the_same_idempotency_key_and_the_same_email() {
    let app = spawn_app().await;
    let email = random_email();
    provider_answers(&app, &email, resend_error(500, "internal_server_error", None), 1).await;

    let (status, body) = json_of(request_code(&app, &email, "register", None, None).await).await;

    assert_eq!(status, 200, "{body}");
    let calls = deliveries_to(&app, &email).await;
    assert_eq!(calls.len(), 2, "one refused try and one retry");
    let otp_id = body["otp_id"].as_str().unwrap();
    for call in &calls {
        assert_eq!(header(call, "idempotency-key"), otp_id, "Resend deduplicates by this key for 24 hours");
    }
    assert_eq!(calls[0].body, calls[1].body, "the same key must carry the same payload (Resend answers 409 otherwise)");
}

#[tokio::test]
async fn a_retry_after_that_fits_the_time_left_is_waited_for_then_the_code_goes_out() {
    let app = spawn_app().await;
    let phone = random_phone();
    let limited = twilio_error(429, 20429, "Too Many Requests").insert_header("retry-after", "1");
    provider_answers(&app, &phone, limited, 1).await;

    let started = Instant::now();
    let (status, body) = json_of(request_code(&app, &phone, "register", None, None).await).await;
    let took = started.elapsed();

    assert_eq!(status, 200, "{body}");
    assert_eq!(deliveries_to(&app, &phone).await.len(), 2);
    assert!(took >= Duration::from_millis(950), "Retry-After: 1 was not honoured: answered in {took:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_delivery_timeout_is_not_waited_for() {
    let app = spawn_app().await;
    let phone = random_phone();
    let limited = twilio_error(429, 20429, "Too Many Requests").insert_header("retry-after", "30");
    provider_answers(&app, &phone, limited, ALWAYS).await;

    let started = Instant::now();
    assert_send_failed(request_code(&app, &phone, "register", None, None).await, "phone").await;
    let took = started.elapsed();

    only_code_sent_to(&app, &phone).await;
    assert!(took < Duration::from_secs(5), "waited although 30 s exceed DELIVERY_TIMEOUT_MS (5 s): {took:?}");
}

#[tokio::test]
async fn resends_daily_quota_is_not_retried() {
    let app = spawn_app().await;
    let email = random_email();
    provider_answers(&app, &email, resend_error(429, "daily_quota_exceeded", Some(86_400)), ALWAYS).await;

    assert_send_failed(request_code(&app, &email, "verify", None, None).await, "email").await;

    let code = only_code_sent_to(&app, &email).await;
    let otp_id = assert_code_withdrawn(&app, &email, &code).await;
    let logged = failure_log_lines(&app, &otp_id, &code);
    assert!(logged.iter().any(|l| l["reason"].as_str().unwrap().contains("resend:daily_quota_exceeded")), "{logged:?}");
    let rows = delivery_events(&app, &otp_id, |rows| rows.iter().any(|r| r["event"] == "otp_delivery_failed")).await;
    assert_eq!(
        rows,
        [json!({
            "event": "otp_delivery_failed", "outcome": "quota_exceeded",
            "provider_code": "resend:daily_quota_exceeded", "attempt": 1
        })]
    );
}

async fn spawn_app_with_postmark() -> TestApp {
    crate::helpers::spawn_app_with(POSTMARK_AND_MESSAGING_SERVICE).await
}
