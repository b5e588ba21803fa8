//! Sessions and tokens: registering or signing in opens a session with an
//! EdDSA access token and an opaque refresh token; refreshing rotates the
//! pair, a rotated token replayed after the grace window revokes the
//! session; sessions can be listed, revoked and logged out of; signing keys
//! rotate without logging anyone out.
//!
//! Access tokens are read, verified against the JWKS, and forged here with
//! ed25519-dalek, independently of the Worker's own JWT code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::Mac;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, is_uuid, json_of, now_ms, random_email, random_hex, random_ip, random_phone, random_uuid, spawn_app,
    spawn_app_with, sql_str, Profile, TestApp, WorkerState, TEST_KEY_A, TEST_KEY_B,
};

/// A rotated refresh token is honoured again for one second only.
const SHORT_GRACE: Profile = Profile { name: "sessions-short-grace", vars: &[("REFRESH_REUSE_GRACE_SECONDS", "1")] };

/// Sessions end four seconds after signing in, however often they refresh.
const SHORT_SESSIONS: Profile =
    Profile { name: "sessions-short-lifetime", vars: &[("SESSION_MAX_LIFETIME_SECONDS", "4")] };

/// Key rotation, step 0: key A alone, as the default Worker has it.
const SIGNING_WITH_A: Profile =
    Profile { name: "sessions-keys-a", vars: &[("JWT_SIGNING_KEYS", TEST_KEY_A), ("JWT_ISSUER", "otp-edge")] };

/// Key rotation, step 1: signs with key B, still accepts key A
/// (`TEST_KEY_B,TEST_KEY_A`; a const cannot concatenate, so spelled out and
/// checked in the test).
const SIGNING_WITH_B_ACCEPTING_A: Profile = Profile {
    name: "sessions-keys-b-a",
    vars: &[
        (
            "JWT_SIGNING_KEYS",
            "key-b:HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE,key-a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        ),
        ("JWT_ISSUER", "otp-edge"),
    ],
};

/// Key rotation, step 2: key A dropped.
const SIGNING_WITH_B_ONLY: Profile =
    Profile { name: "sessions-keys-b", vars: &[("JWT_SIGNING_KEYS", TEST_KEY_B), ("JWT_ISSUER", "otp-edge")] };

// ---------------------------------------------------------------------------
// Signing in and registering

/// A signed-in session, as a login or register answer gives it.
#[derive(Debug, Clone)]
struct Session {
    access: String,
    refresh: String,
    session_id: String,
    user_id: String,
    /// The email or phone the user signs in with.
    destination: String,
}

impl Session {
    fn from_answer(body: &Value, destination: &str) -> Session {
        let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("not a string in {body}")).to_string();
        Session {
            access: text(&body["access"]),
            refresh: text(&body["refresh"]),
            session_id: text(&body["session_id"]),
            user_id: text(&body["user"]["id"]),
            destination: destination.to_string(),
        }
    }
}

/// Verifies a register code for `destination`; the verification token.
async fn register_token(app: &TestApp, destination: &str) -> String {
    purpose_token(app, destination, "register").await
}

async fn purpose_token(app: &TestApp, destination: &str, purpose: &str) -> String {
    let otp = app.otp_for(destination, purpose).await;
    let (status, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
    assert_eq!(status, 200, "verifying a {purpose} code: {body}");
    body["verification_token"].as_str().unwrap_or_else(|| panic!("no verification_token: {body}")).to_string()
}

async fn register(app: &TestApp, token: &str, username: &str) -> reqwest::Response {
    app.post_json("/api/auth/register/", &json!({ "verification_token": token, "username": username })).await
}

fn unique_username() -> String {
    format!("user_{}", random_hex(12))
}

/// A new user, registered with a fresh email, signed in.
async fn new_user(app: &TestApp) -> Session {
    let email = random_email();
    let token = register_token(app, &email).await;
    let (status, body) = json_of(register(app, &token, &unique_username()).await).await;
    assert_eq!(status, 201, "{body}");
    Session::from_answer(&body, &email)
}

/// Signs in an existing user with a login code, from a device (`install_id`,
/// `platform`, `app_version`, any of them) and a user agent; the answer.
async fn sign_in_answer(app: &TestApp, destination: &str, device: Value, user_agent: &str) -> Value {
    let otp = app.otp_for(destination, "login").await;
    let mut body = json!({ "otp_id": otp.id, "otp_code": otp.code });
    body.as_object_mut().unwrap().extend(device.as_object().expect("device fields").clone());
    let request = app.client.post(app.url("/api/auth/otp/verify/")).header("user-agent", user_agent).json(&body);
    let (status, body) = json_of(app.send(request).await).await;
    assert_eq!(status, 200, "signing in {destination}: {body}");
    body
}

async fn sign_in(app: &TestApp, destination: &str, device: Value) -> Session {
    Session::from_answer(&sign_in_answer(app, destination, device, "sessions-test").await, destination)
}

// ---------------------------------------------------------------------------
// Bearer endpoints and refresh

async fn with_bearer(app: &TestApp, method: reqwest::Method, path: &str, access: &str) -> reqwest::Response {
    app.send(app.client.request(method, app.url(path)).bearer_auth(access)).await
}

async fn me(app: &TestApp, access: &str) -> reqwest::Response {
    with_bearer(app, reqwest::Method::GET, "/api/auth/me/", access).await
}

/// The user behind a working access token.
async fn me_ok(app: &TestApp, access: &str) -> Value {
    let (status, body) = json_of(me(app, access).await).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The caller's live sessions.
async fn sessions_of(app: &TestApp, access: &str) -> Vec<Value> {
    let (status, body) = json_of(with_bearer(app, reqwest::Method::GET, "/api/auth/sessions/", access).await).await;
    assert_eq!(status, 200, "{body}");
    body["sessions"].as_array().unwrap_or_else(|| panic!("no sessions list: {body}")).clone()
}

fn ids(sessions: &[Value]) -> Vec<&str> {
    sessions.iter().map(|s| s["id"].as_str().unwrap()).collect()
}

async fn revoke(app: &TestApp, access: &str, session_id: &str) -> reqwest::Response {
    with_bearer(app, reqwest::Method::DELETE, &format!("/api/auth/sessions/{session_id}/"), access).await
}

async fn logout(app: &TestApp, access: &str) -> reqwest::Response {
    with_bearer(app, reqwest::Method::POST, "/api/auth/logout/", access).await
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/api/auth/token/refresh/", &json!({ "refresh": token })).await
}

/// A successful refresh: the new pair, checked for shape and session.
async fn refreshed(app: &TestApp, session: &Session) -> Session {
    let (status, body) = json_of(refresh(app, &session.refresh).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session_id"], session.session_id.as_str(), "{body}");
    assert_eq!(body["expires_in"], 300, "{body}");
    let refresh = body["refresh"].as_str().unwrap_or_else(|| panic!("no refresh token: {body}"));
    assert_opaque_refresh_token(refresh);
    Session {
        access: body["access"].as_str().unwrap_or_else(|| panic!("no access token: {body}")).to_string(),
        refresh: refresh.to_string(),
        ..session.clone()
    }
}

/// 43 base64url characters: 256 bits, and nothing readable in them.
fn assert_opaque_refresh_token(token: &str) {
    assert_eq!(token.len(), 43, "{token}");
    let bytes = Base64UrlUnpadded::decode_vec(token).unwrap_or_else(|e| panic!("not base64url ({e}): {token}"));
    assert_eq!(bytes.len(), 32, "{token}");
}

/// A refused bearer request: 401, this code, and a Bearer challenge.
async fn assert_refused(resp: reqwest::Response, code: &str, why: &str) {
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let (status, body) = json_of(resp).await;
    assert_eq!((status, body["code"].as_str()), (401, Some(code)), "{why}: {body}");
    assert!(body["message"].is_string(), "{why}: {body}");
    assert!(challenge.as_deref().is_some_and(|c| c.starts_with("Bearer")), "{why}: WWW-Authenticate is {challenge:?}");
}

/// The session's row in D1.
async fn session_row(app: &TestApp, session_id: &str) -> Value {
    let rows = app.d1(&format!("SELECT * FROM sessions WHERE id = {}", sql_str(session_id))).await;
    rows.into_iter().next().unwrap_or_else(|| panic!("no session {session_id}"))
}

// ---------------------------------------------------------------------------
// JWTs, read and signed independently of the Worker

/// The parts of a compact JWS.
struct Jwt {
    header: Value,
    claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

fn decode_json(part: &str) -> Value {
    let bytes = Base64UrlUnpadded::decode_vec(part).unwrap_or_else(|e| panic!("not base64url ({e}): {part}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

fn parse_jwt(token: &str) -> Jwt {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    Jwt {
        header: decode_json(parts[0]),
        claims: decode_json(parts[1]),
        signing_input: format!("{}.{}", parts[0], parts[1]),
        signature: Base64UrlUnpadded::decode_vec(parts[2]).expect("signature is base64url"),
    }
}

fn b64_json(value: &Value) -> String {
    Base64UrlUnpadded::encode_string(value.to_string().as_bytes())
}

/// The kid and signing key of a `kid:seed` test key.
fn test_key(spec: &str) -> (&str, SigningKey) {
    let (kid, seed) = spec.split_once(':').unwrap();
    let seed: [u8; 32] = Base64UrlUnpadded::decode_vec(seed).unwrap().try_into().expect("a 32-byte seed");
    (kid, SigningKey::from_bytes(&seed))
}

/// A JWT with this header and these claims, signed with Ed25519 by `key`.
fn sign_jwt(header: &Value, claims: &Value, key: &SigningKey) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", Base64UrlUnpadded::encode_string(&signature.to_bytes()))
}

/// `claims` with some fields replaced.
fn with(claims: &Value, changes: Value) -> Value {
    let mut out = claims.clone();
    out.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
    out
}

async fn jwks(app: &TestApp) -> (Option<String>, Vec<Value>) {
    let resp = app.get("/.well-known/jwks.json").await;
    let cache_control = resp.headers().get("cache-control").map(|v| v.to_str().unwrap().to_string());
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    (cache_control, body["keys"].as_array().unwrap_or_else(|| panic!("no keys: {body}")).clone())
}

fn kids(keys: &[Value]) -> Vec<&str> {
    keys.iter().map(|k| k["kid"].as_str().unwrap()).collect()
}

/// Checks `token` as another service would, with only the JWKS: EdDSA, a
/// published kid, an Ed25519 signature by that key (strict RFC 8032 checks).
fn check_with_jwks(token: &str, keys: &[Value]) -> Result<Jwt, String> {
    let jwt = parse_jwt(token);
    if jwt.header["alg"] != "EdDSA" {
        return Err(format!("alg is not EdDSA: {}", jwt.header));
    }
    let kid = jwt.header["kid"].as_str().ok_or_else(|| format!("no kid: {}", jwt.header))?;
    let jwk = keys.iter().find(|k| k["kid"] == kid).ok_or_else(|| format!("kid {kid} is not in the JWKS {keys:?}"))?;
    let x: [u8; 32] =
        Base64UrlUnpadded::decode_vec(jwk["x"].as_str().unwrap()).unwrap().try_into().expect("a 32-byte x");
    let key = VerifyingKey::from_bytes(&x).map_err(|e| format!("x of {kid} is not an Ed25519 key: {e}"))?;
    let signature = Signature::from_slice(&jwt.signature).map_err(|e| format!("not an Ed25519 signature: {e}"))?;
    key.verify_strict(jwt.signing_input.as_bytes(), &signature)
        .map_err(|e| format!("the signature does not verify with {kid} from the JWKS: {e}"))?;
    Ok(jwt)
}

fn verify_with_jwks(token: &str, keys: &[Value]) -> Jwt {
    check_with_jwks(token, keys).unwrap_or_else(|e| panic!("{e}"))
}

// ===========================================================================
// Registration

#[tokio::test]
async fn a_new_user_registers_by_email_or_phone_and_is_signed_in() {
    let app = spawn_app().await;

    for destination in [random_email(), random_phone()] {
        let by_email = destination.contains('@');
        let token = register_token(&app, &destination).await;
        let name = format!("New.User-{}", random_hex(8).to_uppercase());

        let (status, body) = json_of(register(&app, &token, &name).await).await;

        assert_eq!(status, 201, "{body}");
        let user = &body["user"];
        assert!(is_uuid(user["id"].as_str().unwrap_or("")), "{body}");
        assert_eq!(user["username"], name.to_lowercase(), "stored lower-cased: {body}");
        let (email, phone) =
            if by_email { (json!(destination), Value::Null) } else { (Value::Null, json!(destination)) };
        assert_eq!((&user["email"], &user["phone"]), (&email, &phone), "{body}");
        assert_eq!((&user["email_verified"], &user["phone_verified"]), (&json!(by_email), &json!(!by_email)), "{body}");
        assert!(is_uuid(body["session_id"].as_str().unwrap_or("")), "{body}");
        assert_eq!(body["expires_in"], 300, "{body}");
        assert_opaque_refresh_token(body["refresh"].as_str().unwrap_or(""));
        // The new account is signed in: its access token shows the same user.
        assert_eq!(&me_ok(&app, body["access"].as_str().unwrap()).await, user);
    }
}

#[tokio::test]
async fn a_taken_username_in_any_case_is_refused_and_another_one_works() {
    let app = spawn_app().await;
    let taken = unique_username();
    let (status, body) = json_of(register(&app, &register_token(&app, &random_email()).await, &taken).await).await;
    assert_eq!(status, 201, "{body}");

    let token = register_token(&app, &random_phone()).await;
    assert_error(register(&app, &token, &taken.to_uppercase()).await, 409, "USERNAME_TAKEN").await;

    // The refusal did not use up the verification token.
    let (status, body) = json_of(register(&app, &token, &unique_username()).await).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_verification_token_registers_once_and_only_from_a_register_code() {
    let app = spawn_app().await;
    let token = register_token(&app, &random_email()).await;
    assert_eq!(json_of(register(&app, &token, &unique_username()).await).await.0, 201);

    let used_again = register(&app, &token, &unique_username()).await;
    assert_error(used_again, 400, "INVALID_VERIFICATION_TOKEN").await;

    let unknown = Base64UrlUnpadded::encode_string(&random_hex(32).into_bytes());
    assert_error(register(&app, &unknown, &unique_username()).await, 400, "INVALID_VERIFICATION_TOKEN").await;

    for purpose in ["verify", "reset"] {
        let phone = random_phone();
        // A reset code verifies only for an active account's destination.
        app.seed_user(&phone, "active").await;
        let other_purpose = purpose_token(&app, &phone, purpose).await;
        let resp = register(&app, &other_purpose, &unique_username()).await;
        assert_error(resp, 400, "INVALID_VERIFICATION_TOKEN").await;
    }
}

// ===========================================================================
// Signing in

#[tokio::test]
async fn signing_in_by_sms_verifies_the_phone_and_opens_a_session_on_the_device() {
    let app = spawn_app().await;
    let phone = random_phone();
    let user_id = app.seed_user(&phone, "active").await;
    let install_id = random_uuid();
    let before = now_ms();

    let device = json!({ "install_id": install_id, "platform": "ios", "app_version": "3.2.1" });
    let body = sign_in_answer(&app, &phone, device, "Acme/3.2.1 (iPhone)").await;

    assert_eq!(body["user"]["id"], user_id.as_str(), "{body}");
    assert_eq!(body["user"]["phone"], phone.as_str(), "{body}");
    assert_eq!((&body["user"]["phone_verified"], &body["user"]["email_verified"]), (&json!(true), &json!(false)));
    assert_eq!(body["expires_in"], 300, "{body}");
    assert_opaque_refresh_token(body["refresh"].as_str().unwrap_or(""));
    let session = Session::from_answer(&body, &phone);
    assert_eq!(me_ok(&app, &session.access).await["phone_verified"], true);

    let listed = sessions_of(&app, &session.access).await;
    assert_eq!(ids(&listed), [session.session_id.as_str()], "{listed:?}");
    let s = &listed[0];
    assert_eq!(s["current"], true, "{s}");
    assert_eq!(s["device"], json!({ "install_id": install_id, "platform": "ios", "app_version": "3.2.1" }), "{s}");
    assert_eq!(s["platform"], "ios", "{s}");
    assert_eq!(s["ip_address"], app.client_ip.as_str(), "{s}");
    assert_eq!(s["user_agent"], "Acme/3.2.1 (iPhone)", "{s}");
    let time = |field: &str| {
        let text = s[field].as_str().unwrap_or_else(|| panic!("no {field}: {s}"));
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{field} is not RFC 3339 ({e}): {s}"))
            .timestamp_millis()
    };
    let created = time("created_at");
    assert!((before - 2_000..=now_ms() + 2_000).contains(&created), "created_at {created} is not now: {s}");
    assert!(time("last_used_at") >= created, "{s}");
    let thirty_days = 30 * 86_400_000;
    assert!((time("expires_at") - created - thirty_days).abs() < 60_000, "expires_at is not 30 days on: {s}");
}

#[tokio::test]
async fn the_access_token_says_when_and_how_the_user_signed_in_and_a_refresh_keeps_it() {
    let app = spawn_app().await;
    let phone = random_phone();
    app.seed_user(&phone, "active").await;
    let session = sign_in(&app, &phone, json!({})).await;
    let (_, keys) = jwks(&app).await;

    // Read as another service would: verified with the JWKS alone.
    let at_login = verify_with_jwks(&session.access, &keys).claims;
    // RFC 8176: `otp` for a one-time code, `sms` for its channel.
    assert_eq!(at_login["amr"], json!(["otp", "sms"]), "{at_login}");
    let row = session_row(&app, &session.session_id).await;
    let opened = row["created_at"].as_i64().unwrap_or_else(|| panic!("no created_at: {row}"));
    assert_eq!(at_login["auth_time"], opened / 1000, "the session's opening, in seconds: {at_login}");
    assert_eq!(row["auth_channel"], "phone", "{row}");

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let next = refreshed(&app, &session).await;
    let after = verify_with_jwks(&next.access, &keys).claims;
    assert_eq!((&after["auth_time"], &after["amr"]), (&at_login["auth_time"], &at_login["amr"]), "{after}");
    assert!(after["iat"].as_i64() > at_login["iat"].as_i64(), "a new token: {after}");
    assert_eq!(me_ok(&app, &next.access).await["phone"], phone.as_str());
}

#[tokio::test]
async fn a_browser_sign_in_without_a_device_is_a_web_session() {
    let app = spawn_app().await;
    let user = new_user(&app).await;

    let browser = sign_in(&app, &user.destination, json!({})).await;

    let listed = sessions_of(&app, &browser.access).await;
    let s = listed.iter().find(|s| s["id"] == browser.session_id.as_str()).unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!((&s["device"], &s["platform"]), (&Value::Null, &json!("web")), "{s}");
}

#[tokio::test]
async fn an_android_tablet_without_an_install_id_is_listed_as_android() {
    let app = spawn_app().await;
    let user = new_user(&app).await;

    let tablet = sign_in(&app, &user.destination, json!({ "platform": "android" })).await;

    let listed = sessions_of(&app, &tablet.access).await;
    let s = listed.iter().find(|s| s["id"] == tablet.session_id.as_str()).unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!((&s["device"], &s["platform"]), (&Value::Null, &json!("android")), "{s}");
}

#[tokio::test]
async fn signing_in_again_on_the_same_install_updates_that_device() {
    let app = spawn_app().await;
    let user = new_user(&app).await;
    let install_id = random_uuid();

    let old = sign_in(
        &app,
        &user.destination,
        json!({ "install_id": install_id, "platform": "android", "app_version": "1.0" }),
    )
    .await;
    let new = sign_in(
        &app,
        &user.destination,
        json!({ "install_id": install_id, "platform": "android", "app_version": "1.1" }),
    )
    .await;

    assert_ne!(old.session_id, new.session_id);
    let devices = app
        .d1(&format!(
            "SELECT app_version FROM devices WHERE user_id = '{}' AND install_id = '{install_id}'",
            user.user_id
        ))
        .await;
    assert_eq!(devices, [json!({ "app_version": "1.1" })], "one device row per install");
    let listed = sessions_of(&app, &new.access).await;
    for id in [&old.session_id, &new.session_id] {
        let s = listed.iter().find(|s| s["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} not in {listed:?}"));
        assert_eq!(s["device"]["app_version"], "1.1", "{s}");
    }
}

// ===========================================================================
// Access tokens and the JWKS

#[tokio::test]
async fn another_service_verifies_the_access_token_from_the_issuer_url_or_the_jwks_alone() {
    let app = spawn_app().await;
    let before = now_ms() / 1000;
    let user = new_user(&app).await;
    let after = now_ms() / 1000;

    let (cache_control, keys) = jwks(&app).await;

    let cache_control = cache_control.unwrap_or_default();
    assert!(
        cache_control.contains("public") && cache_control.contains("max-age=300"),
        "Cache-Control: {cache_control}"
    );
    let (kid_a, key_a) = test_key(TEST_KEY_A);
    let x_a = Base64UrlUnpadded::encode_string(key_a.verifying_key().as_bytes());
    assert_eq!(
        keys,
        [json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid_a, "use": "sig", "alg": "EdDSA", "x": x_a })],
        "exactly the public half of the configured key"
    );

    let jwt = verify_with_jwks(&user.access, &keys);
    assert_eq!(jwt.header["kid"], kid_a);
    assert_eq!(jwt.header["typ"], "JWT");
    let c = &jwt.claims;
    assert_eq!((&c["sub"], &c["sid"]), (&json!(user.user_id), &json!(user.session_id)), "{c}");
    assert_eq!(
        (&c["iss"], &c["aud"], &c["token_type"]),
        (&json!(app.address), &json!("otp-edge"), &json!("access")),
        "{c}"
    );
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()), "{c}");
    let iat = c["iat"].as_i64().unwrap_or_else(|| panic!("no iat: {c}"));
    assert!((before - 1..=after + 1).contains(&iat), "iat {iat} is not now ({before}..{after})");
    assert_eq!(c["exp"].as_i64(), Some(iat + 300), "{c}");

    // The same check fails for a token whose payload was changed.
    let changed = with(c, json!({ "sub": random_uuid() }));
    let tampered =
        format!("{}.{}.{}", b64_json(&jwt.header), b64_json(&changed), user.access.rsplit('.').next().unwrap());
    assert!(check_with_jwks(&tampered, &keys).is_err(), "the independent verifier accepted a tampered token");

    // Standard middleware needs only the issuer: jose, configured by
    // discovery, verifies the token, and refuses the tampered one.
    let issuer = app.address.clone();
    let jose = move |token: String| {
        let root = crate::helpers::project_root();
        let out = std::process::Command::new(root.join("node_modules/.bin/node"))
            .arg(root.join("tests/jwt/verify.mjs"))
            .args([issuer.as_str(), "otp-edge", &token])
            .output()
            .expect("node");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (access, tampered) = (user.access.clone(), tampered.clone());
    let (verified, refused) = tokio::task::spawn_blocking(move || (jose(access), jose(tampered))).await.expect("jose");
    assert!(verified.0, "jose refused the token: {}", verified.1);
    let seen: Value = serde_json::from_str(verified.1.trim()).unwrap_or_else(|e| panic!("{e}: {}", verified.1));
    assert_eq!((&seen["payload"]["sub"], &seen["header"]["alg"]), (&json!(user.user_id), &json!("EdDSA")));
    assert!(!refused.0 && refused.1.contains("ERR_JWS_SIGNATURE_VERIFICATION_FAILED"), "{}", refused.1);
    let resp = app.get("/.well-known/openid-configuration").await;
    let cache_control = resp.headers().get("cache-control").map(|v| v.to_str().unwrap().to_string());
    let (status, discovery) = json_of(resp).await;
    assert_eq!((status, cache_control.as_deref()), (200, Some("public, max-age=300")), "{discovery}");
    assert_eq!(discovery["jwks_uri"], format!("{}/.well-known/jwks.json", app.address), "{discovery}");
    assert_eq!(discovery["revocation_endpoint"], format!("{}/api/auth/token/revoke/", app.address));
}

// ===========================================================================
// Revocation (RFC 7009)

async fn revoke_token(app: &TestApp, content_type: &str, body: String) -> (u16, Value) {
    let request = app.client.post(app.url("/api/auth/token/revoke/")).header("content-type", content_type).body(body);
    json_of(app.send(request).await).await
}

#[tokio::test]
async fn a_revoked_token_ends_its_session_and_every_token_gets_the_same_answer() {
    let app = spawn_app().await;
    let form = "application/x-www-form-urlencoded";
    // A refresh token, form-encoded as RFC 7009 sends it.
    let by_form = new_user(&app).await;
    let body = format!("token={}&token_type_hint=refresh_token", by_form.refresh);
    assert_eq!(revoke_token(&app, form, body).await, (200, json!({})));
    assert_refused(refresh(&app, &by_form.refresh).await, "SESSION_REVOKED", "refresh after revocation").await;
    assert_refused(me(&app, &by_form.access).await, "SESSION_REVOKED", "access after revocation").await;
    assert_eq!(session_row(&app, &by_form.session_id).await["revoked_reason"], "token_revoked");
    // An access token, as JSON: its session ends.
    let by_json = new_user(&app).await;
    let body = json!({ "token": by_json.access }).to_string();
    assert_eq!(revoke_token(&app, "application/json", body).await, (200, json!({})));
    assert_refused(refresh(&app, &by_json.refresh).await, "SESSION_REVOKED", "refresh after revocation").await;
    // Anything else: the same answer, nothing revoked.
    let bystander = new_user(&app).await;
    for junk in [random_hex(43), "a.b.c".to_string(), by_form.refresh.clone()] {
        assert_eq!(revoke_token(&app, form, format!("token={junk}")).await, (200, json!({})), "{junk}");
    }
    me_ok(&app, &bystander.access).await;
    // No token: RFC 6749's invalid_request; another media type: 415.
    let (status, body) = revoke_token(&app, form, "token_type_hint=refresh_token".into()).await;
    assert_eq!((status, &body["code"], &body["error"]), (400, &json!("VALIDATION_ERROR"), &json!("invalid_request")));
    let (status, body) = revoke_token(&app, "text/plain", format!("token={}", bystander.refresh)).await;
    assert_eq!((status, &body["code"]), (415, &json!("UNSUPPORTED_MEDIA_TYPE")));
    me_ok(&app, &bystander.access).await;
}

#[tokio::test]
async fn requests_without_a_usable_authorization_header_are_refused() {
    let app = spawn_app().await;
    let user = new_user(&app).await;

    let endpoints = [
        (reqwest::Method::GET, "/api/auth/me/".to_string()),
        (reqwest::Method::GET, "/api/auth/sessions/".to_string()),
        (reqwest::Method::DELETE, format!("/api/auth/sessions/{}/", user.session_id)),
        (reqwest::Method::POST, "/api/auth/logout/".to_string()),
    ];
    for (method, path) in &endpoints {
        let resp = app.send(app.client.request(method.clone(), app.url(path))).await;
        assert_refused(resp, "NOT_AUTHENTICATED", &format!("{method} {path} without Authorization")).await;
    }
    let basic = format!("Basic {}", Base64UrlUnpadded::encode_string(b"alice:secret"));
    let bearer_of_access = format!("Bearer{}", user.access);
    let bad_headers =
        [basic.as_str(), "Bearer", "Token abc", &bearer_of_access, "Bearer not-a-jwt", "Bearer a.b.c", "Bearer ...."];
    for header in bad_headers {
        let resp = app.send(app.client.get(app.url("/api/auth/me/")).header("authorization", header)).await;
        assert_refused(resp, "TOKEN_MALFORMED", &format!("Authorization: {header}")).await;
    }

    // None of this touched the session.
    me_ok(&app, &user.access).await;
}

#[tokio::test]
async fn forged_access_tokens_are_refused_with_the_reason() {
    let app = spawn_app().await;
    let user = new_user(&app).await;
    let victim = new_user(&app).await;
    let real = parse_jwt(&user.access);
    let (header, claims) = (&real.header, &real.claims);
    let (kid_a, key_a) = test_key(TEST_KEY_A);
    let (kid_b, key_b) = test_key(TEST_KEY_B);
    let now = now_ms() / 1000;

    // Our signer is right: the real claims signed here with key A are accepted.
    assert_eq!(me_ok(&app, &sign_jwt(header, claims, &key_a)).await["id"], user.user_id.as_str());

    let unsigned = format!("{}.{}.", b64_json(&json!({ "alg": "none", "typ": "JWT", "kid": kid_a })), b64_json(claims));
    // HS256 keyed with the published public key: the classic algorithm confusion.
    let hs256 = {
        let input =
            format!("{}.{}", b64_json(&json!({ "alg": "HS256", "typ": "JWT", "kid": kid_a })), b64_json(claims));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key_a.verifying_key().as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes()))
    };
    let real_signature = user.access.rsplit('.').next().unwrap();
    let victims_ids = with(claims, json!({ "sub": victim.user_id, "sid": victim.session_id }));
    let someone_else = format!("{}.{}.{real_signature}", b64_json(header), b64_json(&victims_ids));
    let header_as = |kid: &str| with(header, json!({ "kid": kid }));

    let cases = [
        ("alg none", unsigned, "TOKEN_ALGORITHM_REJECTED"),
        ("HS256 keyed with the public key", hs256, "TOKEN_ALGORITHM_REJECTED"),
        ("a kid the service never had", sign_jwt(&header_as("key-z"), claims, &key_a), "TOKEN_KEY_UNKNOWN"),
        (
            "signed by key B, which this service does not use",
            sign_jwt(&header_as(kid_b), claims, &key_b),
            "TOKEN_KEY_UNKNOWN",
        ),
        ("another user's ids under the real signature", someone_else, "TOKEN_SIGNATURE_INVALID"),
        ("signed by key B, claiming to be key A", sign_jwt(header, claims, &key_b), "TOKEN_SIGNATURE_INVALID"),
        (
            "expired a minute ago",
            sign_jwt(header, &with(claims, json!({ "iat": now - 360, "exp": now - 60 })), &key_a),
            "TOKEN_EXPIRED",
        ),
        (
            "another issuer",
            sign_jwt(header, &with(claims, json!({ "iss": "someone-else" })), &key_a),
            "TOKEN_CLAIMS_INVALID",
        ),
        (
            "another audience",
            sign_jwt(header, &with(claims, json!({ "aud": "another-app" })), &key_a),
            "TOKEN_CLAIMS_INVALID",
        ),
        (
            "a refresh-type token",
            sign_jwt(header, &with(claims, json!({ "token_type": "refresh" })), &key_a),
            "TOKEN_CLAIMS_INVALID",
        ),
    ];
    for (why, token, code) in cases {
        assert_refused(me(&app, &token).await, code, why).await;
        // Nor can it end anyone's session.
        assert_refused(logout(&app, &token).await, code, why).await;
    }

    me_ok(&app, &user.access).await;
    me_ok(&app, &victim.access).await;
}

// ===========================================================================
// Refresh

#[tokio::test]
async fn refreshing_rotates_the_pair_within_the_same_session() {
    let app = spawn_app().await;
    let first = new_user(&app).await;

    let second = refreshed(&app, &first).await;
    let third = refreshed(&app, &second).await;

    assert_ne!(first.refresh, second.refresh);
    assert_ne!(second.refresh, third.refresh);
    let jtis: Vec<Value> =
        [&first, &second, &third].iter().map(|s| parse_jwt(&s.access).claims["jti"].clone()).collect();
    assert!(jtis[0] != jtis[1] && jtis[1] != jtis[2], "every access token has its own jti: {jtis:?}");
    let claims = parse_jwt(&third.access).claims;
    assert_eq!((&claims["sub"], &claims["sid"]), (&json!(first.user_id), &json!(first.session_id)), "{claims}");
    assert_eq!(me_ok(&app, &third.access).await["id"], first.user_id.as_str());
    assert_eq!(ids(&sessions_of(&app, &third.access).await), [first.session_id.as_str()], "still one session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tabs_refreshing_at_once_both_get_the_same_new_pair() {
    let app = spawn_app().await;
    let session = new_user(&app).await;

    let start = Arc::new(tokio::sync::Barrier::new(2));
    let mut tabs = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (app, token, start) = (app.clone(), session.refresh.clone(), start.clone());
        tabs.spawn(async move {
            start.wait().await;
            json_of(refresh(&app, &token).await).await
        });
    }
    let answers = tabs.join_all().await;

    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    let (a, b) = (&answers[0].1, &answers[1].1);
    assert_eq!(
        (&a["refresh"], &a["access"], &a["session_id"]),
        (&b["refresh"], &b["access"], &b["session_id"]),
        "{a} vs {b}"
    );
    assert_ne!(a["refresh"], session.refresh.as_str());
    // The session lives on, and the shared new pair works.
    let pair = Session {
        access: a["access"].as_str().unwrap().into(),
        refresh: a["refresh"].as_str().unwrap().into(),
        ..session
    };
    me_ok(&app, &pair.access).await;
    refreshed(&app, &pair).await;
}

#[tokio::test]
async fn a_stolen_refresh_token_replayed_after_the_grace_window_ends_the_session() {
    let app = spawn_app_with(SHORT_GRACE).await;
    let stolen = new_user(&app).await;
    let other_device =
        sign_in(&app, &stolen.destination, json!({ "install_id": random_uuid(), "platform": "ios" })).await;
    // The rightful owner refreshes; the thief still holds the old token.
    let owner = refreshed(&app, &stolen).await;
    let rotated_at = tokio::time::Instant::now();

    // Well past the one-second grace window.
    tokio::time::sleep_until(rotated_at + Duration::from_millis(2_500)).await;
    assert_error(refresh(&app, &stolen.refresh).await, 401, "REFRESH_TOKEN_REUSED").await;

    // The whole session is over: its access token and its newest refresh token.
    assert_refused(me(&app, &owner.access).await, "SESSION_REVOKED", "access token of the revoked session").await;
    let (status, body) = json_of(refresh(&app, &owner.refresh).await).await;
    assert_eq!(status, 401, "the newest refresh token of a revoked session still works: {body}");
    eprintln!("newest refresh token of a session revoked for reuse: {status} {body}");
    // The same user's other session is untouched.
    assert_eq!(me_ok(&app, &other_device.access).await["id"], stolen.user_id.as_str());
    assert_eq!(ids(&sessions_of(&app, &other_device.access).await), [other_device.session_id.as_str()]);
}

#[tokio::test]
async fn a_refresh_token_that_was_never_issued_is_refused() {
    let app = spawn_app().await;
    let user = new_user(&app).await;

    let never_issued = Base64UrlUnpadded::encode_string(&random_hex(32).into_bytes()[..32]);
    for token in [never_issued.as_str(), "x"] {
        assert_error(refresh(&app, token).await, 401, "REFRESH_TOKEN_INVALID").await;
    }
    let not_a_refresh_string = [
        json!({}),
        json!({ "refresh": 42 }),
        json!({ "refresh": null }),
        json!({ "refresh": [user.refresh] }),
        json!({ "token": user.refresh }),
    ];
    for body in not_a_refresh_string {
        assert_error(app.post_json("/api/auth/token/refresh/", &body).await, 400, "VALIDATION_ERROR").await;
    }

    // The real one was not disturbed.
    refreshed(&app, &user).await;
}

#[tokio::test]
async fn a_session_ends_its_maximum_lifetime_after_signing_in_however_often_it_refreshes() {
    let app = spawn_app_with(SHORT_SESSIONS).await;
    let first = new_user(&app).await;
    let row = session_row(&app, &first.session_id).await;
    let ends_at = row["created_at"].as_i64().unwrap() + 4_000;
    assert_eq!(row["expires_at"], ends_at, "the refresh lifetime (30 days) is cut to the session's: {row}");

    // Refreshing works until the end, and never moves it.
    let (status, body) = json_of(refresh(&app, &first.refresh).await).await;
    assert_eq!(status, 200, "{body}");
    let second = Session {
        access: body["access"].as_str().unwrap().into(),
        refresh: body["refresh"].as_str().unwrap().into(),
        ..first.clone()
    };
    assert_eq!(session_row(&app, &first.session_id).await["expires_at"], ends_at, "a rotation does not extend it");
    // Nor does an access token outlive the session.
    let exp = parse_jwt(&second.access).claims["exp"].as_i64().unwrap();
    assert!(exp * 1000 <= ends_at, "exp {exp} is after the session's end {ends_at}");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((1..=4).contains(&expires_in), "expires_in {expires_in} is past the session's end");
    me_ok(&app, &second.access).await;

    // Past the end: a new sign-in is needed.
    let wait = (ends_at + 500 - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    assert_refused(refresh(&app, &second.refresh).await, "SESSION_REVOKED", "refresh past the session's end").await;
    assert_refused(me(&app, &second.access).await, "TOKEN_EXPIRED", "access token past the session's end").await;
    let again = sign_in(&app, &first.destination, json!({})).await;
    me_ok(&app, &again.access).await;
}

#[tokio::test]
async fn a_session_refreshes_at_most_ten_times_a_minute() {
    let app = spawn_app().await;
    let first = new_user(&app).await;
    let other_device = sign_in(&app, &first.destination, json!({})).await;

    let mut previous = first.clone();
    let mut current = first.clone();
    for _ in 0..10 {
        previous = current.clone();
        current = refreshed(&app, &current).await;
    }
    let resp = refresh(&app, &current.refresh).await;
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let (status, body) = json_of(resp).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("RATE_LIMIT")), "the 11th refresh in a minute: {body}");
    assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)), "Retry-After: {retry_after:?}");
    assert_eq!(body["retry_after"].as_u64(), retry_after, "{body}");

    // Refused before anything was written: ten rotations, ten retired tokens.
    let retired = app
        .d1(&format!(
            "SELECT COUNT(*) AS n FROM retired_refresh_tokens WHERE session_id = {}",
            sql_str(&first.session_id)
        ))
        .await;
    assert_eq!(retired[0]["n"], 10, "rows written by 11 refreshes");
    // A second tab that raced the last refresh still gets the same pair.
    let (status, body) = json_of(refresh(&app, &previous.refresh).await).await;
    assert_eq!((status, &body["refresh"]), (200, &json!(current.refresh)), "{body}");
    // The limit is the session's: the user's other session refreshes.
    refreshed(&app, &other_device).await;
    me_ok(&app, &current.access).await;
}

#[tokio::test]
async fn a_flood_of_refreshes_from_one_session_writes_ten_rows_a_minute() {
    let app = spawn_app().await;
    let mut session = new_user(&app).await;

    let mut answers = Vec::new();
    for _ in 0..40 {
        let (status, body) = json_of(refresh(&app, &session.refresh).await).await;
        if status == 200 {
            session.refresh = body["refresh"].as_str().unwrap().into();
        }
        answers.push(status);
    }

    assert_eq!(answers.iter().filter(|s| **s == 200).count(), 10, "{answers:?}");
    assert!(answers[10..].iter().all(|s| *s == 429), "{answers:?}");
    let retired = app
        .d1(&format!(
            "SELECT COUNT(*) AS n FROM retired_refresh_tokens WHERE session_id = {}",
            sql_str(&session.session_id)
        ))
        .await;
    assert_eq!(retired[0]["n"], 10, "{answers:?}");
}

// ===========================================================================
// Managing sessions

#[tokio::test]
async fn a_user_signs_out_a_lost_phone_from_the_laptop() {
    let laptop_app = spawn_app().await;
    // The same test (it reads the same mailbox) from another client IP.
    let mut phone_app = laptop_app.clone();
    phone_app.client_ip = random_ip();
    let laptop = new_user(&laptop_app).await;
    let phone =
        sign_in(&phone_app, &laptop.destination, json!({ "install_id": random_uuid(), "platform": "android" })).await;

    let listed = sessions_of(&laptop_app, &laptop.access).await;
    let mut listed_ids = ids(&listed);
    listed_ids.sort();
    let mut expected = [laptop.session_id.as_str(), phone.session_id.as_str()];
    expected.sort();
    assert_eq!(listed_ids, expected, "{listed:?}");
    let current: Vec<_> = listed.iter().filter(|s| s["current"] == true).map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(current, [laptop.session_id.as_str()], "{listed:?}");
    let phone_row = listed.iter().find(|s| s["id"] == phone.session_id.as_str()).unwrap();
    assert_eq!(phone_row["ip_address"], phone_app.client_ip.as_str(), "{phone_row}");

    let (status, body) = json_of(revoke(&laptop_app, &laptop.access, &phone.session_id).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["message"].is_string(), "{body}");

    assert_refused(me(&phone_app, &phone.access).await, "SESSION_REVOKED", "the lost phone's access token").await;
    assert_eq!(json_of(refresh(&phone_app, &phone.refresh).await).await.0, 401, "the lost phone can still refresh");
    assert_eq!(ids(&sessions_of(&laptop_app, &laptop.access).await), [laptop.session_id.as_str()]);
    assert_error(revoke(&laptop_app, &laptop.access, &phone.session_id).await, 404, "SESSION_NOT_FOUND").await;
}

#[tokio::test]
async fn nobody_can_revoke_a_session_that_is_not_theirs() {
    let app = spawn_app().await;
    let mallory = new_user(&app).await;
    let alice = new_user(&app).await;

    for target in [alice.session_id.as_str(), &random_uuid(), "not-a-session-id"] {
        assert_error(revoke(&app, &mallory.access, target).await, 404, "SESSION_NOT_FOUND").await;
    }

    me_ok(&app, &alice.access).await;
    refreshed(&app, &alice).await;
}

#[tokio::test]
async fn logging_out_ends_only_the_session_it_is_sent_from() {
    let app = spawn_app().await;
    let desktop = new_user(&app).await;
    let tablet =
        sign_in(&app, &desktop.destination, json!({ "install_id": random_uuid(), "platform": "ipados" })).await;

    let (status, body) = json_of(logout(&app, &desktop.access).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["message"].is_string(), "{body}");

    assert_refused(me(&app, &desktop.access).await, "SESSION_REVOKED", "after logout").await;
    assert_refused(logout(&app, &desktop.access).await, "SESSION_REVOKED", "logging out twice").await;
    assert_eq!(json_of(refresh(&app, &desktop.refresh).await).await.0, 401, "the logged-out refresh token still works");
    assert_eq!(ids(&sessions_of(&app, &tablet.access).await), [tablet.session_id.as_str()]);
    refreshed(&app, &tablet).await;
}

#[tokio::test]
async fn disabling_an_account_ends_every_session_of_it_at_once() {
    let laptop_app = spawn_app().await;
    let mut phone_app = laptop_app.clone();
    phone_app.client_ip = random_ip();
    let laptop = new_user(&laptop_app).await;
    let phone =
        sign_in(&phone_app, &laptop.destination, json!({ "install_id": random_uuid(), "platform": "android" })).await;
    let bystander = new_user(&laptop_app).await;
    me_ok(&laptop_app, &laptop.access).await;

    // An operator disables the account: `wrangler d1 execute`, today's only way.
    let user = sql_str(&laptop.user_id);
    laptop_app.d1(&format!("UPDATE users SET status = 'disabled', updated_at = {} WHERE id = {user}", now_ms())).await;

    for (app, session) in [(&laptop_app, &laptop), (&phone_app, &phone)] {
        assert_refused(me(app, &session.access).await, "SESSION_REVOKED", "an access token of the disabled account")
            .await;
        assert_refused(refresh(app, &session.refresh).await, "SESSION_REVOKED", "refresh of the disabled account")
            .await;
    }
    let reasons = laptop_app.d1(&format!("SELECT revoked_reason FROM sessions WHERE user_id = {user}")).await;
    assert_eq!(reasons, vec![json!({ "revoked_reason": "account_disabled" }); 2], "its sessions were revoked");

    // Ended, not hidden: enabling the account again does not revive them.
    laptop_app.d1(&format!("UPDATE users SET status = 'active', updated_at = {} WHERE id = {user}", now_ms())).await;
    for (app, session) in [(&laptop_app, &laptop), (&phone_app, &phone)] {
        assert_refused(me(app, &session.access).await, "SESSION_REVOKED", "after enabling the account again").await;
        assert_refused(refresh(app, &session.refresh).await, "SESSION_REVOKED", "after enabling it again").await;
    }
    // Other accounts are untouched.
    refreshed(&laptop_app, &bystander).await;
}

// ===========================================================================
// Key rotation

#[tokio::test]
async fn signing_keys_rotate_without_signing_anyone_out() {
    assert_eq!(SIGNING_WITH_B_ACCEPTING_A.vars[0].1, format!("{TEST_KEY_B},{TEST_KEY_A}"));
    let (kid_a, _) = test_key(TEST_KEY_A);
    let (kid_b, _) = test_key(TEST_KEY_B);
    let state = WorkerState::new("sessions-key-rotation").await;

    // Signed in while the Worker signs with key A. Each start has another
    // port, so the issuer is fixed here (it is the Worker's URL by default).
    let app = state.start(SIGNING_WITH_A).await;
    let user = new_user(&app).await;
    assert_eq!(parse_jwt(&user.access).header["kid"], kid_a);
    app.worker.stop().await;

    // Key B added in front: B signs, A still verifies.
    let app = state.start(SIGNING_WITH_B_ACCEPTING_A).await;
    assert_eq!(me_ok(&app, &user.access).await["id"], user.user_id.as_str(), "the key-A token after adding B");
    let (_, keys) = jwks(&app).await;
    let mut published = kids(&keys);
    published.sort();
    assert_eq!(published, [kid_a, kid_b]);
    let renewed = refreshed(&app, &user).await;
    assert_eq!(verify_with_jwks(&renewed.access, &keys).header["kid"], kid_b);
    me_ok(&app, &renewed.access).await;
    app.worker.stop().await;

    // Key A dropped: its tokens are unknown, key B's keep working.
    let app = state.start(SIGNING_WITH_B_ONLY).await;
    assert_refused(me(&app, &user.access).await, "TOKEN_KEY_UNKNOWN", "the key-A token after dropping A").await;
    assert_eq!(me_ok(&app, &renewed.access).await["id"], user.user_id.as_str());
    assert_eq!(kids(&jwks(&app).await.1), [kid_b]);
    app.worker.stop().await;
}

// ===========================================================================
// How long signing in takes

/// Not a pass/fail bound: prints the time of the verify call that turns a
/// login code into tokens, under `wrangler dev` on this machine.
#[tokio::test]
async fn twenty_users_sign_in_one_after_another() {
    const USERS: usize = 20;
    let app = spawn_app().await;
    let emails: Vec<String> = (0..USERS).map(|_| random_email()).collect();
    let now = now_ms();
    let rows: Vec<String> = emails
        .iter()
        .map(|e| format!("('{}', '{}', '{e}', 'active', 0, 0, {now}, {now})", random_uuid(), unique_username()))
        .collect();
    app.d1(&format!(
        "INSERT INTO users (id, username, email, status, email_verified, phone_verified, created_at, updated_at) VALUES {}",
        rows.join(", ")
    ))
    .await;

    let mut millis = Vec::new();
    for email in &emails {
        let otp = app.otp_for(email, "login").await;
        let started = Instant::now();
        let (status, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!((status, &body["user"]["email"]), (200, &json!(email)), "{body}");
        assert!(body["access"].is_string() && body["refresh"].is_string(), "{body}");
    }

    millis.sort_by(f64::total_cmp);
    let p95 = millis[(USERS * 95).div_ceil(100) - 1];
    eprintln!(
        "verify -> tokens, {USERS} sequential logins under wrangler dev: min {:.1} ms, median {:.1} ms, p95 {p95:.1} ms, max {:.1} ms",
        millis[0],
        (millis[USERS / 2 - 1] + millis[USERS / 2]) / 2.0,
        millis[USERS - 1]
    );
}
