//! The audit trail: one structured log line per auth event, and the same
//! events in D1, masked and hashed, so an operator can see what happened to
//! a login with one query.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{json_of, random_email, spawn_app, sql_str, wrong_code, TestApp};

/// The trail is stored after the answer: poll until `want` events are there.
async fn events_of_user(app: &TestApp, email: &str, want: usize) -> Vec<Value> {
    // The query the README gives operators.
    let sql = format!(
        "SELECT datetime(a.at / 1000, 'unixepoch') AS at, a.event, a.outcome, a.destination, a.ip_hash, a.request_id, \
         a.otp_id, a.session_id, a.latency_ms FROM audit_events a JOIN users u ON u.id = a.user_id \
         WHERE u.email = {} ORDER BY a.at, a.id",
        sql_str(email)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = app.d1(&sql).await;
        if rows.len() >= want || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_login_leaves_a_trail_an_operator_can_query() {
    let app = spawn_app().await;
    let email = random_email();
    app.seed_user(&email, "active").await;
    let otp = app.otp_for(&email, "login").await;
    let (status, _) = json_of(app.verify_otp(&otp.id, &wrong_code(&otp.code)).await).await;
    assert_eq!(status, 400);
    let (status, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
    assert_eq!(status, 200);
    let session_id = body["session_id"].as_str().unwrap();

    let rows = events_of_user(&app, &email, 5).await;
    // In the order the events happened (`at`): a login request's own events
    // are written later, with its delivery's, by the queue consumer. The
    // delivery itself may happen after the failed guess.
    let names: Vec<&str> = rows.iter().map(|r| r["event"].as_str().unwrap()).collect();
    let mut without_delivery = names.clone();
    without_delivery.retain(|n| *n != "otp_delivered");
    assert_eq!(without_delivery, ["otp_requested", "otp_failed", "otp_verified", "session_created"], "{rows:?}");
    assert_eq!(names.iter().filter(|n| **n == "otp_delivered").count(), 1, "{rows:?}");
    let outcome =
        |name: &str| rows.iter().find(|r| r["event"] == name).unwrap()["outcome"].as_str().unwrap().to_string();
    assert_eq!(outcome("otp_failed"), "invalid_otp");
    assert_eq!(outcome("otp_verified"), "ok");
    let (local, domain) = email.split_once('@').unwrap();
    let masked = format!("{}{}{}@{domain}", &local[..1], "*".repeat(local.len() - 2), &local[local.len() - 1..]);
    for r in rows.iter().filter(|r| r["event"] != "session_created") {
        assert_eq!(r["destination"], masked.as_str(), "{r}");
        assert_eq!(r["otp_id"], otp.id.as_str());
    }
    let session = rows.iter().find(|r| r["event"] == "session_created").unwrap();
    assert_eq!(session["session_id"], session_id);
    for r in &rows {
        let ip_hash = r["ip_hash"].as_str().unwrap();
        assert!(ip_hash.len() == 16 && !ip_hash.contains(&app.client_ip), "{r}");
        assert!(r["latency_ms"].as_i64().unwrap() >= 0);
        let text = r.to_string();
        assert!(!text.contains(&otp.code) && !text.contains(&email), "secret in the trail: {text}");
    }
}

#[tokio::test]
async fn each_event_is_one_json_log_line_without_codes_or_tokens() {
    let app = spawn_app().await;
    let email = random_email();
    app.seed_user(&email, "active").await;
    let otp = app.otp_for(&email, "login").await;
    let (_, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
    let (access, refresh) = (body["access"].as_str().unwrap(), body["refresh"].as_str().unwrap());

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let lines: Vec<Value> = app
            .worker_log()
            .lines()
            .filter_map(|l| l.find('{').and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok()))
            .filter(|v| v["otp_id"] == otp.id.as_str())
            .collect();
        if lines.iter().any(|l| l["event"] == "otp_verified") || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let requested = lines.iter().find(|l| l["event"] == "otp_requested").expect("an otp_requested line");
    for key in ["request_id", "destination", "ip_hash", "outcome", "latency_ms"] {
        assert!(!requested[key].is_null(), "{key} missing: {requested}");
    }
    assert!(lines.iter().any(|l| l["event"] == "otp_verified"), "{lines:?}");
    let log = app.worker_log();
    for secret in [access, refresh, otp.code.as_str()] {
        assert!(!log.contains(secret), "the log holds a code or token");
    }
}

#[tokio::test]
async fn a_refusal_is_recorded_as_rate_limited_under_its_request_id() {
    let app = spawn_app().await;
    let email = random_email();
    let mut refused_request_id = None;
    for _ in 0..8 {
        let resp = app.request_otp(&email, "register").await;
        let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        if json_of(resp).await.0 == 429 {
            refused_request_id = Some(request_id);
            break;
        }
    }
    let request_id = refused_request_id.expect("the per-destination limit never refused");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = app
            .d1(&format!(
                "SELECT event, outcome, destination FROM audit_events WHERE request_id = {}",
                sql_str(&request_id)
            ))
            .await;
        if let Some(row) = rows.first() {
            assert_eq!(
                (row["event"].as_str(), row["outcome"].as_str()),
                (Some("rate_limited"), Some("otp_request")),
                "{rows:?}"
            );
            assert_eq!(rows.len(), 1, "a refused request records only the refusal: {rows:?}");
            assert!(row["destination"].as_str().unwrap().contains("***"));
            break;
        }
        assert!(Instant::now() < deadline, "no audit event for request {request_id}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The request ids stored with the `otp_requested` event of a code (stored
/// after the answer: polls until there is one).
async fn request_ids_recorded_for(app: &TestApp, otp_id: &str) -> Vec<String> {
    let sql =
        format!("SELECT request_id FROM audit_events WHERE event = 'otp_requested' AND otp_id = {}", sql_str(otp_id));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = app.d1(&sql).await;
        if !rows.is_empty() {
            return rows.iter().map(|r| r["request_id"].as_str().unwrap_or_default().to_string()).collect();
        }
        assert!(Instant::now() < deadline, "no otp_requested event for code {otp_id}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A code request carrying `cf_ray` (raw header bytes); the `x-request-id`
/// answered and the request ids stored in the audit trail.
async fn request_ids_with_cf_ray(app: &TestApp, cf_ray: &[u8]) -> (String, Vec<String>) {
    let request = app
        .client
        .post(app.url("/api/auth/otp/request/"))
        .header("cf-ray", reqwest::header::HeaderValue::from_bytes(cf_ray).unwrap())
        .json(&serde_json::json!({ "destination": random_email(), "purpose": "register" }));
    let resp = app.send(request).await;
    let echoed = String::from_utf8_lossy(resp.headers()["x-request-id"].as_bytes()).into_owned();
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    (echoed, request_ids_recorded_for(app, body["otp_id"].as_str().unwrap()).await)
}

/// Cloudflare's own `cf-ray` (16 hex digits, a dash, the data centre's
/// airport code) is the request id, so the trail matches Cloudflare's logs;
/// anything else a client sends in its place is replaced by a generated id.
#[tokio::test]
async fn only_a_well_formed_cf_ray_becomes_the_request_id() {
    let app = spawn_app().await;

    let ray = format!("{}-LHR", crate::helpers::random_hex(16));
    let (echoed, stored) = request_ids_with_cf_ray(&app, ray.as_bytes()).await;
    assert_eq!((echoed.as_str(), stored), (ray.as_str(), vec![ray.clone()]));

    let long = format!("{}-LHR", "a".repeat(6000));
    let garbage: [&[u8]; 9] = [
        long.as_bytes(),
        b"8d2c4e1a9b3f7a21-LHR\t\"><script>alert(1)</script>",
        b"8d2c4e1a9b3f7a21-LHR, 8d2c4e1a9b3f7a22-LHR",
        b"8d2c4e1a9b3f7a21",
        b"8d2c4e1a9b3f7a21-lhr",
        b"8d2c4e1a9b3f7a21a-LHR",
        b"8d2c4e1a9b3f7a2g-LHR",
        b"' OR '1'='1",
        b"8d2c4e1a9b3f7a21-L\xc9R",
    ];
    let mut generated = Vec::new();
    for sent in garbage {
        let (echoed, stored) = request_ids_with_cf_ray(&app, sent).await;
        let what = String::from_utf8_lossy(&sent[..sent.len().min(60)]).into_owned();
        assert!(
            echoed.len() == 32 && echoed.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "cf-ray {what:?} answered x-request-id {:?}",
            &echoed[..echoed.len().min(80)]
        );
        assert_eq!(stored, vec![echoed.clone()], "cf-ray {what:?}: the trail holds what the answer says");
        generated.push(echoed);
    }
    generated.sort();
    generated.dedup();
    assert_eq!(generated.len(), garbage.len(), "each generated request id is new");
}
