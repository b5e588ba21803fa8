//! Delivery receipts: with `PUBLIC_BASE_URL` set, each SMS asks Twilio to
//! report its fate (`StatusCallback`) and to drop it once the code expired
//! (`ValidityPeriod`); the callback endpoint believes only requests carrying
//! Twilio's signature for this account, and records the final statuses with
//! Twilio's error code in the audit trail.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::delivery::{deliveries_to, form, request_code};
use crate::helpers::{
    assert_error, json_of, random_hex, random_phone, spawn_app, spawn_app_with, sql_str, Profile, TestApp, TWILIO_SID,
    TWILIO_TOKEN, WORKER_ADDRESS,
};
use crate::providers;

/// Twilio may call back: the Worker's own address is its public base URL.
const STATUS_CALLBACKS: Profile =
    Profile { name: "twilio-status-callbacks", vars: &[("PUBLIC_BASE_URL", WORKER_ADDRESS)] };

const CALLBACK_PATH: &str = "/api/webhooks/twilio/status";

/// `X-Twilio-Signature` as Twilio documents it, by the fake's own signer
/// (checked against Twilio's published vectors), not the Worker's.
fn twilio_signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    providers::twilio::signature(auth_token, url, params)
}

/// Posts a status callback form to `url`, signed with `signature`.
async fn post_callback(
    app: &TestApp,
    url: &str,
    params: &[(&str, &str)],
    signature: Option<String>,
) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let mut request = app.client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body);
    if let Some(signature) = signature {
        request = request.header("x-twilio-signature", signature);
    }
    app.send(request).await
}

/// A register SMS to a new number; its `StatusCallback` and the form Twilio got.
async fn sms_with_callback(app: &TestApp) -> (String, String, Vec<(String, String)>) {
    let phone = random_phone();
    let (status, body) = json_of(request_code(app, &phone, "register", None, None).await).await;
    assert_eq!(status, 200, "{body}");
    let calls = deliveries_to(app, &phone).await;
    assert_eq!(calls.len(), 1);
    let sent = form(&calls[0]);
    let callback = sent.iter().find(|(k, _)| k == "StatusCallback").map(|(_, v)| v.clone()).expect("a StatusCallback");
    assert_eq!(callback, app.url(&format!("{CALLBACK_PATH}?otp_id={}", body["otp_id"].as_str().unwrap())));
    (phone, callback, sent)
}

fn report<'a>(phone: &'a str, status: &'a str, error_code: &'a str, message_sid: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", TWILIO_SID),
        ("ApiVersion", "2010-04-01"),
        ("ErrorCode", error_code),
        ("From", "+15005550006"),
        ("MessageSid", message_sid),
        ("MessageStatus", status),
        ("SmsSid", message_sid),
        ("SmsStatus", status),
        ("To", phone),
    ]
}

/// The `otp_delivery_status` events of a code, once `count` are stored.
async fn status_events(app: &TestApp, otp_id: &str, count: usize) -> Vec<Value> {
    let query = format!(
        "SELECT outcome, provider_code, destination FROM audit_events \
         WHERE otp_id = {} AND event = 'otp_delivery_status' ORDER BY id",
        sql_str(otp_id)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = app.d1(&query).await;
        if rows.len() >= count || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn each_sms_asks_for_its_receipt_and_is_dropped_by_twilio_once_the_code_expired() {
    let app = spawn_app_with(STATUS_CALLBACKS).await;

    let (_, _, sent) = sms_with_callback(&app).await;

    let validity: u64 = sent.iter().find(|(k, _)| k == "ValidityPeriod").unwrap().1.parse().unwrap();
    assert!((295..=300).contains(&validity), "ValidityPeriod {validity}: what is left of the 300 s code");
}

#[tokio::test]
async fn a_signed_receipt_of_an_undelivered_sms_is_recorded_with_twilios_error_code() {
    let app = spawn_app_with(STATUS_CALLBACKS).await;
    let (phone, callback, _) = sms_with_callback(&app).await;
    let otp_id = callback.rsplit_once("otp_id=").unwrap().1.to_string();
    let sid = format!("SM{}", random_hex(32));

    for (status, error_code) in [("sent", ""), ("undelivered", "30003")] {
        let params = report(&phone, status, error_code, &sid);
        let signature = twilio_signature(TWILIO_TOKEN, &callback, &params);
        let resp = post_callback(&app, &callback, &params, Some(signature)).await;
        assert_eq!(resp.status().as_u16(), 204, "{status}");
    }

    let events = status_events(&app, &otp_id, 1).await;
    assert_eq!(
        events,
        [json!({ "outcome": "undelivered", "provider_code": "twilio:30003", "destination": events[0]["destination"] })],
        "only the final status is kept"
    );
    let shown = events[0]["destination"].as_str().expect("the number, masked");
    assert!(shown.contains('*') && !shown.contains(&phone[4..phone.len() - 2]), "not masked: {shown}");
}

#[tokio::test]
async fn unsigned_forged_tampered_or_foreign_receipts_are_refused() {
    let app = spawn_app_with(STATUS_CALLBACKS).await;
    let (phone, callback, _) = sms_with_callback(&app).await;
    let otp_id = callback.rsplit_once("otp_id=").unwrap().1.to_string();
    let sid = format!("SM{}", random_hex(32));
    let params = report(&phone, "delivered", "", &sid);
    let other_account = format!("AC{}", "1".repeat(32));
    let mut foreign = params.clone();
    foreign[0] = ("AccountSid", &other_account);
    let mut tampered = params.clone();
    tampered[5] = ("MessageStatus", "failed");
    let elsewhere = callback.replace(&otp_id, "00000000-0000-4000-8000-000000000000");

    let cases = [
        ("unsigned", callback.clone(), params.clone(), None),
        (
            "signed with another token",
            callback.clone(),
            params.clone(),
            Some(twilio_signature("not-the-token", &callback, &params)),
        ),
        (
            "fields changed after signing",
            callback.clone(),
            tampered,
            Some(twilio_signature(TWILIO_TOKEN, &callback, &params)),
        ),
        (
            "signed for another code",
            elsewhere.clone(),
            params.clone(),
            Some(twilio_signature(TWILIO_TOKEN, &callback, &params)),
        ),
        (
            "another account",
            callback.clone(),
            foreign.clone(),
            Some(twilio_signature(TWILIO_TOKEN, &callback, &foreign)),
        ),
    ];
    for (case, url, params, signature) in cases {
        let message = assert_error(post_callback(&app, &url, &params, signature).await, 403, "SIGNATURE_INVALID").await;
        assert!(!message.contains(TWILIO_TOKEN), "{case}: {message}");
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status_events(&app, &otp_id, 0).await, Vec::<Value>::new(), "nothing refused is recorded");
}

#[tokio::test]
async fn without_a_public_base_url_no_receipt_is_asked_for_and_the_endpoint_is_not_there() {
    let app = spawn_app().await;
    let phone = random_phone();

    let (status, body) = json_of(request_code(&app, &phone, "register", None, None).await).await;

    assert_eq!(status, 200, "{body}");
    let sent = form(&deliveries_to(&app, &phone).await[0]);
    assert!(sent.iter().all(|(k, _)| k != "StatusCallback"), "{sent:?}");
    assert!(sent.iter().any(|(k, _)| k == "ValidityPeriod"), "{sent:?}");
    let params = report(&phone, "delivered", "", "SM00000000000000000000000000000000");
    let url = app.url(CALLBACK_PATH);
    let signature = twilio_signature(TWILIO_TOKEN, &url, &params);
    assert_error(post_callback(&app, &url, &params, Some(signature)).await, 404, "NOT_FOUND").await;
}
