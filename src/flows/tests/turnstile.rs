//! Cloudflare Turnstile before a code is sent: with `TURNSTILE_SECRET_KEY`
//! set, an OTP request needs a token that passes siteverify; a missing or
//! refused one is 400 CAPTCHA_FAILED with nothing counted or sent, and
//! siteverify unreachable is 503 (fail closed). The fake siteverify answers
//! as Cloudflare's test secret keys do.

use super::{refusal, run, World};
use crate::config::TURNSTILE_TEST_SECRETS;
use crate::domain::otp::Purpose;

const IP: &str = "203.0.113.50";

fn world(secret: &str, required_for: &str) -> World {
    World::with(&[
        ("TURNSTILE_SECRET_KEY", secret),
        ("TURNSTILE_API_BASE", "http://challenges.test"),
        ("TURNSTILE_REQUIRED_FOR", required_for),
    ])
}

fn with_token(w: &World, token: &str) {
    *w.turnstile_token.borrow_mut() = Some(token.to_string());
}

fn nothing_counted_or_sent(w: &World) {
    assert!(w.rows("SELECT id FROM otp_requests").is_empty(), "no code stored");
    assert!(w.fakes.limiter.objects.borrow().values().all(|o| o.count() == 0), "no limit counted");
    let sent = w.fakes.providers.requests.borrow().iter().filter(|r| !r.url.contains("siteverify")).count();
    assert_eq!(sent, 0, "nothing sent");
}

#[test]
fn a_token_that_passes_lets_the_code_go_out_and_siteverify_hears_the_clients_ip() {
    run(async {
        let w = world(TURNSTILE_TEST_SECRETS[0], "all");
        with_token(&w, "XXXX.DUMMY.TOKEN.XXXX");

        w.code_for(IP, "ana@example.com", Purpose::Register).await;

        let checks = w.fakes.providers.requests_to("XXXX.DUMMY.TOKEN.XXXX");
        assert_eq!(checks.len(), 1);
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(checks[0].body.as_bytes()).into_owned().collect();
        assert_eq!(checks[0].url, "http://challenges.test/turnstile/v0/siteverify");
        assert_eq!(form["secret"], TURNSTILE_TEST_SECRETS[0]);
        assert_eq!(form["remoteip"], IP);
        assert!(uuid::Uuid::try_parse(&form["idempotency_key"]).is_ok(), "{form:?}");
    })
}

#[test]
fn a_missing_refused_or_replayed_token_is_captcha_failed_with_nothing_counted_or_sent() {
    run(async {
        let w = world(TURNSTILE_TEST_SECRETS[0], "all");
        let (status, code, _) = refusal(w.request(IP, "bo@example.com", Purpose::Register).await);
        assert_eq!((status, code), (400, "CAPTCHA_FAILED"), "no token");
        nothing_counted_or_sent(&w);

        let w = world(TURNSTILE_TEST_SECRETS[1], "all");
        with_token(&w, "XXXX.DUMMY.TOKEN.XXXX");
        assert_eq!(refusal(w.request(IP, "bo@example.com", Purpose::Register).await).1, "CAPTCHA_FAILED", "refused");
        nothing_counted_or_sent(&w);

        let w = world(TURNSTILE_TEST_SECRETS[0], "all");
        with_token(&w, "one-use-token");
        w.request(IP, "cy@example.com", Purpose::Register).await.expect("first use passes");
        assert_eq!(refusal(w.request(IP, "dy@example.com", Purpose::Register).await).1, "CAPTCHA_FAILED", "replayed");
        w.fakes.run_later().await;
        assert!(w.events().contains(&("captcha_failed".into(), "timeout-or-duplicate".into())));

        with_token(&w, &"x".repeat(2049));
        assert_eq!(refusal(w.request(IP, "ed@example.com", Purpose::Register).await).1, "CAPTCHA_FAILED", "too long");
    })
}

#[test]
fn siteverify_unreachable_or_refusing_our_secret_fails_closed() {
    run(async {
        let w = world(TURNSTILE_TEST_SECRETS[0], "all");
        with_token(&w, "down-token");
        w.fakes.providers.answer_next("down-token", vec![Err(true)]);
        let (status, code, _) = refusal(w.request(IP, "fi@example.com", Purpose::Register).await);
        assert_eq!((status, code), (503, "SERVICE_UNAVAILABLE"));
        nothing_counted_or_sent(&w);

        let w = world("0x4AAAAAAA-not-our-secret", "all");
        with_token(&w, "XXXX.DUMMY.TOKEN.XXXX");
        assert_eq!(refusal(w.request(IP, "gu@example.com", Purpose::Register).await).0, 503, "invalid-input-secret");
    })
}

#[test]
fn with_required_for_sms_only_sms_requests_need_a_token() {
    run(async {
        let w = world(TURNSTILE_TEST_SECRETS[0], "sms");
        w.code_for(IP, "ha@example.com", Purpose::Register).await;
        assert_eq!(refusal(w.request(IP, "+14155554001", Purpose::Register).await).1, "CAPTCHA_FAILED");
        with_token(&w, "sms-token");
        w.code_for(IP, "+14155554001", Purpose::Register).await;
    })
}
