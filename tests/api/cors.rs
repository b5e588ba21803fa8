//! Browser apps on other origins: only the exact origins in ALLOWED_ORIGINS
//! get CORS headers, for preflights and for real answers; no credentials.

use reqwest::Method;

use crate::helpers::{json_of, random_email, spawn_app, spawn_app_with, Profile, TestApp};

const APP_ORIGIN: &str = "https://app.example.com";

const CORS: Profile =
    Profile { name: "cors", vars: &[("ALLOWED_ORIGINS", "https://app.example.com, http://localhost:3000")] };

async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.send(
        app.client
            .request(Method::OPTIONS, app.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, authorization"),
    )
    .await
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

fn cors_headers(resp: &reqwest::Response) -> Vec<String> {
    resp.headers().keys().map(|k| k.to_string()).filter(|k| k.starts_with("access-control-")).collect()
}

#[tokio::test]
async fn an_allowed_origin_passes_the_preflight() {
    let app = spawn_app_with(CORS).await;

    let resp = preflight(&app, "/api/auth/otp/request/", APP_ORIGIN).await;

    assert_eq!(resp.status(), 204);
    assert_eq!(header(&resp, "access-control-allow-origin").as_deref(), Some(APP_ORIGIN));
    let methods = header(&resp, "access-control-allow-methods").unwrap();
    assert!(methods.contains("POST") && methods.contains("DELETE"), "{methods}");
    let allowed = header(&resp, "access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(allowed.contains("content-type") && allowed.contains("authorization"), "{allowed}");
    assert!(header(&resp, "access-control-max-age").is_some());
    assert_eq!(header(&resp, "access-control-allow-credentials"), None, "tokens are not cookies");
    assert!(header(&resp, "vary").unwrap().contains("Origin"));
}

#[tokio::test]
async fn an_allowed_origin_can_read_the_answer_and_its_retry_after() {
    let app = spawn_app_with(CORS).await;
    let body = serde_json::json!({ "destination": random_email(), "purpose": "register" });

    let resp = app
        .send(app.client.post(app.url("/api/auth/otp/request/")).header("origin", "http://localhost:3000").json(&body))
        .await;

    assert_eq!(header(&resp, "access-control-allow-origin").as_deref(), Some("http://localhost:3000"));
    assert!(header(&resp, "access-control-expose-headers").unwrap().contains("retry-after"));
    assert!(header(&resp, "vary").unwrap().contains("Origin"));
    let (status, _) = json_of(resp).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn another_origin_gets_no_cors_headers() {
    let app = spawn_app_with(CORS).await;

    for origin in ["https://evil.example.com", "https://app.example.com.evil.com", "null"] {
        let resp = preflight(&app, "/api/auth/otp/request/", origin).await;
        assert_eq!(cors_headers(&resp), Vec::<String>::new(), "{origin}");
        let resp = app.send(app.client.get(app.url("/api/auth/me/")).header("origin", origin)).await;
        assert_eq!(cors_headers(&resp), Vec::<String>::new(), "{origin}");
        assert_eq!(resp.status(), 401);
    }
}

#[tokio::test]
async fn without_allowed_origins_no_origin_gets_cors_headers() {
    let app = spawn_app().await;

    let resp = preflight(&app, "/api/auth/otp/verify/", APP_ORIGIN).await;

    assert_eq!(resp.status(), 204);
    assert_eq!(cors_headers(&resp), Vec::<String>::new());
}

#[tokio::test]
async fn a_preflight_for_an_unknown_path_is_a_json_404() {
    let app = spawn_app_with(CORS).await;

    let resp = preflight(&app, "/api/nope", APP_ORIGIN).await;

    assert_eq!(resp.status(), 404);
    let (_, body) = json_of(resp).await;
    assert_eq!(body["code"], "NOT_FOUND");
}
