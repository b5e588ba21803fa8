//! A stranger cannot lock a user out, end to end: a stranger spending every
//! budget it can reach, from several networks, does not stop the owner's own
//! request and verify, while guessing stays bounded (an open breaker refuses
//! even the right code from a network the destination does not know, until
//! it passes a challenge). The rules (per-network budgets, same-network
//! superseding, the breakers and their 429 without Turnstile, known
//! networks, the 30-day arithmetic) are proved natively in
//! src/flows/tests/lockout.rs; here, one case per behaviour.

use serde_json::{json, Value};

use crate::delivery::{code_in, deliveries_to, message_text};
use crate::helpers::{json_of, random_email, random_ip, spawn_app_with, Profile, TestApp};
use crate::limits::post_from;
use crate::providers::turnstile::SECRET;

/// Small budgets, so a test can spend them: per network 3 requests an hour
/// and 2 failures a day; per destination, breakers of 6 requests an hour
/// and 4 failures. Turnstile (the fake's production-like secret) for SMS
/// only, so an open breaker asks for a challenge; without Turnstile it
/// answers 429, which the native tests prove.
const LOCKOUT: Profile = Profile {
    name: "lockout",
    vars: &[
        ("RATE_LIMIT_PER_HOUR", "3"),
        ("VERIFY_FAILURES_PER_DAY", "2"),
        ("DESTINATION_REQUESTS_BREAKER", "6"),
        ("VERIFY_FAILURES_BREAKER", "4"),
        ("TURNSTILE_SECRET_KEY", SECRET),
        ("TURNSTILE_REQUIRED_FOR", "sms"),
    ],
};

async fn login_request(app: &TestApp, ip: &str, email: &str) -> (u16, Value) {
    json_of(post_from(app, ip, "/api/auth/otp/request/", json!({ "destination": email })).await).await
}

async fn verify(app: &TestApp, ip: &str, otp_id: &str, code: &str, token: Option<&str>) -> (u16, Value) {
    let mut body = json!({ "otp_id": otp_id, "otp_code": code });
    if let Some(token) = token {
        body["turnstile_token"] = json!(token);
    }
    json_of(post_from(app, ip, "/api/auth/otp/verify/", body).await).await
}

/// A stranger on `ip`: requests codes for `email` until refused, and guesses
/// on each (wrong: it never sees them) until refused. What it got.
async fn stranger_spends_everything(app: &TestApp, ip: &str, email: &str) -> (u32, u32) {
    let (mut codes, mut failures) = (0, 0);
    loop {
        let (status, body) = login_request(app, ip, email).await;
        if status != 200 {
            // A budget (429), or with Turnstile an open breaker asking for a challenge.
            let refusal = (status, body["code"].as_str().unwrap_or_default());
            assert!(matches!(refusal, (429, "RATE_LIMIT") | (400, "CAPTCHA_FAILED")), "{body}");
            return (codes, failures);
        }
        codes += 1;
        let otp_id = body["otp_id"].as_str().unwrap().to_string();
        loop {
            let (status, body) = verify(app, ip, &otp_id, "000000", None).await;
            if (status, body["message"].as_str()) != (400, Some("Invalid OTP")) {
                break;
            }
            failures += 1;
        }
    }
}

/// The code of login `otp_id` to `email`, from the Resend request that
/// carried it (its `Idempotency-Key` is the otp_id); polls, since login
/// codes go out after the answer. Strangers' codes reach the same mailbox,
/// so "the newest message" would not do.
async fn code_of(app: &TestApp, email: &str, otp_id: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let sent = deliveries_to(app, email).await;
        if let Some(r) = sent.iter().find(|r| r.headers.get("idempotency-key").is_some_and(|k| k == otp_id)) {
            return code_in(&message_text(r));
        }
        assert!(std::time::Instant::now() < deadline, "no message for {otp_id} within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_stranger_spending_every_budget_from_three_networks_does_not_stop_the_owner() {
    let app = spawn_app_with(LOCKOUT).await;
    let email = random_email();
    let user_id = app.seed_user(&email, "active").await;
    let home = random_ip();

    // The owner has signed in from home before, and has just asked for a code.
    let (_, first) = login_request(&app, &home, &email).await;
    let code = app.code_sent_to(&email).await;
    assert_eq!(verify(&app, &home, first["otp_id"].as_str().unwrap(), &code, None).await.0, 200);
    let (status, pending) = login_request(&app, &home, &email).await;
    assert_eq!(status, 200, "{pending}");
    let pending_code = app.code_sent_to(&email).await;

    // A stranger on three networks spends every request and guess it can get.
    let mut spent = Vec::new();
    for _ in 0..3 {
        spent.push(stranger_spends_everything(&app, &random_ip(), &email).await);
    }
    // The request breaker (6, the owner's 2 included) and the failure breaker (4) bound all three networks.
    let (codes, failures): (u32, u32) = spent.iter().fold((0, 0), |(c, f), (a, b)| (c + a, f + b));
    assert_eq!((codes, failures), (4, 4), "{spent:?}");

    // The owner's pending code was not superseded, and the owner is not locked out.
    let (status, body) = verify(&app, &home, pending["otp_id"].as_str().unwrap(), &pending_code, None).await;
    assert_eq!((status, body["user"]["id"].as_str()), (200, Some(user_id.as_str())), "{body}");
    let (status, again) = login_request(&app, &home, &email).await;
    assert_eq!(status, 200, "the owner can ask again: {again}");
    let code = code_of(&app, &email, again["otp_id"].as_str().unwrap()).await;
    assert_eq!(verify(&app, &home, again["otp_id"].as_str().unwrap(), &code, None).await.0, 200);
}

#[tokio::test]
async fn an_open_breaker_refuses_even_the_right_code_from_an_unknown_network_until_a_challenge_is_passed() {
    let app = spawn_app_with(LOCKOUT).await;
    let email = random_email();
    app.seed_user(&email, "active").await;
    let newcomer = random_ip();
    let (_, otp) = login_request(&app, &newcomer, &email).await;
    let code = app.code_sent_to(&email).await;
    for _ in 0..2 {
        stranger_spends_everything(&app, &random_ip(), &email).await;
    }
    let otp_id = otp["otp_id"].as_str().unwrap();

    // The right code, from a network that never verified one: a guesser
    // that hit it would get in if right codes were spared.
    let (status, body) = verify(&app, &newcomer, otp_id, &code, None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("CAPTCHA_FAILED")), "{body}");
    assert_eq!(app.otp_row(otp_id).await["attempts"], 0, "the refused try did not spend the code's attempt");
    let token = app.worker.siteverify.issue();
    let (status, body) = verify(&app, &newcomer, otp_id, &code, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
}
