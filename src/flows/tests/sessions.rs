//! The signed-in user's endpoints: authentication with the access token
//! (every refusal), `me`, the sessions list with devices, revoking one
//! session, and logout.

use base64ct::{Base64UrlUnpadded, Encoding};

use super::{refusal, run, World};
use crate::config::SigningKeySeed;
use crate::domain::account::Device as DeviceInput;
use crate::domain::otp::Purpose;
use crate::domain::tokens::Keys;
use crate::flows::account::{self, Principal};
use crate::flows::otp_verify::Verified;
use crate::flows::session::LoggedIn;

const IP: &str = "203.0.113.40";
const OTHER_IP: &str = "198.51.100.41";

/// A flow's answer (the error type is the harness's).
type Answer<T> = Result<T, super::Error>;

fn device(install_id: &str, platform: &str, app_version: &str) -> DeviceInput {
    DeviceInput {
        install_id: Some(install_id.to_string()),
        platform: Some(platform.to_string()),
        app_version: Some(app_version.to_string()),
    }
}

/// Logs the user of `destination` in from `ip` with `device`.
async fn login(w: &World, ip: &str, destination: &str, device: DeviceInput) -> LoggedIn {
    let (otp_id, code) = w.code_for(ip, destination, Purpose::Login).await;
    match w.verify_from(ip, &otp_id, &code, device).await {
        Ok(Verified::Login(logged_in)) => logged_in,
        other => panic!("{destination} not logged in: {other:?}"),
    }
}

async fn authenticate(w: &World, authorization: Option<&str>) -> Answer<Principal> {
    account::authenticate(&w.app(IP), authorization).await
}

/// The session id behind an access token, if the service accepts it.
async fn session_of(w: &World, access: &str) -> Answer<String> {
    authenticate(w, Some(&format!("Bearer {access}"))).await.map(|who| who.session_id)
}

async fn who(w: &World, access: &str) -> Principal {
    authenticate(w, Some(&format!("Bearer {access}"))).await.unwrap_or_else(|e| panic!("not authenticated: {e:?}"))
}

async fn sessions(w: &World, access: &str) -> Vec<account::SessionView> {
    let who = who(w, access).await;
    account::sessions(&w.app(IP), &who).await.expect("the sessions list").sessions
}

async fn revoke(w: &World, access: &str, session_id: &str) -> Answer<&'static str> {
    let who = who(w, access).await;
    let app = w.app(IP);
    let result = account::revoke(&app, &who, session_id).await.map(|done| done.message);
    app.store_trail();
    result
}

async fn refresh(w: &World, token: &str) -> Answer<String> {
    crate::flows::refresh::refresh(&w.app(IP), token).await.map(|pair| pair.session_id)
}

/// An access token for `session` signed by other keys, or with other claims.
fn forged(w: &World, logged_in: &LoggedIn) -> Vec<(&'static str, String)> {
    let (user, sid, now) = (&logged_in.user.id, &logged_in.session_id, w.fakes.clock.0.get());
    let other_keys = |kid: &str| Keys::from_seeds(&[SigningKeySeed { kid: kid.to_string(), seed: [9; 32] }]);
    let same_kid = other_keys("k1").issue_access(&w.config.tokens, user, sid, "jti", now);
    let unknown_kid = other_keys("k2").issue_access(&w.config.tokens, user, sid, "jti", now);
    let mut elsewhere = w.config.tokens.clone();
    elsewhere.audience = "billing".to_string();
    let other_audience = w.keys.issue_access(&elsewhere, user, sid, "jti", now);

    let [header, payload, signature]: [&str; 3] =
        logged_in.access.split('.').collect::<Vec<_>>().try_into().expect("three parts");
    let header_with =
        |alg: &str| Base64UrlUnpadded::encode_string(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#).as_bytes());
    let mut claims: serde_json::Value =
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap();
    claims["sub"] = "00000000-0000-4000-8000-000000000000".into();
    let other_sub = Base64UrlUnpadded::encode_string(claims.to_string().as_bytes());

    vec![
        ("TOKEN_MALFORMED", "not-a-jwt".to_string()),
        ("TOKEN_MALFORMED", format!("{header}.{payload}")),
        ("TOKEN_MALFORMED", format!("{header}.%%%.{signature}")),
        ("TOKEN_ALGORITHM_REJECTED", format!("{}.{payload}.{signature}", header_with("none"))),
        ("TOKEN_ALGORITHM_REJECTED", format!("{}.{payload}.{signature}", header_with("HS256"))),
        ("TOKEN_KEY_UNKNOWN", unknown_kid),
        ("TOKEN_SIGNATURE_INVALID", same_kid),
        ("TOKEN_SIGNATURE_INVALID", format!("{header}.{other_sub}.{signature}")),
        ("TOKEN_CLAIMS_INVALID", other_audience),
    ]
}

#[test]
fn a_valid_access_token_of_a_live_session_authenticates_its_user() {
    run(async {
        let w = World::new();
        let user = w.seed_user("wyn@example.com", "active");
        let logged_in = login(&w, IP, "wyn@example.com", DeviceInput::default()).await;

        for header in [format!("Bearer {}", logged_in.access), format!("  bearer   {}  ", logged_in.access)] {
            let principal = authenticate(&w, Some(&header)).await.expect("authenticated");
            assert_eq!(
                (principal.user_id.as_str(), principal.session_id.as_str()),
                (user.as_str(), &*logged_in.session_id)
            );
        }
        let me = account::me(&who(&w, &logged_in.access).await);
        assert_eq!((me.id.as_str(), me.email.as_deref()), (user.as_str(), Some("wyn@example.com")));
        assert!(me.email_verified, "the login proved the address");
    })
}

#[test]
fn a_missing_authorization_header_is_not_authenticated() {
    run(async {
        let w = World::new();

        let (status, code, _) = refusal(authenticate(&w, None).await.map(|who| who.session_id));

        assert_eq!((status, code), (401, "NOT_AUTHENTICATED"));
    })
}

#[test]
fn an_authorization_header_that_is_not_bearer_is_malformed() {
    run(async {
        let w = World::new();
        w.seed_user("xia@example.com", "active");
        let logged_in = login(&w, IP, "xia@example.com", DeviceInput::default()).await;

        let headers = [
            format!("Basic {}", logged_in.access),
            format!("Token {}", logged_in.access),
            logged_in.access.clone(),
            "Bearer".to_string(),
            "Bearer    ".to_string(),
            String::new(),
        ];
        for header in headers {
            let (status, code, _) = refusal(authenticate(&w, Some(&header)).await.map(|who| who.session_id));
            assert_eq!((status, code), (401, "TOKEN_MALFORMED"), "{header:?}");
        }
    })
}

#[test]
fn a_forged_or_garbled_access_token_is_refused_with_its_error_code() {
    run(async {
        let w = World::new();
        w.seed_user("yul@example.com", "active");
        let logged_in = login(&w, IP, "yul@example.com", DeviceInput::default()).await;

        for (expected, token) in forged(&w, &logged_in) {
            let (status, code, _) = refusal(session_of(&w, &token).await);
            assert_eq!((status, code), (401, expected), "{token}");
        }
        assert_eq!(session_of(&w, &logged_in.access).await.unwrap(), logged_in.session_id, "the real one still works");
    })
}

#[test]
fn an_access_token_past_its_lifetime_is_expired() {
    run(async {
        let w = World::new();
        w.seed_user("zed@example.com", "active");
        let logged_in = login(&w, IP, "zed@example.com", DeviceInput::default()).await;

        w.fakes.clock.advance(299_999);
        assert!(session_of(&w, &logged_in.access).await.is_ok(), "within 300 s");
        w.fakes.clock.advance(2);
        let (status, code, _) = refusal(session_of(&w, &logged_in.access).await);

        assert_eq!((status, code), (401, "TOKEN_EXPIRED"));
    })
}

#[test]
fn the_access_token_of_a_revoked_session_is_refused_at_once() {
    run(async {
        let w = World::new();
        w.seed_user("abe@example.com", "active");
        let logged_in = login(&w, IP, "abe@example.com", DeviceInput::default()).await;
        w.fakes.db.execute(&format!(
            "UPDATE sessions SET revoked_at = {}, revoked_reason = 'test' WHERE id = '{}'",
            w.fakes.clock.0.get(),
            logged_in.session_id
        ));

        let (status, code, _) = refusal(session_of(&w, &logged_in.access).await);

        assert_eq!((status, code), (401, "SESSION_REVOKED"), "well within the token's 300 s");
    })
}

#[test]
fn the_sessions_list_shows_every_live_session_its_device_and_which_is_current() {
    run(async {
        let w = World::new();
        w.seed_user("bea@example.com", "active");
        let phone = login(&w, IP, "bea@example.com", device("ios-install-1", "ios", "1.4.0")).await;
        w.fakes.clock.advance(1_000);
        let tablet = login(&w, OTHER_IP, "bea@example.com", device("android-install-7", "android", "2.0.1")).await;
        w.fakes.clock.advance(1_000);
        let browser = login(&w, IP, "bea@example.com", DeviceInput::default()).await;
        let stranger = w.seed_user("cal@example.com", "active");
        login(&w, IP, "cal@example.com", device("ios-install-1", "ios", "9.9.9")).await;

        let listed = sessions(&w, &tablet.access).await;

        let ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, [&*browser.session_id, &*tablet.session_id, &*phone.session_id], "newest first, only hers");
        let current: Vec<bool> = listed.iter().map(|s| s.current).collect();
        assert_eq!(current, [false, true, false]);
        let (b, t, p) = (&listed[0], &listed[1], &listed[2]);
        let dev = t.device.as_ref().expect("the tablet's device");
        assert_eq!(
            (dev.install_id.as_str(), dev.platform.as_deref(), dev.app_version.as_deref()),
            ("android-install-7", Some("android"), Some("2.0.1"))
        );
        assert_eq!(
            (t.platform.as_str(), t.ip_address.as_str(), t.user_agent.as_str()),
            ("android", OTHER_IP, "native-test")
        );
        let dev = p.device.as_ref().expect("the phone's device");
        assert_eq!(
            (dev.install_id.as_str(), dev.app_version.as_deref()),
            ("ios-install-1", Some("1.4.0")),
            "not cal's"
        );
        assert_eq!((p.platform.as_str(), p.ip_address.as_str()), ("ios", IP));
        assert!(b.device.is_none(), "no install named");
        assert_eq!(b.platform, "web");
        assert_eq!(p.created_at, "2026-12-01T00:00:00.000Z");
        assert_eq!(p.last_used_at, p.created_at);
        assert_eq!(p.expires_at, "2026-12-31T00:00:00.000Z", "30 days");
        assert_eq!(
            sessions(&w, &phone.access).await.iter().filter(|s| s.current).map(|s| &s.id).collect::<Vec<_>>(),
            [&phone.session_id]
        );
        assert_eq!(w.rows(&format!("SELECT id FROM devices WHERE user_id = '{stranger}'")).len(), 1);
    })
}

#[test]
fn the_same_install_logging_in_twice_keeps_one_device_with_its_newest_app_version() {
    run(async {
        let w = World::new();
        let user = w.seed_user("dot@example.com", "active");
        let first = login(&w, IP, "dot@example.com", device("install-42", "android", "3.0.0")).await;
        w.fakes.clock.advance(60_000);
        let second = login(&w, IP, "dot@example.com", device("install-42", "android", "3.1.0")).await;

        let devices =
            w.rows(&format!("SELECT id, app_version, created_at, last_seen_at FROM devices WHERE user_id = '{user}'"));
        assert_eq!(devices.len(), 1, "{devices:?}");
        assert_eq!(devices[0]["app_version"], "3.1.0");
        assert_eq!(devices[0]["created_at"], crate::native::T0);
        assert_eq!(devices[0]["last_seen_at"], crate::native::T0 + 60_000);
        let linked = w.rows("SELECT DISTINCT device_id FROM sessions");
        assert_eq!(linked, [serde_json::json!({ "device_id": devices[0]["id"] })], "both sessions on the one device");

        let listed = sessions(&w, &second.access).await;
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().any(|s| s.id == first.session_id && !s.current));
        for s in &listed {
            let dev = s.device.as_ref().expect("the device");
            assert_eq!((dev.install_id.as_str(), dev.app_version.as_deref()), ("install-42", Some("3.1.0")));
        }
    })
}

#[test]
fn revoking_another_users_or_an_unknown_session_is_not_found() {
    run(async {
        let w = World::new();
        w.seed_user("eli@example.com", "active");
        w.seed_user("flo@example.com", "active");
        let eli = login(&w, IP, "eli@example.com", DeviceInput::default()).await;
        let flo = login(&w, IP, "flo@example.com", DeviceInput::default()).await;

        for id in [flo.session_id.as_str(), "00000000-0000-4000-8000-000000000000", "not-an-id"] {
            let (status, code, _) = refusal(revoke(&w, &eli.access, id).await);
            assert_eq!((status, code), (404, "SESSION_NOT_FOUND"), "{id}");
        }
        assert_eq!(session_of(&w, &flo.access).await.unwrap(), flo.session_id, "flo's session lives on");
        assert!(w.rows("SELECT id FROM sessions WHERE revoked_at IS NOT NULL").is_empty());
        w.fakes.run_later().await;
        assert!(!w.events().iter().any(|(event, _)| event == "session_revoked"));
    })
}

#[test]
fn revoking_one_of_my_sessions_ends_it_and_is_audited() {
    run(async {
        let w = World::new();
        let user = w.seed_user("gil@example.com", "active");
        let laptop = login(&w, IP, "gil@example.com", device("laptop", "web", "1")).await;
        let lost_phone = login(&w, OTHER_IP, "gil@example.com", device("phone", "ios", "1")).await;
        w.fakes.clock.advance(5_000);

        assert_eq!(revoke(&w, &laptop.access, &lost_phone.session_id).await.unwrap(), "Session revoked");

        assert_eq!(refusal(session_of(&w, &lost_phone.access).await).1, "SESSION_REVOKED");
        assert_eq!(refusal(refresh(&w, &lost_phone.refresh).await).0, 401, "the lost phone cannot refresh");
        let listed = sessions(&w, &laptop.access).await;
        assert_eq!(listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [laptop.session_id.as_str()]);
        let row = &w
            .rows(&format!("SELECT revoked_at, revoked_reason FROM sessions WHERE id = '{}'", lost_phone.session_id))
            [0];
        assert_eq!(
            (&row["revoked_at"], &row["revoked_reason"]),
            (&(crate::native::T0 + 5_000).into(), &"revoked_by_user".into())
        );
        assert_eq!(refusal(revoke(&w, &laptop.access, &lost_phone.session_id).await).1, "SESSION_NOT_FOUND", "twice");
        w.fakes.run_later().await;
        let audited =
            w.rows("SELECT event, outcome, session_id, user_id FROM audit_events WHERE event = 'session_revoked'");
        assert_eq!(audited.len(), 1, "{audited:?}");
        assert_eq!(audited[0]["outcome"], "revoked_by_user");
        assert_eq!(audited[0]["session_id"], lost_phone.session_id.as_str());
        assert_eq!(audited[0]["user_id"], user.as_str());
        assert!(refresh(&w, &laptop.refresh).await.is_ok(), "the laptop goes on");
    })
}

#[test]
fn logout_ends_the_current_session_only() {
    run(async {
        let w = World::new();
        w.seed_user("hana@example.com", "active");
        let desktop = login(&w, IP, "hana@example.com", DeviceInput::default()).await;
        let tablet = login(&w, OTHER_IP, "hana@example.com", DeviceInput::default()).await;

        let app = w.app(IP);
        let done = account::logout(&app, &who(&w, &desktop.access).await).await.expect("logged out");
        app.store_trail();

        assert_eq!(done.message, "Logged out");
        assert_eq!(refusal(session_of(&w, &desktop.access).await).1, "SESSION_REVOKED");
        assert_eq!(refusal(refresh(&w, &desktop.refresh).await).0, 401, "the logged-out refresh token is refused");
        let listed = sessions(&w, &tablet.access).await;
        assert_eq!(listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [tablet.session_id.as_str()]);
        assert!(refresh(&w, &tablet.refresh).await.is_ok(), "the tablet goes on");
        let rows = w.rows(&format!("SELECT revoked_reason FROM sessions WHERE id = '{}'", desktop.session_id));
        assert_eq!(rows[0]["revoked_reason"], "logout");
        w.fakes.run_later().await;
        assert!(w.events().contains(&("session_revoked".into(), "logout".into())));
    })
}
