//! Step-up claims: every access token says when its session authenticated
//! (`auth_time`, the session's opening, in seconds) and how (`amr`, RFC 8176:
//! `otp`, plus `sms` for a code by SMS); a refresh keeps both.

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{json, Value};

use super::{run, World, T0};
use crate::domain::otp::Purpose;
use crate::flows::otp_verify::Verified;
use crate::flows::session::LoggedIn;

const IP: &str = "203.0.113.60";

/// The payload of a JWT, unverified.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload).expect("base64url")).expect("JSON")
}

/// `(auth_time, amr)` of an access token.
fn step_up(jwt: &str) -> (Value, Value) {
    let c = claims(jwt);
    (c["auth_time"].clone(), c["amr"].clone())
}

async fn sign_in(w: &World, destination: &str, purpose: Purpose) -> Verified {
    let (otp_id, code) = w.code_for(IP, destination, purpose).await;
    w.verify(IP, &otp_id, &code).await.unwrap_or_else(|e| panic!("{destination}: {e:?}"))
}

async fn login(w: &World, destination: &str) -> LoggedIn {
    match sign_in(w, destination, Purpose::Login).await {
        Verified::Login(logged_in) => logged_in,
        other => panic!("{destination} not logged in: {other:?}"),
    }
}

async fn register(w: &World, destination: &str, username: &str) -> LoggedIn {
    let token = match sign_in(w, destination, Purpose::Register).await {
        Verified::Register { verification_token, .. } => verification_token,
        other => panic!("no register token for {destination}: {other:?}"),
    };
    w.register(IP, &token, username).await.expect("registered")
}

fn auth_channel(w: &World, session_id: &str) -> Value {
    w.rows(&format!("SELECT auth_channel FROM sessions WHERE id = '{session_id}'")).remove(0)["auth_channel"].clone()
}

#[test]
fn a_login_by_email_code_is_otp_at_the_time_it_verified() {
    run(async {
        let w = World::new();
        w.seed_user("ida@example.com", "active");
        w.fakes.clock.advance(2_500);
        let now = w.fakes.clock.0.get();
        let logged_in = login(&w, "ida@example.com").await;

        assert_eq!(step_up(&logged_in.access), (json!(now / 1000), json!(["otp"])));
        assert_eq!(auth_channel(&w, &logged_in.session_id), "email");
        assert!(w.keys.verify_access(&w.config.tokens, &logged_in.access, now).is_ok());
    })
}

#[test]
fn a_login_by_sms_code_is_otp_and_sms_even_for_an_account_that_also_has_an_email() {
    run(async {
        let w = World::new();
        let id = w.seed_user("+15551230060", "active");
        w.fakes.db.execute(&format!("UPDATE users SET email = 'jo@example.com' WHERE id = '{id}'"));
        let logged_in = login(&w, "+15551230060").await;
        let now = w.fakes.clock.0.get();

        assert_eq!(step_up(&logged_in.access), (json!(now / 1000), json!(["otp", "sms"])));
        assert_eq!(auth_channel(&w, &logged_in.session_id), "phone");
        // The same account by email: that session says otp alone.
        let by_email = login(&w, "jo@example.com").await;
        assert_eq!(step_up(&by_email.access).1, json!(["otp"]));
    })
}

#[test]
fn a_registration_carries_the_channel_of_its_register_token() {
    run(async {
        let w = World::new();
        let by_phone = register(&w, "+15551230061", "kim").await;
        let by_email = register(&w, "lee@example.com", "lee").await;
        let now = w.fakes.clock.0.get();

        assert_eq!(step_up(&by_phone.access), (json!(now / 1000), json!(["otp", "sms"])));
        assert_eq!(auth_channel(&w, &by_phone.session_id), "phone");
        assert_eq!(step_up(&by_email.access), (json!(now / 1000), json!(["otp"])));
        assert_eq!(auth_channel(&w, &by_email.session_id), "email");
    })
}

#[test]
fn a_refresh_keeps_the_auth_time_and_amr_of_the_login() {
    run(async {
        let w = World::with(&[("REFRESH_TOKEN_REUSE_GRACE_SECONDS", "10")]);
        w.seed_user("+15551230062", "active");
        let logged_in = login(&w, "+15551230062").await;
        let at_login = step_up(&logged_in.access);
        assert_eq!(at_login, (json!(T0 / 1000), json!(["otp", "sms"])));

        w.fakes.clock.advance(90_000);
        let app = w.app(IP);
        let first = crate::flows::refresh::refresh(&app, &logged_in.refresh).await.expect("refreshed");
        assert_eq!(step_up(&first.access), at_login, "not the time of the refresh");
        assert_eq!(claims(&first.access)["iat"], (T0 + 90_000) / 1000);
        // A second tab within the grace window: the very same token.
        w.fakes.clock.advance(1_000);
        let again = crate::flows::refresh::refresh(&app, &logged_in.refresh).await.expect("grace re-issue");
        assert_eq!(again.access, first.access);
        w.fakes.clock.advance(60_000);
        let second = crate::flows::refresh::refresh(&app, &first.refresh).await.expect("refreshed again");
        assert_eq!(step_up(&second.access), at_login);
    })
}

#[test]
fn a_session_from_before_the_column_refreshes_to_otp_at_its_opening() {
    run(async {
        let w = World::new();
        w.seed_user("+15551230063", "active");
        let logged_in = login(&w, "+15551230063").await;
        w.fakes.db.execute(&format!(
            "UPDATE sessions SET auth_channel = NULL, created_at = {} WHERE id = '{}'",
            T0 - 4_321,
            logged_in.session_id
        ));

        let app = w.app(IP);
        let pair = crate::flows::refresh::refresh(&app, &logged_in.refresh).await.expect("refreshed");
        assert_eq!(step_up(&pair.access), (json!((T0 - 4_321) / 1000), json!(["otp"])));
        assert!(w.keys.verify_access(&w.config.tokens, &pair.access, T0).is_ok());
    })
}
