//! A disabled account keeps no access: every authenticated request and every
//! refresh (the grace-window re-issue too) requires an active account, and
//! disabling revokes the account's sessions, both through `Db::disable_user`
//! (what the admin API calls) and through an operator's own UPDATE (the
//! `users_disabled_end_sessions` trigger of migration 0010).

use super::{refusal, run, World};
use crate::domain::otp::Purpose;
use crate::flows::account;
use crate::flows::otp_verify::Verified;
use crate::flows::session::{LoggedIn, TokenPair};
use crate::store::Db;

const IP: &str = "203.0.113.50";

type Answer<T> = Result<T, super::Error>;

async fn login(w: &World, destination: &str) -> LoggedIn {
    let (otp_id, code) = w.code_for(IP, destination, Purpose::Login).await;
    match w.verify(IP, &otp_id, &code).await {
        Ok(Verified::Login(logged_in)) => logged_in,
        other => panic!("{destination} not logged in: {other:?}"),
    }
}

async fn refresh(w: &World, token: &str) -> Answer<TokenPair> {
    crate::flows::refresh::refresh(&w.app(IP), token).await
}

async fn session_of(w: &World, access: &str) -> Answer<String> {
    account::authenticate(&w.app(IP), Some(&format!("Bearer {access}"))).await.map(|who| who.session_id)
}

fn set_status(w: &World, user: &str, status: &str) {
    w.fakes.db.execute(&format!("UPDATE users SET status = '{status}' WHERE id = '{user}'"));
}

/// `(revoked_reason, revoked_at)` of each of the user's sessions, oldest first.
fn revocations(w: &World, user: &str) -> Vec<(Option<String>, Option<i64>)> {
    w.rows(&format!("SELECT revoked_reason, revoked_at FROM sessions WHERE user_id = '{user}' ORDER BY created_at"))
        .into_iter()
        .map(|r| (r["revoked_reason"].as_str().map(str::to_string), r["revoked_at"].as_i64()))
        .collect()
}

#[test]
fn disabling_the_account_in_the_database_ends_its_sessions_for_good() {
    run(async {
        let w = World::new();
        let user = w.seed_user("ada@example.com", "active");
        let laptop = login(&w, "ada@example.com").await;
        let phone = login(&w, "ada@example.com").await;
        w.seed_user("bob@example.com", "active");
        let bystander = login(&w, "bob@example.com").await;

        set_status(&w, &user, "disabled");

        for s in [&laptop, &phone] {
            assert_eq!(
                refusal(session_of(&w, &s.access).await),
                (401, "SESSION_REVOKED", "This session has ended; log in again".into())
            );
            assert_eq!(refusal(refresh(&w, &s.refresh).await).1, "SESSION_REVOKED");
        }
        let revoked = revocations(&w, &user);
        assert!(revoked.iter().all(|(reason, at)| reason.as_deref() == Some("account_disabled") && at.is_some()));
        // Enabling the account again does not revive them: a new login is needed.
        set_status(&w, &user, "active");
        assert_eq!(refusal(session_of(&w, &laptop.access).await).1, "SESSION_REVOKED");
        assert_eq!(refusal(refresh(&w, &phone.refresh).await).1, "SESSION_REVOKED");
        let again = login(&w, "ada@example.com").await;
        assert_eq!(session_of(&w, &again.access).await.unwrap(), again.session_id);
        assert_eq!(session_of(&w, &bystander.access).await.unwrap(), bystander.session_id, "others untouched");
    })
}

#[test]
fn disable_user_revokes_every_live_session_at_its_time_in_one_transaction() {
    run(async {
        let w = World::new();
        let user = w.seed_user("cy@example.com", "active");
        let logged_out = login(&w, "cy@example.com").await;
        let live = login(&w, "cy@example.com").await;
        let app = w.app(IP);
        account::logout(
            &app,
            &account::authenticate(&app, Some(&format!("Bearer {}", logged_out.access))).await.unwrap(),
        )
        .await
        .unwrap();
        w.fakes.clock.advance(7_000);
        let db = Db::new(w.fakes.ports().db);
        w.fakes.trips.reset();

        assert!(db.disable_user(&user, w.fakes.clock.0.get()).await.unwrap(), "an active account was disabled");

        assert_eq!(w.fakes.trips.figures().0, 1, "one batch");
        let now = w.fakes.clock.0.get();
        assert_eq!(
            revocations(&w, &user),
            [(Some("logout".into()), Some(crate::native::T0)), (Some("account_disabled".into()), Some(now))],
            "an ended session keeps its own end"
        );
        let row = &w.rows(&format!("SELECT status, updated_at FROM users WHERE id = '{user}'"))[0];
        assert_eq!((&row["status"], &row["updated_at"]), (&"disabled".into(), &now.into()));
        assert_eq!(refusal(session_of(&w, &live.access).await).1, "SESSION_REVOKED");
        assert!(!db.disable_user(&user, now).await.unwrap(), "already disabled");
        assert!(!db.disable_user("00000000-0000-4000-8000-000000000000", now).await.unwrap(), "no such account");
    })
}

#[test]
fn a_disabled_account_is_refused_even_where_its_sessions_were_not_revoked() {
    run(async {
        // Without the trigger (a database it never reached), the status
        // checks alone keep the account out, the grace-window re-issue too.
        let w = World::with(&[("REFRESH_REUSE_GRACE_SECONDS", "10")]);
        w.fakes.db.execute("DROP TRIGGER users_disabled_end_sessions");
        let user = w.seed_user("dee@example.com", "active");
        let first = login(&w, "dee@example.com").await;
        let second = refresh(&w, &first.refresh).await.expect("refreshed while active");

        set_status(&w, &user, "disabled");

        assert_eq!(revocations(&w, &user), [(None, None)], "not revoked");
        assert_eq!(refusal(session_of(&w, &second.access).await).1, "SESSION_REVOKED");
        assert_eq!(refusal(refresh(&w, &second.refresh).await).1, "SESSION_REVOKED", "the current token");
        assert_eq!(refusal(refresh(&w, &first.refresh).await).1, "SESSION_REVOKED", "within the grace window");
        assert_eq!(revocations(&w, &user), [(None, None)], "a disabled account's old token is no theft");
        // The status is checked, not cached: enabled again, the session works.
        set_status(&w, &user, "active");
        assert_eq!(session_of(&w, &second.access).await.unwrap(), first.session_id);
    })
}
