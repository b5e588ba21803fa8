//! How the limits combine: per destination (rolling hour, resend cooldown,
//! failed verifications across codes), per client IP (requests, verifies),
//! for SMS (countries, the service-wide cap), and what happens when the
//! rate limiter cannot be reached. Every refusal by a limit is a
//! `rate_limited` audit event naming the limit's bucket.

use std::future::Future;

use super::{refusal, run, wrong, World, PEPPER};
use crate::domain::destination::Destination;
use crate::domain::limits;
use crate::domain::otp::Purpose;
use crate::flows::otp_verify::Verified;
use crate::http::ApiError;

const IP: &str = "192.0.2.10";
const OTHER_IP: &str = "192.0.2.99";
const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;

const TOO_MANY_REQUESTS: &str = "Too many OTP requests. Please try again later.";
const FROM_THIS_NETWORK: &str = "Too many requests from this network. Please try again later.";
const TOO_MANY_FAILURES: &str = "Too many failed verifications. Please try again later.";
const SMS_PAUSED: &str = "SMS sending is paused for now. Please try again later or use email.";

type Refusal = (u16, &'static str, String, Option<u64>);

fn refused<T: std::fmt::Debug, E: Into<ApiError> + std::fmt::Debug>(result: Result<T, E>) -> Refusal {
    World::refusal_with_retry_after(result)
}

fn limited(code: &'static str, message: &str, retry_after: u64) -> Refusal {
    (429, code, message.to_string(), Some(retry_after))
}

/// The buckets named by the `rate_limited` events stored so far.
async fn rate_limited(w: &World) -> Vec<String> {
    w.fakes.run_later().await;
    w.events().into_iter().filter(|(event, _)| event == "rate_limited").map(|(_, bucket)| bucket).collect()
}

/// Events counted in the rate-limit object of `destination`.
fn counted_for(destination: &str) -> impl Fn(&World) -> i64 {
    let at = limits::destination_limits(PEPPER, &Destination::parse(destination).unwrap());
    move |w: &World| w.fakes.limiter.objects.borrow().get(&at.object).map_or(0, |o| o.count_for(at.key()))
}

fn codes_stored(w: &World) -> usize {
    w.rows("SELECT id FROM otp_requests").len()
}

#[test]
fn a_destination_gets_five_requests_in_any_rolling_hour() {
    run(async {
        let w = World::new();
        for _ in 0..5 {
            w.request(IP, "ana@example.com", Purpose::Register).await.unwrap();
            w.fakes.clock.advance(MINUTE);
        }

        // The oldest of the five (T0) leaves the window at T0 + 1 h; it is T0 + 5 min.
        assert_eq!(
            refused(w.request(IP, "ana@example.com", Purpose::Register).await),
            limited("RATE_LIMIT", TOO_MANY_REQUESTS, 3300)
        );
        assert_eq!(codes_stored(&w), 5, "the refused request stored nothing");
        assert_eq!(w.fakes.providers.requests_to("ana@example.com").len(), 5, "and sent nothing");
        assert!(w.request(IP, "bo@example.com", Purpose::Register).await.is_ok(), "another destination is free");

        w.fakes.clock.advance(55 * MINUTE - 1);
        assert_eq!(refused(w.request(IP, "ana@example.com", Purpose::Register).await).3, Some(1), "1 ms early");
        w.fakes.clock.advance(1);
        assert!(w.request(IP, "ana@example.com", Purpose::Register).await.is_ok(), "the oldest left the window");
        // Rolling: the second request (T0 + 1 min) still counts for another minute.
        assert_eq!(
            refused(w.request(IP, "ana@example.com", Purpose::Register).await),
            limited("RATE_LIMIT", TOO_MANY_REQUESTS, 60)
        );
        assert_eq!(rate_limited(&w).await, ["otp_request", "otp_request", "otp_request"]);
    })
}

#[test]
fn a_resend_cooldown_spaces_the_requests_of_one_destination() {
    run(async {
        let w = World::with(&[("RESEND_COOLDOWN_SECONDS", "30")]);
        w.request(IP, "cy@example.com", Purpose::Register).await.unwrap();
        w.fakes.clock.advance(10_000);

        assert_eq!(
            refused(w.request(IP, "cy@example.com", Purpose::Register).await),
            limited("RATE_LIMIT", TOO_MANY_REQUESTS, 20)
        );
        assert!(w.request(IP, "di@example.com", Purpose::Register).await.is_ok(), "per destination");
        w.fakes.clock.advance(20_000 - 1);
        assert_eq!(refused(w.request(IP, "cy@example.com", Purpose::Register).await).3, Some(1));
        w.fakes.clock.advance(1);
        assert!(w.request(IP, "cy@example.com", Purpose::Register).await.is_ok(), "30 s after the last one");
        assert_eq!(codes_stored(&w), 3);
        assert_eq!(rate_limited(&w).await, ["otp_request", "otp_request"]);
    })
}

#[test]
fn a_client_ip_gets_a_bounded_number_of_requests_per_hour() {
    run(async {
        let w = World::with(&[("IP_REQUESTS_PER_HOUR", "3")]);
        for destination in ["a1@example.com", "a2@example.com", "a3@example.com"] {
            w.request(IP, destination, Purpose::Register).await.unwrap();
        }

        assert_eq!(
            refused(w.request(IP, "a4@example.com", Purpose::Register).await),
            limited("RATE_LIMIT", FROM_THIS_NETWORK, 3600)
        );
        assert!(w.request(OTHER_IP, "a4@example.com", Purpose::Register).await.is_ok(), "another client is free");
        w.fakes.clock.advance(HOUR);
        assert!(w.request(IP, "a5@example.com", Purpose::Register).await.is_ok(), "an hour later");
        assert_eq!(codes_stored(&w), 5);
        assert_eq!(rate_limited(&w).await, ["ip_request"]);
    })
}

#[test]
fn an_ipv6_client_is_counted_by_its_64() {
    run(async {
        let w = World::with(&[("IP_REQUESTS_PER_HOUR", "2")]);
        w.request("2001:db8:1:2::1", "b1@example.com", Purpose::Register).await.unwrap();
        w.request("2001:db8:1:2::ffff", "b2@example.com", Purpose::Register).await.unwrap();

        assert_eq!(
            refused(w.request("2001:db8:1:2:abcd::9", "b3@example.com", Purpose::Register).await).1,
            "RATE_LIMIT",
            "the same /64"
        );
        assert!(w.request("2001:db8:1:3::1", "b3@example.com", Purpose::Register).await.is_ok(), "the next /64");
        assert_eq!(rate_limited(&w).await, ["ip_request"]);
    })
}

#[test]
fn a_destination_slot_taken_by_a_request_its_ip_refuses_is_given_back() {
    run(async {
        let w = World::with(&[("IP_REQUESTS_PER_HOUR", "1")]);
        let victim_count = counted_for("victim@example.com");
        // A client that used up its IP's requests keeps asking for the victim's codes.
        w.request(IP, "mine@example.com", Purpose::Register).await.unwrap();
        for _ in 0..5 {
            assert_eq!(refused(w.request(IP, "victim@example.com", Purpose::Register).await).2, FROM_THIS_NETWORK);
        }
        assert_eq!(victim_count(&w), 0, "every slot was given back");

        // The victim, from five /64s of its own /48 (one IP request each;
        // one network for the destination), still gets its five.
        for n in 1..=5 {
            let ip = format!("2001:db8:7:{n}::1");
            assert!(w.request(&ip, "victim@example.com", Purpose::Register).await.is_ok(), "request {n}");
        }
        assert_eq!(
            refused(w.request("2001:db8:7:6::1", "victim@example.com", Purpose::Register).await),
            limited("RATE_LIMIT", TOO_MANY_REQUESTS, 3600)
        );
        assert_eq!(victim_count(&w), 5);
        assert_eq!(rate_limited(&w).await, [vec!["ip_request"; 5], vec!["otp_request"]].concat());
    })
}

#[test]
fn when_the_ip_and_the_destination_both_refuse_the_later_wait_is_given() {
    run(async {
        let w = World::with(&[("IP_REQUESTS_PER_HOUR", "1"), ("RATE_LIMIT_PER_HOUR", "1")]);
        w.request(OTHER_IP, "eve@example.com", Purpose::Register).await.unwrap();
        w.fakes.clock.advance(10 * MINUTE);
        w.request(IP, "fay@example.com", Purpose::Register).await.unwrap();
        w.fakes.clock.advance(10 * MINUTE);

        // The destination frees in 40 min, the IP in 50.
        assert_eq!(
            refused(w.request(IP, "eve@example.com", Purpose::Register).await),
            limited("RATE_LIMIT", FROM_THIS_NETWORK, 3000)
        );
        w.fakes.clock.advance(50 * MINUTE);
        assert!(w.request(IP, "eve@example.com", Purpose::Register).await.is_ok());
        assert_eq!(rate_limited(&w).await, ["ip_request"]);
    })
}

#[test]
fn sms_to_a_country_not_allowed_is_refused_before_anything_is_counted() {
    run(async {
        let w = World::with(&[("SMS_ALLOWED_COUNTRY_CODES", "1,44")]);

        for number in ["+33612345678", "+4915112345678"] {
            assert_eq!(
                refusal(w.request(IP, number, Purpose::Register).await),
                (400, "VALIDATION_ERROR", "SMS to this country is not supported".to_string()),
                "{number}"
            );
        }
        assert_eq!(w.fakes.trips.figures(), (0, 0, 0, 0, 0), "no round trip at all");
        assert!(w.fakes.limiter.objects.borrow().is_empty(), "nothing counted");
        w.fakes.run_later().await;
        assert!(w.events().is_empty(), "not a rate limit: no event");

        for allowed in ["+15551234567", "+447700900123"] {
            assert!(w.request(IP, allowed, Purpose::Register).await.is_ok(), "{allowed}");
        }
        assert!(w.request(IP, "gil@example.com", Purpose::Register).await.is_ok(), "email is not affected");
        assert_eq!(codes_stored(&w), 3);
    })
}

#[test]
fn the_service_wide_sms_cap_pauses_sms_but_not_email() {
    run(async {
        let w = World::with(&[("SMS_DAILY_CAP", "2")]);
        let third_count = counted_for("+15550000003");
        w.request(IP, "+15550000001", Purpose::Register).await.unwrap();
        w.fakes.clock.advance(HOUR);
        w.request(OTHER_IP, "+15550000002", Purpose::Register).await.unwrap();

        assert_eq!(
            refused(w.request("192.0.2.77", "+15550000003", Purpose::Register).await),
            limited("SMS_CAP_REACHED", SMS_PAUSED, 23 * 3600)
        );
        assert_eq!(third_count(&w), 0, "nothing went out: the destination's slot is given back");
        assert_eq!(w.fakes.providers.requests_to("+15550000003").len(), 0);
        assert!(w.request(IP, "hal@example.com", Purpose::Register).await.is_ok(), "email still works");

        w.fakes.clock.advance(23 * HOUR);
        assert!(w.request(IP, "+15550000003", Purpose::Register).await.is_ok(), "the first SMS left the window");
        assert_eq!(codes_stored(&w), 4);
        assert_eq!(rate_limited(&w).await, ["sms"]);
    })
}

#[test]
fn a_client_ip_gets_a_bounded_number_of_verifies_per_hour() {
    run(async {
        let w = World::with(&[("IP_VERIFIES_PER_HOUR", "2")]);
        let (otp_id, code) = w.code_for(IP, "ida@example.com", Purpose::Register).await;
        for _ in 0..2 {
            assert_eq!(refusal(w.verify(IP, &otp_id, &wrong(&code)).await).2, "Invalid OTP");
        }

        assert_eq!(refused(w.verify(IP, &otp_id, &code).await), limited("RATE_LIMIT", FROM_THIS_NETWORK, 3600));
        let rows = w.rows(&format!("SELECT attempts, is_verified FROM otp_requests WHERE id = '{otp_id}'"));
        assert_eq!((rows[0]["attempts"].clone(), rows[0]["is_verified"].clone()), (2.into(), 0.into()));
        assert!(w.request(IP, "jo@example.com", Purpose::Register).await.is_ok(), "requests are counted apart");
        assert!(matches!(w.verify(OTHER_IP, &otp_id, &code).await, Ok(Verified::Register { .. })));
        assert_eq!(rate_limited(&w).await, ["ip_verify"]);
        let event = w.rows("SELECT destination FROM audit_events WHERE event = 'rate_limited'");
        assert_eq!(event[0]["destination"], serde_json::Value::Null, "refused before the code is looked up");
    })
}

#[test]
fn failed_verifications_are_budgeted_per_destination_across_its_codes() {
    run(async {
        let w = World::with(&[("VERIFY_FAILURES_PER_DAY", "4")]);
        let (first, first_code) = w.code_for(IP, "kim@example.com", Purpose::Register).await;
        for _ in 0..3 {
            assert_eq!(refusal(w.verify(IP, &first, &wrong(&first_code)).await).2, "Invalid OTP");
        }
        w.fakes.clock.advance(HOUR);
        let (second, code) = w.code_for(IP, "kim@example.com", Purpose::Register).await;
        assert_eq!(refusal(w.verify(IP, &second, &wrong(&code)).await).2, "Invalid OTP", "the fourth failure");

        // The first failure (T0) leaves the 24 h window at T0 + 24 h; it is T0 + 1 h.
        assert_eq!(
            refused(w.verify(IP, &second, &code).await),
            limited("RATE_LIMIT", TOO_MANY_FAILURES, 23 * 3600),
            "even the right code"
        );
        let (other, other_code) = w.code_for(IP, "lee@example.com", Purpose::Register).await;
        assert!(w.verify(IP, &other, &other_code).await.is_ok(), "another destination is not affected");
        w.fakes.clock.advance(23 * HOUR);
        let (third, code) = w.code_for(IP, "kim@example.com", Purpose::Register).await;
        assert!(w.verify(IP, &third, &code).await.is_ok(), "once the first failure left the window");
        assert_eq!(rate_limited(&w).await, ["verify_failure"]);
    })
}

#[test]
fn an_unreachable_rate_limiter_fails_closed() {
    run(async {
        let w = World::new();
        w.seed_user("max@example.com", "active");
        let (otp_id, code) = w.code_for(IP, "max@example.com", Purpose::Login).await;
        w.fakes.providers.requests.borrow_mut().clear();
        w.fakes.limiter.down.set(true);

        let unavailable =
            (503, "SERVICE_UNAVAILABLE", "Rate limiter is unavailable; try again shortly".to_string(), Some(5));
        assert_eq!(refused(w.request(IP, "max@example.com", Purpose::Login).await), unavailable);
        assert_eq!(refused(w.request(IP, "ned@example.com", Purpose::Register).await), unavailable);
        assert_eq!(refused(w.request(IP, "+15551112222", Purpose::Verify).await), unavailable);
        assert_eq!(refused(w.verify(IP, &otp_id, &code).await), unavailable);

        w.deliver_queued().await;
        assert_eq!(codes_stored(&w), 1, "nothing stored");
        assert!(w.fakes.providers.requests.borrow().is_empty(), "nothing sent");
        let attempts = w.rows(&format!("SELECT attempts FROM otp_requests WHERE id = '{otp_id}'"));
        assert_eq!(attempts[0]["attempts"], 0, "the refused verify cost the code nothing");
        assert!(rate_limited(&w).await.is_empty(), "no limit refused anything");

        w.fakes.limiter.down.set(false);
        assert!(matches!(w.verify(IP, &otp_id, &code).await, Ok(Verified::Login(_))));
    })
}

/// Refused, then waits exactly `retry_after` seconds: the same call succeeds.
async fn waiting_retry_after_suffices<T, F, Fut>(w: &World, what: &str, call: F)
where
    T: std::fmt::Debug,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, crate::flows::error::Error>>,
{
    let (status, _, _, retry_after) = refused(call().await);
    assert_eq!(status, 429, "{what}");
    let seconds = retry_after.unwrap_or_else(|| panic!("{what}: no retry_after"));
    w.fakes.clock.advance(seconds as i64 * 1000);
    if let Err(e) = call().await {
        panic!("{what}: still refused after {seconds} s: {e:?}");
    }
}

#[test]
fn waiting_retry_after_is_always_enough() {
    run(async {
        // Odd gaps between events, so that the waits are not whole seconds;
        // each limit is met from its own client IP (an IP filled by the refused
        // attempt itself is the test below); a destination's budgets are kept
        // per client network, so each is filled from the network it binds.
        let gap = 1_234;
        let w = World::with(&[
            ("RATE_LIMIT_PER_HOUR", "2"),
            ("RESEND_COOLDOWN_SECONDS", "7"),
            ("IP_REQUESTS_PER_HOUR", "4"),
            ("IP_VERIFIES_PER_HOUR", "3"),
            ("VERIFY_FAILURES_PER_DAY", "2"),
            ("SMS_DAILY_CAP", "2"),
        ]);

        w.request("192.0.2.1", "pat@example.com", Purpose::Register).await.unwrap();
        w.fakes.clock.advance(gap);
        waiting_retry_after_suffices(&w, "cooldown", || w.request("192.0.2.1", "pat@example.com", Purpose::Register))
            .await;
        w.fakes.clock.advance(gap);
        waiting_retry_after_suffices(&w, "destination", || {
            w.request("192.0.2.1", "pat@example.com", Purpose::Register)
        })
        .await;

        for n in 0..4 {
            w.request("192.0.2.4", &format!("q{n}@example.com"), Purpose::Register).await.unwrap();
            w.fakes.clock.advance(gap);
        }
        waiting_retry_after_suffices(&w, "ip requests", || w.request("192.0.2.4", "q9@example.com", Purpose::Register))
            .await;

        w.request("192.0.2.5", "+15550000001", Purpose::Register).await.unwrap();
        w.fakes.clock.advance(gap);
        w.request("192.0.2.6", "+15550000002", Purpose::Register).await.unwrap();
        w.fakes.clock.advance(gap);
        waiting_retry_after_suffices(&w, "sms cap", || w.request("192.0.2.7", "+15550000003", Purpose::Register)).await;

        // Verifies of unknown codes count for the IP; a fresh code is verified.
        for _ in 0..3 {
            let unknown = crate::domain::crypto::new_uuid().hyphenated().to_string();
            assert_eq!(refusal(w.verify("192.0.2.9", &unknown, "123456").await).2, "Invalid OTP request");
            w.fakes.clock.advance(gap);
        }
        waiting_retry_after_suffices(&w, "ip verifies", || async {
            let (otp_id, code) = w.code_for("192.0.2.8", "ray@example.com", Purpose::Register).await;
            w.verify("192.0.2.9", &otp_id, &code).await
        })
        .await;

        let (otp_id, code) = w.code_for("192.0.2.10", "sue@example.com", Purpose::Register).await;
        for _ in 0..2 {
            assert_eq!(refusal(w.verify("192.0.2.11", &otp_id, &wrong(&code)).await).2, "Invalid OTP");
            w.fakes.clock.advance(gap);
        }
        w.fakes.clock.advance(7_000); // past the resend cooldown
        waiting_retry_after_suffices(&w, "verify failures", || async {
            let (otp_id, code) = w.code_for("192.0.2.12", "sue@example.com", Purpose::Register).await;
            w.verify("192.0.2.11", &otp_id, &code).await
        })
        .await;
        assert_eq!(
            rate_limited(&w).await,
            ["otp_request", "otp_request", "ip_request", "sms", "ip_verify", "verify_failure"]
        );
    })
}

#[test]
fn waiting_retry_after_suffices_even_when_the_refused_request_took_the_ips_last_slot() {
    run(async {
        let w = World::with(&[("IP_REQUESTS_PER_HOUR", "2"), ("RATE_LIMIT_PER_HOUR", "1")]);
        // Another /64 of the client's /48 (its network, as a destination's
        // budgets count) fills the destination until T0 + 60 min.
        let (neighbour, ip) = ("2001:db8:5:1::1", "2001:db8:5:2::1");
        w.request(neighbour, "zoe@example.com", Purpose::Register).await.unwrap();
        w.fakes.clock.advance(10 * MINUTE);
        w.request(ip, "yan@example.com", Purpose::Register).await.unwrap();
        w.fakes.clock.advance(40 * MINUTE);

        // The destination refuses for 10 min; the IP counted the attempt: 2 of 2 until T0 + 70 min.
        let (status, _, _, retry_after) = refused(w.request(ip, "zoe@example.com", Purpose::Register).await);
        assert_eq!((status, retry_after), (429, Some(600)));
        w.fakes.clock.advance(600_000);

        let again = w.request(ip, "zoe@example.com", Purpose::Register).await;
        assert!(again.is_ok(), "waited retry_after, still refused: {:?}", refused(again));
    })
}

#[test]
fn waiting_out_a_lockout_suffices_even_when_the_refused_verify_took_the_ips_last_slot() {
    run(async {
        let w = World::with(&[("VERIFY_FAILURES_PER_DAY", "1"), ("IP_VERIFIES_PER_HOUR", "2")]);
        // A wrong guess from another /64 of the client's /48 locks the
        // destination for that network until T0 + 24 h.
        let (neighbour, ip) = ("2001:db8:6:1::1", "2001:db8:6:2::1");
        let (first, code) = w.code_for(neighbour, "una@example.com", Purpose::Register).await;
        assert_eq!(refusal(w.verify(neighbour, &first, &wrong(&code)).await).2, "Invalid OTP");
        w.fakes.clock.advance(24 * HOUR - 6 * MINUTE);
        let (otp_id, code) = w.code_for(ip, "una@example.com", Purpose::Register).await;
        let unknown = crate::domain::crypto::new_uuid().hyphenated().to_string();
        assert_eq!(refusal(w.verify(ip, &unknown, "123456").await).2, "Invalid OTP request");

        // The lockout has 6 min to go; the IP counted the refused verify: 2 of 2 for an hour.
        assert_eq!(refused(w.verify(ip, &otp_id, &code).await), limited("RATE_LIMIT", TOO_MANY_FAILURES, 360));
        w.fakes.clock.advance(6 * MINUTE);

        let again = w.verify(ip, &otp_id, &code).await;
        assert!(again.is_ok(), "waited retry_after, still refused: {:?}", refused(again));
    })
}
