//! Cloudflare Turnstile before a code is sent, against a fake siteverify on
//! loopback that keeps Cloudflare's rules (providers/turnstile.rs) and
//! records what the Worker sent it. The rules themselves (which scope needs
//! a token, which answers mean what) are proved natively in
//! src/flows/tests/turnstile.rs; here, one case per behaviour end to end.

use serde_json::{json, Value};
use wiremock::matchers::body_string_contains;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    assert_error, is_uuid, json_of, random_email, random_ip, random_phone, spawn_app_with, Profile, TestApp,
};
use crate::limits::{assert_ok, assert_rate_limited, post_from};
use crate::providers::turnstile::{DUMMY_TOKEN, SECRET};
use crate::providers::USER_AGENT;

const SITE_KEY: &str = "1x00000000000000000000AA";

/// Turnstile for every OTP request, with the fake's production-like secret
/// (single-use tokens), and two requests per client an hour, so a test can
/// see whether a refused request was counted.
const TURNSTILE: Profile = Profile {
    name: "turnstile",
    vars: &[
        ("TURNSTILE_SECRET_KEY", SECRET),
        ("TURNSTILE_SITE_KEY", SITE_KEY),
        ("TURNSTILE_REQUIRED_FOR", "all"),
        ("IP_REQUESTS_PER_HOUR", "2"),
    ],
};

async fn request_with(app: &TestApp, ip: &str, destination: &str, token: Option<&str>) -> reqwest::Response {
    let mut body = json!({ "destination": destination, "purpose": "verify" });
    if let Some(token) = token {
        body["turnstile_token"] = json!(token);
    }
    post_from(app, ip, "/api/auth/otp/request/", body).await
}

fn issue(app: &TestApp) -> String {
    app.worker.siteverify.issue()
}

#[tokio::test]
async fn without_a_token_that_passes_nothing_is_counted_or_sent() {
    let app = spawn_app_with(TURNSTILE).await;
    let ip = random_ip();
    let (email, phone) = (random_email(), random_phone());
    let long = "x".repeat(2049);
    let refused: [Option<&str>; 6] = [None, Some(""), Some("   "), Some("made-up"), Some(DUMMY_TOKEN), Some(&long)];
    for token in refused {
        for destination in [&email, &phone] {
            assert_error(request_with(&app, &ip, destination, token).await, 400, "CAPTCHA_FAILED").await;
        }
    }
    // A JSON null is no token, and a number is not a string.
    let null = post_from(&app, &ip, "/api/auth/otp/request/", json!({ "destination": email, "turnstile_token": null }));
    assert_error(null.await, 400, "CAPTCHA_FAILED").await;
    let number = post_from(&app, &ip, "/api/auth/otp/request/", json!({ "destination": email, "turnstile_token": 7 }));
    assert_error(number.await, 400, "VALIDATION_ERROR").await;

    for destination in [&email, &phone] {
        assert_eq!(app.codes_stored_for(destination).await, 0, "a refused request left a row");
    }
    app.assert_nothing_sent_to_any(&[&email, &phone]).await;
    // Only the tokens worth asking about were sent to siteverify: not a
    // missing, blank or over-long one.
    let asked: Vec<Option<String>> =
        app.worker.siteverify.checks.lock().unwrap().iter().map(|c| c.response.clone()).collect();
    for token in ["made-up", DUMMY_TOKEN] {
        assert!(asked.iter().any(|r| r.as_deref() == Some(token)), "{token} was not checked");
    }
    assert!(!asked.iter().flatten().any(|r| r.trim().is_empty() || r.len() > 2048), "{asked:?}");

    // None of the refusals counted against the client's two requests an hour.
    assert_ok(request_with(&app, &ip, &email, Some(&issue(&app))).await).await;
    assert_ok(request_with(&app, &ip, &phone, Some(&issue(&app))).await).await;
    assert_rate_limited(request_with(&app, &ip, &random_email(), Some(&issue(&app))).await, 3600).await;
}

#[tokio::test]
async fn siteverify_hears_the_clients_ip_and_a_fresh_idempotency_key_and_a_token_works_once() {
    let app = spawn_app_with(TURNSTILE).await;
    let ip = random_ip();
    let (first, second) = (issue(&app), issue(&app));
    let email = random_email();
    let body = assert_ok(request_with(&app, &ip, &email, Some(&first)).await).await;
    assert_ok(request_with(&app, &random_ip(), &random_phone(), Some(&second)).await).await;

    let only_check = |token: &str| {
        let checks = app.worker.siteverify.checks_of(token);
        assert_eq!(checks.len(), 1, "one check per token: {checks:?}");
        checks[0].clone()
    };
    let (check_1, check_2) = (only_check(&first), only_check(&second));
    assert_eq!(check_1.secret.as_deref(), Some(SECRET));
    assert_eq!(check_1.remoteip.as_deref(), Some(ip.as_str()), "remoteip is CF-Connecting-IP");
    assert_eq!(check_1.user_agent.as_deref(), Some(USER_AGENT));
    let (key_1, key_2) = (check_1.idempotency_key.unwrap(), check_2.idempotency_key.unwrap());
    assert!(is_uuid(&key_1) && is_uuid(&key_2), "{key_1} {key_2}");
    assert_ne!(key_1, key_2, "each check has its own idempotency key");

    // Verifying the code needs no token: Turnstile guards sending.
    let code = app.code_sent_to(&email).await;
    let otp_id = body["otp_id"].as_str().unwrap();
    assert_ok(app.verify_otp(otp_id, &code).await).await;

    // A token is spent once: a replay, even for someone else, is refused.
    let other = random_email();
    assert_error(request_with(&app, &random_ip(), &other, Some(&first)).await, 400, "CAPTCHA_FAILED").await;
    app.assert_nothing_sent_to(&other).await;
    assert_eq!(app.worker.siteverify.checks_of(&first).iter().filter(|c| c.success).count(), 1);
}

/// Siteverify down (an HTTP 500, or an answer that is not JSON) is 503:
/// fail closed, and the client is told it is ours, not theirs.
#[tokio::test]
async fn an_unavailable_siteverify_fails_closed() {
    let app = spawn_app_with(TURNSTILE).await;
    for answer in [ResponseTemplate::new(500), ResponseTemplate::new(200).set_body_string("<html>oops</html>")] {
        let token = issue(&app);
        Mock::given(body_string_contains(token.as_str()))
            .respond_with(answer)
            .with_priority(1)
            .mount(&app.worker.captcha)
            .await;
        let email = random_email();
        let (status, body): (u16, Value) = json_of(request_with(&app, &random_ip(), &email, Some(&token)).await).await;
        assert_eq!((status, body["code"].as_str()), (503, Some("SERVICE_UNAVAILABLE")), "{body}");
        assert!(!body.to_string().contains(&token), "the answer repeats the token: {body}");
        assert_eq!(app.codes_stored_for(&email).await, 0);
        app.assert_nothing_sent_to(&email).await;
    }
    assert!(!app.worker_log().contains(SECRET), "the Turnstile secret is in the Worker's log");
}

#[tokio::test]
async fn the_demo_page_shows_the_widget_under_a_policy_that_allows_only_it() {
    let app = spawn_app_with(TURNSTILE).await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers().get("content-security-policy").unwrap().to_str().unwrap().to_string();
    // Cloudflare's documented needs: the script and the frame from
    // challenges.cloudflare.com (developers.cloudflare.com/turnstile/reference/content-security-policy).
    assert!(csp.contains("script-src 'self' https://challenges.cloudflare.com;"), "{csp}");
    assert!(csp.contains("frame-src https://challenges.cloudflare.com;"), "{csp}");
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self';"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<script src="https://challenges.cloudflare.com/turnstile/v0/api.js" async defer></script>"#),
        "no widget script"
    );
    assert!(html.contains(&format!(r#"<div class="cf-turnstile" data-sitekey="{SITE_KEY}""#)), "no widget");
    assert!(!html.contains("<!--turnstile"), "a marker was left in the page");
}
