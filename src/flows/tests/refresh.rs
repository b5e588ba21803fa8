//! Refresh: every refresh rotates; a retired token presented again gets the
//! same pair within the grace window and revokes the session after it; the
//! access token carries the session; racing refreshes share one pair.

use base64ct::{Base64UrlUnpadded, Encoding};
use futures_util::future::join;
use serde_json::Value;

use super::{refusal, run, World};
use crate::domain::otp::Purpose;
use crate::flows::account;
use crate::flows::otp_verify::Verified;
use crate::flows::session::{LoggedIn, TokenPair};

const IP: &str = "203.0.113.30";

/// A flow's answer (the error type is the harness's).
type Answer<T> = Result<T, super::Error>;

/// Logs a new user in; the login answer.
async fn login(w: &World, destination: &str) -> LoggedIn {
    w.seed_user(destination, "active");
    sign_in_again(w, destination).await
}

/// Logs an existing user in again.
async fn sign_in_again(w: &World, destination: &str) -> LoggedIn {
    let (otp_id, code) = w.code_for(IP, destination, Purpose::Login).await;
    match w.verify(IP, &otp_id, &code).await {
        Ok(Verified::Login(logged_in)) => logged_in,
        other => panic!("{destination} not logged in: {other:?}"),
    }
}

async fn refresh(w: &World, token: &str) -> Answer<TokenPair> {
    let app = w.app(IP);
    let result = crate::flows::refresh::refresh(&app, token).await;
    app.store_trail();
    result
}

/// The session id behind an access token, if the service accepts it.
async fn authenticated(w: &World, access: &str) -> Answer<String> {
    let app = w.app(IP);
    account::authenticate(&app, Some(&format!("Bearer {access}"))).await.map(|who| who.session_id)
}

/// The payload of a JWT, unverified.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload).expect("base64url")).expect("JSON")
}

fn session_row(w: &World, id: &str) -> Value {
    let columns = "refresh_token_hash, last_used_at, expires_at, revoked_at, revoked_reason";
    w.rows(&format!("SELECT {columns} FROM sessions WHERE id = '{id}'")).pop().expect("the session row")
}

#[test]
fn a_refresh_rotates_the_pair_and_retires_the_old_token() {
    run(async {
        let w = World::new();
        let first = login(&w, "pia@example.com").await;
        w.fakes.clock.advance(60_000);

        let second = refresh(&w, &first.refresh).await.expect("refreshed");

        assert_eq!(second.session_id, first.session_id);
        assert_ne!(second.refresh, first.refresh);
        assert_ne!(second.access, first.access);
        assert_eq!(second.expires_in, w.config.tokens.access_lifetime_seconds);
        let row = session_row(&w, &first.session_id);
        assert_eq!(row["last_used_at"], crate::native::T0 + 60_000);
        assert_eq!(row["expires_at"], crate::native::T0 + 60_000 + 2_592_000_000, "30 days from the rotation");
        assert_eq!(w.rows("SELECT token_hash FROM retired_refresh_tokens").len(), 1);
        // Only hashes are stored.
        assert!(w
            .rows("SELECT refresh_token_hash AS h FROM sessions UNION SELECT token_hash FROM retired_refresh_tokens")
            .iter()
            .all(|r| r["h"] != first.refresh.as_str() && r["h"] != second.refresh.as_str()));
        // The new pair works: the next refresh rotates again.
        w.fakes.clock.advance(60_000);
        let third = refresh(&w, &second.refresh).await.expect("refreshed again");
        assert_eq!(authenticated(&w, &third.access).await.unwrap(), first.session_id);
        w.fakes.run_later().await;
        let refreshed = w.events().into_iter().filter(|e| e == &("token_refreshed".into(), "ok".into())).count();
        assert_eq!(refreshed, 2);
    })
}

#[test]
fn the_retired_token_after_the_grace_window_revokes_the_whole_session() {
    run(async {
        let w = World::new();
        let stolen = login(&w, "quin@example.com").await;
        let owner = refresh(&w, &stolen.refresh).await.expect("refreshed");
        w.fakes.clock.advance(10_001);

        let (status, code, _) = refusal(refresh(&w, &stolen.refresh).await);

        assert_eq!((status, code), (401, "REFRESH_TOKEN_REUSED"));
        let row = session_row(&w, &stolen.session_id);
        assert_eq!(row["revoked_at"], w.fakes.clock.0.get());
        assert_eq!(row["revoked_reason"], "refresh_token_reuse");
        // The whole session is over: its newest access token, its newest
        // refresh token, and the stolen one again.
        assert_eq!(refusal(authenticated(&w, &owner.access).await).1, "SESSION_REVOKED");
        // (Which 401: see the ignored test below.)
        assert_eq!(refusal(refresh(&w, &owner.refresh).await).0, 401, "the newest refresh token is refused");
        assert_eq!(refusal(refresh(&w, &stolen.refresh).await).1, "SESSION_REVOKED");
        w.fakes.run_later().await;
        assert!(w.events().contains(&("refresh_reuse_detected".into(), "session_revoked".into())));
    })
}

#[test]
fn the_newest_refresh_token_of_a_session_revoked_for_reuse_says_the_session_is_revoked() {
    run(async {
        let w = World::new();
        let stolen = login(&w, "quinn@example.com").await;
        let owner = refresh(&w, &stolen.refresh).await.expect("refreshed");
        w.fakes.clock.advance(10_001);
        assert_eq!(refusal(refresh(&w, &stolen.refresh).await).1, "REFRESH_TOKEN_REUSED");

        let (status, code, _) = refusal(refresh(&w, &owner.refresh).await);

        assert_eq!((status, code), (401, "SESSION_REVOKED"));
    })
}

#[test]
fn the_retired_token_within_the_grace_window_gets_the_very_same_new_pair() {
    run(async {
        let w = World::with(&[("REFRESH_REUSE_GRACE_SECONDS", "5")]);
        let first = login(&w, "rex@example.com").await;
        let second = refresh(&w, &first.refresh).await.expect("refreshed");

        w.fakes.clock.advance(5_000);
        let again = refresh(&w, &first.refresh).await.expect("within the grace window");

        assert_eq!(
            (&again.access, &again.refresh, &again.session_id),
            (&second.access, &second.refresh, &second.session_id)
        );
        assert!(session_row(&w, &first.session_id)["revoked_at"].is_null());
        assert_eq!(w.rows("SELECT token_hash FROM retired_refresh_tokens").len(), 1, "nothing rotated again");
        // One millisecond later it is a reuse.
        w.fakes.clock.advance(1);
        assert_eq!(refusal(refresh(&w, &first.refresh).await).1, "REFRESH_TOKEN_REUSED");
        w.fakes.run_later().await;
        assert!(w.events().contains(&("token_refreshed".into(), "grace_reuse".into())));
    })
}

#[test]
fn an_unknown_refresh_token_is_refused() {
    run(async {
        let w = World::new();
        login(&w, "sol@example.com").await;
        let never_issued = Base64UrlUnpadded::encode_string(&[7u8; 32]);

        for token in [never_issued.as_str(), "x", ""] {
            let (status, code, _) = refusal(refresh(&w, token).await);
            assert_eq!((status, code), (401, "REFRESH_TOKEN_INVALID"), "{token:?}");
        }
        assert!(w.rows("SELECT id FROM sessions WHERE revoked_at IS NOT NULL").is_empty());
    })
}

#[test]
fn a_session_expires_its_refresh_lifetime_after_the_last_rotation() {
    run(async {
        let w = World::with(&[("REFRESH_TOKEN_LIFETIME_SECONDS", "3600")]);
        let first = login(&w, "tam@example.com").await;

        w.fakes.clock.advance(3_599_999);
        let second = refresh(&w, &first.refresh).await.expect("1 ms before the session expires");
        w.fakes.clock.advance(3_600_000);

        let (status, code, _) = refusal(refresh(&w, &second.refresh).await);
        assert_eq!((status, code), (401, "SESSION_REVOKED"), "an hour after the last rotation, the session ended");
        // The retired token of the expired session says the session ended.
        assert_eq!(refusal(refresh(&w, &first.refresh).await).1, "SESSION_REVOKED");
        assert!(session_row(&w, &first.session_id)["revoked_at"].is_null(), "expired, not revoked");
    })
}

#[test]
fn the_access_token_names_the_user_and_the_session_and_lives_its_lifetime() {
    run(async {
        let w = World::with(&[("ACCESS_TOKEN_LIFETIME_SECONDS", "120")]);
        let first = login(&w, "uma@example.com").await;
        w.fakes.clock.advance(1_500);
        let second = refresh(&w, &first.refresh).await.expect("refreshed");

        for (pair_access, issued_at) in
            [(&first.access, crate::native::T0), (&second.access, crate::native::T0 + 1_000)]
        {
            let c = claims(pair_access);
            assert_eq!(c["sub"], first.user.id.as_str());
            assert_eq!(c["sid"], first.session_id.as_str());
            assert_eq!(c["iat"], issued_at / 1000, "whole seconds");
            assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);
            assert_eq!(
                (&c["iss"], &c["aud"], &c["token_type"]),
                (&"otp-edge".into(), &"otp-edge".into(), &"access".into())
            );
        }
        assert_eq!(first.expires_in, 120);
        assert_ne!(claims(&first.access)["jti"], claims(&second.access)["jti"]);
    })
}

#[test]
fn two_interleaved_refreshes_of_one_token_both_get_the_same_pair() {
    run(async {
        let w = World::new();
        let first = login(&w, "vic@example.com").await;

        let (a, b) = join(refresh(&w, &first.refresh), refresh(&w, &first.refresh)).await;

        let (a, b) = (a.expect("first tab"), b.expect("second tab"));
        assert_eq!((&a.access, &a.refresh), (&b.access, &b.refresh));
        assert!(session_row(&w, &first.session_id)["revoked_at"].is_null(), "not a reuse");
        assert_eq!(authenticated(&w, &a.access).await.unwrap(), first.session_id);
        assert!(refresh(&w, &a.refresh).await.is_ok(), "the shared pair goes on");
    })
}

const MINUTE: i64 = 60_000;

#[test]
fn a_session_ends_its_maximum_lifetime_after_sign_in_however_often_it_refreshes() {
    run(async {
        let w = World::with(&[("SESSION_MAX_LIFETIME_SECONDS", "7200"), ("REFRESH_TOKEN_LIFETIME_SECONDS", "3600")]);
        let first = login(&w, "val@example.com").await;
        let end = crate::native::T0 + 120 * MINUTE;
        assert_eq!(session_row(&w, &first.session_id)["expires_at"], crate::native::T0 + 60 * MINUTE);

        // Refreshing every 50 minutes: the refresh lifetime slides, up to the end.
        w.fakes.clock.advance(50 * MINUTE);
        let second = refresh(&w, &first.refresh).await.expect("at 50 min");
        assert_eq!(session_row(&w, &first.session_id)["expires_at"], crate::native::T0 + 110 * MINUTE);
        assert_eq!(second.expires_in, 300);
        w.fakes.clock.advance(50 * MINUTE);
        let third = refresh(&w, &second.refresh).await.expect("at 100 min");
        assert_eq!(session_row(&w, &first.session_id)["expires_at"], end, "cut to the session's end");
        w.fakes.clock.advance(19 * MINUTE);
        let last = refresh(&w, &third.refresh).await.expect("a minute before the end");
        assert_eq!(session_row(&w, &first.session_id)["expires_at"], end);
        // The access token issued a minute before the end lives a minute.
        assert_eq!((last.expires_in, claims(&last.access)["exp"].as_i64().unwrap()), (60, end / 1000));
        // A second tab within the grace window gets that same pair.
        w.fakes.clock.advance(5_000);
        let again = refresh(&w, &third.refresh).await.expect("the grace window");
        assert_eq!((&again.access, again.expires_in), (&last.access, 60));
        assert_eq!(authenticated(&w, &last.access).await.unwrap(), first.session_id);

        // At the end: refresh, the access token and the list all say it ended.
        w.fakes.clock.0.set(end);
        assert_eq!(refusal(refresh(&w, &last.refresh).await).1, "SESSION_REVOKED", "the current token");
        assert_eq!(refusal(refresh(&w, &third.refresh).await).1, "SESSION_REVOKED", "a retired token");
        assert_eq!(refusal(authenticated(&w, &last.access).await).1, "SESSION_REVOKED", "exp is the end itself");
        assert!(session_row(&w, &first.session_id)["revoked_at"].is_null(), "ended, not revoked");
        let fresh = sign_in_again(&w, "val@example.com").await;
        assert_ne!(fresh.session_id, first.session_id, "a new sign-in opens a new session");
        let app = w.app(IP);
        let who = account::authenticate(&app, Some(&format!("Bearer {}", fresh.access))).await.unwrap();
        let listed = account::sessions(&app, &who).await.unwrap().sessions;
        assert_eq!(listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [fresh.session_id.as_str()]);
    })
}

#[test]
fn a_session_older_than_the_maximum_lifetime_ends_even_if_its_expiry_says_otherwise() {
    run(async {
        // Rotated before sessions had a maximum lifetime (or before it was
        // lowered): `expires_at` is still a month away, the session is over.
        let w = World::new();
        let first = login(&w, "wes@example.com").await;
        let second = refresh(&w, &first.refresh).await.unwrap();
        let ninety_days = 90 * 24 * 60 * MINUTE;
        w.fakes.db.execute(&format!(
            "UPDATE sessions SET created_at = created_at - {ninety_days}, expires_at = expires_at WHERE id = '{}'",
            first.session_id
        ));

        assert_eq!(refusal(authenticated(&w, &second.access).await).1, "SESSION_REVOKED");
        assert_eq!(refusal(refresh(&w, &second.refresh).await).1, "SESSION_REVOKED");
        assert_eq!(refusal(refresh(&w, &first.refresh).await).1, "SESSION_REVOKED", "the grace window too");
        // One millisecond younger, it would still be live.
        w.fakes
            .db
            .execute(&format!("UPDATE sessions SET created_at = created_at + 1 WHERE id = '{}'", first.session_id));
        assert_eq!(authenticated(&w, &second.access).await.unwrap(), first.session_id);
    })
}

fn refresh_window(w: &World, session_id: &str) -> (i64, i64) {
    let row = &w.rows(&format!(
        "SELECT refresh_window_start AS s, refresh_window_count AS n FROM sessions WHERE id = '{session_id}'"
    ))[0];
    (row["s"].as_i64().unwrap(), row["n"].as_i64().unwrap())
}

fn retired_of(w: &World, session_id: &str) -> usize {
    w.rows(&format!("SELECT token_hash FROM retired_refresh_tokens WHERE session_id = '{session_id}'")).len()
}

#[test]
fn a_session_rotates_at_most_ten_times_a_minute_then_waits_for_its_window_to_close() {
    run(async {
        let w = World::new();
        let first = login(&w, "xan@example.com").await;
        let mut current = refresh(&w, &first.refresh).await.expect("the first refresh opens a window");
        for _ in 1..10 {
            w.fakes.clock.advance(1_000);
            current = refresh(&w, &current.refresh).await.expect("within ten");
        }
        assert_eq!(refresh_window(&w, &first.session_id), (crate::native::T0, 10));
        w.fakes.clock.advance(1_000); // T0 + 10 s

        let (status, code, message, retry_after) = World::refusal_with_retry_after(refresh(&w, &current.refresh).await);

        assert_eq!((status, code, retry_after), (429, "RATE_LIMIT", Some(50)), "{message}");
        assert_eq!(message, "Too many refreshes of this session. Please try again later.");
        assert_eq!(retired_of(&w, &first.session_id), 10, "refused before anything was written");
        assert_eq!(refresh_window(&w, &first.session_id), (crate::native::T0, 10));
        w.fakes.clock.0.set(crate::native::T0 + 59_999);
        assert_eq!(World::refusal_with_retry_after(refresh(&w, &current.refresh).await).3, Some(1));
        // Waiting Retry-After is enough: the next refresh opens a new window.
        w.fakes.clock.0.set(crate::native::T0 + 60_000);
        let next = refresh(&w, &current.refresh).await.expect("the window closed");
        assert_eq!(refresh_window(&w, &first.session_id), (crate::native::T0 + 60_000, 1));
        assert_eq!(authenticated(&w, &next.access).await.unwrap(), first.session_id);
        w.fakes.run_later().await;
        let limited = w.rows("SELECT outcome, session_id, user_id FROM audit_events WHERE event = 'rate_limited'");
        assert_eq!(limited.len(), 2, "{limited:?}");
        assert_eq!(
            (&limited[0]["outcome"], &limited[0]["session_id"], &limited[0]["user_id"]),
            (&"session_refresh".into(), &first.session_id.as_str().into(), &first.user.id.as_str().into())
        );
    })
}

#[test]
fn the_limit_is_per_session_and_set_by_refresh_per_session_per_minute() {
    run(async {
        let w = World::with(&[("REFRESH_PER_SESSION_PER_MINUTE", "2")]);
        let laptop = login(&w, "yve@example.com").await;
        let phone = sign_in_again(&w, "yve@example.com").await;
        let second = refresh(&w, &laptop.refresh).await.unwrap();
        let third = refresh(&w, &second.refresh).await.unwrap();

        assert_eq!(refusal(refresh(&w, &third.refresh).await).0, 429, "the laptop's third in a minute");
        assert!(refresh(&w, &phone.refresh).await.is_ok(), "the phone's session has its own budget");
    })
}

#[test]
fn a_second_tab_within_the_grace_window_takes_nothing_from_the_budget() {
    run(async {
        let w = World::with(&[("REFRESH_PER_SESSION_PER_MINUTE", "2")]);
        let first = login(&w, "zoe@example.com").await;
        let second = refresh(&w, &first.refresh).await.unwrap();
        w.fakes.clock.advance(1_000);
        // Two tabs at once with the budget's last refresh: one rotates, the
        // other gets the same pair from the grace window.
        let (a, b) = join(refresh(&w, &second.refresh), refresh(&w, &second.refresh)).await;
        let (a, b) = (a.expect("first tab"), b.expect("second tab"));
        assert_eq!((&a.access, &a.refresh), (&b.access, &b.refresh));
        assert_eq!(refresh_window(&w, &first.session_id).1, 2);

        // Spent: the current token waits, a retired one in its grace window does not.
        assert_eq!(refusal(refresh(&w, &a.refresh).await).0, 429);
        let again = refresh(&w, &second.refresh).await.expect("the grace window is not a rotation");
        assert_eq!(again.refresh, a.refresh);
        // Many at once with a spent budget: all refused, nothing written.
        let (x, y) = join(refresh(&w, &a.refresh), refresh(&w, &a.refresh)).await;
        assert_eq!((refusal(x).0, refusal(y).0), (429, 429));
        assert_eq!(retired_of(&w, &first.session_id), 2);
    })
}

#[test]
fn an_ended_session_says_so_before_its_budget() {
    run(async {
        let w = World::with(&[("REFRESH_PER_SESSION_PER_MINUTE", "1")]);
        let first = login(&w, "abi@example.com").await;
        let second = refresh(&w, &first.refresh).await.unwrap();
        assert_eq!(refusal(refresh(&w, &second.refresh).await).0, 429);
        let app = w.app(IP);
        let who = account::authenticate(&app, Some(&format!("Bearer {}", second.access))).await.unwrap();
        account::logout(&app, &who).await.unwrap();

        assert_eq!(
            refusal(refresh(&w, &second.refresh).await),
            (401, "SESSION_REVOKED", "This session has ended; log in again".into())
        );
    })
}
