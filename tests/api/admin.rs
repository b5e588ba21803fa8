//! The admin API, black-box: every endpoint once with real service tokens
//! (`ADMIN_API_TOKENS` of every test Worker, tests/api/helpers.rs), on the
//! shared Worker; the rules (scopes, each action's audit event, unknown
//! users) are native tests, src/flows/tests/admin.rs.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::account::{accepted, new_user, refresh, sign_in};
use crate::helpers::{
    assert_error, json_of, random_email, random_hex, random_phone, spawn_app, sql_str, TestApp, ADMIN_TOKEN,
    SUPPORT_TOKEN,
};

async fn admin(app: &TestApp, method: Method, path: &str, token: Option<&str>) -> reqwest::Response {
    let request = app.client.request(method, app.url(path));
    app.send(match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    })
    .await
}

/// The body of a 200.
async fn ok(resp: reqwest::Response) -> Value {
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// An error answer's `WWW-Authenticate`, after checking its status and code; and its request id.
async fn challenge(resp: reqwest::Response, status: u16, code: &str) -> (String, String) {
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let (www_authenticate, request_id) = (header("www-authenticate"), header("x-request-id").unwrap());
    assert_error(resp, status, code).await;
    (www_authenticate.unwrap_or_else(|| panic!("{status} {code} without WWW-Authenticate")), request_id)
}

/// The user's stored events, newest first, through the API, once at least
/// `n` admin events are among them (the trail is written after the answer).
async fn events_with(app: &TestApp, user: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed =
            ok(admin(app, Method::GET, &format!("/api/admin/users/{user}/events/?limit=200"), Some(ADMIN_TOKEN)).await)
                .await;
        let events = listed["events"].as_array().unwrap().clone();
        if events.iter().filter(|e| e["actor"].is_string()).count() >= n || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn support_and_operations_look_up_disable_enable_sign_out_and_audit_an_account_with_service_tokens() {
    let app = spawn_app().await;
    let (first, email) = new_user(&app).await;
    let second = sign_in(&app, &email).await;
    let user = first.user_id.clone();
    let by_id = format!("/api/admin/users/{user}/");

    // No token, a token no entry has, a token without the scope: 401, 401, 403, each recorded.
    let (no_token, denied_a) = challenge(admin(&app, Method::GET, &by_id, None).await, 401, "NOT_AUTHENTICATED").await;
    assert_eq!(no_token, "Bearer");
    let unknown = format!("oea_{}", random_hex(43));
    let (invalid, denied_b) =
        challenge(admin(&app, Method::GET, &by_id, Some(&unknown)).await, 401, "ADMIN_TOKEN_INVALID").await;
    assert_eq!(invalid, "Bearer error=\"invalid_token\"");
    let disable = format!("/api/admin/users/{user}/disable/");
    let (scope, denied_c) =
        challenge(admin(&app, Method::POST, &disable, Some(SUPPORT_TOKEN)).await, 403, "INSUFFICIENT_SCOPE").await;
    assert_eq!(scope, "Bearer error=\"insufficient_scope\", scope=\"users:write\"");

    // Looked up by id, email and phone, normalized as a login normalizes them: unmasked.
    let viewed = ok(admin(&app, Method::GET, &by_id, Some(SUPPORT_TOKEN)).await).await;
    assert_eq!((viewed["id"].as_str(), viewed["email"].as_str()), (Some(user.as_str()), Some(email.as_str())));
    assert_eq!((&viewed["status"], &viewed["live_sessions"]), (&"active".into(), &2.into()), "{viewed}");
    let lookup = |query: Vec<(&'static str, String)>| {
        let request = app.client.get(app.url("/api/admin/users/")).query(&query).bearer_auth(SUPPORT_TOKEN);
        app.send(request)
    };
    let found = ok(lookup(vec![("email", format!("  {} ", email.to_uppercase()))]).await).await;
    assert_eq!(found["id"], user.as_str());
    let phone = random_phone();
    let phone_user = app.seed_user(&phone, "active").await;
    let spaced = format!("{} ({}) {}-{}", &phone[..2], &phone[2..5], &phone[5..8], &phone[8..]);
    let found = ok(lookup(vec![("phone", spaced)]).await).await;
    assert_eq!((found["id"].as_str(), found["phone"].as_str()), (Some(phone_user.as_str()), Some(phone.as_str())));
    assert_error(lookup(vec![("email", random_email())]).await, 404, "USER_NOT_FOUND").await;
    assert_error(lookup(vec![]).await, 400, "VALIDATION_ERROR").await;
    assert_error(
        admin(&app, Method::GET, "/api/admin/users/not-a-user-id/", Some(ADMIN_TOKEN)).await,
        404,
        "USER_NOT_FOUND",
    )
    .await;

    // Disabled: every session ends at once, and stays ended once enabled again.
    let disabled = ok(admin(&app, Method::POST, &disable, Some(ADMIN_TOKEN)).await).await;
    assert_eq!((&disabled["status"], &disabled["live_sessions"]), (&"disabled".into(), &0.into()));
    for s in [&first, &second] {
        assert!(!accepted(&app, &s.access).await, "an access token of the disabled account");
        assert_error(refresh(&app, &s.refresh).await, 401, "SESSION_REVOKED").await;
    }
    let enable = format!("/api/admin/users/{user}/enable/");
    let enabled = ok(admin(&app, Method::POST, &enable, Some(ADMIN_TOKEN)).await).await;
    assert_eq!((&enabled["status"], &enabled["live_sessions"]), (&"active".into(), &0.into()));
    assert!(!accepted(&app, &first.access).await, "enabling brings no session back");
    let third = sign_in(&app, &email).await;
    assert!(accepted(&app, &third.access).await);

    // Every live session revoked; the account stays active.
    let sessions = format!("/api/admin/users/{user}/sessions/");
    let revoked = ok(admin(&app, Method::DELETE, &sessions, Some(ADMIN_TOKEN)).await).await;
    assert_eq!(revoked["revoked"], 1);
    assert!(!accepted(&app, &third.access).await);
    let reasons = app
        .d1(&format!("SELECT revoked_reason AS r FROM sessions WHERE user_id = {} ORDER BY 1", sql_str(&user)))
        .await;
    let reasons: Vec<&str> = reasons.iter().map(|r| r["r"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["account_disabled", "account_disabled", "revoked_by_admin"]);

    // The user's audit trail, newest first: each admin action names the token's id.
    let events = events_with(&app, &user, 5).await;
    assert!(events.windows(2).all(|p| p[0]["at_ms"].as_i64() >= p[1]["at_ms"].as_i64()), "newest first");
    assert!(events.iter().all(|e| e["user_id"] == user.as_str()));
    let oldest_first: Vec<(&str, &str)> =
        events.iter().rev().filter_map(|e| Some((e["event"].as_str()?, e["actor"].as_str()?))).collect();
    let (actions, listings) = oldest_first.split_at(5.min(oldest_first.len()));
    assert_eq!(
        actions,
        [
            ("admin_user_viewed", "admin:support"),
            ("admin_user_viewed", "admin:support"),
            ("admin_user_disabled", "admin:ops"),
            ("admin_user_enabled", "admin:ops"),
            ("admin_sessions_revoked", "admin:ops"),
        ]
    );
    // Waiting for the trail, earlier listings may be stored already.
    assert!(listings.iter().all(|e| *e == ("admin_events_listed", "admin:ops")), "{listings:?}");
    let two =
        ok(admin(&app, Method::GET, &format!("/api/admin/users/{user}/events/?limit=2"), Some(ADMIN_TOKEN)).await)
            .await;
    assert_eq!(two["events"].as_array().unwrap().len(), 2);
    let events_path = format!("/api/admin/users/{user}/events/?limit=0");
    assert_error(admin(&app, Method::GET, &events_path, Some(ADMIN_TOKEN)).await, 400, "VALIDATION_ERROR").await;

    // Each refusal is logged, by its request; a valid token's is in the trail too.
    let log = app.worker_log();
    let denied_lines: Vec<Value> = log
        .lines()
        .filter_map(|l| l.find('{').and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok()))
        .filter(|v| v["event"] == "admin_denied")
        .collect();
    for (request_id, outcome) in
        [(&denied_a, "no_token"), (&denied_b, "invalid_token"), (&denied_c, "insufficient_scope")]
    {
        let line = denied_lines.iter().find(|v| v["request_id"] == request_id.as_str());
        assert_eq!(line.map(|v| &v["outcome"]), Some(&outcome.into()), "no admin_denied line for {request_id}");
    }
    let stored = app
        .d1(&format!(
            "SELECT request_id, outcome, actor FROM audit_events WHERE event = 'admin_denied' AND request_id IN ({}, {}, {})",
            sql_str(&denied_a),
            sql_str(&denied_b),
            sql_str(&denied_c)
        ))
        .await;
    let stored: Vec<(&str, &str, Option<&str>)> = stored
        .iter()
        .map(|r| (r["request_id"].as_str().unwrap(), r["outcome"].as_str().unwrap(), r["actor"].as_str()))
        .collect();
    assert_eq!(
        stored,
        [(denied_c.as_str(), "insufficient_scope", Some("admin:support"))],
        "strangers' are log lines only"
    );
    assert!(
        !log.contains(ADMIN_TOKEN) && !log.contains(SUPPORT_TOKEN) && !log.contains(&unknown),
        "a token in the log"
    );
    let trail = serde_json::to_string(&app.d1("SELECT * FROM audit_events").await).unwrap();
    let hash = |t: &str| otp_edge::domain::crypto::hex(&otp_edge::domain::crypto::sha256(t.as_bytes()));
    for secret in [ADMIN_TOKEN, SUPPORT_TOKEN, &unknown, &hash(ADMIN_TOKEN), &hash(SUPPORT_TOKEN)] {
        assert!(!trail.contains(secret), "the audit trail holds a token or its hash");
    }
}
