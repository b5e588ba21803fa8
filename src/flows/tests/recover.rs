//! Recovery: a `reset` verification token for a destination of an active
//! account revokes every session of it and opens a new one, in one
//! transaction; anything else is an invalid token and changes nothing. A
//! reset code for a destination with no active account never verifies.

use serde_json::Value;

use super::{refusal, run, World};
use crate::domain::otp::{self, OtpCode, Purpose};
use crate::flows::error::{AuthFailure, Error};
use crate::flows::session::LoggedIn;

const IP: &str = "203.0.113.70";

fn invalid_token() -> (u16, &'static str, String) {
    (400, "INVALID_VERIFICATION_TOKEN", "Verification token is invalid, expired or already used".to_string())
}

async fn recover(w: &World, token: &str) -> Result<LoggedIn, Error> {
    let app = w.app(IP);
    let result = crate::flows::recover::recover(&app, token).await;
    app.store_trail();
    result
}

async fn refresh(w: &World, token: &str) -> Result<crate::flows::session::TokenPair, Error> {
    crate::flows::refresh::refresh(&w.app(IP), token).await
}

fn sessions(w: &World) -> Vec<Value> {
    w.rows("SELECT id, user_id, revoked_at, revoked_reason, auth_channel FROM sessions ORDER BY created_at, id")
}

#[test]
fn a_reset_token_revokes_every_session_of_the_account_and_signs_it_in_again() {
    run(async {
        let w = World::new();
        let user = w.seed_user("+15551230070", "active");
        w.fakes.db.execute(&format!("UPDATE users SET email = 'mo@example.com' WHERE id = '{user}'"));
        let first = w.logged_in(IP, "mo@example.com").await;
        let second = w.logged_in(IP, "+15551230070").await;
        let other = w.seed_user("ned@example.com", "active");
        let bystander = w.logged_in(IP, "ned@example.com").await;
        let token = w.token_for(IP, "+15551230070", Purpose::Reset).await;
        w.fakes.clock.advance(1_000);

        let recovered = recover(&w, &token).await.expect("recovered");

        assert_eq!(recovered.user.id, user);
        assert_eq!(recovered.user.phone.as_deref(), Some("+15551230070"));
        assert_eq!(recovered.expires_in, w.config.tokens.access_lifetime_seconds);
        let now = w.fakes.clock.0.get();
        for old in [&first, &second] {
            let row = sessions(&w).into_iter().find(|s| s["id"] == old.session_id.as_str()).unwrap();
            assert_eq!((&row["revoked_at"], &row["revoked_reason"]), (&now.into(), &"recovered".into()), "{row}");
            assert!(matches!(refresh(&w, &old.refresh).await, Err(Error::Auth(AuthFailure::SessionEnded))));
        }
        let new = sessions(&w).into_iter().find(|s| s["id"] == recovered.session_id.as_str()).expect("new session");
        assert_eq!((&new["user_id"], &new["revoked_at"]), (&user.as_str().into(), &Value::Null));
        assert_eq!(new["auth_channel"], "phone", "the reset code's channel");
        let claims = w.keys.verify_access(&w.config.tokens, &recovered.access, now).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), (user.as_str(), recovered.session_id.as_str()));
        assert!(refresh(&w, &recovered.refresh).await.is_ok(), "the new session works");
        // Another account's session is untouched.
        let untouched = sessions(&w).into_iter().find(|s| s["id"] == bystander.session_id.as_str()).unwrap();
        assert_eq!((&untouched["user_id"], &untouched["revoked_at"]), (&other.as_str().into(), &Value::Null));
        w.fakes.run_later().await;
        let events = w.events();
        assert!(events.contains(&("account_recovered".to_string(), "ok".to_string())), "{events:?}");
        assert!(events.contains(&("session_created".to_string(), "ok".to_string())), "{events:?}");
    })
}

#[test]
fn a_reset_token_recovers_once() {
    run(async {
        let w = World::new();
        w.seed_user("oz@example.com", "active");
        let token = w.token_for(IP, "oz@example.com", Purpose::Reset).await;

        let recovered = recover(&w, &token).await.expect("recovered");
        assert_eq!(refusal(recover(&w, &token).await), invalid_token(), "the same millisecond");
        w.fakes.clock.advance(1);
        assert_eq!(refusal(recover(&w, &token).await), invalid_token());
        let live = w.rows("SELECT id FROM sessions WHERE revoked_at IS NULL");
        assert_eq!(live, [serde_json::json!({ "id": recovered.session_id })], "the replay revoked nothing");
    })
}

#[test]
fn an_expired_reset_token_does_not_recover() {
    run(async {
        let w = World::with(&[("VERIFICATION_TOKEN_TTL_SECONDS", "120")]);
        w.seed_user("pia@example.com", "active");
        let session = w.logged_in(IP, "pia@example.com").await;
        let token = w.token_for(IP, "pia@example.com", Purpose::Reset).await;
        w.fakes.clock.advance(120_000);

        assert_eq!(refusal(recover(&w, &token).await), invalid_token());
        assert!(refresh(&w, &session.refresh).await.is_ok(), "nothing was revoked");
    })
}

#[test]
fn only_a_reset_token_recovers() {
    run(async {
        let w = World::new();
        w.seed_user("quinn@example.com", "active");
        let session = w.logged_in(IP, "quinn@example.com").await;
        let verify = w.token_for(IP, "quinn@example.com", Purpose::Verify).await;
        let register = w.token_for(IP, "rae@example.com", Purpose::Register).await;

        for token in [verify.as_str(), register.as_str(), "not-a-token", ""] {
            assert_eq!(refusal(recover(&w, token).await), invalid_token(), "{token}");
        }
        assert!(w.rows("SELECT 1 FROM verification_tokens WHERE consumed_at IS NOT NULL").is_empty());
        assert_eq!(sessions(&w).len(), 1);
        assert!(refresh(&w, &session.refresh).await.is_ok());
    })
}

#[test]
fn a_reset_token_of_an_account_disabled_since_does_not_recover() {
    run(async {
        let w = World::new();
        let user = w.seed_user("sam@example.com", "active");
        let token = w.token_for(IP, "sam@example.com", Purpose::Reset).await;
        w.fakes.db.execute(&format!("UPDATE users SET status = 'disabled' WHERE id = '{user}'"));

        assert_eq!(refusal(recover(&w, &token).await), invalid_token());
        assert!(sessions(&w).is_empty());
        assert!(w.rows("SELECT 1 FROM verification_tokens WHERE consumed_at IS NOT NULL").is_empty());
    })
}

#[test]
fn a_reset_code_for_no_active_account_is_sent_like_a_real_one_and_never_verifies() {
    run(async {
        let w = World::new();
        w.seed_user("tia@example.com", "active");
        w.seed_user("uli@example.com", "disabled");
        let real = w.request(IP, "tia@example.com", Purpose::Reset).await.expect("requested");
        for destination in ["uno@example.com", "uli@example.com"] {
            let other = w.request(IP, destination, Purpose::Reset).await.expect("requested");
            assert_eq!(
                (&other.message, other.expires_in, other.destination_masked.len()),
                (&real.message, real.expires_in, real.destination_masked.len()),
                "{destination}"
            );
            w.deliver_queued().await;
            let code = w.last_code_to(destination);
            let row = w.rows(&format!("SELECT user_id FROM otp_requests WHERE id = '{}'", other.otp_id)).remove(0);
            assert_eq!(row["user_id"], Value::Null, "linked to no account");
            // Even the right code fails as a wrong one does, and no token is issued.
            let (status, code_name, message) = refusal(w.verify(IP, &other.otp_id, &code).await);
            assert_eq!((status, code_name, message.as_str()), (400, "INVALID_OTP", "Invalid OTP"), "{destination}");
        }
        assert!(w.rows("SELECT 1 FROM verification_tokens").is_empty());
        // The hash of the code is right: the same code under a login never matches either.
        let stored = w.rows("SELECT id, otp_hash FROM otp_requests WHERE destination = 'uno@example.com'").remove(0);
        let id = stored["id"].as_str().unwrap();
        let code = OtpCode::parse(&w.last_code_to("uno@example.com"), w.config.otp.length).unwrap();
        assert_eq!(stored["otp_hash"], otp::code_hash(super::PEPPER, id, Purpose::Reset, &code).as_str());
    })
}
