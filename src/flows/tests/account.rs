//! The signed-in user's account: signing out everywhere, changing the
//! username, adding, changing and removing an email or phone, deleting the
//! account. Every rule, natively, with the races the UNIQUE constraints and
//! single statements decide.

use futures_util::future::join;

use super::{refusal, run, World};
use crate::domain::account::{Device as DeviceInput, Username};
use crate::domain::otp::Purpose;
use crate::flows::account::{self, Principal};
use crate::flows::otp_verify::Verified;
use crate::flows::session::LoggedIn;

const IP: &str = "203.0.113.60";

/// Logs the user of `destination` in (it must have an account).
async fn login(w: &World, destination: &str) -> LoggedIn {
    let (otp_id, code) = w.code_for(IP, destination, Purpose::Login).await;
    match w.verify_from(IP, &otp_id, &code, DeviceInput::default()).await {
        Ok(Verified::Login(logged_in)) => logged_in,
        other => panic!("{destination} not logged in: {other:?}"),
    }
}

/// The caller behind an access token; panics if it is refused.
async fn who(w: &World, access: &str) -> Principal {
    account::authenticate(&w.app(IP), Some(&format!("Bearer {access}")))
        .await
        .unwrap_or_else(|e| panic!("not authenticated: {e:?}"))
}

/// Whether the service still accepts this access token.
async fn accepted(w: &World, access: &str) -> bool {
    account::authenticate(&w.app(IP), Some(&format!("Bearer {access}"))).await.is_ok()
}

/// Runs a flow as one request, then stores its audit trail.
async fn as_request<T>(w: &World, work: impl AsyncFnOnce(&crate::flows::App) -> T) -> T {
    let app = w.app(IP);
    let out = work(&app).await;
    app.store_trail();
    w.fakes.run_later().await;
    out
}

// ---------------------------------------------------------------------------
// Sign out everywhere

#[test]
fn signing_out_everywhere_revokes_every_other_live_session_and_keeps_mine() {
    run(async {
        let w = World::new();
        let user = w.seed_user("ola@example.com", "active");
        w.seed_user("pia@example.com", "active");
        let mine = login(&w, "ola@example.com").await;
        let (other_a, other_b) = (login(&w, "ola@example.com").await, login(&w, "ola@example.com").await);
        let already = login(&w, "ola@example.com").await;
        let theirs = login(&w, "pia@example.com").await;
        let me = who(&w, &mine.access).await;
        account::revoke(&w.app(IP), &me, &already.session_id).await.unwrap();

        let out = as_request(&w, async |app| account::sign_out_everywhere(app, &me, false).await).await.unwrap();

        assert_eq!((out.revoked, out.include_current), (2, false), "two live others; the revoked one not counted");
        assert!(accepted(&w, &mine.access).await, "the caller's session lives on");
        for ended in [&other_a, &other_b] {
            assert!(!accepted(&w, &ended.access).await);
            assert!(crate::flows::refresh::refresh(&w.app(IP), &ended.refresh).await.is_err());
        }
        assert!(accepted(&w, &theirs.access).await, "another user's session is untouched");
        let reasons = w.rows(&format!(
            "SELECT revoked_reason FROM sessions WHERE user_id = '{user}' AND revoked_reason IS NOT NULL ORDER BY 1"
        ));
        assert_eq!(
            reasons.iter().map(|r| r["revoked_reason"].as_str().unwrap()).collect::<Vec<_>>(),
            ["revoked_by_user", "signed_out_everywhere", "signed_out_everywhere"]
        );
        let events = w.rows("SELECT event, outcome, user_id, session_id FROM audit_events WHERE event = 'sessions_revoked'");
        assert_eq!(events.len(), 1);
        assert_eq!((&events[0]["outcome"], &events[0]["user_id"]), (&"others".into(), &user.as_str().into()));
        assert_eq!(events[0]["session_id"], mine.session_id.as_str());
    })
}

#[test]
fn signing_out_everywhere_with_include_current_ends_my_session_too() {
    run(async {
        let w = World::new();
        w.seed_user("quin@example.com", "active");
        let mine = login(&w, "quin@example.com").await;
        let other = login(&w, "quin@example.com").await;
        let me = who(&w, &mine.access).await;

        let out = as_request(&w, async |app| account::sign_out_everywhere(app, &me, true).await).await.unwrap();

        assert_eq!((out.revoked, out.include_current), (2, true));
        assert!(!accepted(&w, &mine.access).await && !accepted(&w, &other.access).await);
        assert_eq!(w.events().last().unwrap(), &("sessions_revoked".to_string(), "everywhere".to_string()));
    })
}

#[test]
fn signing_out_everywhere_alone_revokes_nothing_and_says_so() {
    run(async {
        let w = World::new();
        w.seed_user("rio@example.com", "active");
        let mine = login(&w, "rio@example.com").await;
        let me = who(&w, &mine.access).await;

        let out = account::sign_out_everywhere(&w.app(IP), &me, false).await.unwrap();

        assert_eq!(out.revoked, 0);
        assert!(accepted(&w, &mine.access).await);
    })
}

// ---------------------------------------------------------------------------
// Change the username

fn name(s: &str) -> Username {
    Username::parse(s).expect("a valid username")
}

#[test]
fn changing_the_username_answers_the_user_as_me_shows_it_and_is_audited() {
    run(async {
        let w = World::new();
        let user = w.seed_user("sam@example.com", "active");
        let mine = login(&w, "sam@example.com").await;
        let me = who(&w, &mine.access).await;

        let view = as_request(&w, async |app| account::rename(app, &me, &name(" Sam.Two ")).await).await.unwrap();

        assert_eq!((view.id.as_str(), view.username.as_str()), (user.as_str(), "sam.two"));
        let again = account::me(&who(&w, &mine.access).await);
        assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&view).unwrap());
        assert_eq!(w.rows("SELECT username FROM users")[0]["username"], "sam.two");
        assert_eq!(w.events().last().unwrap(), &("username_changed".to_string(), "ok".to_string()));
    })
}

#[test]
fn a_username_another_account_has_is_taken_in_any_case_and_mine_stays() {
    run(async {
        let w = World::new();
        w.seed_user("tia@example.com", "active");
        w.seed_user("uma@example.com", "active");
        let tia = who(&w, &login(&w, "tia@example.com").await.access).await;
        let uma = who(&w, &login(&w, "uma@example.com").await.access).await;
        account::rename(&w.app(IP), &tia, &name("tia")).await.unwrap();

        assert_eq!(refusal(account::rename(&w.app(IP), &uma, &name("TIA")).await).1, "USERNAME_TAKEN");

        let names = w.rows("SELECT username FROM users ORDER BY username");
        assert_eq!(names[0]["username"], "tia");
        assert_eq!(names[1]["username"], uma.user.username.as_str(), "the refused rename changed nothing");
        assert!(account::rename(&w.app(IP), &tia, &name("tia")).await.is_ok(), "my own name is not taken from me");
    })
}

#[test]
fn two_accounts_asking_for_one_username_at_once_leave_one_winner() {
    run(async {
        let w = World::new();
        w.seed_user("vic@example.com", "active");
        w.seed_user("wen@example.com", "active");
        let vic = who(&w, &login(&w, "vic@example.com").await.access).await;
        let wen = who(&w, &login(&w, "wen@example.com").await.access).await;
        let (a, b) = (w.app(IP), w.app(IP));

        let (x, y) = join(account::rename(&a, &vic, &name("prize")), account::rename(&b, &wen, &name("prize"))).await;

        let taken = [&x, &y].iter().filter(|r| matches!(r, Err(super::Error::UsernameTaken))).count();
        assert_eq!((x.is_ok() as u8 + y.is_ok() as u8, taken), (1, 1), "{x:?} {y:?}");
        assert_eq!(w.rows("SELECT id FROM users WHERE username = 'prize'").len(), 1);
    })
}
