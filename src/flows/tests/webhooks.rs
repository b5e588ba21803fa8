//! Signed webhooks: which audit events become webhooks, what they carry
//! (and never carry), one `sendBatch` per request after the answer, an
//! attempt's signature and headers, the backoff, the dead letters and their
//! replay. The signature itself is checked against the spec's test vectors
//! (`domain::standard_webhooks`) and, black-box, by the spec's own Python
//! library (tests/api/webhooks.rs).

use serde_json::Value;

use super::account::as_request;
use super::{run, World};
use crate::domain::otp::Purpose;
use crate::domain::standard_webhooks::{Queued, SigningKey};
use crate::flows::account;
use crate::flows::otp_verify::Verified;
use crate::flows::webhooks::{self, Attempted};
use crate::native::answer;
use crate::ports::Answer;

const IP: &str = "203.0.113.90";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const URL: &str = "https://hooks.acme.test/otp-edge";

fn world(events: &str) -> World {
    World::with(&[
        ("WEBHOOK_URL", URL),
        ("WEBHOOK_SECRET", SECRET),
        ("WEBHOOK_EVENTS", events),
        ("WEBHOOK_RETRY_DELAYS_SECONDS", "5,300,1800"),
    ])
}

/// The webhooks queued so far, taken: `(type, body, message)`.
fn queued(w: &World) -> Vec<(String, Value, String)> {
    w.fakes
        .hooks
        .take()
        .into_iter()
        .map(|m| {
            let q = Queued::from_message(&m).unwrap_or_else(|| panic!("not a webhook message: {m:?}"));
            assert!(q.id.starts_with("msg_") && q.id.len() == 36, "{}", q.id);
            let body: Value = serde_json::from_str(&q.body).expect("a JSON body");
            (body["type"].as_str().unwrap().to_string(), body, m)
        })
        .collect()
}

fn types(hooks: &[(String, Value, String)]) -> Vec<&str> {
    hooks.iter().map(|(t, _, _)| t.as_str()).collect()
}

#[test]
fn an_accounts_story_becomes_the_issues_webhooks_carrying_no_code_token_or_address() {
    run(async {
        let w = world("all");
        // Registered by email: user.created, then session.created.
        let token = w.token_for(IP, "rhea@example.com", Purpose::Register).await;
        w.fakes.hooks.take();
        let registered = w.register(IP, &token, "rhea").await.expect("registered");
        assert!(queued(&w).is_empty(), "nothing before the answer's background work");
        w.fakes.run_later().await;
        assert_eq!(w.fakes.hooks.batches.borrow().len(), 1, "one sendBatch for the request's two events");
        let mut all = queued(&w);
        assert_eq!(types(&all), ["user.created", "session.created"]);
        let user = registered.user.id.clone();
        let created = &all[0].1;
        assert_eq!(created["data"]["user_id"], user.as_str());
        assert_eq!(created["data"]["destination"], "r**a@example.com");
        assert_eq!(created["data"]["request_id"], "req-native");
        assert_eq!(created["timestamp"], "2026-12-01T00:00:00.000Z");
        assert_eq!(all[1].1["data"]["session_id"], registered.session_id.as_str());

        // A phone added, a logout, the refresh token of another session reused.
        let me = account::authenticate(&w.app(IP), Some(&format!("Bearer {}", registered.access))).await.unwrap();
        let verify = w.token_for(IP, "+15551230090", Purpose::Verify).await;
        as_request(&w, async |app| account::attach_destination(app, &me, &verify).await).await.unwrap();
        let (otp_id, code) = w.code_for(IP, "rhea@example.com", Purpose::Login).await;
        let Ok(Verified::Login(second)) = w.verify(IP, &otp_id, &code).await else { panic!("no login") };
        let rotated = crate::flows::refresh::refresh(&w.app(IP), &second.refresh).await.unwrap();
        w.fakes.clock.advance(60_000);
        let app = w.app(IP);
        assert!(crate::flows::refresh::refresh(&app, &second.refresh).await.is_err(), "a reuse");
        app.store_trail();
        as_request(&w, async |app| account::logout(app, &me).await).await.unwrap();
        w.fakes.run_later().await;
        let later = queued(&w);
        assert_eq!(
            types(&later),
            ["destination.added", "session.created", "refresh_token.reuse_detected", "session.revoked"]
        );
        assert_eq!(later[0].1["data"]["destination"], "+15******090");
        assert_eq!(later[0].1["data"]["outcome"], "phone");
        assert_eq!(later[2].1["data"]["session_id"], second.session_id.as_str());
        assert_eq!(later[3].1["data"]["event"], "session_revoked");
        assert_eq!(later[3].1["data"]["outcome"], "logout");
        all.extend(later);

        // Too many codes asked for: rate_limit.exceeded, with the masked destination.
        for _ in 0..5 {
            w.request(IP, "+15551230091", Purpose::Verify).await.unwrap();
        }
        assert!(w.request(IP, "+15551230091", Purpose::Verify).await.is_err());
        let limited = queued(&w);
        assert_eq!(types(&limited), ["rate_limit.exceeded"]);
        assert_eq!(limited[0].1["data"]["destination"], "+15******091");
        all.extend(limited);

        // A delivery that fails while the client waits: delivery.failed.
        w.fakes.providers.answer_next("nix@example.com", vec![answer(422, r#"{"name":"validation_error"}"#)]);
        assert!(w.request(IP, "nix@example.com", Purpose::Register).await.is_err());
        let failed = queued(&w);
        assert_eq!(types(&failed), ["delivery.failed"]);
        assert_eq!(failed[0].1["data"]["provider_code"], "resend:validation_error");
        assert_eq!(failed[0].1["data"]["attempt"], 1);
        all.extend(failed);

        // The account deleted: account.deleted names the account alone.
        let third = w.logged_in(IP, "rhea@example.com").await;
        let me = account::authenticate(&w.app(IP), Some(&format!("Bearer {}", third.access))).await.unwrap();
        let step_up = w.token_for(IP, "rhea@example.com", Purpose::Verify).await;
        w.fakes.hooks.take();
        as_request(&w, async |app| account::delete_account(app, &me, &step_up).await).await.unwrap();
        let deleted = queued(&w);
        assert_eq!(types(&deleted), ["account.deleted"]);
        let data = deleted[0].1["data"].as_object().unwrap();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(keys, ["event", "outcome", "request_id", "user_id"]);
        assert_eq!(data["user_id"], user.as_str());
        // Its stored audit row keeps no link to the person, as before.
        let rows = w.rows("SELECT user_id FROM audit_events WHERE event = 'account_deleted'");
        assert!(rows[0]["user_id"].is_null(), "{rows:?}");
        all.extend(deleted);

        // No webhook holds a code, a token, an address or the IP's hash.
        let ip_hash = crate::audit::ip_hash(super::PEPPER, IP);
        let secrets =
            [code.as_str(), &token, &verify, &step_up, &registered.refresh, &registered.access, &second.refresh];
        for (kind, body, message) in &all {
            for secret in secrets.iter().chain(&[
                rotated.refresh.as_str(),
                &third.refresh,
                "rhea@example.com",
                "15551230090",
                &ip_hash,
            ]) {
                assert!(!message.contains(secret), "{kind} carries {secret}: {message}");
            }
            let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["data", "timestamp", "type"], "{kind}");
            for key in body["data"].as_object().unwrap().keys() {
                assert!(!["ip_hash", "latency_ms", "at_ms"].contains(&key.as_str()), "{kind} carries {key}");
            }
        }
        // Every webhook id is its own.
        let mut ids: Vec<String> = all.iter().map(|(_, _, m)| Queued::from_message(m).unwrap().id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
    })
}

#[test]
fn only_the_selected_types_are_queued_and_without_a_url_nothing() {
    run(async {
        let w = world("session.revoked");
        w.seed_user("sam@example.com", "active");
        let login = w.logged_in(IP, "sam@example.com").await;
        let me = account::authenticate(&w.app(IP), Some(&format!("Bearer {}", login.access))).await.unwrap();
        as_request(&w, async |app| account::sign_out_everywhere(app, &me, true).await).await.unwrap();
        w.fakes.run_later().await;
        let hooks = queued(&w);
        assert_eq!(types(&hooks), ["session.revoked"]);
        assert_eq!(hooks[0].1["data"]["event"], "sessions_revoked");
        assert_eq!(hooks[0].1["data"]["outcome"], "everywhere");

        // No WEBHOOK_URL: the queue is bound, and nothing is sent to it.
        let off = World::with(&[("WEBHOOK_SECRET", SECRET)]);
        off.seed_user("sol@example.com", "active");
        off.logged_in(IP, "sol@example.com").await;
        off.fakes.run_later().await;
        assert!(off.events().contains(&("session_created".into(), "ok".into())));
        assert!(off.fakes.hooks.batches.borrow().is_empty());
    })
}

#[test]
fn a_queue_that_refuses_a_batch_is_tried_once_more_and_the_audit_rows_are_kept_either_way() {
    run(async {
        let w = world("all");
        w.seed_user("tia@example.com", "active");
        let (otp_id, code) = w.code_for(IP, "tia@example.com", Purpose::Login).await;
        w.fakes.hooks.fail_next.set(true);
        w.verify(IP, &otp_id, &code).await.unwrap();
        w.fakes.run_later().await;
        assert_eq!(types(&queued(&w)), ["session.created"], "sent on the second try");
        assert!(w.events().contains(&("session_created".into(), "ok".into())));
    })
}

/// The webhook a test attempts: a session.created, queued by a login; its
/// queue message, and what it holds.
fn one_queued(w: &World) -> (String, Queued) {
    run(async {
        w.seed_user("uma@example.com", "active");
        w.logged_in(IP, "uma@example.com").await;
        w.fakes.run_later().await;
    });
    let mut hooks = queued(w);
    assert_eq!(types(&hooks), ["session.created"]);
    let message = hooks.remove(0).2;
    let q = Queued::from_message(&message).unwrap();
    (message, q)
}

#[test]
fn an_attempt_posts_the_body_signed_with_the_id_and_the_attempts_timestamp() {
    let w = world("all");
    let (message, q) = one_queued(&w);
    run(async {
        let ports = w.fakes.ports();
        assert_eq!(webhooks::attempt(w.config, &ports, &message, 1).await, Attempted::Done);
        w.fakes.clock.advance(7_500);
        // A second delivery of the same message (a retry): same id, new timestamp.
        assert_eq!(webhooks::attempt(w.config, &ports, &message, 2).await, Attempted::Done);
    });
    let sent: Vec<_> = w.fakes.providers.requests.borrow().iter().filter(|r| r.url == URL).cloned().collect::<Vec<_>>();
    assert_eq!(sent.len(), 2);
    let key = SigningKey::parse(SECRET).unwrap();
    for (request, at) in sent.iter().zip([crate::native::T0, crate::native::T0 + 7_500]) {
        let header = |name: &str| request.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        let timestamp = (at / 1000).to_string();
        assert_eq!(request.body, q.body, "the body as queued, byte for byte");
        assert_eq!(header("webhook-id"), Some(q.id.as_str()));
        assert_eq!(header("webhook-timestamp"), Some(timestamp.as_str()));
        assert_eq!(header("webhook-signature"), Some(key.sign(&q.id, at / 1000, &q.body).as_str()));
        assert_eq!(header("content-type"), Some("application/json"));
        assert!(header("user-agent").unwrap().starts_with("otp-edge/"));
    }
}

#[test]
fn a_failed_attempt_backs_off_on_the_schedule_and_heeds_retry_after() {
    let w = world("all");
    let (message, _) = one_queued(&w);
    // The receiver's answers, in order: 500, a timeout, a refused connection,
    // a redirect, a 503 asking for 600 s, a 404; then 204.
    let answers: Vec<Result<Answer, bool>> = vec![
        answer(500, ""),
        Err(true),
        Err(false),
        answer(301, ""),
        Ok(Answer { status: 503, retry_after: Some("600".into()), body: String::new() }),
        answer(404, ""),
        answer(204, ""),
    ];
    w.fakes.providers.answer_next("session.created", answers);
    let outcomes: Vec<Attempted> = run(async {
        let ports = w.fakes.ports();
        let mut out = Vec::new();
        for attempts in 1..=7 {
            out.push(webhooks::attempt(w.config, &ports, &message, attempts).await);
        }
        out
    });
    assert_eq!(outcomes[6], Attempted::Done);
    let waits: Vec<u32> = outcomes[..6]
        .iter()
        .map(|o| match o {
            Attempted::RetryIn(s) => *s,
            Attempted::Done => panic!("{outcomes:?}"),
        })
        .collect();
    // 5, 300, 1800, then the last delay again; 600 s asked for; each with
    // up to a tenth of jitter.
    for (wait, base) in waits.iter().zip([5, 300, 1800, 1800, 1800, 1800]) {
        assert!((base..=base + base / 10).contains(wait), "{waits:?}");
    }
}

#[test]
fn an_unreadable_message_or_webhooks_turned_off_are_acknowledged_unsent() {
    let w = world("all");
    let (message, _) = one_queued(&w);
    let off = World::new();
    run(async {
        assert_eq!(webhooks::attempt(w.config, &w.fakes.ports(), "nonsense", 1).await, Attempted::Done);
        assert_eq!(webhooks::attempt(off.config, &off.fakes.ports(), &message, 1).await, Attempted::Done);
    });
    assert!(w.fakes.providers.requests.borrow().iter().all(|r| r.url != URL));
    assert!(off.fakes.providers.requests.borrow().is_empty());
}

#[test]
fn a_dead_webhook_is_kept_in_d1_and_replayed_with_its_id_and_body_when_asked() {
    let w = world("all");
    let (message, q) = one_queued(&w);
    run(async {
        let ports = w.fakes.ports();
        webhooks::dead_letter(&ports, &message).await.unwrap();
        // Delivered twice to the dead-letter queue: still one row.
        webhooks::dead_letter(&ports, &message).await.unwrap();
        let rows = w.rows("SELECT id, type, body, dead_at, replay_requested_at FROM webhook_dead_letters");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["id"], q.id.as_str());
        assert_eq!(rows[0]["type"], "session.created");
        assert_eq!(rows[0]["body"], q.body.as_str());
        assert_eq!(rows[0]["dead_at"], crate::native::T0);
        assert!(rows[0]["replay_requested_at"].is_null());

        let db = crate::store::Db::new(ports.db.clone());
        // Not asked for: nothing is replayed.
        assert_eq!(webhooks::replay(&db, &*w.fakes.hooks).await.unwrap(), 0);
        assert!(w.fakes.hooks.batches.borrow().is_empty());
        w.fakes.db.execute("UPDATE webhook_dead_letters SET replay_requested_at = 1");
        assert_eq!(webhooks::replay(&db, &*w.fakes.hooks).await.unwrap(), 1);
        assert_eq!(w.fakes.hooks.take(), std::slice::from_ref(&message), "the same message: same id, same body");
        assert!(w.rows("SELECT id FROM webhook_dead_letters").is_empty(), "forgotten once queued");

        // A replay the queue refuses keeps the row for the next run.
        webhooks::dead_letter(&ports, &message).await.unwrap();
        w.fakes.db.execute("UPDATE webhook_dead_letters SET replay_requested_at = 1");
        w.fakes.hooks.fail_next.set(true);
        assert!(webhooks::replay(&db, &*w.fakes.hooks).await.is_err());
        assert_eq!(w.rows("SELECT id FROM webhook_dead_letters").len(), 1);

        // D1 down: the dead letter is not acknowledged (the consumer retries it).
        w.fakes.db.fail_next.set(true);
        assert!(webhooks::dead_letter(&ports, &message).await.is_err());
    });
}
