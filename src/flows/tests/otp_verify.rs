//! Verify: every refusal, the lockout that gives the attempt back, and
//! exactly one winner among interleaved correct verifies.

use futures_util::future::join3;

use super::{refusal, run, wrong, World};
use crate::domain::otp::Purpose;
use crate::flows::otp_verify::Verified;

const IP: &str = "203.0.113.10";

fn invalid(message: &str) -> (u16, &'static str, String) {
    (400, "INVALID_OTP", message.to_string())
}

#[test]
fn the_right_code_logs_the_user_in_once() {
    run(async {
        let w = World::new();
        let user = w.seed_user("ana@example.com", "active");
        let (otp_id, code) = w.code_for(IP, "ana@example.com", Purpose::Login).await;

        let Ok(Verified::Login(logged_in)) = w.verify(IP, &otp_id, &code).await else { panic!("not logged in") };

        assert_eq!(logged_in.user.id, user);
        assert!(logged_in.user.email_verified, "a login by email proves the address");
        assert_eq!(refusal(w.verify(IP, &otp_id, &code).await), invalid("OTP already used"));
        let sessions = w.rows("SELECT user_id FROM sessions");
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0]["user_id"], user.as_str());
    })
}

#[test]
fn each_refusal_says_why() {
    run(async {
        let w = World::new();
        w.seed_user("bo@example.com", "active");

        let unknown = "00000000-0000-4000-8000-000000000000";
        assert_eq!(refusal(w.verify(IP, unknown, "123456").await), invalid("Invalid OTP request"));

        let (otp_id, code) = w.code_for(IP, "bo@example.com", Purpose::Login).await;
        assert_eq!(refusal(w.verify(IP, &otp_id, &wrong(&code)).await), invalid("Invalid OTP"));
        assert_eq!(refusal(w.verify(IP, &otp_id, &wrong(&code)).await), invalid("Invalid OTP"));
        assert_eq!(refusal(w.verify(IP, &otp_id, &wrong(&code)).await), invalid("Invalid OTP"));
        assert_eq!(refusal(w.verify(IP, &otp_id, &code).await), invalid("Too many attempts"), "3 attempts per code");

        let (otp_id, code) = w.code_for(IP, "bo@example.com", Purpose::Login).await;
        w.fakes.clock.advance(600_000);
        assert_eq!(refusal(w.verify(IP, &otp_id, &code).await), invalid("OTP expired"), "an email code lives 600 s");

        let (older, older_code) = w.code_for(IP, "bo@example.com", Purpose::Login).await;
        let (newer, newer_code) = w.code_for(IP, "bo@example.com", Purpose::Login).await;
        assert_eq!(refusal(w.verify(IP, &older, &older_code).await), invalid("OTP expired"), "superseded");
        assert!(matches!(w.verify(IP, &newer, &newer_code).await, Ok(Verified::Login(_))));
    })
}

#[test]
fn a_decoy_code_for_an_unknown_account_never_verifies() {
    run(async {
        let w = World::new();

        let otp = w.request(IP, "nobody@example.com", Purpose::Login).await.unwrap();
        w.deliver_queued().await;

        assert!(w.fakes.providers.requests_to("nobody@example.com").is_empty(), "a decoy sends nothing");
        for guess in ["000000", "123456", "999999"] {
            assert_eq!(refusal(w.verify(IP, &otp.otp_id, guess).await), invalid("Invalid OTP"));
        }
    })
}

#[test]
fn a_locked_out_destination_refuses_even_the_right_code_and_gives_the_attempt_back() {
    run(async {
        let w = World::with(&[("VERIFY_FAILURES_PER_DAY", "2")]);
        w.seed_user("cy@example.com", "active");
        let (first, code) = w.code_for(IP, "cy@example.com", Purpose::Login).await;
        for _ in 0..2 {
            assert_eq!(refusal(w.verify(IP, &first, &wrong(&code)).await), invalid("Invalid OTP"));
        }

        let (otp_id, code) = w.code_for(IP, "cy@example.com", Purpose::Login).await;
        let (status, code_name, _) = refusal(w.verify(IP, &otp_id, &code).await);

        assert_eq!((status, code_name), (429, "RATE_LIMIT"));
        let rows = w.rows(&format!("SELECT attempts FROM otp_requests WHERE id = '{otp_id}'"));
        assert_eq!(rows[0]["attempts"], 0, "the refused guess cost the code nothing");
        // Once the failures leave the 24 h window, a code works again.
        w.fakes.clock.advance(86_400_000 - 300_000);
        let (otp_id, code) = w.code_for(IP, "cy@example.com", Purpose::Login).await;
        w.fakes.clock.advance(299_999);
        assert_eq!(refusal(w.verify(IP, &otp_id, &code).await).0, 429, "1 ms before the window frees");
        w.fakes.clock.advance(1);
        assert!(matches!(w.verify(IP, &otp_id, &code).await, Ok(Verified::Login(_))));
    })
}

#[test]
fn of_three_interleaved_correct_verifies_exactly_one_logs_in() {
    run(async {
        let w = World::new();
        w.seed_user("di@example.com", "active");
        let (otp_id, code) = w.code_for(IP, "di@example.com", Purpose::Login).await;

        // Each port call yields, so the three run step by step side by side.
        let (a, b, c) =
            join3(w.verify(IP, &otp_id, &code), w.verify(IP, &otp_id, &code), w.verify(IP, &otp_id, &code)).await;

        let results = [a, b, c];
        let wins = results.iter().filter(|r| matches!(r, Ok(Verified::Login(_)))).count();
        assert_eq!(wins, 1, "{results:?}");
        for r in results.into_iter().filter(|r| r.is_err()) {
            assert_eq!(refusal(r), invalid("OTP already used"));
        }
        assert_eq!(w.rows("SELECT id FROM sessions").len(), 1, "one session");
    })
}

#[test]
fn register_verify_and_reset_codes_give_a_single_use_token_bound_to_the_destination() {
    run(async {
        let w = World::new();
        let user = w.seed_user("+15551230000", "active");

        let (otp_id, code) = w.code_for(IP, "+15551230000", Purpose::Verify).await;
        let Ok(Verified::Other { verification_token, .. }) = w.verify(IP, &otp_id, &code).await else {
            panic!("no token")
        };
        assert_eq!(verification_token.len(), 43, "256 bits, base64url");
        let rows = w.rows(&format!("SELECT phone_verified FROM users WHERE id = '{user}'"));
        assert_eq!(rows[0]["phone_verified"], 1, "a verify code marks the number verified");

        let (otp_id, code) = w.code_for(IP, "new@example.com", Purpose::Register).await;
        let Ok(Verified::Register { verified_destination, verification_token, .. }) =
            w.verify(IP, &otp_id, &code).await
        else {
            panic!("no register token")
        };
        assert_eq!(verified_destination, "new@example.com");
        let tokens =
            w.rows("SELECT purpose, destination, consumed_at FROM verification_tokens WHERE purpose = 'register'");
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0]["destination"], "new@example.com");
        assert!(!verification_token.is_empty());
        // Only the token's hash is stored.
        assert!(w
            .rows("SELECT token_hash FROM verification_tokens")
            .iter()
            .all(|r| r["token_hash"].as_str().unwrap() != verification_token));
    })
}

#[test]
fn a_disabled_account_gets_no_session() {
    run(async {
        let w = World::new();
        w.seed_user("ed@example.com", "active");
        let (otp_id, code) = w.code_for(IP, "ed@example.com", Purpose::Login).await;
        w.fakes.db.execute("UPDATE users SET status = 'disabled' WHERE email = 'ed@example.com'");

        let (status, code_name, _) = refusal(w.verify(IP, &otp_id, &code).await);

        assert_eq!((status, code_name), (403, "ACCOUNT_DISABLED"));
        assert!(w.rows("SELECT id FROM sessions").is_empty());
    })
}
