//! POST /api/auth/otp/verify/: the right code, once, in time, within three
//! attempts; what it yields depends on the purpose it was requested for.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    assert_error, assert_invalid_otp, assert_logged_in_as, json_of, random_email, random_hex, random_phone,
    random_uuid, spawn_app, spawn_app_with, wrong_code, TestApp, LONG_CODES, SHORT_TTL,
};

/// A 200 carrying a verification token that is not the OTP id.
async fn assert_verified(resp: reqwest::Response, otp_id: &str, message: &str) -> Value {
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], message);
    let token = body["verification_token"].as_str().unwrap_or_else(|| panic!("no verification_token: {body}"));
    assert!(!token.is_empty() && !token.contains(otp_id), "{body}");
    assert!(body.get("user").is_none() && body.get("access").is_none(), "not a login: {body}");
    body
}

#[tokio::test]
async fn registering_yields_a_token_for_the_normalized_destination() {
    let app = spawn_app().await;
    let tag = random_hex(10);
    let phone = random_phone();

    for (typed, normalized) in [
        (format!(" New-{}@Example.COM  ", tag.to_uppercase()), format!("new-{tag}@example.com")),
        (format!("{} {}-{}", &phone[..2], &phone[2..5], &phone[5..]), phone.clone()),
    ] {
        let (status, body) = json_of(app.request_otp(&typed, "register").await).await;
        assert_eq!(status, 200, "{body}");
        let otp_id = body["otp_id"].as_str().unwrap();
        let code = app.code_sent_to(&normalized).await;

        let body = assert_verified(app.verify_otp(otp_id, &code).await, otp_id, "OTP verified").await;
        assert_eq!(body["verified_destination"], normalized.as_str());
    }
}

#[tokio::test]
async fn verify_and_reset_codes_yield_a_verification_token() {
    let app = spawn_app().await;
    let mut tokens = Vec::new();

    for (purpose, destination) in [("verify", random_email()), ("reset", random_phone())] {
        if purpose == "reset" {
            // A reset code verifies only for an active account's destination.
            app.seed_user(&destination, "active").await;
        }
        let otp = app.otp_for(&destination, purpose).await;

        let body =
            assert_verified(app.verify_otp(&otp.id, &otp.code).await, &otp.id, "OTP verified successfully").await;
        tokens.push(body["verification_token"].clone());
    }
    assert_ne!(tokens[0], tokens[1]);
}

#[tokio::test]
async fn a_user_logs_in_with_the_code_from_the_email_or_the_sms() {
    let app = spawn_app().await;

    for destination in [random_email(), random_phone()] {
        let user_id = app.seed_user(&destination, "active").await;
        let otp = app.otp_for(&destination, "login").await;

        let resp = app
            .post_json(
                "/api/auth/otp/verify/",
                &json!({ "otp_id": otp.id, "otp_code": otp.code, "install_id": random_uuid(), "platform": "ios", "app_version": "2.1.0" }),
            )
            .await;

        assert_logged_in_as(resp, &user_id).await;
    }
}

#[tokio::test]
async fn three_wrong_codes_lock_the_code() {
    let app = spawn_app().await;
    let otp = app.otp_for(&random_phone(), "register").await;

    for _ in 0..3 {
        assert_invalid_otp(app.verify_otp(&otp.id, &wrong_code(&otp.code)).await, "Invalid OTP").await;
    }

    assert_invalid_otp(app.verify_otp(&otp.id, &otp.code).await, "Too many attempts").await;
}

#[tokio::test]
async fn surrounding_whitespace_in_the_code_is_ignored() {
    let app = spawn_app().await;
    let otp = app.otp_for(&random_email(), "verify").await;

    let resp = app.verify_otp(&otp.id, &format!(" {} \n", otp.code)).await;

    assert_eq!(json_of(resp).await.0, 200);
}

#[tokio::test]
async fn a_code_expires_after_its_ttl() {
    let app = spawn_app_with(SHORT_TTL).await;

    // In time: verified at once.
    let email = random_email();
    let (status, body) = json_of(app.request_otp(&email, "register").await).await;
    assert_eq!((status, &body["expires_in"]), (200, &json!(2)), "{body}");
    let code = app.code_sent_to(&email).await;
    assert_eq!(json_of(app.verify_otp(body["otp_id"].as_str().unwrap(), &code).await).await.0, 200);

    // Too late: a second past the two.
    let phone = random_phone();
    let requested = tokio::time::Instant::now();
    let (status, body) = json_of(app.request_otp(&phone, "register").await).await;
    assert_eq!((status, &body["expires_in"]), (200, &json!(2)), "{body}");
    let code = app.code_sent_to(&phone).await;
    tokio::time::sleep_until(requested + Duration::from_secs(3)).await;
    assert_invalid_otp(app.verify_otp(body["otp_id"].as_str().unwrap(), &code).await, "OTP expired").await;
}

#[tokio::test]
async fn a_reset_code_does_not_log_in_even_when_asked_to() {
    let app = spawn_app().await;
    let email = random_email();
    app.seed_user(&email, "active").await;
    let otp = app.otp_for(&email, "reset").await;

    let resp = app
        .post_json("/api/auth/otp/verify/", &json!({ "otp_id": otp.id, "otp_code": otp.code, "purpose": "login" }))
        .await;

    assert_verified(resp, &otp.id, "OTP verified successfully").await;
}

#[tokio::test]
async fn eight_digit_codes_when_so_configured() {
    let app = spawn_app_with(LONG_CODES).await;
    let otp = app.otp_for(&random_email(), "verify").await;
    assert_eq!(otp.code.len(), 8);

    assert_error(app.verify_otp(&otp.id, &otp.code[..6]).await, 400, "VALIDATION_ERROR").await;
    assert_eq!(json_of(app.verify_otp(&otp.id, &otp.code).await).await.0, 200);
}

/// Sends every code for `otp_id` at the same moment; the answers.
async fn verify_all_at_once(app: &TestApp, otp_id: &str, codes: Vec<String>) -> Vec<(u16, Value)> {
    let start = Arc::new(tokio::sync::Barrier::new(codes.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for code in codes {
        let (app, otp_id, start) = (app.clone(), otp_id.to_string(), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            json_of(app.verify_otp(&otp_id, &code).await).await
        });
    }
    tasks.join_all().await
}

/// How many answers are a refusal with this message.
fn refusals(answers: &[(u16, Value)], message: &str) -> usize {
    answers.iter().filter(|(s, b)| *s == 400 && b["code"] == "INVALID_OTP" && b["message"] == message).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_simultaneous_right_codes_succeed_once() {
    let app = spawn_app().await;
    let otp = app.otp_for(&random_email(), "verify").await;

    let answers = verify_all_at_once(&app, &otp.id, vec![otp.code.clone(); 10]).await;

    assert_eq!(answers.iter().filter(|(s, _)| *s == 200).count(), 1, "{answers:?}");
    assert_eq!(refusals(&answers, "OTP already used") + refusals(&answers, "Too many attempts"), 9, "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_simultaneous_wrong_codes_use_exactly_three_attempts() {
    let app = spawn_app().await;
    let otp = app.otp_for(&random_phone(), "verify").await;

    let answers = verify_all_at_once(&app, &otp.id, vec![wrong_code(&otp.code); 10]).await;

    assert_eq!(refusals(&answers, "Invalid OTP"), 3, "{answers:?}");
    assert_eq!(refusals(&answers, "Too many attempts"), 7, "{answers:?}");
    assert_eq!(app.otp_row(&otp.id).await["attempts"], 3);
}
