//! Registering: a verification token cannot be used to probe usernames
//! without limit. The rest of the register story (a new account signed in,
//! one use per token, taken names in any case) is told in `sessions.rs`.

use serde_json::json;

use crate::helpers::{assert_error, json_of, random_email, random_hex, sql_str, TestApp};

async fn register(app: &TestApp, token: &str, username: &str) -> reqwest::Response {
    app.post_json("/api/auth/register/", &json!({ "verification_token": token, "username": username })).await
}

/// Verifies a register code for `destination`; the verification token.
async fn register_token(app: &TestApp, destination: &str) -> String {
    let otp = app.otp_for(destination, "register").await;
    let (status, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
    assert_eq!(status, 200, "verifying a register code: {body}");
    body["verification_token"].as_str().unwrap_or_else(|| panic!("no verification_token: {body}")).to_string()
}

/// Ten existing accounts' usernames.
async fn taken_usernames(app: &TestApp) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..10 {
        let id = app.seed_user(&random_email(), "active").await;
        let rows = app.d1(&format!("SELECT username FROM users WHERE id = {}", sql_str(&id))).await;
        names.push(rows[0]["username"].as_str().unwrap().to_string());
    }
    names
}

#[tokio::test]
async fn a_verification_token_tries_ten_taken_usernames_and_is_then_spent() {
    let app = crate::helpers::spawn_app().await;
    let email = random_email();
    let token = register_token(&app, &email).await;

    for name in taken_usernames(&app).await {
        assert_error(register(&app, &token, &name).await, 409, "USERNAME_TAKEN").await;
    }

    // The eleventh try, even with a free username, finds the token spent.
    let free = format!("free_{}", random_hex(12));
    assert_error(register(&app, &token, &free).await, 400, "INVALID_VERIFICATION_TOKEN").await;
    let accounts = app.d1(&format!("SELECT id FROM users WHERE email = {}", sql_str(&email))).await;
    assert!(accounts.is_empty(), "an account was created with a spent token: {accounts:?}");
}
