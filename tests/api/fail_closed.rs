//! When the rate-limiter Durable Object cannot be reached, the service
//! fails closed: a 503 with Retry-After, no code stored, nothing sent, never
//! an unlimited request.

use crate::helpers::{assert_error, json_of, random_email, random_uuid, WorkerState, DEFAULT};

#[tokio::test]
async fn without_its_rate_limiter_the_service_refuses_instead_of_running_unlimited() {
    let state = WorkerState::new("fail-closed").await;
    let app = state.start_without_rate_limiter(DEFAULT).await;

    let (status, health) = json_of(app.get("/healthz").await).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(
        (health["durable_object"]["ok"].as_bool(), health["d1"]["ok"].as_bool()),
        (Some(false), Some(true)),
        "{health}"
    );

    let email = random_email();
    let resp = app.request_otp(&email, "register").await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(resp, 503, "SERVICE_UNAVAILABLE").await;
    assert_eq!(app.codes_stored_for(&email).await, 0, "a refused request stores no code");
    app.assert_nothing_sent_to(&email).await;

    let resp = app.verify_otp(&random_uuid(), "123456").await;
    assert_error(resp, 503, "SERVICE_UNAVAILABLE").await;

    app.worker.stop().await;
}
