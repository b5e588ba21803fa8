//! The signed-in user's account, black-box: signing out everywhere,
//! changing the username, adding, changing and removing an email or phone,
//! and deleting the account; with the races a UNIQUE constraint or one
//! statement decides, run for real against the Worker's D1.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_error, json_of, random_email, random_hex, random_phone, spawn_app, sql_str, TestApp};

/// A signed-in session of a user.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) access: String,
    pub(crate) refresh: String,
    pub(crate) user_id: String,
}

impl Session {
    fn from_answer(body: &Value) -> Session {
        let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("not a string in {body}")).to_string();
        Session { access: text(&body["access"]), refresh: text(&body["refresh"]), user_id: text(&body["user"]["id"]) }
    }
}

/// The verification token of a verified `purpose` code for `destination`.
async fn token(app: &TestApp, destination: &str, purpose: &str) -> String {
    let otp = app.otp_for(destination, purpose).await;
    let (status, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
    assert_eq!(status, 200, "verifying a {purpose} code: {body}");
    body["verification_token"].as_str().unwrap_or_else(|| panic!("no verification_token: {body}")).to_string()
}

fn unique_username() -> String {
    format!("user_{}", random_hex(12))
}

/// A new user registered with `destination`, signed in.
async fn new_user_with(app: &TestApp, destination: &str) -> Session {
    let token = token(app, destination, "register").await;
    let body = json!({ "verification_token": token, "username": unique_username() });
    let (status, body) = json_of(app.post_json("/api/auth/register/", &body).await).await;
    assert_eq!(status, 201, "{body}");
    Session::from_answer(&body)
}

/// A new user registered with a fresh email, signed in.
pub(crate) async fn new_user(app: &TestApp) -> (Session, String) {
    let email = random_email();
    (new_user_with(app, &email).await, email)
}

/// Another session of the user of `destination`.
pub(crate) async fn sign_in(app: &TestApp, destination: &str) -> Session {
    let otp = app.otp_for(destination, "login").await;
    let (status, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
    assert_eq!(status, 200, "signing in {destination}: {body}");
    Session::from_answer(&body)
}

async fn call(app: &TestApp, method: Method, path: &str, access: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(access);
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.send(request).await
}

async fn me(app: &TestApp, access: &str) -> reqwest::Response {
    call(app, Method::GET, "/api/auth/me/", access, None).await
}

/// Whether the access token still opens `GET /api/auth/me/` (else 401 SESSION_REVOKED).
pub(crate) async fn accepted(app: &TestApp, access: &str) -> bool {
    let resp = me(app, access).await;
    if resp.status() == 200 {
        return true;
    }
    assert_error(resp, 401, "SESSION_REVOKED").await;
    false
}

async fn audit_events(app: &TestApp, event: &str, user_id: &str) -> Vec<Value> {
    app.d1(&format!(
        "SELECT outcome, destination, session_id FROM audit_events WHERE event = {} AND user_id = {} ORDER BY id",
        sql_str(event),
        sql_str(user_id)
    ))
    .await
}

/// The audit trail is written after the answer: waits for `n` events.
async fn wait_for_events(app: &TestApp, event: &str, user_id: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events = audit_events(app, event, user_id).await;
        if events.len() >= n || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------
// Sign out everywhere

async fn signing_out_everywhere_ends_every_other_session_and_says_how_many(app: &TestApp) {
    let (mine, email) = new_user(&app).await;
    let others = [sign_in(&app, &email).await, sign_in(&app, &email).await];
    let (stranger, _) = new_user(&app).await;

    let (status, body) = json_of(call(&app, Method::DELETE, "/api/auth/sessions/", &mine.access, None).await).await;

    assert_eq!((status, &body), (200, &json!({ "revoked": 2, "include_current": false })));
    assert!(accepted(&app, &mine.access).await, "the caller's own session lives on");
    for other in &others {
        assert!(!accepted(&app, &other.access).await);
        let refresh = app.post_json("/api/auth/token/refresh/", &json!({ "refresh": other.refresh })).await;
        assert_error(refresh, 401, "SESSION_REVOKED").await;
    }
    assert!(accepted(&app, &stranger.access).await, "another user's session is untouched");
    let events = wait_for_events(&app, "sessions_revoked", &mine.user_id, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["outcome"], "others");
}

async fn signing_out_everywhere_with_include_current_ends_my_session_too(app: &TestApp) {
    let (mine, email) = new_user(&app).await;
    let other = sign_in(&app, &email).await;

    let path = "/api/auth/sessions/?include_current=true";
    let (status, body) = json_of(call(&app, Method::DELETE, path, &mine.access, None).await).await;

    assert_eq!((status, &body), (200, &json!({ "revoked": 2, "include_current": true })));
    assert!(!accepted(&app, &mine.access).await && !accepted(&app, &other.access).await);
}

async fn signing_out_everywhere_refuses_an_include_current_that_is_not_true_or_false(app: &TestApp) {
    let (mine, email) = new_user(&app).await;
    let other = sign_in(&app, &email).await;

    for query in ["include_current=yes", "include_current=1", "include_current="] {
        let path = format!("/api/auth/sessions/?{query}");
        assert_error(call(&app, Method::DELETE, &path, &mine.access, None).await, 400, "VALIDATION_ERROR").await;
    }
    assert!(accepted(&app, &other.access).await, "a refused request revokes nothing");
    let unauthenticated = app.send(app.client.delete(app.url("/api/auth/sessions/"))).await;
    assert_error(unauthenticated, 401, "NOT_AUTHENTICATED").await;
}

// ---------------------------------------------------------------------------
// Change the username

async fn rename(app: &TestApp, access: &str, body: Value) -> reqwest::Response {
    call(app, Method::PATCH, "/api/auth/me/", access, Some(body)).await
}

async fn changing_the_username_answers_the_user_as_me_shows_it(app: &TestApp) {
    let (mine, _) = new_user(&app).await;
    let wanted = unique_username();

    let (status, body) = json_of(rename(&app, &mine.access, json!({ "username": wanted.to_uppercase() })).await).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!((body["id"].as_str(), body["username"].as_str()), (Some(&*mine.user_id), Some(wanted.as_str())));
    let (_, shown) = json_of(me(&app, &mine.access).await).await;
    assert_eq!(shown, body, "the answer is the user as GET /api/auth/me/ shapes it");
    assert_eq!(wait_for_events(&app, "username_changed", &mine.user_id, 1).await.len(), 1);
}

async fn a_username_another_account_has_is_409_username_taken(app: &TestApp) {
    let (first, _) = new_user(&app).await;
    let (second, _) = new_user(&app).await;
    let wanted = unique_username();
    assert_eq!(rename(&app, &first.access, json!({ "username": wanted })).await.status(), 200);

    assert_error(
        rename(&app, &second.access, json!({ "username": wanted.to_uppercase() })).await,
        409,
        "USERNAME_TAKEN",
    )
    .await;
    let (_, body) = json_of(me(&app, &second.access).await).await;
    assert_ne!(body["username"], wanted.as_str(), "the refused rename changed nothing");
}

async fn two_accounts_renaming_to_one_username_at_once_leave_exactly_one_winner(app: &TestApp) {
    let (a, b) = (new_user(&app).await.0, new_user(&app).await.0);
    let wanted = unique_username();
    let body = json!({ "username": wanted });

    let (x, y) = tokio::join!(rename(&app, &a.access, body.clone()), rename(&app, &b.access, body.clone()));

    let mut statuses = [x.status().as_u16(), y.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    let holders = app.d1(&format!("SELECT id FROM users WHERE username = {}", sql_str(&wanted))).await;
    assert_eq!(holders.len(), 1);
}

async fn a_username_change_without_a_valid_username_is_a_validation_error(app: &TestApp) {
    let (mine, _) = new_user(&app).await;

    for body in
        [json!({}), json!({ "username": null }), json!({ "username": 42 }), json!({ "username": "a" }), json!([])]
    {
        assert_error(rename(&app, &mine.access, body).await, 400, "VALIDATION_ERROR").await;
    }
    let not_json = app.client.patch(app.url("/api/auth/me/")).bearer_auth(&mine.access).body("username=x");
    assert_error(app.send(not_json).await, 415, "UNSUPPORTED_MEDIA_TYPE").await;
}

// ---------------------------------------------------------------------------
// Add, change and remove a destination

async fn attach(app: &TestApp, access: &str, token: &str) -> reqwest::Response {
    call(app, Method::POST, "/api/auth/me/destinations/", access, Some(json!({ "verification_token": token }))).await
}

async fn remove(app: &TestApp, access: &str, kind: &str) -> reqwest::Response {
    call(app, Method::DELETE, &format!("/api/auth/me/destinations/{kind}/"), access, None).await
}

/// A new user with a fresh email and, attached through the API, a fresh phone.
async fn new_user_with_phone(app: &TestApp) -> (Session, String, String) {
    let (mine, email) = new_user(app).await;
    let phone = random_phone();
    let token = token(app, &phone, "verify").await;
    let (status, body) = json_of(attach(app, &mine.access, &token).await).await;
    assert_eq!(status, 200, "{body}");
    (mine, email, phone)
}

async fn token_spent(app: &TestApp, destination: &str) -> Vec<bool> {
    let rows = app
        .d1(&format!(
            "SELECT consumed_at FROM verification_tokens WHERE destination = {} AND purpose = 'verify' ORDER BY created_at",
            sql_str(destination)
        ))
        .await;
    rows.iter().map(|r| !r["consumed_at"].is_null()).collect()
}

async fn a_verify_token_adds_a_phone_to_an_email_account_as_verified(app: &TestApp) {
    let (mine, email) = new_user(&app).await;
    let phone = random_phone();
    let token = token(&app, &phone, "verify").await;

    let (status, body) = json_of(attach(&app, &mine.access, &token).await).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!((body["email"].as_str(), body["phone"].as_str()), (Some(email.as_str()), Some(phone.as_str())));
    assert_eq!((&body["email_verified"], &body["phone_verified"]), (&json!(true), &json!(true)));
    assert_eq!(json_of(me(&app, &mine.access).await).await.1, body);
    assert_eq!(sign_in(&app, &phone).await.user_id, mine.user_id, "the phone signs in to the account");
    assert_error(attach(&app, &mine.access, &token).await, 400, "INVALID_VERIFICATION_TOKEN").await;
    let events = wait_for_events(&app, "destination_added", &mine.user_id, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let masked = events[0]["destination"].as_str().unwrap();
    assert!(masked.contains('*') && !masked.contains(&phone[5..]), "{masked}");
}

async fn a_new_email_replaces_the_old_one_which_no_longer_signs_in(app: &TestApp) {
    let (mine, old) = new_user(&app).await;
    let new = random_email();
    let token = token(&app, &new, "verify").await;

    let (status, body) = json_of(attach(&app, &mine.access, &token).await).await;

    assert_eq!((status, body["email"].as_str()), (200, Some(new.as_str())), "{body}");
    let holders = app.d1(&format!("SELECT id FROM users WHERE email = {}", sql_str(&old))).await;
    assert!(holders.is_empty(), "the old address is free again");
    assert_eq!(sign_in(&app, &new).await.user_id, mine.user_id);
}

async fn only_a_verify_token_attaches_a_destination(app: &TestApp) {
    let (mine, email) = new_user(&app).await;
    let register = token(&app, &random_email(), "register").await;
    let reset = token(&app, &email, "reset").await;

    for token in [register.as_str(), reset.as_str(), "no-such-token"] {
        assert_error(attach(&app, &mine.access, token).await, 400, "INVALID_VERIFICATION_TOKEN").await;
    }
    for body in [json!({}), json!({ "verification_token": 7 }), json!({ "verification_token": "" }), json!(null)] {
        let resp = call(&app, Method::POST, "/api/auth/me/destinations/", &mine.access, Some(body)).await;
        assert_error(resp, 400, "VALIDATION_ERROR").await;
    }
    assert_eq!(json_of(me(&app, &mine.access).await).await.1["email"], email.as_str());
}

async fn two_accounts_attaching_one_email_at_once_leave_exactly_one_holder_and_the_losers_token_unspent(app: &TestApp) {
    let (a, b) = (new_user(&app).await.0, new_user(&app).await.0);
    let shared = random_email();
    let (ta, tb) = (token(&app, &shared, "verify").await, token(&app, &shared, "verify").await);

    let (x, y) = tokio::join!(attach(&app, &a.access, &ta), attach(&app, &b.access, &tb));

    let mut statuses = [x.status().as_u16(), y.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    let holders = app.d1(&format!("SELECT id FROM users WHERE email = {}", sql_str(&shared))).await;
    assert_eq!(holders.len(), 1);
    let mut spent = token_spent(&app, &shared).await;
    spent.sort();
    assert_eq!(spent, [false, true], "the loser's token is not spent");
}

async fn another_accounts_destination_is_409_destination_taken(app: &TestApp) {
    let (_, taken) = new_user(&app).await;
    let (mine, _) = new_user(&app).await;
    let token = token(&app, &taken, "verify").await;

    assert_error(attach(&app, &mine.access, &token).await, 409, "DESTINATION_TAKEN").await;
    assert_eq!(token_spent(&app, &taken).await, [false]);
}

async fn removing_the_phone_keeps_the_email(app: &TestApp) {
    let (mine, email, _) = new_user_with_phone(&app).await;

    let (status, body) = json_of(remove(&app, &mine.access, "phone").await).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["email"].as_str(), &body["phone"], &body["phone_verified"]),
        (Some(email.as_str()), &Value::Null, &json!(false))
    );
    assert_eq!(wait_for_events(&app, "destination_removed", &mine.user_id, 1).await.len(), 1);
}

async fn the_last_destination_stays_and_other_kinds_are_not_found(app: &TestApp) {
    let (mine, email) = new_user(&app).await;

    assert_error(remove(&app, &mine.access, "email").await, 409, "LAST_DESTINATION").await;
    assert_error(remove(&app, &mine.access, "phone").await, 404, "DESTINATION_NOT_FOUND").await;
    assert_error(remove(&app, &mine.access, "fax").await, 404, "DESTINATION_NOT_FOUND").await;
    assert_eq!(json_of(me(&app, &mine.access).await).await.1["email"], email.as_str());
}

async fn removing_both_destinations_at_once_leaves_one(app: &TestApp) {
    let (mine, _, _) = new_user_with_phone(&app).await;

    let (x, y) = tokio::join!(remove(&app, &mine.access, "email"), remove(&app, &mine.access, "phone"));

    let mut statuses = [x.status().as_u16(), y.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    let row = &app.d1(&format!("SELECT email, phone_e164 FROM users WHERE id = {}", sql_str(&mine.user_id))).await[0];
    assert!(row["email"].is_null() != row["phone_e164"].is_null(), "exactly one is left: {row}");
}

// ---------------------------------------------------------------------------
// Delete the account

async fn delete_account(app: &TestApp, access: &str, body: Value) -> reqwest::Response {
    call(app, Method::DELETE, "/api/auth/me/", access, Some(body)).await
}

async fn deleting_the_account_ends_every_token_at_once_and_leaves_no_link_to_the_person(app: &TestApp) {
    let (mine, email, phone) = new_user_with_phone(&app).await;
    let other = sign_in(&app, &phone).await;
    let proof = token(&app, &email, "verify").await;

    let (status, body) =
        json_of(delete_account(&app, &mine.access, json!({ "verification_token": proof })).await).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Account deleted");
    assert_eq!(body["deleted"], json!({ "users": 1, "sessions": 2, "devices": 0 }));
    // The register and verify codes to the email, the verify and login codes to the phone.
    assert_eq!(body["anonymised"]["otp_requests"], 4, "{body}");
    assert_eq!(body["anonymised"]["verification_tokens"], 3, "{body}");
    for session in [&mine, &other] {
        assert!(!accepted(&app, &session.access).await);
        let refresh = app.post_json("/api/auth/token/refresh/", &json!({ "refresh": session.refresh })).await;
        assert_error(refresh, 401, "REFRESH_TOKEN_INVALID").await;
    }
    let id = sql_str(&mine.user_id);
    for table in ["users WHERE id", "sessions WHERE user_id", "devices WHERE user_id", "otp_requests WHERE user_id"] {
        assert!(app.d1(&format!("SELECT 1 FROM {table} = {id}")).await.is_empty(), "{table} still links the user");
    }
    for destination in [&email, &phone] {
        let d = sql_str(destination);
        let left = app.d1(&format!("SELECT 1 FROM otp_requests WHERE destination = {d} UNION ALL SELECT 1 FROM verification_tokens WHERE destination = {d}")).await;
        assert!(left.is_empty(), "{destination} is still stored in clear");
    }
    // The trail is written after the answer: the deletion's own event, with no user.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.d1("SELECT 1 FROM audit_events WHERE event = 'account_deleted'").await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no account_deleted event");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(app.d1(&format!("SELECT 1 FROM audit_events WHERE user_id = {id}")).await.is_empty());
    // The address is free for a new account.
    new_user_with(&app, &email).await;
}

async fn deleting_needs_a_fresh_verify_token_for_one_of_the_accounts_destinations(app: &TestApp) {
    let (mine, email) = new_user(&app).await;
    let (_, stranger) = new_user(&app).await;
    let stale = token(&app, &email, "verify").await;
    // Issued six minutes ago: older than the step-up window.
    app.d1(&format!(
        "UPDATE verification_tokens SET created_at = created_at - 360000 WHERE destination = {} AND purpose = 'verify'",
        sql_str(&email)
    ))
    .await;
    let foreign = token(&app, &stranger, "verify").await;
    let elsewhere = token(&app, &random_email(), "verify").await;
    let reset = token(&app, &email, "reset").await;

    for proof in [&stale, &foreign, &elsewhere, &reset] {
        let resp = delete_account(&app, &mine.access, json!({ "verification_token": proof })).await;
        assert_error(resp, 400, "INVALID_VERIFICATION_TOKEN").await;
    }
    for body in [json!({}), json!({ "verification_token": false })] {
        assert_error(delete_account(&app, &mine.access, body).await, 400, "VALIDATION_ERROR").await;
    }
    assert!(accepted(&app, &mine.access).await, "the account is still there");
}

// ---------------------------------------------------------------------------
// Recovery

async fn recover(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post_json("/api/auth/recover/", body).await
}

pub(crate) async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/api/auth/token/refresh/", &json!({ "refresh": token })).await
}

async fn a_reset_token_signs_the_account_out_everywhere_and_in_again(app: &TestApp) {
    let (first, email) = new_user(&app).await;
    let second = sign_in(&app, &email).await;
    let reset = token(&app, &email, "reset").await;

    let (status, body) = json_of(recover(&app, &json!({ "verification_token": reset })).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["user"]["id"], &body["user"]["email"]), (&json!(first.user_id), &json!(email)), "{body}");
    let recovered = Session::from_answer(&body);

    // Every old session is revoked: its refresh token and its access token stop working.
    for old in [&first, &second] {
        assert_error(refresh(&app, &old.refresh).await, 401, "SESSION_REVOKED").await;
        assert!(!accepted(&app, &old.access).await);
    }
    let reasons =
        app.d1(&format!("SELECT revoked_reason FROM sessions WHERE user_id = {}", sql_str(&first.user_id))).await;
    assert_eq!(reasons.iter().filter(|r| r["revoked_reason"] == "recovered").count(), 2, "{reasons:?}");
    // The new one is a working login.
    assert!(accepted(&app, &recovered.access).await);
    let (status, pair) = json_of(refresh(&app, &recovered.refresh).await).await;
    assert_eq!(status, 200, "{pair}");
    // Single use.
    assert_error(recover(&app, &json!({ "verification_token": reset })).await, 400, "INVALID_VERIFICATION_TOKEN").await;
}

async fn recovery_takes_only_an_unused_reset_token_in_a_well_formed_body(app: &TestApp) {
    let (session, email) = new_user(&app).await;
    let verify = token(&app, &email, "verify").await;
    let register = token(&app, &random_email(), "register").await;

    for token in [verify.as_str(), register.as_str(), "not-a-token"] {
        let resp = recover(&app, &json!({ "verification_token": token })).await;
        assert_error(resp, 400, "INVALID_VERIFICATION_TOKEN").await;
    }
    for body in [json!({}), json!({ "verification_token": 7 }), json!({ "verification_token": null }), json!([])] {
        assert_error(recover(&app, &body).await, 400, "VALIDATION_ERROR").await;
    }
    assert!(accepted(&app, &session.access).await, "nothing was revoked");
}

async fn a_reset_for_an_unknown_destination_answers_like_a_real_one_and_its_code_never_verifies(app: &TestApp) {
    let (_, known) = new_user(&app).await;
    let unknown = random_email();

    let (real_status, mut real) = json_of(app.request_otp(&known, "reset").await).await;
    let (status, mut other) = json_of(app.request_otp(&unknown, "reset").await).await;
    assert_eq!((status, real_status), (200, 200), "{other} {real}");
    let otp_id = other["otp_id"].as_str().unwrap_or_else(|| panic!("no otp_id: {other}")).to_string();
    for answer in [&mut real, &mut other] {
        let o = answer.as_object_mut().unwrap();
        o.remove("otp_id");
        o.remove("destination_masked");
    }
    assert_eq!(other, real, "the same answer but for the id and the masked destination");

    // Even the very code the unknown destination received fails as a wrong one does.
    let code = app.code_sent_to(&unknown).await;
    let (status, body) = json_of(app.verify_otp(&otp_id, &code).await).await;
    assert_eq!(
        (status, &body["code"], &body["message"]),
        (400, &json!("INVALID_OTP"), &json!("Invalid OTP")),
        "{body}"
    );
}

// ---------------------------------------------------------------------------
// The tests, a Worker per group: each step below is one behaviour.

/// Sign out everywhere and the username change, on one Worker (their rules are native tests, src/flows/tests/account.rs).
#[tokio::test]
async fn a_signed_in_user_signs_out_everywhere_and_changes_the_username() {
    let app = spawn_app().await;
    signing_out_everywhere_ends_every_other_session_and_says_how_many(&app).await;
    signing_out_everywhere_with_include_current_ends_my_session_too(&app).await;
    signing_out_everywhere_refuses_an_include_current_that_is_not_true_or_false(&app).await;
    changing_the_username_answers_the_user_as_me_shows_it(&app).await;
    a_username_another_account_has_is_409_username_taken(&app).await;
    two_accounts_renaming_to_one_username_at_once_leave_exactly_one_winner(&app).await;
    a_username_change_without_a_valid_username_is_a_validation_error(&app).await;
}

/// Adding, changing and removing a destination, with the races, on one Worker.
#[tokio::test]
async fn a_signed_in_user_adds_changes_and_removes_an_email_or_phone_and_races_leave_one_winner() {
    let app = spawn_app().await;
    a_verify_token_adds_a_phone_to_an_email_account_as_verified(&app).await;
    a_new_email_replaces_the_old_one_which_no_longer_signs_in(&app).await;
    only_a_verify_token_attaches_a_destination(&app).await;
    two_accounts_attaching_one_email_at_once_leave_exactly_one_holder_and_the_losers_token_unspent(&app).await;
    another_accounts_destination_is_409_destination_taken(&app).await;
    removing_the_phone_keeps_the_email(&app).await;
    the_last_destination_stays_and_other_kinds_are_not_found(&app).await;
    removing_both_destinations_at_once_leaves_one(&app).await;
}

/// Deleting the account, on one Worker.
#[tokio::test]
async fn deleting_the_account_takes_a_fresh_proof_and_leaves_no_link_to_the_person() {
    let app = spawn_app().await;
    deleting_the_account_ends_every_token_at_once_and_leaves_no_link_to_the_person(&app).await;
    deleting_needs_a_fresh_verify_token_for_one_of_the_accounts_destinations(&app).await;
}

/// Recovery with a reset token, on one Worker.
#[tokio::test]
async fn recovery_signs_out_everywhere_and_in_again_and_tells_no_one_which_accounts_exist() {
    let app = spawn_app().await;
    a_reset_token_signs_the_account_out_everywhere_and_in_again(&app).await;
    recovery_takes_only_an_unused_reset_token_in_a_well_formed_body(&app).await;
    a_reset_for_an_unknown_destination_answers_like_a_real_one_and_its_code_never_verifies(&app).await;
}
