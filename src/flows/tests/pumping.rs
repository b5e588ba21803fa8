//! SMS pumping and mail bombing: the caps count only messages really sent,
//! a full cap refuses a real login and a decoy alike, number ranges and
//! countries have caps of their own, every variant of one mailbox shares
//! one budget, and an IPv6 /48 has a limit above its /64s'.

use futures_util::future::join3;

use super::{refusal, run, World};
use crate::domain::otp::Purpose;

const IP: &str = "203.0.113.40";

fn sms_sent(w: &World) -> usize {
    w.fakes.providers.requests.borrow().iter().filter(|r| r.url.contains("/Messages.json")).count()
}

#[test]
fn login_requests_for_unknown_numbers_send_nothing_and_do_not_drain_the_sms_cap() {
    run(async {
        let w = World::with(&[("SMS_DAILY_CAP", "2"), ("IP_REQUESTS_PER_HOUR", "1000")]);
        // An attacker asks for login codes for fifty numbers without accounts.
        for i in 0..50 {
            w.request(IP, &format!("+1415555{i:04}"), Purpose::Login).await.expect("a decoy answers like a login");
        }
        w.deliver_queued().await;
        assert_eq!(sms_sent(&w), 0);

        // Real users still get their two codes.
        for phone in ["+14155559001", "+14155559002"] {
            w.seed_user(phone, "active");
            w.code_for(IP, phone, Purpose::Login).await;
        }
        assert_eq!(sms_sent(&w), 2);
    })
}

#[test]
fn a_full_sms_cap_refuses_a_real_login_and_a_decoy_alike() {
    run(async {
        let w = World::with(&[("SMS_DAILY_CAP", "1")]);
        w.seed_user("+14155550001", "active");
        w.seed_user("+14155550002", "active");
        w.code_for(IP, "+14155550001", Purpose::Login).await;

        let real = refusal(w.request(IP, "+14155550002", Purpose::Login).await);
        let decoy = refusal(w.request(IP, "+14155550003", Purpose::Login).await);

        assert_eq!((real.0, real.1), (429, "SMS_CAP_REACHED"));
        assert_eq!(real, decoy, "the cap's state tells nothing about accounts");
    })
}

#[test]
fn a_number_range_gets_its_own_hourly_cap() {
    run(async {
        let w = World::with(&[("SMS_PREFIX_DIGITS", "8"), ("SMS_PER_PREFIX_PER_HOUR", "3")]);
        // +1 415 555 0xxx: one range of 8 digits, "14155550".
        for i in 0..3 {
            w.code_for(IP, &format!("+1415555010{i}"), Purpose::Register).await;
        }
        let (status, code, _) = refusal(w.request(IP, "+14155550199", Purpose::Register).await);
        assert_eq!((status, code), (429, "SMS_CAP_REACHED"));
        // Another range is not affected; the first is free again after an hour.
        w.code_for(IP, "+14155551000", Purpose::Register).await;
        w.fakes.clock.advance(3_600_000);
        w.code_for(IP, "+14155550199", Purpose::Register).await;
        w.fakes.run_later().await;
        assert!(w.events().iter().any(|(e, o)| e == "rate_limited" && o == "sms_prefix"), "alertable");
    })
}

#[test]
fn a_country_gets_its_daily_cap_and_a_part_of_it_a_tighter_one() {
    run(async {
        let w = World::with(&[("SMS_COUNTRY_DAILY_CAPS", "44:2,4477009:1"), ("SMS_PER_PREFIX_PER_HOUR", "100")]);
        w.code_for(IP, "+447700900001", Purpose::Register).await;
        assert_eq!(refusal(w.request(IP, "+447700900002", Purpose::Register).await).1, "SMS_CAP_REACHED", "4477009: 1");
        w.code_for(IP, "+447911123456", Purpose::Register).await;
        // Both SMS count toward the UK's 2.
        assert_eq!(refusal(w.request(IP, "+447911123457", Purpose::Register).await).1, "SMS_CAP_REACHED", "44: 2");
        // Other countries are not capped by it.
        w.code_for(IP, "+4915112345678", Purpose::Register).await;
        w.fakes.clock.advance(86_400_000);
        w.code_for(IP, "+447911123457", Purpose::Register).await;
    })
}

#[test]
fn parallel_sms_requests_never_send_more_than_the_cap() {
    run(async {
        let w = World::with(&[("SMS_DAILY_CAP", "2")]);
        let (a, b, c) = join3(
            w.request(IP, "+14155552001", Purpose::Register),
            w.request(IP, "+14155552002", Purpose::Register),
            w.request(IP, "+14155552003", Purpose::Register),
        )
        .await;
        let ok = [&a, &b, &c].iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 2, "{a:?} {b:?} {c:?}");
        assert_eq!(sms_sent(&w), 2, "exactly the cap");
        for r in [a, b, c].into_iter().filter(|r| r.is_err()) {
            assert_eq!(refusal(r).1, "SMS_CAP_REACHED");
        }
    })
}

#[test]
fn a_failed_sms_gives_its_cap_slot_back() {
    run(async {
        let w = World::with(&[("SMS_DAILY_CAP", "1")]);
        let twilio_down = crate::native::answer(503, r#"{"code":20503,"message":"down"}"#);
        w.fakes.providers.answer_next("+14155553001", vec![twilio_down.clone(), twilio_down]);
        assert_eq!(refusal(w.request(IP, "+14155553001", Purpose::Register).await).1, "SEND_FAILED");
        // Nothing went out, so the one SMS of the cap is still there.
        w.code_for(IP, "+14155553002", Purpose::Register).await;
    })
}

#[test]
fn every_variant_of_one_gmail_mailbox_shares_its_five_codes_an_hour() {
    run(async {
        let w = World::new();
        let variants =
            ["jane.doe@gmail.com", "janedoe+1@gmail.com", "j.a.n.e.doe@googlemail.com", "JaneDoe+x@Gmail.com"];
        for (i, address) in variants.iter().cycle().take(5).enumerate() {
            w.request(IP, address, Purpose::Register).await.unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        }
        let (status, code, _) = refusal(w.request(IP, "jane.d.o.e+spam@gmail.com", Purpose::Register).await);
        assert_eq!((status, code), (429, "RATE_LIMIT"), "five mails to one mailbox, whatever the spelling");
        // Each was sent to the address as given.
        assert_eq!(w.fakes.providers.requests_to("janedoe+1@gmail.com").len(), 1);
        // Dots matter outside Gmail.
        w.request(IP, "jane.doe@example.com", Purpose::Register).await.unwrap();
        w.request(IP, "janedoe@example.com", Purpose::Register).await.unwrap();
    })
}

#[test]
fn one_ipv6_48_has_a_limit_above_its_64s() {
    run(async {
        let w = World::with(&[("IP_REQUESTS_PER_HOUR", "2"), ("IPV6_48_REQUESTS_PER_HOUR", "5")]);
        let mut answered = 0;
        for i in 0..20 {
            // Each request from another /64 of 2001:db8:7::/48.
            let ip = format!("2001:db8:7:{i:x}::1");
            if w.request(&ip, &format!("user{i}@example.com"), Purpose::Register).await.is_ok() {
                answered += 1;
            }
        }
        assert_eq!(answered, 5, "the /48's limit, though each /64 had room");
        w.fakes.run_later().await;
        assert!(w.events().iter().any(|(e, o)| e == "rate_limited" && o == "ip48_request"));
        // Another /48 is not affected.
        w.request("2001:db8:8::1", "other@example.com", Purpose::Register).await.unwrap();
    })
}

#[test]
fn premium_satellite_and_caribbean_numbers_are_refused_by_default_before_anything_is_counted() {
    run(async {
        let w = World::new();
        for number in [
            "+19005550100",
            "+18765550100",
            "+12845550100",
            "+16495550100",
            "+881612345678",
            "+88216123456",
            "+5351234567",
        ] {
            let (status, code, _) = refusal(w.request(IP, number, Purpose::Register).await);
            assert_eq!((status, code), (400, "VALIDATION_ERROR"), "{number}");
        }
        assert_eq!(w.fakes.trips.limiter_calls.get(), 0, "refused before any limit is asked");
        assert!(w.rows("SELECT id FROM otp_requests").is_empty());
        assert_eq!(sms_sent(&w), 0);
        // US and Canadian numbers go out.
        w.code_for(IP, "+14155550100", Purpose::Register).await;
        w.code_for(IP, "+16135550100", Purpose::Register).await;
    })
}

#[test]
fn an_operator_allows_a_caribbean_country_by_its_area_code_and_blocks_a_range() {
    run(async {
        let w = World::with(&[("SMS_ALLOWED_COUNTRY_CODES", "1,1876,44"), ("SMS_BLOCKED_PREFIXES", "447700")]);
        w.code_for(IP, "+18765550100", Purpose::Register).await;
        assert_eq!(
            refusal(w.request(IP, "+12845550100", Purpose::Register).await).1,
            "VALIDATION_ERROR",
            "1 is not 1284"
        );
        assert_eq!(refusal(w.request(IP, "+447700900123", Purpose::Register).await).1, "VALIDATION_ERROR");
        assert_eq!(
            refusal(w.request(IP, "+449098790000", Purpose::Register).await).1,
            "VALIDATION_ERROR",
            "44 is not 449"
        );
        assert_eq!(
            refusal(w.request(IP, "+4915112345678", Purpose::Register).await).1,
            "VALIDATION_ERROR",
            "not allowed"
        );
        w.code_for(IP, "+447911123456", Purpose::Register).await;
    })
}
