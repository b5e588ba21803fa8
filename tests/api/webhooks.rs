//! Signed webhooks, black-box: one Worker whose `WEBHOOK_URL` is a receiver
//! on loopback (wiremock, which records each request as it came), with a
//! one-second retry delay and, in its wrangler config, `max_retries = 2` for
//! the webhook queue's consumer (three attempts; the real one has nine
//! retries, of minutes to hours). Each step is a behaviour:
//!
//! - an account's story (register, log in, reuse a refresh token, add a
//!   phone, log out, revoke a refresh token, hit a rate limit, fail a
//!   delivery, delete the account)
//!   reaches the receiver as the eight event types, each verified by
//!   the Standard Webhooks project's own Python library (`standardwebhooks`
//!   from PyPI, tests/python/verify_webhooks.py), which refuses a tampered
//!   copy; each matches the OpenAPI document's `webhooks`; none carries a
//!   code, a token or an address;
//! - a receiver that answers a redirect (not followed), then 500, gets the
//!   event on the third attempt, under the same `webhook-id`, signed anew
//!   each time;
//! - a receiver that never answers 2xx leaves the event in the dead-letter
//!   store (D1 `webhook_dead_letters`) after the third attempt, and the
//!   cron's replay delivers it, same id and body;
//! - a receiver that hangs does not slow the user's request.
//!
//! Events of one step are told apart by their request id: a request that
//! carries a well-formed `cf-ray` has it as its request id (tests/api/audit.rs).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::contract::{check_webhook, python_tools, webhook_examples};
use crate::delivery::{provider_answers, provider_error, ALWAYS};
use crate::helpers::{
    json_of, project_root, random_email, random_hex, random_phone, sql_str, Profile, TestApp, WorkerState,
};

/// 32 bytes of test key, as the receiver would be given it.
const SECRET: &str = "whsec_3q2+78r+ur4AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhc=";

/// The receiver: 204 to every POST on /hooks, unless a step mounts otherwise.
async fn receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/hooks")).respond_with(ResponseTemplate::new(204)).mount(&server).await;
    server
}

/// A `cf-ray` of Cloudflare's shape: the request id of the request carrying it.
fn new_ray() -> String {
    format!("{}-TST", random_hex(16))
}

/// What the receiver got whose body contains `needle`, oldest first.
async fn received(server: &MockServer, needle: &str) -> Vec<Request> {
    let all = server.received_requests().await.unwrap_or_default();
    all.into_iter().filter(|r| String::from_utf8_lossy(&r.body).contains(needle)).collect()
}

/// Polls until the receiver got `n` requests containing `needle`.
async fn wait_for(server: &MockServer, needle: &str, n: usize, within: Duration) -> Vec<Request> {
    let deadline = Instant::now() + within;
    loop {
        let got = received(server, needle).await;
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} of {n} webhooks with {needle} within {within:?}", got.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header(request: &Request, name: &str) -> String {
    request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON webhook body")
}

/// The Standard Webhooks library's verdict on each request, as received
/// (`tampered` changes one byte of each body first): the payloads it verified,
/// or why not.
fn verify_with_the_spec_library(requests: &[Request], tampered: bool) -> Vec<Result<Value, String>> {
    let requests: Vec<Value> = requests
        .iter()
        .map(|r| {
            let mut text = String::from_utf8(r.body.clone()).expect("a UTF-8 body");
            if tampered {
                text = text.replacen("\"ok\"", "\"OK\"", 1).replacen("\"type\"", "\"Type\"", 1);
            }
            let headers: serde_json::Map<String, Value> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
                .iter()
                .map(|n| (n.to_string(), Value::String(header(r, n))))
                .collect();
            json!({ "headers": headers, "body": text })
        })
        .collect();
    let input = json!({ "secret": SECRET, "requests": requests }).to_string();
    let mut child = std::process::Command::new(python_tools().join("python"))
        .arg(project_root().join("tests/python/verify_webhooks.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("could not run target/venv/bin/python");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "verify_webhooks.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).expect("verify_webhooks.py printed JSON");
    verdicts
        .into_iter()
        .map(|v| if v["ok"] == true { Ok(v["payload"].clone()) } else { Err(v["error"].to_string()) })
        .collect()
}

/// Every request verifies with the spec's library (and a tampered copy of
/// each does not), and is what the document's `webhooks` describe.
fn assert_signed_and_documented(requests: &[Request]) {
    let verdicts = verify_with_the_spec_library(requests, false);
    for (request, verdict) in requests.iter().zip(&verdicts) {
        let payload = verdict.as_ref().unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&request.body)));
        assert_eq!(payload, &body(request), "the library's payload is the body");
        let kind = payload["type"].as_str().unwrap();
        check_webhook(kind, &request.headers, &request.body).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(header(request, "content-type"), "application/json");
        let at: i64 = header(request, "webhook-timestamp").parse().unwrap();
        let now = crate::helpers::now_ms() / 1000;
        assert!((now - 120..=now).contains(&at), "webhook-timestamp {at} is not of the attempt (now {now})");
    }
    for verdict in verify_with_the_spec_library(requests, true) {
        let refused = verdict.expect_err("a tampered body verified");
        assert!(refused.contains("No matching signature"), "{refused}");
    }
}

async fn call(app: &TestApp, method: Method, path: &str, access: &str, ray: &str, body: Value) -> reqwest::Response {
    let request = app.client.request(method, app.url(path)).bearer_auth(access).header("cf-ray", ray).json(&body);
    app.send(request).await
}

/// A code for `destination` verified: the answer, and the code.
async fn verified(app: &TestApp, destination: &str, purpose: &str) -> (Value, String) {
    let otp = app.otp_for(destination, purpose).await;
    let (status, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
    assert_eq!(status, 200, "{body}");
    (body, otp.code)
}

/// The verification token of a verified `purpose` code.
async fn token(app: &TestApp, destination: &str, purpose: &str) -> String {
    verified(app, destination, purpose).await.0["verification_token"].as_str().unwrap().to_string()
}

/// A login; the answer.
async fn log_in(app: &TestApp, email: &str) -> Value {
    verified(app, email, "login").await.0
}

/// A signed-in session's logout, carrying `ray`.
async fn log_out(app: &TestApp, session: &Value, ray: &str) {
    let access = session["access"].as_str().unwrap();
    let (status, body) = json_of(call(app, Method::POST, "/api/auth/logout/", access, ray, json!({})).await).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn webhooks_reach_a_receiver_signed_retried_kept_when_it_is_down_and_never_slow_a_request() {
    let server = receiver().await;
    let url: &'static str = Box::leak(format!("{}/hooks", server.uri()).into_boxed_str());
    let vars: &'static [(&'static str, &'static str)] = Box::leak(Box::new([
        ("WEBHOOK_URL", url),
        ("WEBHOOK_SECRET", SECRET),
        ("WEBHOOK_RETRY_DELAYS_SECONDS", "1"),
        // A retired refresh token is a reuse at once.
        ("REFRESH_REUSE_GRACE_SECONDS", "0"),
    ]));
    let state = WorkerState::new("webhooks").await;
    let three_attempts = [("max_retries = 9", "max_retries = 2")];
    let profile = Profile { name: "webhooks", vars };
    let app = state.start_with_wrangler_changes(profile, "webhooks", &three_attempts, true).await;

    let user = an_accounts_story_arrives_as_the_eight_types_signed_and_without_secrets(&app, &server).await;
    a_receiver_that_redirects_then_fails_gets_the_event_on_the_third_attempt(&app, &server, &user).await;
    a_receiver_that_never_takes_it_leaves_it_dead_in_d1_and_the_replay_delivers_it(&app, &server, &user).await;
    a_hanging_receiver_does_not_slow_the_users_request(&app, &server, &user).await;
}

/// The story's webhooks, and a signed-in session of a second user for the
/// steps after it.
async fn an_accounts_story_arrives_as_the_eight_types_signed_and_without_secrets(
    app: &TestApp,
    server: &MockServer,
) -> Value {
    let (email, phone) = (random_email(), random_phone());
    let ray = new_ray();
    // Every code and token of the story: no webhook may hold one.
    let mut secrets: Vec<String> = vec![SECRET.into()];
    let mut keep = |(body, code): (Value, String)| {
        secrets.push(code);
        for key in ["verification_token", "access", "refresh"] {
            if let Some(t) = body[key].as_str() {
                secrets.push(t.to_string());
            }
        }
        body
    };
    // Registered (user.created, session.created), carrying the story's ray.
    let register = keep(verified(app, &email, "register").await)["verification_token"].clone();
    let answer = app
        .send(app.client.post(app.url("/api/auth/register/")).header("cf-ray", &ray).json(&json!({
            "verification_token": register, "username": format!("hook_{}", random_hex(10))
        })))
        .await;
    let (status, first) = json_of(answer).await;
    assert_eq!(status, 201, "{first}");
    let first = keep((first, String::new()));
    let user_id = first["user"]["id"].as_str().unwrap().to_string();
    let access = first["access"].as_str().unwrap();
    // Signed in again (session.created), its refresh token reused (refresh_token.reuse_detected).
    let second = keep(verified(app, &email, "login").await);
    let old = second["refresh"].as_str().unwrap();
    let (status, rotated) = json_of(app.post_json("/api/auth/token/refresh/", &json!({ "refresh": old })).await).await;
    assert_eq!(status, 200, "{rotated}");
    keep((rotated, String::new()));
    let reused = app.post_json("/api/auth/token/refresh/", &json!({ "refresh": old })).await;
    crate::helpers::assert_error(reused, 401, "REFRESH_TOKEN_REUSED").await;
    // A phone added (destination.added); the first session logged out (session.revoked).
    let verify = keep(verified(app, &phone, "verify").await)["verification_token"].clone();
    let added =
        call(app, Method::POST, "/api/auth/me/destinations/", access, &ray, json!({ "verification_token": verify }));
    assert_eq!(added.await.status(), 200);
    log_out(app, &first, &ray).await;
    // A session's refresh token revoked (RFC 7009): session.created, session.revoked.
    let revoked = keep(verified(app, &email, "login").await);
    let revoke = app.post_json("/api/auth/token/revoke/", &json!({ "token": revoked["refresh"] })).await;
    assert_eq!(revoke.status(), 200);
    // Codes asked for too often (rate_limit.exceeded).
    let limited = random_email();
    for _ in 0..5 {
        assert_eq!(app.request_otp(&limited, "verify").await.status(), 200);
    }
    let refused = app.send(app.client.post(app.url("/api/auth/otp/request/")).header("cf-ray", &ray).json(&json!({
        "destination": limited, "purpose": "verify"
    })));
    assert_eq!(refused.await.status(), 429);
    // A code the provider would not take (delivery.failed).
    let unlucky = random_email();
    provider_answers(app, &unlucky, provider_error(&unlucky, 500), ALWAYS).await;
    let failed = app.send(app.client.post(app.url("/api/auth/otp/request/")).header("cf-ray", &ray).json(&json!({
        "destination": unlucky, "purpose": "register"
    })));
    assert_eq!(failed.await.status(), 502);
    // The account deleted (account.deleted).
    let step_up = keep(verified(app, &email, "verify").await)["verification_token"].clone();
    let third = keep(verified(app, &email, "login").await);
    let third_access = third["access"].as_str().unwrap();
    let deleted =
        call(app, Method::DELETE, "/api/auth/me/", third_access, &ray, json!({ "verification_token": step_up }));
    assert_eq!(deleted.await.status(), 200);

    // Everything of this user, and the two events of the story's ray without one.
    let mut got = wait_for(server, &user_id, 10, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let others = loop {
        let with_ray: Vec<Request> = received(server, &ray).await;
        let others: Vec<Request> =
            with_ray.into_iter().filter(|r| !String::from_utf8_lossy(&r.body).contains(&user_id)).collect();
        if others.len() >= 2 || Instant::now() > deadline {
            break others;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    got.extend(others);
    let mut types: Vec<String> = got.iter().map(|r| body(r)["type"].as_str().unwrap().to_string()).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "account.deleted",
            "delivery.failed",
            "destination.added",
            "rate_limit.exceeded",
            "refresh_token.reuse_detected",
            "session.created",
            "session.created",
            "session.created",
            "session.created",
            "session.revoked",
            "session.revoked",
            "user.created",
        ],
        "every event of the story, once each"
    );
    assert_signed_and_documented(&got);
    // What the bodies say, and never hold.
    let of = |t: &str| got.iter().map(body).find(|b| b["type"] == t).unwrap();
    assert_eq!(of("user.created")["data"]["request_id"], ray.as_str(), "the register request's id");
    assert_eq!(of("destination.added")["data"]["outcome"], "phone");
    let revocations: Vec<Value> = got.iter().map(body).filter(|b| b["type"] == "session.revoked").collect();
    let outcomes: Vec<&Value> = revocations.iter().map(|b| &b["data"]["outcome"]).collect();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.contains(&&json!("logout")) && outcomes.contains(&&json!("token_revoked")), "{outcomes:?}");
    assert_eq!(of("refresh_token.reuse_detected")["data"]["session_id"], second["session_id"]);
    assert_eq!(of("delivery.failed")["data"]["provider_code"], "resend:internal_server_error");
    let deleted = of("account.deleted");
    let only_the_id = json!({ "event": "account_deleted", "outcome": "ok", "request_id": ray, "user_id": user_id });
    assert_eq!(deleted["data"], only_the_id);
    let mut ids: Vec<String> = got.iter().map(|r| header(r, "webhook-id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "a webhook id per event");
    secrets.extend([email.clone(), phone.clone(), phone[1..].to_string(), limited, unlucky]);
    secrets.retain(|s| !s.is_empty());
    assert!(secrets.len() >= 14, "{secrets:?}");
    for request in &got {
        let text = String::from_utf8_lossy(&request.body);
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a webhook carries {secret}: {text}");
        }
    }
    // A second user for the next steps.
    let other = random_email();
    let register = token(app, &other, "register").await;
    let body = json!({ "verification_token": register, "username": format!("hook_{}", random_hex(10)) });
    let (status, answer) = json_of(app.post_json("/api/auth/register/", &body).await).await;
    assert_eq!(status, 201, "{answer}");
    answer
}

async fn a_receiver_that_redirects_then_fails_gets_the_event_on_the_third_attempt(
    app: &TestApp,
    server: &MockServer,
    user: &Value,
) {
    let ray = new_ray();
    // First a redirect (a failure: the spec says not to follow it), then a 500.
    let redirect = ResponseTemplate::new(301).insert_header("location", format!("{}/elsewhere", server.uri()));
    for (answer, priority) in [(redirect, 1), (ResponseTemplate::new(500), 2)] {
        Mock::given(method("POST"))
            .and(body_string_contains(ray.as_str()))
            .respond_with(answer)
            .up_to_n_times(1)
            .with_priority(priority)
            .mount(server)
            .await;
    }
    let session = log_in(app, user["user"]["email"].as_str().unwrap()).await;

    log_out(app, &session, &ray).await;

    let attempts = wait_for(server, &ray, 3, Duration::from_secs(30)).await;
    assert_eq!(attempts.len(), 3);
    let all = server.received_requests().await.unwrap();
    assert!(all.iter().all(|r| r.url.path() == "/hooks"), "the redirect was followed");
    assert_eq!(body(&attempts[0])["type"], "session.revoked");
    for attempt in &attempts {
        assert_eq!(header(attempt, "webhook-id"), header(&attempts[0], "webhook-id"), "one id for every attempt");
        assert_eq!(attempt.body, attempts[0].body, "the same body");
    }
    let times: Vec<i64> = attempts.iter().map(|a| header(a, "webhook-timestamp").parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[1] > w[0]), "a second between attempts at least: {times:?}");
    assert_signed_and_documented(&attempts);
    // Delivered: nothing more comes, and nothing is dead.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(received(server, &ray).await.len(), 3);
    let id = header(&attempts[0], "webhook-id");
    assert!(app.d1(&format!("SELECT id FROM webhook_dead_letters WHERE id = {}", sql_str(&id))).await.is_empty());
}

async fn a_receiver_that_never_takes_it_leaves_it_dead_in_d1_and_the_replay_delivers_it(
    app: &TestApp,
    server: &MockServer,
    user: &Value,
) {
    let ray = new_ray();
    // 500 to every attempt the queue makes (max_retries = 2: three); the
    // replay's attempt then finds the receiver back (204).
    Mock::given(method("POST"))
        .and(body_string_contains(ray.as_str()))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(server)
        .await;
    let session = log_in(app, user["user"]["email"].as_str().unwrap()).await;

    log_out(app, &session, &ray).await;

    let attempts = wait_for(server, &ray, 3, Duration::from_secs(30)).await;
    let id = header(&attempts[0], "webhook-id");
    let query = format!("SELECT type, body, replay_requested_at FROM webhook_dead_letters WHERE id = {}", sql_str(&id));
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let rows = app.d1(&query).await;
        if !rows.is_empty() {
            break rows;
        }
        assert!(Instant::now() < deadline, "webhook {id} not in webhook_dead_letters");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead[0]["type"], "session.revoked");
    assert_eq!(dead[0]["body"].as_str().unwrap().as_bytes(), &attempts[0].body[..], "the body as sent");
    assert_eq!(received(server, &ray).await.len(), 3, "no attempt after the dead-letter queue");

    // The operator asks for a replay; the cron puts it back on the queue.
    app.d1(&format!(
        "UPDATE webhook_dead_letters SET replay_requested_at = {} WHERE id = {}",
        crate::helpers::now_ms(),
        sql_str(&id)
    ))
    .await;
    let cron = app.get("/__scheduled?cron=17+*+*+*+*").await;
    assert!(cron.status().is_success(), "{}", cron.status());

    let attempts = wait_for(server, &ray, 4, Duration::from_secs(30)).await;
    let replayed = &attempts[3];
    assert_eq!(header(replayed, "webhook-id"), id, "the same id");
    assert_eq!(replayed.body, attempts[0].body, "the same body");
    assert_signed_and_documented(std::slice::from_ref(replayed));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.d1(&query).await.is_empty() {
        assert!(Instant::now() < deadline, "the replayed webhook is still a dead letter");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn a_hanging_receiver_does_not_slow_the_users_request(app: &TestApp, server: &MockServer, user: &Value) {
    let ray = new_ray();
    // Longer than an attempt may take (15 s): the first attempt is aborted.
    Mock::given(method("POST"))
        .and(body_string_contains(ray.as_str()))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(20)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    let session = log_in(app, user["user"]["email"].as_str().unwrap()).await;
    let started = Instant::now();

    log_out(app, &session, &ray).await;

    assert!(started.elapsed() < Duration::from_secs(5), "the logout took {:?}", started.elapsed());
    wait_for(server, &ray, 1, Duration::from_secs(30)).await;
}

/// The document's webhooks are the service's event types, and each
/// example is what its schema allows.
#[test]
fn the_documents_webhooks_are_the_event_types_and_their_examples_fit() {
    let mut documented: Vec<String> = webhook_examples().into_iter().map(|(kind, _)| kind).collect();
    documented.sort();
    let mut types: Vec<&str> = otp_edge::domain::standard_webhooks::EVENT_TYPES.iter().map(|t| t.as_str()).collect();
    types.sort();
    assert_eq!(documented, types);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("webhook-id", format!("msg_{}", random_hex(32)).parse().unwrap());
    headers.insert("webhook-timestamp", "1796083200".parse().unwrap());
    headers.insert("webhook-signature", format!("v1,{}=", "A".repeat(43)).parse().unwrap());
    for (kind, example) in webhook_examples() {
        assert_eq!(example["type"], kind.as_str());
        check_webhook(&kind, &headers, example.to_string().as_bytes()).unwrap_or_else(|e| panic!("{kind}: {e}"));
        // A body that breaks its schema is caught.
        let mut wrong = example.clone();
        wrong["data"]["code"] = json!("123456");
        assert!(check_webhook(&kind, &headers, wrong.to_string().as_bytes()).is_err(), "{kind}");
    }
    headers.remove("webhook-signature");
    let (kind, example) = webhook_examples().remove(0);
    assert!(check_webhook(&kind, &headers, example.to_string().as_bytes()).unwrap_err().contains("webhook-signature"));
}
