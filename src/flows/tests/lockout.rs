//! A stranger cannot lock a user out, and guessing stays bounded. A
//! destination's request and failure budgets are kept per client network
//! (an IPv4 address or IPv6 /48), so a stranger spends its own; a code is
//! superseded only by a newer request from the same network; a breaker per
//! destination, far above each network's budget, bounds what many networks
//! can do together, and it does not stop a network the destination verified
//! a code from, nor (with Turnstile) a client that passes a challenge.

use super::{refusal, run, World};
use crate::config::TURNSTILE_TEST_SECRETS;
use crate::domain::account::Device;
use crate::domain::otp::Purpose;
use crate::flows::otp_verify::Verified;
use crate::ports::Clock;

const HOME: &str = "198.51.100.20";
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn attacker(n: u32) -> String {
    format!("203.0.113.{n}")
}

/// The buckets named by the `rate_limited` events stored so far.
async fn rate_limited(w: &World) -> Vec<String> {
    w.fakes.run_later().await;
    w.events().into_iter().filter(|(event, _)| event == "rate_limited").map(|(_, bucket)| bucket).collect()
}

/// A stranger's request for `destination` from `ip`; its otp_id, or `None` if refused.
async fn strangers_request(w: &World, ip: &str, destination: &str) -> Option<String> {
    w.request(ip, destination, Purpose::Login).await.ok().map(|r| r.otp_id)
}

/// The stranger guesses (wrong: it never sees the codes) on its own code
/// until refused; how many guesses were judged wrong.
async fn guess_until_refused(w: &World, ip: &str, otp_id: &str) -> u32 {
    let mut wrong_guesses = 0;
    loop {
        match w.verify(ip, otp_id, "000000").await {
            Err(crate::flows::error::Error::Otp(crate::domain::otp::VerifyFailure::WrongCode)) => wrong_guesses += 1,
            _ => return wrong_guesses,
        }
    }
}

#[test]
fn a_stranger_spending_its_budgets_on_a_destination_does_not_stop_its_owner() {
    run(async {
        let w = World::new();
        let user = w.seed_user("vic@example.com", "active");
        // The owner asks for a code at home.
        let pending = w.request(HOME, "vic@example.com", Purpose::Login).await.unwrap();
        w.deliver_queued().await;
        let code = w.last_code_to("vic@example.com");

        // A stranger, from its network, requests all it may and guesses all it may.
        let mut guesses = 0;
        let mut requests = 0;
        while let Some(otp_id) = strangers_request(&w, &attacker(1), "vic@example.com").await {
            requests += 1;
            guesses += guess_until_refused(&w, &attacker(1), &otp_id).await;
        }
        // Five codes (3 + 3 + 3 + 1 failures, then the budget refuses), the sixth request refused.
        assert_eq!((requests, guesses), (5, 10));
        let (status, code_name, _) = refusal(w.request(&attacker(1), "vic@example.com", Purpose::Login).await);
        assert_eq!((status, code_name), (429, "RATE_LIMIT"));

        // The owner's pending code was not superseded, and its failures budget is its own.
        assert!(matches!(w.verify(HOME, &pending.otp_id, &code).await, Ok(Verified::Login(l)) if l.user.id == user));
        // And the owner can ask again and sign in again.
        let again = w.request(HOME, "vic@example.com", Purpose::Login).await.unwrap();
        w.deliver_queued().await;
        let code = w.last_code_to("vic@example.com");
        assert!(matches!(w.verify(HOME, &again.otp_id, &code).await, Ok(Verified::Login(_))));
        assert_eq!(rate_limited(&w).await, ["verify_failure", "verify_failure", "otp_request", "otp_request"]);
    })
}

/// Small budgets: 2 failures a day per network, a breaker of 4 failures in
/// 10 days, 3 requests an hour per network and a breaker of 6.
const SMALL: [(&str, &str); 4] = [
    ("VERIFY_FAILURES_PER_DAY", "2"),
    ("VERIFY_FAILURES_BREAKER", "4"),
    ("RATE_LIMIT_PER_HOUR", "3"),
    ("DESTINATION_REQUESTS_BREAKER", "6"),
];

/// The owner signs in from `ip`: request, read the code, verify.
async fn owner_signs_in(
    w: &World,
    ip: &str,
    destination: &str,
    token: Option<&str>,
) -> Result<Verified, crate::flows::error::Error> {
    let otp = w.request(ip, destination, Purpose::Login).await?;
    w.deliver_queued().await;
    let code = w.last_code_to(destination);
    w.verify_with(ip, &otp.otp_id, &code, Device::default(), token).await
}

/// Strangers on networks `from..` fail `count` guesses at `destination`, two per network.
async fn strangers_fail(w: &World, destination: &str, from: u32, count: u32) {
    let mut failed = 0;
    let mut n = from;
    while failed < count {
        let otp_id = strangers_request(w, &attacker(n), destination).await.expect("the stranger's request");
        for _ in 0..2.min(count - failed) {
            assert!(w.verify(&attacker(n), &otp_id, "000000").await.is_err());
            failed += 1;
        }
        n += 1;
    }
}

#[test]
fn the_breaker_stops_strangers_on_many_networks_even_with_the_right_code_but_not_a_known_network() {
    run(async {
        let w = World::with(&SMALL);
        w.seed_user("ola@example.com", "active");
        assert!(owner_signs_in(&w, HOME, "ola@example.com", None).await.is_ok(), "home becomes known");

        strangers_fail(&w, "ola@example.com", 1, 4).await;

        // Open: a network the destination does not know is refused, even with
        // the right code (read here from the fake provider), which a lockout
        // that spared right codes would let a guesser through with.
        let otp = w.request(&attacker(9), "ola@example.com", Purpose::Login).await.unwrap();
        w.deliver_queued().await;
        let code = w.last_code_to("ola@example.com");
        let (status, name, _) = refusal(w.verify(&attacker(9), &otp.otp_id, &code).await);
        assert_eq!((status, name), (429, "RATE_LIMIT"));
        let attempts = w.rows(&format!("SELECT attempts FROM otp_requests WHERE id = '{}'", otp.otp_id));
        assert_eq!(attempts[0]["attempts"], 0, "the refused guess was not judged: its attempt is given back");

        // The owner at home is not stopped.
        assert!(matches!(owner_signs_in(&w, HOME, "ola@example.com", None).await, Ok(Verified::Login(_))));
        // Ten days after the failures, strangers are judged again.
        w.fakes.clock.advance(10 * DAY);
        assert!(w.verify(&attacker(9), &otp.otp_id, &code).await.is_err(), "that code has expired");
        assert!(matches!(owner_signs_in(&w, &attacker(9), "ola@example.com", None).await, Ok(Verified::Login(_))));
        assert!(rate_limited(&w).await.contains(&"verify_failure_all".to_string()));
    })
}

#[test]
fn with_turnstile_an_open_breaker_asks_for_a_challenge_instead_of_refusing() {
    run(async {
        let mut vars = SMALL.to_vec();
        vars.extend([
            ("TURNSTILE_SECRET_KEY", TURNSTILE_TEST_SECRETS[0]),
            ("TURNSTILE_API_BASE", "http://challenges.test"),
            ("TURNSTILE_REQUIRED_FOR", "sms"),
        ]);
        let w = World::with(&vars);
        w.seed_user("pia@example.com", "active");
        strangers_fail(&w, "pia@example.com", 1, 4).await;

        // The owner, on a network it never signed in from: asked for a challenge, then let in.
        let otp = w.request("198.51.100.77", "pia@example.com", Purpose::Login).await.unwrap();
        w.deliver_queued().await;
        let code = w.last_code_to("pia@example.com");
        let (status, name, _) = refusal(w.verify("198.51.100.77", &otp.otp_id, &code).await);
        assert_eq!((status, name), (400, "CAPTCHA_FAILED"));
        let token = Some("XXXX.DUMMY.TOKEN.XXXX");
        let verified = w.verify_with("198.51.100.77", &otp.otp_id, &code, Device::default(), token).await;
        assert!(matches!(verified, Ok(Verified::Login(_))), "{verified:?}");
    })
}

#[test]
fn the_request_breaker_bounds_strangers_on_many_networks_and_spares_the_owner() {
    run(async {
        let w = World::with(&SMALL);
        w.seed_user("rio@example.com", "active");
        assert!(owner_signs_in(&w, HOME, "rio@example.com", None).await.is_ok());
        // The owner's sign-in was 1 of the breaker's 6; strangers on two networks take the other 5.
        for n in 1..=5 {
            assert!(strangers_request(&w, &attacker(1 + n / 3), "rio@example.com").await.is_some(), "{n}");
        }
        let (status, name, _) = refusal(w.request(&attacker(3), "rio@example.com", Purpose::Login).await);
        assert_eq!((status, name), (429, "RATE_LIMIT"), "a third network is refused");
        assert_eq!(rate_limited(&w).await, ["otp_request_all"]);
        // The owner's own request is not.
        assert!(matches!(owner_signs_in(&w, HOME, "rio@example.com", None).await, Ok(Verified::Login(_))));
    })
}

/// The README's arithmetic, run: strangers with as many networks as they
/// like, spending every budget at the defaults for 30 days, get at most
/// 300 wrong guesses judged against one destination (3 breaker windows of
/// 10 days, 100 failures each): a chance of 1 - (1 - 10^-6)^300 = 3.0e-4
/// to guess a code, below 5e-4.
#[test]
fn at_the_defaults_strangers_get_at_most_300_guesses_in_30_days() {
    run(async {
        let w = World::new();
        w.seed_user("sam@example.com", "active");
        let start = w.fakes.clock.now_ms();
        let (mut judged, mut network) = (0u32, 1u32);
        while w.fakes.clock.now_ms() < start + 30 * DAY {
            let ip = format!("10.{}.{}.{}", network >> 16, (network >> 8) & 255, network & 255);
            network += 1;
            let Some(otp_id) = strangers_request(&w, &ip, "sam@example.com").await else {
                // Every request refused: the request breaker; wait an hour.
                w.fakes.clock.advance(HOUR);
                continue;
            };
            let guessed = guess_until_refused(&w, &ip, &otp_id).await;
            judged += guessed;
            if guessed == 0 {
                // The failure breaker is open: nothing is judged until its oldest failure leaves.
                w.fakes.clock.advance(HOUR);
            }
        }
        eprintln!("strangers: {judged} guesses judged from {network} networks in 30 days");
        assert!(judged <= 300, "{judged} guesses judged");
        assert!(judged >= 290, "the strangers did spend the budgets: {judged}");
    })
}
