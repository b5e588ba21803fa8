//! The signed-in user's account: signing out everywhere, changing the
//! username, adding, changing and removing an email or phone, deleting the
//! account. Every rule, natively, with the races the UNIQUE constraints and
//! single statements decide.

use futures_util::future::join;

use super::{refusal, run, World};
use crate::domain::account::{Device as DeviceInput, Username};
use crate::domain::destination::Channel;
use crate::domain::otp::Purpose;
use crate::flows::account::{self, Principal};
use crate::flows::otp_verify::Verified;

const IP: &str = "203.0.113.60";

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
pub(super) async fn as_request<T>(w: &World, work: impl AsyncFnOnce(&crate::flows::App) -> T) -> T {
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
        let mine = w.logged_in(IP, "ola@example.com").await;
        let (other_a, other_b) = (w.logged_in(IP, "ola@example.com").await, w.logged_in(IP, "ola@example.com").await);
        let already = w.logged_in(IP, "ola@example.com").await;
        let theirs = w.logged_in(IP, "pia@example.com").await;
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
        let events =
            w.rows("SELECT event, outcome, user_id, session_id FROM audit_events WHERE event = 'sessions_revoked'");
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
        let mine = w.logged_in(IP, "quin@example.com").await;
        let other = w.logged_in(IP, "quin@example.com").await;
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
        let mine = w.logged_in(IP, "rio@example.com").await;
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
        let mine = w.logged_in(IP, "sam@example.com").await;
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
        let tia = who(&w, &w.logged_in(IP, "tia@example.com").await.access).await;
        let uma = who(&w, &w.logged_in(IP, "uma@example.com").await.access).await;
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
        let vic = who(&w, &w.logged_in(IP, "vic@example.com").await.access).await;
        let wen = who(&w, &w.logged_in(IP, "wen@example.com").await.access).await;
        let (a, b) = (w.app(IP), w.app(IP));

        let (x, y) = join(account::rename(&a, &vic, &name("prize")), account::rename(&b, &wen, &name("prize"))).await;

        let taken = [&x, &y].iter().filter(|r| matches!(r, Err(super::Error::UsernameTaken))).count();
        assert_eq!((x.is_ok() as u8 + y.is_ok() as u8, taken), (1, 1), "{x:?} {y:?}");
        assert_eq!(w.rows("SELECT id FROM users WHERE username = 'prize'").len(), 1);
    })
}

// ---------------------------------------------------------------------------
// Add, change and remove a destination

async fn attach(w: &World, who: &Principal, token: &str) -> Result<crate::flows::session::UserView, super::Error> {
    as_request(w, async |app| account::attach_destination(app, who, token).await).await
}

fn user_row(w: &World, id: &str) -> serde_json::Value {
    w.rows(&format!("SELECT email, phone_e164, email_verified, phone_verified FROM users WHERE id = '{id}'"))
        .pop()
        .unwrap_or_else(|| panic!("no user {id}"))
}

fn invalid_token() -> &'static str {
    "INVALID_VERIFICATION_TOKEN"
}

#[test]
fn a_verify_token_adds_a_phone_to_an_email_account_verified_and_is_spent() {
    run(async {
        let w = World::new();
        let user = w.seed_user("xena@example.com", "active");
        let me = who(&w, &w.logged_in(IP, "xena@example.com").await.access).await;
        let token = w.token_for(IP, "+15551230061", Purpose::Verify).await;

        let view = attach(&w, &me, &token).await.expect("attached");

        assert_eq!((view.email.as_deref(), view.phone.as_deref()), (Some("xena@example.com"), Some("+15551230061")));
        assert!(view.phone_verified && view.email_verified);
        let row = user_row(&w, &user);
        assert_eq!((&row["phone_e164"], &row["phone_verified"]), (&"+15551230061".into(), &1.into()));
        assert_eq!(refusal(attach(&w, &me, &token).await).1, invalid_token(), "single use");
        let events = w.rows("SELECT outcome, destination, user_id FROM audit_events WHERE event = 'destination_added'");
        assert_eq!(events.len(), 1);
        assert_eq!((&events[0]["outcome"], &events[0]["user_id"]), (&"phone".into(), &user.as_str().into()));
        let masked = events[0]["destination"].as_str().unwrap();
        assert!(!masked.contains("1230061") && masked.starts_with("+1"), "{masked}");
    })
}

#[test]
fn a_new_email_replaces_the_old_one() {
    run(async {
        let w = World::new();
        let user = w.seed_user("yves@example.com", "active");
        let me = who(&w, &w.logged_in(IP, "yves@example.com").await.access).await;
        let token = w.token_for(IP, "yves.new@example.com", Purpose::Verify).await;

        let view = attach(&w, &me, &token).await.expect("attached");

        assert_eq!((view.email.as_deref(), view.phone.as_deref()), (Some("yves.new@example.com"), None));
        assert_eq!(user_row(&w, &user)["email"], "yves.new@example.com");
        assert!(w.rows("SELECT id FROM users WHERE email = 'yves@example.com'").is_empty());
        // The new address signs in to the same account.
        assert_eq!(w.logged_in(IP, "yves.new@example.com").await.user.id, user);
    })
}

#[test]
fn only_an_unused_unexpired_verify_token_attaches() {
    run(async {
        let w = World::with(&[("VERIFICATION_TOKEN_TTL_SECONDS", "120")]);
        let user = w.seed_user("zara@example.com", "active");
        let me = who(&w, &w.logged_in(IP, "zara@example.com").await.access).await;
        let register = w.token_for(IP, "zara.r@example.com", Purpose::Register).await;
        let reset = w.token_for(IP, "zara@example.com", Purpose::Reset).await;
        let expired = w.token_for(IP, "zara.x@example.com", Purpose::Verify).await;
        w.fakes.clock.advance(121_000);

        for token in [register.as_str(), reset.as_str(), expired.as_str(), "not-a-token", ""] {
            assert_eq!(refusal(attach(&w, &me, token).await).1, invalid_token(), "{token}");
        }
        assert_eq!(user_row(&w, &user)["email"], "zara@example.com");
        let spent = w.rows("SELECT purpose FROM verification_tokens WHERE consumed_at IS NOT NULL");
        assert!(spent.is_empty(), "no refused token was spent: {spent:?}");
    })
}

#[test]
fn a_destination_another_account_has_is_taken_and_the_token_is_not_spent() {
    run(async {
        let w = World::new();
        let holder = w.seed_user("+15551230062", "active");
        w.seed_user("abel@example.com", "active");
        let me = who(&w, &w.logged_in(IP, "abel@example.com").await.access).await;
        let token = w.token_for(IP, "+15551230062", Purpose::Verify).await;

        assert_eq!(refusal(attach(&w, &me, &token).await).1, "DESTINATION_TAKEN");
        assert_eq!(user_row(&w, &me.user_id)["phone_e164"], serde_json::Value::Null);
        let unspent = w.rows("SELECT consumed_at FROM verification_tokens WHERE purpose = 'verify'");
        assert_eq!(unspent[0]["consumed_at"], serde_json::Value::Null, "the refused transaction rolled back whole");

        // Once the holder lets the number go, the same token attaches it.
        w.fakes.db.execute(&format!(
            "UPDATE users SET phone_e164 = NULL, email = 'holder@example.com' WHERE id = '{holder}'"
        ));
        let view = attach(&w, &me, &token).await.expect("attached once free");
        assert_eq!(view.phone.as_deref(), Some("+15551230062"));
    })
}

#[test]
fn two_accounts_attaching_one_destination_at_once_leave_exactly_one_holder() {
    run(async {
        let w = World::new();
        w.seed_user("bo@example.com", "active");
        w.seed_user("cy@example.com", "active");
        let bo = who(&w, &w.logged_in(IP, "bo@example.com").await.access).await;
        let cy = who(&w, &w.logged_in(IP, "cy@example.com").await.access).await;
        let (t1, t2) = (
            w.token_for(IP, "shared@example.org", Purpose::Verify).await,
            w.token_for(IP, "shared@example.org", Purpose::Verify).await,
        );
        let (a, b) = (w.app(IP), w.app(IP));

        let (x, y) = join(account::attach_destination(&a, &bo, &t1), account::attach_destination(&b, &cy, &t2)).await;

        let taken = [&x, &y].iter().filter(|r| matches!(r, Err(super::Error::DestinationTaken))).count();
        assert_eq!((x.is_ok() as u8 + y.is_ok() as u8, taken), (1, 1), "{x:?} {y:?}");
        assert_eq!(w.rows("SELECT id FROM users WHERE email = 'shared@example.org'").len(), 1);
    })
}

async fn remove(w: &World, who: &Principal, channel: Channel) -> Result<crate::flows::session::UserView, super::Error> {
    as_request(w, async |app| account::remove_destination(app, who, channel).await).await
}

/// A user with an email and a phone, signed in.
async fn with_both(w: &World, email: &str, phone: &str) -> Principal {
    let user = w.seed_user(email, "active");
    w.fakes.db.execute(&format!("UPDATE users SET phone_e164 = '{phone}', phone_verified = 1 WHERE id = '{user}'"));
    who(w, &w.logged_in(IP, email).await.access).await
}

#[test]
fn removing_the_phone_keeps_the_email_and_is_audited_masked() {
    run(async {
        let w = World::new();
        let me = with_both(&w, "dee@example.com", "+15551230063").await;

        let view = remove(&w, &me, Channel::Phone).await.expect("removed");

        assert_eq!(
            (view.email.as_deref(), view.phone.as_deref(), view.phone_verified),
            (Some("dee@example.com"), None, false)
        );
        let events = w.rows("SELECT outcome, destination FROM audit_events WHERE event = 'destination_removed'");
        assert_eq!(events[0]["outcome"], "phone");
        assert!(!events[0]["destination"].as_str().unwrap().contains("1230063"), "{events:?}");
    })
}

#[test]
fn the_last_destination_cannot_be_removed_and_one_the_account_lacks_is_not_found() {
    run(async {
        let w = World::new();
        let user = w.seed_user("eve@example.com", "active");
        let me = who(&w, &w.logged_in(IP, "eve@example.com").await.access).await;

        assert_eq!(refusal(remove(&w, &me, Channel::Email).await).1, "LAST_DESTINATION");
        assert_eq!(
            refusal(remove(&w, &me, Channel::Phone).await),
            (404, "DESTINATION_NOT_FOUND", "The account has no such destination (email or phone)".to_string())
        );
        assert_eq!(user_row(&w, &user)["email"], "eve@example.com");
    })
}

#[test]
fn removing_both_destinations_at_once_leaves_one() {
    run(async {
        let w = World::new();
        let me = with_both(&w, "fox@example.com", "+15551230064").await;
        let (a, b) = (w.app(IP), w.app(IP));

        let (x, y) = join(
            account::remove_destination(&a, &me, Channel::Email),
            account::remove_destination(&b, &me, Channel::Phone),
        )
        .await;

        let last = [&x, &y].iter().filter(|r| matches!(r, Err(super::Error::LastDestination))).count();
        assert_eq!((x.is_ok() as u8 + y.is_ok() as u8, last), (1, 1), "{x:?} {y:?}");
        let row = user_row(&w, &me.user_id);
        assert!(row["email"].is_null() != row["phone_e164"].is_null(), "exactly one is left: {row}");
    })
}

// ---------------------------------------------------------------------------
// Delete the account

async fn delete(w: &World, who: &Principal, token: &str) -> Result<account::AccountDeleted, super::Error> {
    as_request(w, async |app| account::delete_account(app, who, token).await).await
}

#[test]
fn deleting_the_account_removes_it_and_leaves_no_link_to_the_person() {
    run(async {
        let w = World::new();
        let user = w.seed_user("gia@example.com", "active");
        w.fakes.db.execute(&format!("UPDATE users SET phone_e164 = '+15551230065' WHERE id = '{user}'"));
        let device = DeviceInput { install_id: Some("gia-phone".into()), ..DeviceInput::default() };
        let (otp_id, code) = w.code_for(IP, "gia@example.com", Purpose::Login).await;
        let Ok(Verified::Login(mine)) = w.verify_from(IP, &otp_id, &code, device).await else { panic!("no login") };
        let other = w.logged_in(IP, "gia@example.com").await;
        let refreshed = crate::flows::refresh::refresh(&w.app(IP), &other.refresh).await.expect("a rotation");
        let me = who(&w, &mine.access).await;
        // A code still pending for the phone: it must not verify afterwards.
        let (pending, pending_code) = w.code_for(IP, "+15551230065", Purpose::Login).await;
        let token = w.token_for(IP, "+15551230065", Purpose::Verify).await;
        let before = w.rows(&format!("SELECT invalidated_at FROM otp_requests WHERE id = '{pending}'"));
        assert!(before[0]["invalidated_at"].is_null(), "the login code is still pending");

        let out = delete(&w, &me, &token).await.expect("deleted");

        let answer = serde_json::to_value(&out).unwrap();
        assert_eq!(answer["deleted"], serde_json::json!({ "users": 1, "sessions": 2, "devices": 1 }));
        assert_eq!(answer["anonymised"]["verification_tokens"], 1);
        let codes = answer["anonymised"]["otp_requests"].as_i64().unwrap();
        assert_eq!(codes, 4, "two login codes to the email, one login and one verify code to the phone");
        for table in ["users", "sessions", "devices", "retired_refresh_tokens"] {
            assert!(w.rows(&format!("SELECT * FROM {table}")).is_empty(), "{table} keeps rows");
        }
        assert!(!accepted(&w, &mine.access).await);
        for refresh in [&mine.refresh, &other.refresh, &refreshed.refresh] {
            assert!(crate::flows::refresh::refresh(&w.app(IP), refresh).await.is_err());
        }
        let rows = w.rows("SELECT user_id, destination, invalidated_at, is_verified FROM otp_requests");
        assert_eq!(rows.len() as i64, codes, "the codes stay, for the counts");
        for row in &rows {
            assert!(row["user_id"].is_null(), "{row}");
            let kept = row["destination"].as_str().unwrap();
            assert!(kept.starts_with("hmac:") && !kept.contains("gia") && !kept.contains("1230065"), "{row}");
        }
        let phone_hash = crate::audit::destination_hash(super::PEPPER, "+15551230065");
        assert_eq!(rows.iter().filter(|r| r["destination"] == phone_hash.as_str()).count(), 2);
        assert!(rows.iter().all(|r| r["invalidated_at"].is_number() || r["is_verified"] == 1), "{rows:?}");
        let tokens = w.rows("SELECT destination FROM verification_tokens");
        assert_eq!(tokens[0]["destination"], phone_hash.as_str());
        w.fakes.run_later().await;
        let linked = w.rows(&format!(
            "SELECT event FROM audit_events WHERE user_id = '{user}' OR destination LIKE '%gia%' \
             OR destination LIKE '%1230065%'"
        ));
        assert!(linked.is_empty(), "{linked:?}");
        assert_eq!(w.events().last().unwrap(), &("account_deleted".to_string(), "ok".to_string()));
        // The pending code answers as an expired one, not a fault.
        let refused = w.verify(IP, &pending, &pending_code).await;
        assert_eq!(refusal(refused), (400, "INVALID_OTP", "OTP expired".to_string()));
        // And the address can make a new account.
        let again = w.token_for(IP, "gia@example.com", Purpose::Register).await;
        assert!(w.register(IP, &again, "gia").await.is_ok());
    })
}

#[test]
fn deleting_needs_a_verify_token_for_one_of_the_accounts_destinations_from_the_last_five_minutes() {
    run(async {
        let w = World::new();
        let user = w.seed_user("hal@example.com", "active");
        w.seed_user("ivy@example.com", "active");
        let stale = w.token_for(IP, "hal@example.com", Purpose::Verify).await;
        w.fakes.clock.advance(account::STEP_UP_MS + 1);
        let me = who(&w, &w.logged_in(IP, "hal@example.com").await.access).await;
        let foreign = w.token_for(IP, "ivy@example.com", Purpose::Verify).await;
        let unattached = w.token_for(IP, "hal.other@example.com", Purpose::Verify).await;
        let reset = w.token_for(IP, "hal@example.com", Purpose::Reset).await;

        for token in [stale.as_str(), foreign.as_str(), unattached.as_str(), reset.as_str(), "nope"] {
            assert_eq!(refusal(delete(&w, &me, token).await).1, invalid_token(), "{token}");
        }
        assert_eq!(w.rows(&format!("SELECT id FROM users WHERE id = '{user}'")).len(), 1);
        assert!(w.rows("SELECT 1 FROM verification_tokens WHERE consumed_at IS NOT NULL").is_empty());

        let fresh = w.token_for(IP, "hal@example.com", Purpose::Verify).await;
        delete(&w, &me, &fresh).await.expect("a fresh proof deletes");
        assert_eq!(refusal(delete(&w, &me, &fresh).await).1, invalid_token(), "and is spent");
    })
}

/// Events written after the deletion (a login job queued just before it,
/// carrying its request's events) name no one either.
#[test]
fn events_stored_after_the_deletion_keep_no_user_id() {
    run(async {
        let w = World::new();
        let user = w.seed_user("kai@example.com", "active");
        let me = who(&w, &w.logged_in(IP, "kai@example.com").await.access).await;
        let token = w.token_for(IP, "kai@example.com", Purpose::Verify).await;
        // A login code requested now: its job (and its events) still queued.
        let pending = w.request_answer(IP, "kai@example.com", Purpose::Login).await.unwrap();
        w.fakes.run_later().await;
        assert_eq!(w.fakes.queue.queued.borrow().back().unwrap().0.trail.len(), 1, "the job carries its event");

        delete(&w, &me, &token).await.expect("deleted");
        w.deliver_queued().await;

        let stored = w.rows(&format!(
            "SELECT user_id FROM audit_events WHERE event = 'otp_requested' AND otp_id = '{}'",
            pending.otp_id
        ));
        assert_eq!(stored, vec![serde_json::json!({ "user_id": null })]);
        assert!(w.rows(&format!("SELECT event FROM audit_events WHERE user_id = '{user}'")).is_empty());
    })
}
