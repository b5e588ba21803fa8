//! Register: a register verification token becomes an account with its
//! destination verified and a first session; the token is single-use,
//! expires, is bound to its purpose, and survives a refused attempt, up to
//! ten of them.

use futures_util::future::join;

use super::{refusal, run, World};
use crate::domain::otp::Purpose;

const IP: &str = "203.0.113.20";

fn invalid_token() -> (u16, &'static str, String) {
    (400, "INVALID_VERIFICATION_TOKEN", "Verification token is invalid, expired or already used".to_string())
}

fn users(w: &World) -> Vec<serde_json::Value> {
    w.rows(
        "SELECT id, username, email, phone_e164, status, email_verified, phone_verified FROM users ORDER BY username",
    )
}

#[test]
fn a_register_token_creates_the_account_with_its_email_verified_and_logs_it_in() {
    run(async {
        let w = World::new();
        let token = w.token_for(IP, "fay@example.com", Purpose::Register).await;

        let logged_in = w.register(IP, &token, "fay").await.expect("registered");

        assert_eq!(logged_in.user.username, "fay");
        assert_eq!(logged_in.user.email.as_deref(), Some("fay@example.com"));
        assert_eq!(logged_in.user.phone, None);
        assert!(logged_in.user.email_verified, "the register code proved the address");
        assert!(!logged_in.user.phone_verified);
        let rows = users(&w);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["id"], logged_in.user.id.as_str());
        assert_eq!((&rows[0]["status"], &rows[0]["email_verified"]), (&"active".into(), &1.into()));

        let sessions = w.rows("SELECT id, user_id, revoked_at FROM sessions");
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0]["id"], logged_in.session_id.as_str());
        assert_eq!(sessions[0]["user_id"], logged_in.user.id.as_str());
        assert!(sessions[0]["revoked_at"].is_null());
        let claims = w.keys.verify_access(&w.config.tokens, &logged_in.access, w.fakes.clock.0.get()).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.sid.as_str()),
            (logged_in.user.id.as_str(), logged_in.session_id.as_str())
        );
        assert_eq!(logged_in.expires_in, w.config.tokens.access_lifetime_seconds);
        assert_eq!(logged_in.refresh.len(), 43, "256 bits, base64url");
        let consumed = w.rows("SELECT consumed_at FROM verification_tokens WHERE purpose = 'register'");
        assert_eq!(consumed[0]["consumed_at"], w.fakes.clock.0.get());
        w.fakes.run_later().await;
        assert!(w.events().contains(&("session_created".to_string(), "ok".to_string())), "{:?}", w.events());
    })
}

#[test]
fn a_register_token_for_a_phone_creates_the_account_with_its_phone_verified() {
    run(async {
        let w = World::new();
        let token = w.token_for(IP, "+15551230020", Purpose::Register).await;

        let logged_in = w.register(IP, &token, "gus").await.expect("registered");

        assert_eq!(logged_in.user.phone.as_deref(), Some("+15551230020"));
        assert_eq!(logged_in.user.email, None);
        assert!(logged_in.user.phone_verified && !logged_in.user.email_verified);
        let rows = users(&w);
        assert_eq!((&rows[0]["phone_e164"], &rows[0]["phone_verified"]), (&"+15551230020".into(), &1.into()));
        assert_eq!(w.rows("SELECT id FROM sessions").len(), 1);
    })
}

#[test]
fn a_register_token_is_single_use() {
    run(async {
        let w = World::new();
        let token = w.token_for(IP, "hal@example.com", Purpose::Register).await;
        w.register(IP, &token, "hal").await.expect("registered");
        w.fakes.clock.advance(1_000);

        assert_eq!(refusal(w.register(IP, &token, "hal2").await), invalid_token());
        assert_eq!(refusal(w.register(IP, &token, "hal").await), invalid_token());
        assert_eq!(users(&w).len(), 1);
        assert_eq!(w.rows("SELECT id FROM sessions").len(), 1);
    })
}

#[test]
fn a_register_token_replayed_in_the_same_millisecond_is_still_an_invalid_token() {
    run(async {
        let w = World::new();
        let token = w.token_for(IP, "ida@example.com", Purpose::Register).await;
        w.register(IP, &token, "ida").await.expect("registered");

        // The test clock has not moved: the replay runs at the same millisecond.
        assert_eq!(refusal(w.register(IP, &token, "ida2").await), invalid_token());
        assert_eq!(refusal(w.register(IP, &token, "ida").await), invalid_token());
    })
}

#[test]
fn a_register_token_expires_after_its_ttl() {
    run(async {
        let w = World::with(&[("VERIFICATION_TOKEN_TTL_SECONDS", "120")]);
        let early = w.token_for(IP, "jo@example.com", Purpose::Register).await;
        let late = w.token_for(IP, "kim@example.com", Purpose::Register).await;

        w.fakes.clock.advance(119_999);
        assert!(w.register(IP, &early, "jo_1").await.is_ok(), "1 ms before the TTL ends");
        w.fakes.clock.advance(1);
        assert_eq!(refusal(w.register(IP, &late, "kim_1").await), invalid_token(), "at the TTL");
        assert_eq!(users(&w).len(), 1);
    })
}

#[test]
fn verify_and_reset_tokens_cannot_register() {
    run(async {
        let w = World::new();
        w.seed_user("lu@example.com", "active");
        let verify = w.token_for(IP, "lu@example.com", Purpose::Verify).await;
        let reset = w.token_for(IP, "lu@example.com", Purpose::Reset).await;

        assert_eq!(refusal(w.register(IP, &verify, "lu_verify").await), invalid_token());
        assert_eq!(refusal(w.register(IP, &reset, "lu_reset").await), invalid_token());
        assert_eq!(refusal(w.register(IP, "not-a-token-at-all", "lu_none").await), invalid_token());
        assert_eq!(users(&w).len(), 1, "only the seeded user");
        assert!(w.rows("SELECT id FROM sessions").is_empty());
        let unused = w.rows("SELECT purpose FROM verification_tokens WHERE consumed_at IS NULL ORDER BY purpose");
        assert_eq!(unused.len(), 2, "the refused attempts consumed nothing: {unused:?}");
    })
}

#[test]
fn a_taken_username_in_any_case_is_refused_and_the_token_still_works_with_another() {
    run(async {
        let w = World::new();
        let first = w.token_for(IP, "max@example.com", Purpose::Register).await;
        w.register(IP, &first, "Max").await.expect("registered");
        let token = w.token_for(IP, "max2@example.com", Purpose::Register).await;

        for taken in ["max", "MAX", " mAx "] {
            let (status, code, _) = refusal(w.register(IP, &token, taken).await);
            assert_eq!((status, code), (409, "USERNAME_TAKEN"), "{taken:?}");
        }
        assert_eq!(users(&w).len(), 1, "nothing of the refused attempts stayed");
        assert_eq!(w.rows("SELECT id FROM sessions").len(), 1);
        let consumed = w.rows("SELECT consumed_at FROM verification_tokens WHERE destination = 'max2@example.com'");
        assert!(consumed[0]["consumed_at"].is_null(), "the token was given back");

        let logged_in = w.register(IP, &token, "Max_2").await.expect("another username works");
        assert_eq!(logged_in.user.username, "max_2");
        assert_eq!(logged_in.user.email.as_deref(), Some("max2@example.com"));
        assert_eq!(users(&w).len(), 2);
    })
}

#[test]
fn a_destination_that_already_has_an_account_cannot_register_again() {
    run(async {
        let w = World::new();
        w.seed_user("ned@example.com", "active");
        w.seed_user("+15551230021", "disabled");
        let by_email = w.token_for(IP, "ned@example.com", Purpose::Register).await;
        let by_phone = w.token_for(IP, "+15551230021", Purpose::Register).await;

        for token in [&by_email, &by_phone] {
            let (status, code, _) = refusal(w.register(IP, token, "ned").await);
            assert_eq!((status, code), (409, "ACCOUNT_EXISTS"));
        }
        assert_eq!(users(&w).len(), 2, "only the seeded users");
        assert!(w.rows("SELECT id FROM sessions").is_empty());
        assert!(w.rows("SELECT token_hash FROM verification_tokens WHERE consumed_at IS NOT NULL").is_empty());
    })
}

#[test]
fn of_two_interleaved_registers_with_one_token_exactly_one_creates_an_account() {
    run(async {
        let w = World::new();
        let token = w.token_for(IP, "oz@example.com", Purpose::Register).await;

        let (a, b) = join(w.register(IP, &token, "oz_a"), w.register(IP, &token, "oz_b")).await;

        let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{a:?} {b:?}");
        let (winner, loser) = match (a, b) {
            (Ok(winner), loser) | (loser, Ok(winner)) => (winner, loser),
            neither => panic!("no winner: {neither:?}"),
        };
        // Both run at one clock reading: the loser finds the token consumed by the winner.
        assert_eq!(refusal(loser), invalid_token(), "the loser is refused");
        let rows = users(&w);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["id"], winner.user.id.as_str());
        let sessions = w.rows("SELECT user_id FROM sessions");
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0]["user_id"], winner.user.id.as_str());
    })
}

#[test]
fn a_register_token_tries_ten_taken_usernames_and_is_then_spent() {
    run(async {
        let w = World::new();
        let first = w.token_for(IP, "pia@example.com", Purpose::Register).await;
        w.register(IP, &first, "pia").await.expect("registered");
        let token = w.token_for(IP, "pia2@example.com", Purpose::Register).await;
        let tries = |failures: i64| {
            let rows = w.rows(
                "SELECT register_failures, consumed_at IS NOT NULL AS spent FROM verification_tokens \
                 WHERE destination = 'pia2@example.com'",
            );
            assert_eq!(rows[0]["register_failures"], failures, "{rows:?}");
            rows[0]["spent"] == 1
        };

        for n in 1..=9 {
            let (status, code, _) = refusal(w.register(IP, &token, "pia").await);
            assert_eq!((status, code), (409, "USERNAME_TAKEN"), "try {n}");
            assert!(!tries(n), "after {n} taken usernames the token is still usable");
        }
        let (status, code, _) = refusal(w.register(IP, &token, "PIA").await);
        assert_eq!((status, code), (409, "USERNAME_TAKEN"), "the tenth try is still answered");
        assert!(tries(10), "after ten the token is spent");

        assert_eq!(refusal(w.register(IP, &token, "pia_free").await), invalid_token(), "even with a free name");
        assert_eq!(users(&w).len(), 1);
        assert_eq!(w.rows("SELECT id FROM sessions").len(), 1);
    })
}

#[test]
fn nine_taken_usernames_leave_the_token_usable_and_a_free_one_then_registers() {
    run(async {
        let w = World::new();
        let first = w.token_for(IP, "quin@example.com", Purpose::Register).await;
        w.register(IP, &first, "quin").await.expect("registered");
        let token = w.token_for(IP, "quin2@example.com", Purpose::Register).await;

        for _ in 0..9 {
            let (status, code, _) = refusal(w.register(IP, &token, "quin").await);
            assert_eq!((status, code), (409, "USERNAME_TAKEN"));
        }
        let logged_in = w.register(IP, &token, "quin_2").await.expect("the tenth try, with a free name, registers");
        assert_eq!(logged_in.user.email.as_deref(), Some("quin2@example.com"));
        let rows = w.rows(
            "SELECT register_failures, consumed_by FROM verification_tokens WHERE destination = 'quin2@example.com'",
        );
        assert_eq!(rows[0]["register_failures"], 9);
        assert_eq!(rows[0]["consumed_by"], logged_in.user.id.as_str());
    })
}

#[test]
fn ten_tries_for_a_destination_that_already_has_an_account_spend_the_token_too() {
    run(async {
        let w = World::new();
        w.seed_user("ray@example.com", "active");
        let token = w.token_for(IP, "ray@example.com", Purpose::Register).await;

        for n in 0..10 {
            let (status, code, _) = refusal(w.register(IP, &token, &format!("ray_{n}")).await);
            assert_eq!((status, code), (409, "ACCOUNT_EXISTS"), "try {n}");
        }
        assert_eq!(refusal(w.register(IP, &token, "ray_10").await), invalid_token());
        assert_eq!(users(&w).len(), 1, "only the seeded user");
    })
}
