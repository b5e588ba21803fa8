//! `ENVIRONMENT=production` as a deployment sees it: the demo page is off
//! unless `DEMO_PAGE=true`, and development-only settings are refused with
//! an error that names the setting, never its value, instead of running.

use crate::helpers::{
    assert_error, json_of, random_email, random_uuid, spawn_app_with, Profile, WorkerState, MAIL_KEY, TEST_KEY_A,
    TEST_PEPPER, TWILIO_TOKEN,
};

/// Production with real (https) provider URLs; nothing in these tests sends.
const PRODUCTION: Profile = Profile {
    name: "production",
    vars: &[
        ("ENVIRONMENT", "production"),
        ("MAIL_API_BASE", "https://mail.invalid"),
        ("TWILIO_API_BASE", "https://sms.invalid"),
        ("JWT_ISSUER", "https://auth.invalid"),
    ],
};

const PRODUCTION_WITH_DEMO_PAGE: Profile = Profile {
    name: "production-demo-page",
    vars: &[
        ("ENVIRONMENT", "production"),
        ("MAIL_API_BASE", "https://mail.invalid"),
        ("TWILIO_API_BASE", "https://sms.invalid"),
        ("JWT_ISSUER", "https://auth.invalid"),
        ("DEMO_PAGE", "true"),
    ],
};

/// Production told to print codes to the console instead of mailing them.
const PRODUCTION_WITH_LOG_MAIL: Profile = Profile {
    name: "production-log-mail",
    vars: &[
        ("ENVIRONMENT", "production"),
        ("MAIL_PROVIDER", "log"),
        ("MAIL_API_BASE", "https://mail.invalid"),
        ("TWILIO_API_BASE", "https://sms.invalid"),
        ("JWT_ISSUER", "https://auth.invalid"),
    ],
};

#[tokio::test]
async fn production_serves_the_api_but_not_the_demo_page() {
    let app = spawn_app_with(PRODUCTION).await;

    let (status, health) = json_of(app.get("/healthz").await).await;
    assert_eq!((status, &health["config"]["ok"]), (200, &serde_json::json!(true)), "{health}");
    for path in ["/", "/demo.js"] {
        assert_error(app.get(path).await, 404, "NOT_FOUND").await;
    }

    // The API itself answers: a login for an unknown address looks like any
    // other (enumeration protection) and a made-up code is refused.
    let (status, body) = json_of(app.request_otp(&random_email(), "login").await).await;
    assert_eq!(status, 200, "{body}");
    let message = assert_error(app.verify_otp(&random_uuid(), "123456").await, 400, "INVALID_OTP").await;
    assert_eq!(message, "Invalid OTP request");
}

#[tokio::test]
async fn production_serves_the_demo_page_when_demo_page_is_true() {
    let app = spawn_app_with(PRODUCTION_WITH_DEMO_PAGE).await;

    let resp = app.get("/").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(resp.text().await.unwrap().contains("demo.js"));
    assert_eq!(app.get("/demo.js").await.status(), 200);
}

#[tokio::test]
async fn production_refuses_a_development_only_setting_and_names_it() {
    let state = WorkerState::new("production-log-mail").await;
    let app = state.start_misconfigured(PRODUCTION_WITH_LOG_MAIL).await;
    let signing_seed = TEST_KEY_A.split_once(':').unwrap().1;
    let secrets = [TEST_PEPPER, MAIL_KEY, TWILIO_TOKEN, signing_seed];

    let (status, health) = json_of(app.get("/healthz").await).await;
    assert_eq!((status, health["config"]["ok"].as_bool()), (503, Some(false)), "{health}");
    let problem = health["config"]["error"].as_str().unwrap_or_default();
    assert!(problem.contains("MAIL_PROVIDER") && problem.contains("production"), "{health}");

    // Every API call is refused, no code is stored and nothing is sent,
    // rather than codes being printed to a production console.
    let email = random_email();
    let (status, body) = json_of(app.request_otp(&email, "register").await).await;
    assert_eq!((status, body["code"].as_str()), (500, Some("CONFIGURATION_ERROR")), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("MAIL_PROVIDER")), "{body}");
    for answer in [body.to_string(), health.to_string()] {
        assert!(secrets.iter().all(|secret| !answer.contains(secret)), "a secret in an answer: {answer}");
    }
    assert_eq!(app.codes_stored_for(&email).await, 0, "a refused request stores no code");
    app.assert_nothing_sent_to(&email).await;
    assert!(!app.worker_log().contains("verification code is"), "a code reached the console");

    app.worker.stop().await;
}
