//! POST /api/auth/otp/request/: a code goes out by email or SMS, and the
//! answer says where (masked) and for how long.

use serde_json::json;

use crate::helpers::{
    assert_error, assert_invalid_otp, assert_logged_in_as, is_uuid, json_of, random_digits, random_email, random_hex,
    random_phone, spawn_app, spawn_app_with, Otp, TestApp, TEST_IDS,
};

/// The answer to a request that sent a code by `channel`, living `ttl` seconds,
/// and the code that was sent.
async fn assert_code_sent(app: &TestApp, resp: reqwest::Response, destination: &str, channel: &str, ttl: u64) -> Otp {
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["destination_masked", "expires_in", "message", "otp_id"], "{body}");
    assert_eq!(body["message"], format!("OTP sent to {channel}"));
    assert!(is_uuid(body["otp_id"].as_str().unwrap()), "{body}");
    assert_eq!(body["expires_in"], ttl);
    let masked = body["destination_masked"].as_str().unwrap();
    assert!(masked.contains('*') && masked != destination, "{masked} does not hide {destination}");
    Otp { id: body["otp_id"].as_str().unwrap().to_string(), code: app.code_sent_to(destination).await }
}

#[tokio::test]
async fn a_user_gets_a_login_code_by_email_valid_ten_minutes() {
    let app = spawn_app().await;
    let email = random_email();
    app.seed_user(&email, "active").await;

    let resp = app.request_otp(&email, "login").await;

    assert_code_sent(&app, resp, &email, "email", 600).await;
}

#[tokio::test]
async fn a_user_gets_a_login_code_by_sms_valid_five_minutes() {
    let app = spawn_app().await;
    let phone = random_phone();
    app.seed_user(&phone, "active").await;

    let resp = app.request_otp(&phone, "login").await;

    assert_code_sent(&app, resp, &phone, "phone", 300).await;
}

#[tokio::test]
async fn destinations_are_masked_like_the_reference() {
    let app = spawn_app().await;

    for (destination, masked) in [("user1@example.com", "u***1@example.com"), ("+1234567890", "+12*****890")] {
        let (status, body) = json_of(app.request_otp(destination, "register").await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["destination_masked"], masked);
    }
}

#[tokio::test]
async fn without_a_purpose_the_code_is_for_login() {
    let app = spawn_app().await;
    let email = random_email();
    let user_id = app.seed_user(&email, "active").await;

    let resp = app.post_json("/api/auth/otp/request/", &json!({ "destination": email })).await;

    let otp = assert_code_sent(&app, resp, &email, "email", 600).await;
    assert_logged_in_as(app.verify_otp(&otp.id, &otp.code).await, &user_id).await;
}

#[tokio::test]
async fn register_verify_and_reset_codes_are_sent_without_an_account() {
    let app = spawn_app().await;

    for (purpose, destination) in [
        ("register", random_email()),
        ("register", random_phone()),
        ("verify", random_email()),
        ("reset", random_phone()),
    ] {
        let (channel, ttl) = if destination.contains('@') { ("email", 600) } else { ("phone", 300) };
        let resp = app.request_otp(&destination, purpose).await;
        assert_code_sent(&app, resp, &destination, channel, ttl).await;
    }
}

#[tokio::test]
async fn an_email_address_is_the_same_whatever_its_case_and_surrounding_spaces() {
    let app = spawn_app().await;
    let tag = random_hex(10);
    let email = format!("alice-{tag}@example.com");
    let user_id = app.seed_user(&email, "active").await;

    let messy = format!("  Alice-{}@Example.COM ", tag.to_uppercase());
    let (status, body) = json_of(app.request_otp(&messy, "login").await).await;
    assert_eq!(status, 200, "{body}");

    // The message goes to the normalized address, and the code logs the user in.
    let code = app.code_sent_to(&email).await;
    assert_logged_in_as(app.verify_otp(body["otp_id"].as_str().unwrap(), &code).await, &user_id).await;
}

#[tokio::test]
async fn a_phone_number_is_the_same_however_it_is_punctuated() {
    let app = spawn_app().await;
    let (a, b) = (random_digits(3), random_digits(4));
    let phone = format!("+1555{a}{b}");
    let user_id = app.seed_user(&phone, "active").await;

    let first = json_of(app.request_otp(&format!("+1 (555) {a}-{b}"), "login").await).await.1;
    let first_code = app.code_sent_to(&phone).await;
    let second = json_of(app.request_otp(&format!("+1.555.{a}.{b}"), "login").await).await.1;
    let second_code = app.code_sent_to(&phone).await;

    // Both went To the E.164 number; the second superseded the first, so they
    // are one destination; and it is the seeded user's.
    assert_invalid_otp(app.verify_otp(first["otp_id"].as_str().unwrap(), &first_code).await, "OTP expired").await;
    assert_logged_in_as(app.verify_otp(second["otp_id"].as_str().unwrap(), &second_code).await, &user_id).await;
}

#[tokio::test]
async fn every_spelling_of_a_number_counts_toward_its_one_rate_limit() {
    let app = spawn_app().await;
    let (a, b) = (random_digits(3), random_digits(4));
    let spellings = [format!("+1555{a}{b}"), format!("+1 (555) {a}-{b}"), format!("+1.555.{a}.{b}")];

    // Asking in one spelling until refused...
    let mut refused = None;
    for _ in 0..20 {
        let resp = app.request_otp(&spellings[1], "register").await;
        if resp.status() != 200 {
            refused = Some(resp);
            break;
        }
    }
    assert_error(refused.expect("never rate-limited"), 429, "RATE_LIMIT").await;

    // ...refuses the others too.
    for spelling in [&spellings[0], &spellings[2]] {
        assert_error(app.request_otp(spelling, "register").await, 429, "RATE_LIMIT").await;
    }
}

#[tokio::test]
async fn a_new_code_replaces_the_pending_one_for_the_same_purpose() {
    let app = spawn_app().await;
    let email = random_email();

    let old = app.otp_for(&email, "register").await;
    let new = app.otp_for(&email, "register").await;

    assert_invalid_otp(app.verify_otp(&old.id, &old.code).await, "OTP expired").await;
    assert_eq!(json_of(app.verify_otp(&new.id, &new.code).await).await.0, 200);
}

#[tokio::test]
async fn codes_for_different_purposes_do_not_replace_each_other() {
    let app = spawn_app().await;
    let phone = random_phone();
    // A reset code verifies only for an active account's destination.
    app.seed_user(&phone, "active").await;

    let register = app.otp_for(&phone, "register").await;
    let reset = app.otp_for(&phone, "reset").await;

    assert_eq!(json_of(app.verify_otp(&register.id, &register.code).await).await.0, 200);
    assert_eq!(json_of(app.verify_otp(&reset.id, &reset.code).await).await.0, 200);
}

#[tokio::test]
async fn the_code_is_neither_in_the_answer_nor_stored() {
    let app = spawn_app().await;
    let email = random_email();

    let resp = app.request_otp(&email, "register").await;
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let code = app.code_sent_to(&email).await;

    assert!(!text.contains(&code), "the answer has the code: {text}");
    for (name, value) in &headers {
        assert!(!value.to_str().unwrap_or("").contains(&code), "header {name} has the code");
    }
    let otp_id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["otp_id"].as_str().unwrap().to_string();
    let row = app.otp_row(&otp_id).await;
    let hash = row["otp_hash"].as_str().unwrap();
    assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()), "otp_hash {hash:?}");
    assert!(!hash.contains(&code), "otp_hash {hash} contains the code");
    for (column, value) in row.as_object().unwrap() {
        let value = value.as_str().map_or_else(|| value.to_string(), str::to_string);
        assert_ne!(value, code, "column {column} holds the code");
    }
}

#[tokio::test]
async fn the_client_ip_is_cloudflares_and_the_user_agent_is_truncated() {
    let app = spawn_app().await;
    let user_agent = format!("Mozilla/5.0 ({})", "x".repeat(1000 - 14));
    assert_eq!(user_agent.len(), 1000);

    let request = app
        .client
        .post(app.url("/api/auth/otp/request/"))
        .header("CF-Connecting-IP", "203.0.113.7")
        .header("X-Forwarded-For", "198.51.100.9")
        .header("User-Agent", &user_agent)
        .json(&json!({ "destination": random_email(), "purpose": "register" }));
    let resp = app.send(request).await;

    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    let row = app.otp_row(body["otp_id"].as_str().unwrap()).await;
    assert_eq!(row["ip_address"], "203.0.113.7");
    assert_eq!(row["user_agent"], user_agent[..256]);
}

#[tokio::test]
async fn both_endpoints_answer_without_the_trailing_slash() {
    let app = spawn_app().await;
    let email = random_email();

    let resp = app.post_json("/api/auth/otp/request", &json!({ "destination": email, "purpose": "verify" })).await;
    let otp = assert_code_sent(&app, resp, &email, "email", 600).await;
    let resp = app.post_json("/api/auth/otp/verify", &json!({ "otp_id": otp.id, "otp_code": otp.code })).await;

    assert_eq!(json_of(resp).await.0, 200);
}

// Test identities (app-store review, automated checks): a fixed code, no message.

#[tokio::test]
async fn a_reviewer_logs_in_with_the_fixed_code_and_no_message_is_sent() {
    let app = spawn_app_with(TEST_IDS).await;
    let user_id = app.seed_user("review@acme.test", "active").await;

    let (status, body) = json_of(app.request_otp("review@acme.test", "login").await).await;
    assert_eq!(status, 200, "{body}");

    assert_logged_in_as(app.verify_otp(body["otp_id"].as_str().unwrap(), "246810").await, &user_id).await;
    app.assert_nothing_sent_to("review@acme.test").await;
}

#[tokio::test]
async fn a_test_phone_registers_with_its_fixed_code_and_no_sms_is_sent() {
    let app = spawn_app_with(TEST_IDS).await;

    let (status, body) = json_of(app.request_otp("+15550009999", "register").await).await;
    assert_eq!(status, 200, "{body}");

    let (status, verified) = json_of(app.verify_otp(body["otp_id"].as_str().unwrap(), "135790").await).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["verified_destination"], "+15550009999");
    app.assert_nothing_sent_to("+15550009999").await;
}

#[tokio::test]
async fn an_expired_test_identity_gets_a_real_code() {
    let app = spawn_app_with(TEST_IDS).await;

    let otp = app.otp_for("old@acme.test", "register").await;

    if otp.code != "111111" {
        assert_invalid_otp(app.verify_otp(&otp.id, "111111").await, "Invalid OTP").await;
    }
    assert_eq!(json_of(app.verify_otp(&otp.id, &otp.code).await).await.0, 200);
}
