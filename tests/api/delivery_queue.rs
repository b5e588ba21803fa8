//! Login codes under enumeration protection are delivered after the answer,
//! through the Worker's delivery queue (Cloudflare Queues, run locally by
//! `wrangler dev`): a provider that fails is tried again with backoff while
//! the code lives, exactly one message reaches the user, every try is in the
//! audit trail, and a code that cannot be delivered in time is withdrawn.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::delivery::{
    assert_code_withdrawn, assert_log_keeps_secrets, code_in, deliveries_to, header, message_text, provider_answers,
    provider_error, request_code, twilio_error, ALWAYS,
};
use crate::helpers::{
    assert_logged_in_as, json_of, random_email, random_phone, spawn_app, spawn_app_with, sql_str, Profile, TestApp,
};

/// Codes that live 40 s: the queue's backoff (2, 4, 8 ... s) and its rule of
/// not trying within 30 s of the expiry leave room for exactly three tries.
const FORTY_SECOND_CODES: Profile = Profile {
    name: "delivery-queue-40s-codes",
    vars: &[("OTP_TTL_EMAIL_SECONDS", "40"), ("OTP_TTL_PHONE_SECONDS", "40")],
};

/// The delivery events of a code (`otp_delivered`, `otp_delivery_retry`,
/// `otp_delivery_failed` ...), oldest first, once `done` holds for them:
/// they are written after the answer, and queued tries later still.
pub(crate) async fn delivery_events(app: &TestApp, otp_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let query = format!(
        "SELECT event, outcome, provider_code, attempt FROM audit_events \
         WHERE otp_id = {} AND event LIKE 'otp_deliver%' ORDER BY id",
        sql_str(otp_id)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = app.d1(&query).await;
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "delivery events of {otp_id} so far: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until the provider received `count` requests for `destination`.
async fn wait_for_calls(app: &TestApp, destination: &str, count: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let calls = deliveries_to(app, destination).await.len();
        if calls >= count || Instant::now() > deadline {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_login_email_the_provider_refuses_three_times_reaches_the_user_once_and_verifies() {
    let app = spawn_app().await;
    let email = random_email();
    let user_id = app.seed_user(&email, "active").await;
    // Each try is one call and, for a 503, one retry in the call.
    provider_answers(&app, &email, provider_error(&email, 503), 3).await;

    let (status, body) = json_of(request_code(&app, &email, "login", None, None).await).await;

    assert_eq!(status, 200, "{body}");
    let otp_id = body["otp_id"].as_str().unwrap().to_string();
    assert_eq!(wait_for_calls(&app, &email, 4, Duration::from_secs(20)).await, 4, "two tries of two calls");
    let events = delivery_events(&app, &otp_id, |rows| rows.iter().any(|r| r["event"] == "otp_delivered")).await;
    assert_eq!(
        events,
        [
            json!({ "event": "otp_delivery_retry", "outcome": "provider_unavailable",
                    "provider_code": "resend:internal_server_error", "attempt": 1 }),
            json!({ "event": "otp_delivered", "outcome": "ok", "provider_code": null, "attempt": 2 }),
        ]
    );
    // Nothing more is sent once the provider accepted the message.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = deliveries_to(&app, &email).await;
    assert_eq!(calls.len(), 4, "no call after the accepted one");
    assert_eq!(app.worker.providers.texts_sent_to(&email).len(), 1, "exactly one message sent");
    for call in &calls {
        assert_eq!(header(call, "idempotency-key"), otp_id, "every try is the same email to Resend");
        assert_eq!(call.body, calls[0].body);
    }
    let code = code_in(&message_text(&calls[3]));
    assert_logged_in_as(app.verify_otp(&otp_id, &code).await, &user_id).await;
}

#[tokio::test]
async fn a_login_email_that_never_goes_out_is_tried_while_it_can_arrive_in_time_then_withdrawn() {
    let app = spawn_app_with(FORTY_SECOND_CODES).await;
    let email = random_email();
    app.seed_user(&email, "active").await;
    provider_answers(&app, &email, provider_error(&email, 503), ALWAYS).await;

    let (status, body) = json_of(request_code(&app, &email, "login", None, None).await).await;

    // The same answer as a login whose email went out: nothing reveals the account.
    assert_eq!((status, &body["message"], &body["expires_in"]), (200, &json!("OTP sent to email"), &json!(40)));
    let otp_id = body["otp_id"].as_str().unwrap().to_string();
    let events = delivery_events(&app, &otp_id, |rows| rows.iter().any(|r| r["event"] == "otp_delivery_failed")).await;
    let retry = |attempt| {
        json!({ "event": "otp_delivery_retry", "outcome": "provider_unavailable",
                "provider_code": "resend:internal_server_error", "attempt": attempt })
    };
    assert_eq!(
        events,
        [
            retry(1),
            retry(2),
            json!({ "event": "otp_delivery_failed", "outcome": "provider_unavailable",
                    "provider_code": "resend:internal_server_error", "attempt": 3 }),
        ],
        "after tries at 0, 2 and 6 s, a try 8 s later would leave under 30 s of the code's 40"
    );
    let calls = deliveries_to(&app, &email).await;
    assert_eq!(calls.len(), 6, "three tries of two calls");
    let code = code_in(&message_text(&calls[0]));
    assert_eq!(assert_code_withdrawn(&app, &email, &code).await, otp_id);
    assert_log_keeps_secrets(&app, &otp_id, &code).await;
}

#[tokio::test]
async fn a_login_sms_to_a_number_that_replied_stop_is_withdrawn_without_a_retry() {
    let app = spawn_app().await;
    let phone = random_phone();
    app.seed_user(&phone, "active").await;
    provider_answers(&app, &phone, twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"), ALWAYS).await;

    let (status, body) = json_of(request_code(&app, &phone, "login", None, None).await).await;

    assert_eq!(status, 200, "{body}");
    let otp_id = body["otp_id"].as_str().unwrap().to_string();
    let events = delivery_events(&app, &otp_id, |rows| !rows.is_empty()).await;
    assert_eq!(
        events,
        [
            json!({ "event": "otp_delivery_failed", "outcome": "opted_out", "provider_code": "twilio:21610", "attempt": 1 })
        ]
    );
    let calls = deliveries_to(&app, &phone).await;
    assert_eq!(calls.len(), 1, "a refusal retrying cannot change is not retried");
    assert_code_withdrawn(&app, &phone, &code_in(&message_text(&calls[0]))).await;
}
