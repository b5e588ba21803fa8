//! Token revocation (RFC 7009): a refresh token, current or retired, or an
//! access token ends its session; anything else changes nothing; the
//! answer is the same either way.

use super::{refusal, run, World};
use crate::flows::account;
use crate::flows::session::LoggedIn;

const IP: &str = "203.0.113.31";

async fn revoke(w: &World, token: &str) {
    let app = w.app(IP);
    crate::flows::refresh::revoke(&app, token).await.expect("a revocation always answers 200");
    app.store_trail();
    w.fakes.run_later().await;
}

async fn login(w: &World, destination: &str) -> LoggedIn {
    w.seed_user(destination, "active");
    w.logged_in(IP, destination).await
}

fn revoked(w: &World, session_id: &str) -> (Option<String>, bool) {
    let row = w.rows(&format!("SELECT revoked_reason, revoked_at FROM sessions WHERE id = '{session_id}'")).pop();
    let row = row.expect("the session row");
    (row["revoked_reason"].as_str().map(str::to_string), row["revoked_at"] == w.fakes.clock.0.get())
}

async fn refused(w: &World, access: &str) -> &'static str {
    let app = w.app(IP);
    refusal(account::authenticate(&app, Some(&format!("Bearer {access}"))).await.map(|who| who.session_id)).1
}

fn revocations(w: &World) -> usize {
    w.events().iter().filter(|e| *e == &("session_revoked".to_string(), "token_revoked".to_string())).count()
}

#[test]
fn a_refresh_token_revoked_ends_its_session_and_nothing_else() {
    run(async {
        let w = World::new();
        let mine = login(&w, "rita@example.com").await;
        let other = login(&w, "rolf@example.com").await;
        w.fakes.clock.advance(1_000);

        revoke(&w, &mine.refresh).await;

        assert_eq!(revoked(&w, &mine.session_id), (Some("token_revoked".into()), true));
        assert_eq!(refused(&w, &mine.access).await, "SESSION_REVOKED");
        let refresh = crate::flows::refresh::refresh(&w.app(IP), &mine.refresh).await;
        assert_eq!(refusal(refresh).1, "SESSION_REVOKED");
        assert_eq!(revoked(&w, &other.session_id).0, None, "another user's session lives");
        assert_eq!(revocations(&w), 1);
        // Again: nothing more happens, and the answer is the same.
        revoke(&w, &mine.refresh).await;
        assert_eq!(revocations(&w), 1);
    })
}

#[test]
fn a_retired_refresh_token_or_an_access_token_ends_the_session_too() {
    run(async {
        let w = World::new();
        let first = login(&w, "rosa@example.com").await;
        let rotated = crate::flows::refresh::refresh(&w.app(IP), &first.refresh).await.expect("rotated");
        revoke(&w, &first.refresh).await;
        assert_eq!(revoked(&w, &first.session_id).0.as_deref(), Some("token_revoked"), "by its retired token");
        assert_eq!(refused(&w, &rotated.access).await, "SESSION_REVOKED");

        let second = login(&w, "ruth@example.com").await;
        revoke(&w, &second.access).await;
        assert_eq!(revoked(&w, &second.session_id).0.as_deref(), Some("token_revoked"), "by its access token");
        assert_eq!(revocations(&w), 2);
    })
}

#[test]
fn an_unknown_forged_or_expired_token_changes_nothing() {
    run(async {
        let w = World::new();
        let s = login(&w, "rudi@example.com").await;
        let forged = {
            let mut parts: Vec<String> = s.access.split('.').map(str::to_string).collect();
            // Another first character: replacing it with the one it has
            // (one signature in 64 starts with A) forged nothing.
            let other = if parts[2].starts_with('A') { 'B' } else { 'A' };
            parts[2] = format!("{other}{}", &parts[2][1..]);
            parts.join(".")
        };
        for token in ["not-a-token", "a.b.c", &forged, &s.refresh[1..]] {
            revoke(&w, token).await;
        }
        // An access token past its expiry proves nothing any more.
        w.fakes.clock.advance(w.config.tokens.access_lifetime_seconds as i64 * 1000 + 1);
        revoke(&w, &s.access).await;
        assert_eq!(revoked(&w, &s.session_id).0, None);
        assert_eq!(revocations(&w), 0);
    })
}
