//! Requesting a code: how each purpose delivers it (after the answer through
//! the queue, or before the answer), the decoy that hides whether an account
//! exists, test identities, superseding, what is stored, and what a failing
//! provider means for the client and for the queue.

use serde_json::Value;

use super::{refusal, run, wrong, World, PEPPER, T0};
use crate::domain::otp::{self, OtpCode, Purpose};
use crate::flows::otp_verify::Verified;
use crate::native::answer;
use crate::ports::Answer;

const IP: &str = "198.51.100.7";
const OTHER_IP: &str = "198.51.100.8";

/// The stored row of a code.
fn otp_row(w: &World, otp_id: &str) -> Value {
    let rows = w.rows(&format!(
        "SELECT user_id, otp_type, destination, otp_hash, purpose, is_verified, attempts, created_at, expires_at, \
         invalidated_at, delivery_attempts FROM otp_requests WHERE id = '{otp_id}'"
    ));
    assert_eq!(rows.len(), 1, "one row for {otp_id}");
    rows.into_iter().next().unwrap()
}

/// How many provider requests carried a message to `destination`.
fn sent_to(w: &World, destination: &str) -> usize {
    w.fakes.providers.requests_to(destination).len()
}

fn queued(w: &World) -> usize {
    w.fakes.queue.queued.borrow().len()
}

/// The delivery events of a code: `(event, outcome, attempt, provider_code)`.
fn delivery_events(w: &World, otp_id: &str) -> Vec<(String, String, i64, Option<String>)> {
    w.rows(&format!(
        "SELECT event, outcome, attempt, provider_code FROM audit_events \
         WHERE otp_id = '{otp_id}' AND event LIKE 'otp_deliver%' ORDER BY id"
    ))
    .into_iter()
    .map(|r| {
        (
            r["event"].as_str().unwrap().to_string(),
            r["outcome"].as_str().unwrap().to_string(),
            r["attempt"].as_i64().unwrap(),
            r["provider_code"].as_str().map(str::to_string),
        )
    })
    .collect()
}

fn event(
    name: &str,
    outcome: &str,
    attempt: i64,
    provider_code: Option<&str>,
) -> (String, String, i64, Option<String>) {
    (name.to_string(), outcome.to_string(), attempt, provider_code.map(str::to_string))
}

/// A Twilio error body, as its API answers.
fn twilio_error(code: u32) -> String {
    format!(
        r#"{{"code":{code},"message":"refused","more_info":"https://www.twilio.com/docs/errors/{code}","status":400}}"#
    )
}

/// Twilio unavailable, as its API answers.
fn twilio_unavailable() -> Result<Answer, bool> {
    answer(503, r#"{"code":20503,"message":"Service unavailable","status":503}"#)
}

/// A mail API unavailable: a 503 with no error name.
fn mail_unavailable() -> Result<Answer, bool> {
    answer(503, r#"{"message":"Service Unavailable"}"#)
}

fn times(n: usize, a: impl Fn() -> Result<Answer, bool>) -> Vec<Result<Answer, bool>> {
    (0..n).map(|_| a()).collect()
}

#[test]
fn a_login_code_is_queued_and_delivered_after_the_answer() {
    run(async {
        let w = World::new();
        let user = w.seed_user("ana@example.com", "active");

        let otp = w.request(IP, "ana@example.com", Purpose::Login).await.unwrap();

        assert_eq!(otp.message, "OTP sent to email");
        assert_eq!(otp.expires_in, 600, "an email code lives 600 s");
        assert_eq!(otp.destination_masked, "a*a@example.com");
        assert_eq!(sent_to(&w, "ana@example.com"), 0, "nothing is sent before the answer");
        let row = otp_row(&w, &otp.otp_id);
        assert_eq!(row["user_id"], user.as_str(), "the code is linked to the account");
        assert_eq!(row["purpose"], "login");
        assert_eq!(row["expires_at"], T0 + 600_000);

        w.fakes.run_later().await;
        assert_eq!(queued(&w), 1, "the code is handed to the delivery queue after the answer");
        assert_eq!(sent_to(&w, "ana@example.com"), 0);

        w.deliver_queued().await;
        assert_eq!(sent_to(&w, "ana@example.com"), 1);
        assert_eq!(otp_row(&w, &otp.otp_id)["delivery_attempts"], 1);
        let code = w.last_code_to("ana@example.com");
        assert!(matches!(w.verify(IP, &otp.otp_id, &code).await, Ok(Verified::Login(_))));
        assert_eq!(delivery_events(&w, &otp.otp_id), [event("otp_delivered", "ok", 1, None)]);
    })
}

#[test]
fn register_verify_and_reset_codes_are_delivered_before_the_answer() {
    run(async {
        let w = World::new();
        w.seed_user("+447700900123", "active");
        w.seed_user("reset@example.com", "active");

        for (destination, purpose, expires_in) in [
            ("new@example.com", Purpose::Register, 600),
            ("+447700900123", Purpose::Verify, 300),
            ("reset@example.com", Purpose::Reset, 600),
        ] {
            let otp = w.request(IP, destination, purpose).await.unwrap();

            assert_eq!(otp.expires_in, expires_in, "{destination}");
            assert_eq!(sent_to(&w, destination), 1, "{destination}: sent before the answer");
            w.fakes.run_later().await;
            assert_eq!(queued(&w), 0, "{destination}: nothing queued");
            assert_eq!(sent_to(&w, destination), 1, "{destination}: sent once");
            let row = otp_row(&w, &otp.otp_id);
            assert_eq!(row["purpose"], purpose.as_str());
            // A reset links its account, as a login does (`recover` tests).
            let linked = purpose == Purpose::Reset;
            assert_eq!(!row["user_id"].is_null(), linked, "{destination}: only a login and a reset link the account");
            let code = w.last_code_to(destination);
            assert!(matches!(
                w.verify(IP, &otp.otp_id, &code).await,
                Ok(Verified::Register { .. } | Verified::Other { .. })
            ));
        }
        assert_eq!(w.request(IP, "+447700900123", Purpose::Verify).await.unwrap().message, "OTP sent to phone");
        let sms = w.fakes.providers.requests_to("+447700900123");
        assert!(sms[0].url.starts_with("http://twilio.test/"), "{}", sms[0].url);
    })
}

#[test]
fn with_enumeration_protection_off_a_login_is_delivered_before_the_answer() {
    run(async {
        let w = World::with(&[("ENUMERATION_PROTECTION", "false")]);
        let user = w.seed_user("bea@example.com", "active");

        let otp = w.request(IP, "bea@example.com", Purpose::Login).await.unwrap();

        assert_eq!(sent_to(&w, "bea@example.com"), 1);
        w.fakes.run_later().await;
        assert_eq!(queued(&w), 0);
        assert_eq!(otp_row(&w, &otp.otp_id)["user_id"], user.as_str());
        let code = w.last_code_to("bea@example.com");
        assert!(matches!(w.verify(IP, &otp.otp_id, &code).await, Ok(Verified::Login(_))));
    })
}

#[test]
fn an_unknown_or_disabled_account_gets_a_decoy_that_answers_like_a_real_login() {
    run(async {
        let w = World::new();
        w.seed_user("real@example.com", "active");
        w.seed_user("gone@example.com", "disabled");

        w.fakes.trips.reset();
        let real = w.request(IP, "real@example.com", Purpose::Login).await.unwrap();
        let real_trips = w.fakes.trips.figures();
        assert_eq!(real.destination_masked, "r**l@example.com");
        for (decoy, masked) in [("nope@example.com", "n**e@example.com"), ("gone@example.com", "g**e@example.com")] {
            w.fakes.trips.reset();
            let otp = w.request(IP, decoy, Purpose::Login).await.unwrap();

            assert_eq!(w.fakes.trips.figures(), real_trips, "{decoy}: the same round trips as a real login");
            assert_eq!((otp.message.as_str(), otp.expires_in), (real.message.as_str(), real.expires_in));
            assert_eq!(otp.destination_masked, masked);
            assert_eq!(otp.otp_id.len(), real.otp_id.len());
            let row = otp_row(&w, &otp.otp_id);
            assert_eq!((row["user_id"].clone(), row["purpose"].clone()), (Value::Null, "login".into()));
        }
        // After the answers, each queued one job, alike but for the mark
        // (and the ids): the work after a decoy's answer is a real login's.
        w.fakes.run_later().await;
        let jobs: Vec<_> = w.fakes.queue.queued.borrow().iter().map(|(job, delay)| (job.clone(), *delay)).collect();
        assert_eq!(jobs.len(), 3, "{jobs:?}");
        assert_eq!(jobs.iter().map(|(j, _)| j.decoy).collect::<Vec<_>>(), [false, true, true]);
        for (job, delay) in &jobs {
            let real_job = &jobs[0].0;
            assert_eq!(*delay, crate::config::DEFAULT_LOGIN_DELIVERY_DELAY_SECONDS, "off the answer's way out");
            assert_eq!(job.sealed_code.len(), real_job.sealed_code.len());
            let keys = |j: &crate::domain::delivery::DeliveryJob| {
                let v = serde_json::to_value(j).unwrap();
                v.as_object().unwrap().keys().cloned().collect::<Vec<_>>()
            };
            assert_eq!(keys(job), keys(real_job));
        }
        w.deliver_queued().await;

        assert_eq!(sent_to(&w, "real@example.com"), 1);
        assert_eq!(sent_to(&w, "nope@example.com") + sent_to(&w, "gone@example.com"), 0, "a decoy sends nothing");
        let requested: Vec<_> = w.events().into_iter().filter(|(e, _)| e == "otp_requested").collect();
        let outcomes: Vec<&str> = requested.iter().map(|(_, o)| o.as_str()).collect();
        assert_eq!(outcomes, ["ok", "no_active_account", "no_active_account"]);
        let delivered: Vec<_> = w.events().into_iter().filter(|(e, _)| e.starts_with("otp_deliver")).collect();
        assert_eq!(delivered.len(), 1, "only the real code's delivery is recorded: {delivered:?}");
    })
}

#[test]
fn with_enumeration_protection_off_an_unknown_account_is_404_and_a_disabled_one_403() {
    run(async {
        let w = World::with(&[("ENUMERATION_PROTECTION", "false")]);
        w.seed_user("off@example.com", "disabled");

        assert_eq!(
            refusal(w.request(IP, "nobody@example.com", Purpose::Login).await),
            (404, "USER_NOT_FOUND", "No account found with this email/phone".to_string())
        );
        assert_eq!(
            refusal(w.request(IP, "off@example.com", Purpose::Login).await),
            (403, "ACCOUNT_DISABLED", "Account is not active".to_string())
        );

        w.deliver_queued().await;
        assert!(w.rows("SELECT id FROM otp_requests").is_empty(), "no code is stored");
        assert!(w.fakes.providers.requests.borrow().is_empty(), "nothing is sent");
    })
}

#[test]
fn a_test_identity_gets_its_fixed_code_and_nothing_is_sent() {
    run(async {
        let w =
            World::with(&[("TEST_IDENTITIES", "review@example.com:424242:2099-01-01,+15550001111:135790:2099-01-01")]);
        w.seed_user("review@example.com", "active");

        let login = w.request(IP, "review@example.com", Purpose::Login).await.unwrap();
        let register = w.request(IP, "+15550001111", Purpose::Register).await.unwrap();
        w.deliver_queued().await;

        assert!(w.fakes.providers.requests.borrow().is_empty(), "nothing is sent to a test identity");
        assert_eq!(refusal(w.verify(IP, &login.otp_id, "242424").await).2, "Invalid OTP");
        assert!(matches!(w.verify(IP, &login.otp_id, "424242").await, Ok(Verified::Login(_))));
        assert!(matches!(w.verify(IP, &register.otp_id, "135790").await, Ok(Verified::Register { .. })));
        let requested: Vec<_> = w.events().into_iter().filter(|(e, _)| e == "otp_requested").collect();
        assert!(requested.iter().all(|(_, o)| o == "test_identity"), "{requested:?}");
    })
}

#[test]
fn an_expired_test_identity_is_an_ordinary_destination() {
    run(async {
        // Valid until 2026-12-02T00:00Z, one day after the test's start.
        let w = World::with(&[("TEST_IDENTITIES", "review@example.com:424242:2026-12-02")]);
        w.seed_user("review@example.com", "active");
        let first = w.request(IP, "review@example.com", Purpose::Login).await.unwrap();
        w.deliver_queued().await;
        assert_eq!(sent_to(&w, "review@example.com"), 0, "still a test identity");
        assert!(matches!(w.verify(IP, &first.otp_id, "424242").await, Ok(Verified::Login(_))));

        w.fakes.clock.advance(86_400_000);
        let (otp_id, code) = w.code_for(IP, "review@example.com", Purpose::Login).await;

        assert_eq!(sent_to(&w, "review@example.com"), 1, "from its expiry date on, the code is sent");
        let outcomes: Vec<_> = w.events().into_iter().filter(|(e, _)| e == "otp_requested").map(|(_, o)| o).collect();
        assert_eq!(outcomes, ["test_identity", "ok"]);
        if code != "424242" {
            assert_eq!(refusal(w.verify(IP, &otp_id, "424242").await).2, "Invalid OTP", "the fixed code is gone");
        }
        assert!(matches!(w.verify(IP, &otp_id, &code).await, Ok(Verified::Login(_))));
    })
}

#[test]
fn a_new_code_supersedes_the_older_pending_one_of_the_same_destination_and_purpose() {
    run(async {
        let w = World::new();
        w.seed_user("cy@example.com", "active");
        let (older, older_code) = w.code_for(IP, "cy@example.com", Purpose::Verify).await;
        let (other_purpose, other_purpose_code) = w.code_for(IP, "cy@example.com", Purpose::Reset).await;
        let (other_destination, other_destination_code) = w.code_for(IP, "dee@example.com", Purpose::Verify).await;

        w.fakes.clock.advance(1_000);
        let (newer, newer_code) = w.code_for(IP, "cy@example.com", Purpose::Verify).await;

        assert_eq!(otp_row(&w, &older)["invalidated_at"], T0 + 1_000, "withdrawn when the newer one was stored");
        assert_eq!(otp_row(&w, &newer)["invalidated_at"], Value::Null);
        assert_eq!(refusal(w.verify(IP, &older, &older_code).await).2, "OTP expired");
        assert!(w.verify(IP, &newer, &newer_code).await.is_ok());
        assert!(w.verify(IP, &other_purpose, &other_purpose_code).await.is_ok(), "another purpose is kept");
        assert!(w.verify(IP, &other_destination, &other_destination_code).await.is_ok(), "another destination too");
    })
}

#[test]
fn a_queued_login_code_superseded_before_its_delivery_is_not_sent() {
    run(async {
        let w = World::new();
        w.seed_user("eve@example.com", "active");
        let older = w.request(IP, "eve@example.com", Purpose::Login).await.unwrap();
        let newer = w.request(IP, "eve@example.com", Purpose::Login).await.unwrap();

        w.deliver_queued().await;

        assert_eq!(sent_to(&w, "eve@example.com"), 1, "only the newer code is sent");
        assert_eq!(delivery_events(&w, &older.otp_id), [event("otp_delivery_skipped", "superseded", 1, None)]);
        assert_eq!(delivery_events(&w, &newer.otp_id), [event("otp_delivered", "ok", 1, None)]);
        let code = w.last_code_to("eve@example.com");
        assert!(matches!(w.verify(IP, &newer.otp_id, &code).await, Ok(Verified::Login(_))));
    })
}

#[test]
fn the_stored_row_holds_a_keyed_hash_never_the_code() {
    run(async {
        let w = World::new();
        w.seed_user("+15551234567", "active");
        let (otp_id, code) = w.code_for(IP, "+15551234567", Purpose::Login).await;

        let row = otp_row(&w, &otp_id);
        let code = OtpCode::parse(&code, 6).unwrap();
        let expected = otp::code_hash(PEPPER, &otp_id, Purpose::Login, &code);
        assert_eq!(row["otp_hash"], expected.as_str());
        assert_eq!(expected.len(), 64, "HMAC-SHA256, hex");
        assert!(!expected.contains(code.expose()));
        let other_pepper = otp::code_hash("another-pepper-0123456789abcdefghijklmnop", &otp_id, Purpose::Login, &code);
        assert_ne!(row["otp_hash"], other_pepper.as_str(), "the hash is keyed");
        for (table, columns) in [("otp_requests", "*"), ("audit_events", "*")] {
            let text = Value::Array(w.rows(&format!("SELECT {columns} FROM {table}"))).to_string();
            assert!(!text.contains(code.expose()), "{table} holds the code: {text}");
        }
    })
}

#[test]
fn a_twilio_opt_out_is_400_sms_opted_out_and_the_code_is_withdrawn() {
    run(async {
        let w = World::new();
        w.fakes.providers.answer_next("+15557654321", vec![answer(400, &twilio_error(21610))]);

        let result = w.request(IP, "+15557654321", Purpose::Register).await;

        assert_eq!(
            refusal(result),
            (
                400,
                "SMS_OPTED_OUT",
                "This phone number has opted out of our messages; reply START to our last message to receive codes again"
                    .to_string()
            )
        );
        assert_eq!(sent_to(&w, "+15557654321"), 1, "an opt-out is not retried");
        let rows = w.rows("SELECT id, invalidated_at FROM otp_requests");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["invalidated_at"], T0, "the code is withdrawn");
        w.deliver_queued().await;
        let otp_id = rows[0]["id"].as_str().unwrap();
        assert_eq!(delivery_events(&w, otp_id), [event("otp_delivery_failed", "opted_out", 1, Some("twilio:21610"))]);
    })
}

#[test]
fn a_provider_unavailable_twice_is_502_send_failed_after_two_calls_and_the_code_withdrawn() {
    run(async {
        let w = World::new();
        w.fakes.providers.answer_next("+15557650000", times(2, twilio_unavailable));

        let result = w.request(IP, "+15557650000", Purpose::Register).await;

        assert_eq!(refusal(result), (502, "SEND_FAILED", "Failed to send OTP to phone".to_string()));
        assert_eq!(w.fakes.trips.provider_calls.get(), 2, "one try and one retry");
        assert_eq!(sent_to(&w, "+15557650000"), 2);
        let rows = w.rows("SELECT id, invalidated_at FROM otp_requests");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["invalidated_at"], T0 + 300, "withdrawn after the retry 300 ms later");
        w.deliver_queued().await;
        assert_eq!(queued(&w), 0, "a code whose client got an error is not queued");
        let otp_id = rows[0]["id"].as_str().unwrap();
        assert_eq!(
            delivery_events(&w, otp_id),
            [event("otp_delivery_failed", "provider_unavailable", 1, Some("twilio:20503"))]
        );
    })
}

#[test]
fn a_provider_unavailable_once_is_retried_in_the_call_and_the_code_delivered() {
    run(async {
        let w = World::new();
        w.fakes.providers.answer_next("+15557651111", times(1, twilio_unavailable));

        let otp = w.request(IP, "+15557651111", Purpose::Register).await.unwrap();

        assert_eq!(sent_to(&w, "+15557651111"), 2, "refused, then accepted 300 ms later");
        w.deliver_queued().await;
        assert_eq!(delivery_events(&w, &otp.otp_id), [event("otp_delivered", "ok", 1, None)]);
        let code = w.last_code_to("+15557651111");
        assert!(matches!(w.verify(IP, &otp.otp_id, &code).await, Ok(Verified::Register { .. })));
    })
}

#[test]
fn a_queued_code_survives_a_provider_outage_and_is_delivered_once() {
    run(async {
        let w = World::new();
        w.seed_user("fay@example.com", "active");
        // Two queued tries fail (each with its retry in the call), the third is accepted.
        w.fakes.providers.answer_next("fay@example.com", times(4, mail_unavailable));

        let otp = w.request(IP, "fay@example.com", Purpose::Login).await.unwrap();
        w.deliver_queued().await;

        let sent = w.fakes.providers.requests_to("fay@example.com");
        assert_eq!(sent.len(), 5, "2 + 2 refused, 1 accepted");
        assert!(sent.iter().all(|r| r.body == sent[0].body && r.headers == sent[0].headers), "the same request");
        assert_eq!(queued(&w), 0, "nothing left to deliver");
        assert_eq!(
            delivery_events(&w, &otp.otp_id),
            [
                event("otp_delivery_retry", "provider_unavailable", 1, None),
                event("otp_delivery_retry", "provider_unavailable", 2, None),
                event("otp_delivered", "ok", 3, None),
            ]
        );
        let row = otp_row(&w, &otp.otp_id);
        assert_eq!((row["delivery_attempts"].clone(), row["invalidated_at"].clone()), (3.into(), Value::Null));
        // Tries after 2 s and then 4 s, each try's own retry 300 ms after it.
        assert_eq!(w.fakes.clock.0.get(), T0 + 300 + 2_000 + 300 + 4_000);
        let code = w.last_code_to("fay@example.com");
        assert!(matches!(w.verify(IP, &otp.otp_id, &code).await, Ok(Verified::Login(_))));
    })
}

#[test]
fn a_queue_message_handled_twice_sends_one_message() {
    run(async {
        let w = World::new();
        w.seed_user("gil@example.com", "active");
        let otp = w.request(IP, "gil@example.com", Purpose::Login).await.unwrap();
        w.fakes.run_later().await;
        let job = w.fakes.queue.queued.borrow().front().cloned().expect("a queued job");
        w.fakes.queue.queued.borrow_mut().push_back(job);

        w.deliver_queued().await;

        assert_eq!(sent_to(&w, "gil@example.com"), 1);
        assert_eq!(delivery_events(&w, &otp.otp_id), [event("otp_delivered", "ok", 1, None)]);
    })
}

#[test]
fn a_queued_code_the_provider_never_accepts_is_withdrawn_after_the_last_try() {
    run(async {
        let w = World::new();
        w.seed_user("hal@example.com", "active");
        w.fakes.providers.answer_next("hal@example.com", times(16, mail_unavailable));

        let otp = w.request(IP, "hal@example.com", Purpose::Login).await.unwrap();
        w.deliver_queued().await;

        assert_eq!(sent_to(&w, "hal@example.com"), 16, "8 tries, each with its retry in the call");
        let events = delivery_events(&w, &otp.otp_id);
        let mut expected: Vec<_> =
            (1..8).map(|n| event("otp_delivery_retry", "provider_unavailable", n, None)).collect();
        expected.push(event("otp_delivery_failed", "provider_unavailable", 8, None));
        assert_eq!(events, expected);
        let row = otp_row(&w, &otp.otp_id);
        assert_eq!(row["invalidated_at"], Value::Null, "withdrawn, not invalidated: {row}");
        assert_withdrawn_like_a_decoy(&w, &otp.otp_id, "hal@example.com").await;
    })
}

/// A withdrawn login code answers every verify exactly as the decoy of an
/// unknown destination does, attempt by attempt: a failed delivery does not
/// tell who has an account.
async fn assert_withdrawn_like_a_decoy(w: &World, otp_id: &str, destination: &str) {
    let rows = w.rows(&format!("SELECT user_id, withdrawn_at FROM otp_requests WHERE id = '{otp_id}'"));
    assert_eq!(rows[0]["user_id"], Value::Null, "unlinked from its account");
    assert_ne!(rows[0]["withdrawn_at"], Value::Null);
    let decoy = w.request(OTHER_IP, "nobody-here@example.com", Purpose::Login).await.unwrap();
    for attempt in 0..4 {
        // First the code that was sent (the provider refused it), then wrong ones.
        let code = if attempt == 0 { w.last_code_to(destination) } else { wrong(&w.last_code_to(destination)) };
        let withdrawn = refusal(w.verify(IP, otp_id, &code).await);
        let unknown = refusal(w.verify(OTHER_IP, &decoy.otp_id, &code).await);
        assert_eq!(withdrawn, unknown, "attempt {attempt}");
    }
}

#[test]
fn a_queued_sms_to_a_number_that_opted_out_is_tried_once_and_withdrawn() {
    run(async {
        let w = World::new();
        w.seed_user("+15559990000", "active");
        w.fakes.providers.answer_next("+15559990000", vec![answer(400, &twilio_error(21610))]);

        let otp = w.request(IP, "+15559990000", Purpose::Login).await.unwrap();
        w.deliver_queued().await;

        assert_eq!(sent_to(&w, "+15559990000"), 1, "retrying cannot change an opt-out");
        assert_eq!(
            delivery_events(&w, &otp.otp_id),
            [event("otp_delivery_failed", "opted_out", 1, Some("twilio:21610"))]
        );
        assert_withdrawn_like_a_decoy(&w, &otp.otp_id, "+15559990000").await;
    })
}

/// A login request's own audit events ride in its delivery job and are
/// stored with the delivery's, in the consumer's one write: after its
/// answer the request writes only its row (one D1 batch), a decoy the same.
#[test]
fn a_login_requests_events_are_stored_with_its_delivery_not_on_their_own() {
    run(async {
        let w = World::new();
        w.seed_user("carried@example.com", "active");
        for (destination, outcome) in [("carried@example.com", "ok"), ("nobody@example.com", "no_active_account")] {
            let otp = w.request_answer(IP, destination, Purpose::Login).await.unwrap();
            w.fakes.trips.reset();
            w.fakes.run_later().await;
            assert_eq!(w.fakes.trips.figures().0, 1, "after the answer: the row's batch, no audit batch");
            let requested =
                format!("SELECT outcome FROM audit_events WHERE event = 'otp_requested' AND otp_id = '{}'", otp.otp_id);
            assert!(w.rows(&requested).is_empty(), "not stored before the delivery");
            let queued = w.fakes.queue.queued.borrow().back().map(|(job, _)| job.clone()).unwrap();
            assert_eq!(queued.trail.len(), 1, "the job carries the request's event");
            let carried = serde_json::to_string(&queued.trail).unwrap();
            assert!(!carried.contains(destination), "masked: {carried}");
            w.deliver_queued().await;
            assert_eq!(w.rows(&requested), vec![serde_json::json!({ "outcome": outcome })]);
        }
    })
}
