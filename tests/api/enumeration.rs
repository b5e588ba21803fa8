//! Whether an account exists must not show: a login request for an unknown
//! or disabled account answers exactly like one for a real account, and its
//! code can never verify. Without the protection, the answer says why.

use serde_json::Value;

use crate::helpers::{
    assert_error, is_uuid, json_of, random_digits, random_hex, spawn_app, spawn_app_with, wrong_code, TestApp,
    NO_ENUMERATION_PROTECTION,
};

/// Two random destinations whose masked forms are the same (same length,
/// same first and last characters), so their answers can be compared whole.
fn look_alikes(phone: bool) -> (String, String) {
    if phone {
        let end = random_digits(3);
        (format!("+1555{}{end}", random_digits(4)), format!("+1555{}{end}", random_digits(4)))
    } else {
        (format!("u{}z@example.com", random_hex(12)), format!("u{}z@example.com", random_hex(12)))
    }
}

/// Login requests for both; the answers agree in everything but the otp_id.
/// Returns both otp_ids.
async fn assert_same_answer(app: &TestApp, real: &str, other: &str) -> (String, String) {
    let (real_resp, other_resp) = (app.request_otp(real, "login").await, app.request_otp(other, "login").await);
    let header_names = |resp: &reqwest::Response| {
        let mut names: Vec<String> = resp.headers().keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(header_names(&other_resp), header_names(&real_resp));
    let ((real_status, real_body), (other_status, other_body)) = (json_of(real_resp).await, json_of(other_resp).await);

    assert_eq!(real_status, 200, "{real_body}");
    assert_eq!(other_status, real_status, "{other_body}");
    let without_id = |body: &Value| {
        let mut body = body.as_object().unwrap().clone();
        let id = body.remove("otp_id").and_then(|id| id.as_str().map(str::to_string)).unwrap_or_default();
        assert!(is_uuid(&id), "otp_id {id:?}");
        (body, id)
    };
    let ((real_rest, real_id), (other_rest, other_id)) = (without_id(&real_body), without_id(&other_body));
    assert_eq!(other_rest, real_rest);
    assert_ne!(other_id, real_id);
    (real_id, other_id)
}

#[tokio::test]
async fn a_login_request_for_an_unknown_email_looks_like_a_real_one() {
    let app = spawn_app().await;
    let (known, unknown) = look_alikes(false);
    app.seed_user(&known, "active").await;

    assert_same_answer(&app, &known, &unknown).await;

    app.code_sent_to(&known).await;
    app.assert_nothing_sent_to(&unknown).await;
}

#[tokio::test]
async fn a_login_request_for_an_unknown_phone_looks_like_a_real_one() {
    let app = spawn_app().await;
    let (known, unknown) = look_alikes(true);
    app.seed_user(&known, "active").await;

    assert_same_answer(&app, &known, &unknown).await;

    app.code_sent_to(&known).await;
    app.assert_nothing_sent_to(&unknown).await;
}

#[tokio::test]
async fn a_login_request_for_a_disabled_account_looks_like_a_real_one() {
    let app = spawn_app().await;
    let (active, disabled) = look_alikes(false);
    app.seed_user(&active, "active").await;
    app.seed_user(&disabled, "disabled").await;

    assert_same_answer(&app, &active, &disabled).await;

    app.code_sent_to(&active).await;
    app.assert_nothing_sent_to(&disabled).await;
}

#[tokio::test]
async fn a_decoy_code_fails_exactly_like_a_wrong_code() {
    let app = spawn_app().await;
    let (known, unknown) = look_alikes(true);
    app.seed_user(&known, "active").await;
    let (real_id, decoy_id) = assert_same_answer(&app, &known, &unknown).await;
    let code = app.code_sent_to(&known).await;

    // Attempt by attempt, the decoy answers as the real code does to three
    // wrong guesses and then to the right one, too late.
    let guesses = [wrong_code(&code), wrong_code(&wrong_code(&code)), wrong_code(&code), code.clone()];
    let expected = ["Invalid OTP", "Invalid OTP", "Invalid OTP", "Too many attempts"];
    for (guess, message) in guesses.iter().zip(expected) {
        let real = json_of(app.verify_otp(&real_id, guess).await).await;
        let decoy = json_of(app.verify_otp(&decoy_id, guess).await).await;
        assert_eq!(
            (real.0, real.1["code"].as_str(), real.1["message"].as_str()),
            (400, Some("INVALID_OTP"), Some(message))
        );
        assert_eq!(decoy, real);
    }
}

#[tokio::test]
async fn without_protection_an_unknown_destination_is_not_found() {
    let app = spawn_app_with(NO_ENUMERATION_PROTECTION).await;

    for phone in [false, true] {
        let (_, unknown) = look_alikes(phone);
        assert_error(app.request_otp(&unknown, "login").await, 404, "USER_NOT_FOUND").await;
        app.assert_nothing_sent_to(&unknown).await;
    }
}

#[tokio::test]
async fn without_protection_a_disabled_account_is_refused() {
    let app = spawn_app_with(NO_ENUMERATION_PROTECTION).await;
    let (active, disabled) = look_alikes(false);
    app.seed_user(&active, "active").await;
    app.seed_user(&disabled, "disabled").await;

    assert_error(app.request_otp(&disabled, "login").await, 403, "ACCOUNT_DISABLED").await;
    assert_eq!(json_of(app.request_otp(&active, "login").await).await.0, 200);

    app.code_sent_to(&active).await;
    app.assert_nothing_sent_to(&disabled).await;
}

#[tokio::test]
async fn only_login_looks_up_the_account() {
    let app = spawn_app_with(NO_ENUMERATION_PROTECTION).await;
    let (unknown, disabled) = look_alikes(true);
    app.seed_user(&disabled, "disabled").await;

    for (destination, purpose) in [(&unknown, "register"), (&unknown, "verify"), (&disabled, "reset")] {
        app.otp_for(destination, purpose).await;
    }
}

/// A provider outage must not tell who has an account either: a real
/// account's login code that could not be delivered answers every verify,
/// attempt by attempt, exactly as the decoy of an unknown address does.
#[tokio::test]
async fn a_login_code_whose_delivery_failed_answers_like_a_decoy() {
    use crate::delivery::{code_in, deliveries_to, message_text, provider_answers, ALWAYS};
    let app = spawn_app().await;
    let (real, unknown) = look_alikes(false);
    app.seed_user(&real, "active").await;
    // Resend refuses the address for good (422 validation_error): no retry, the code is withdrawn.
    let refusal = crate::providers::resend_error(422, "validation_error", "Invalid `to` field.", None);
    provider_answers(&app, &real, refusal, ALWAYS).await;

    let (real_id, unknown_id) = assert_same_answer(&app, &real, &unknown).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let failed = |row: &Value| !row["withdrawn_at"].is_null() || !row["invalidated_at"].is_null();
    while !failed(&app.otp_row(&real_id).await) {
        assert!(std::time::Instant::now() < deadline, "the failed delivery was not recorded within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let sent = code_in(&message_text(&deliveries_to(&app, &real).await[0]));

    // The code that was sent (and refused), then wrong ones, until both are spent.
    for guess in [sent.clone(), wrong_code(&sent), wrong_code(&sent), wrong_code(&sent)] {
        let real_answer = json_of(app.verify_otp(&real_id, &guess).await).await;
        let unknown_answer = json_of(app.verify_otp(&unknown_id, &guess).await).await;
        assert_eq!(real_answer, unknown_answer, "guess {guess}");
    }
}
