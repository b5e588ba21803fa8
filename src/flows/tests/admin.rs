//! The admin API's rules, natively: service tokens and their scopes, each
//! action and its audit event (naming the token's id, never the token),
//! disabling that ends every session, unknown users, and the script that
//! mints tokens.

use super::{refusal, run, World};
use crate::domain::admin::Scope;
use crate::domain::crypto::{hex, sha256};
use crate::domain::destination::Destination;
use crate::flows::admin::{self, Actor};
use crate::flows::{account, App};
use crate::http::ApiError;
use crate::store::admin::UserKey;

const IP: &str = "203.0.113.70";
const OPS: &str = "oea_ops-0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
const SUPPORT: &str = "oea_support-0123456789abcdefghijklmnopqrstuvwxyzAB";

fn entry(id: &str, scopes: &str, token: &str) -> String {
    format!("{id}:{scopes}:{}", hex(&sha256(token.as_bytes())))
}

/// A deployment with two tokens: `ops` may do everything, `support` only read users.
fn world() -> World {
    let tokens = [
        entry("ops", "users:read users:write sessions:write audit:read", OPS),
        entry("support", "users:read", SUPPORT),
    ]
    .join("\n");
    World::with(&[("ADMIN_API_TOKENS", &tokens)])
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn actor(app: &App, token: &str, scope: Scope) -> Actor {
    admin::authorize(app, Some(&bearer(token)), scope).expect("authorized")
}

/// Runs an admin action as one request with `token`, then stores its audit trail.
async fn as_admin<T>(w: &World, token: &str, scope: Scope, work: impl AsyncFnOnce(&App, &Actor) -> T) -> T {
    let app = w.app(IP);
    let actor = actor(&app, token, scope);
    let out = work(&app, &actor).await;
    app.store_trail();
    w.fakes.run_later().await;
    out
}

/// The stored admin events, oldest first: `(event, outcome, actor, user_id)`.
fn admin_events(w: &World) -> Vec<(String, String, Option<String>, Option<String>)> {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    w.rows("SELECT event, outcome, actor, user_id FROM audit_events WHERE event LIKE 'admin_%' ORDER BY id")
        .iter()
        .map(|r| (text(&r["event"]).unwrap(), text(&r["outcome"]).unwrap(), text(&r["actor"]), text(&r["user_id"])))
        .collect()
}

fn event(
    name: &str,
    outcome: &str,
    actor: Option<&str>,
    user: Option<&str>,
) -> (String, String, Option<String>, Option<String>) {
    (name.into(), outcome.into(), actor.map(str::to_string), user.map(str::to_string))
}

/// Whether the service still accepts this access token (else it must be SESSION_REVOKED).
async fn accepted(w: &World, access: &str) -> bool {
    match account::authenticate(&w.app(IP), Some(&bearer(access))).await {
        Ok(_) => true,
        Err(e) => {
            assert_eq!(ApiError::from(e).code, "SESSION_REVOKED");
            false
        }
    }
}

fn no_secret_in_the_trail(w: &World) {
    let dump = serde_json::to_string(&w.rows("SELECT * FROM audit_events")).unwrap();
    for secret in [OPS, SUPPORT, &hex(&sha256(OPS.as_bytes())), &hex(&sha256(SUPPORT.as_bytes()))] {
        assert!(!dump.contains(secret), "the audit trail holds a token or its hash");
    }
}

#[test]
fn a_token_is_allowed_its_scopes_only_and_every_refusal_is_recorded() {
    run(async {
        let w = world();
        let app = w.app(IP);
        for scope in Scope::ALL {
            assert_eq!(actor(&app, OPS, scope).name(), "admin:ops");
        }
        assert_eq!(actor(&app, SUPPORT, Scope::UsersRead).name(), "admin:support");
        let any_case = admin::authorize(&app, Some(&format!(" bEaReR  {SUPPORT} ")), Scope::UsersRead);
        assert_eq!(any_case.unwrap().name(), "admin:support", "RFC 6750 2.1: the scheme in any case");

        let refused = |header: Option<&str>, scope| {
            let e: ApiError = admin::authorize(&app, header, scope).expect_err("refused").into();
            (e.status, e.code, e.www_authenticate)
        };
        assert_eq!(refused(None, Scope::UsersRead), (401, "NOT_AUTHENTICATED", Some("Bearer")));
        let invalid = (401, "ADMIN_TOKEN_INVALID", Some("Bearer error=\"invalid_token\""));
        for header in ["", "Bearer", "Basic b3BzOnB3", OPS, &bearer("oea_unknown"), &bearer(&OPS[..OPS.len() - 1])] {
            assert_eq!(refused(Some(header), Scope::UsersRead), invalid, "{header:?}");
        }
        // The hash is what the secret holds; presented, it is no token.
        assert_eq!(refused(Some(&bearer(&hex(&sha256(OPS.as_bytes())))), Scope::UsersRead), invalid);
        for scope in [Scope::UsersWrite, Scope::SessionsWrite, Scope::AuditRead] {
            assert_eq!(refused(Some(&bearer(SUPPORT)), scope), (403, "INSUFFICIENT_SCOPE", Some(scope.challenge())));
        }
        app.store_trail();
        w.fakes.run_later().await;

        let denied: Vec<_> = admin_events(&w).into_iter().map(|(e, outcome, actor, _)| (e, outcome, actor)).collect();
        let mut expected = vec![("admin_denied".to_string(), "no_token".to_string(), None)];
        expected.extend((0..7).map(|_| ("admin_denied".into(), "invalid_token".into(), None)));
        expected
            .extend((0..3).map(|_| ("admin_denied".into(), "insufficient_scope".into(), Some("admin:support".into()))));
        assert_eq!(denied, expected, "granted checks record nothing; each refusal one event");
        no_secret_in_the_trail(&w);
    })
}

#[test]
fn without_admin_api_tokens_every_token_is_refused_with_401() {
    run(async {
        let w = World::new();
        let e: ApiError = admin::authorize(&w.app(IP), Some(&bearer(OPS)), Scope::UsersRead).unwrap_err().into();
        assert_eq!((e.status, e.code), (401, "ADMIN_TOKEN_INVALID"));
    })
}

#[test]
fn a_user_is_found_by_id_email_or_phone_unmasked_and_each_lookup_is_recorded() {
    run(async {
        let w = world();
        let ana = w.seed_user("ana@example.com", "active");
        let phone_user = w.seed_user("+15550107777", "active");
        w.logged_in(IP, "ana@example.com").await;
        w.logged_in(IP, "ana@example.com").await;

        let by_id =
            as_admin(&w, SUPPORT, Scope::UsersRead, async |app, a| admin::user(app, a, UserKey::Id(&ana)).await)
                .await
                .unwrap();
        assert_eq!(
            (by_id.id.as_str(), by_id.email.as_deref(), by_id.phone.as_deref()),
            (ana.as_str(), Some("ana@example.com"), None)
        );
        assert_eq!((by_id.status.as_str(), by_id.live_sessions, by_id.email_verified), ("active", 2, true));
        assert_eq!(by_id.created_at, crate::domain::time::rfc3339_millis(crate::native::T0));

        // Normalized as a login normalizes: case and spaces of an email, punctuation of a phone.
        let email = Destination::parse("  ANA@Example.com ").unwrap();
        let found = as_admin(&w, SUPPORT, Scope::UsersRead, async |app, a| {
            admin::user(app, a, UserKey::Destination(&email)).await
        })
        .await
        .unwrap();
        assert_eq!(found.id, ana);
        let phone = Destination::parse("+1 (555) 010-7777").unwrap();
        let found = as_admin(&w, SUPPORT, Scope::UsersRead, async |app, a| {
            admin::user(app, a, UserKey::Destination(&phone)).await
        })
        .await
        .unwrap();
        assert_eq!((found.id.as_str(), found.phone.as_deref()), (phone_user.as_str(), Some("+15550107777")));
        let nobody = Destination::parse("nobody@example.com").unwrap();
        let missing = as_admin(&w, SUPPORT, Scope::UsersRead, async |app, a| {
            admin::user(app, a, UserKey::Destination(&nobody)).await
        })
        .await;
        assert_eq!(refusal(missing), (404, "USER_NOT_FOUND", "No user has this id, email or phone".into()));

        let support = Some("admin:support");
        assert_eq!(
            admin_events(&w),
            [
                event("admin_user_viewed", "ok", support, Some(&ana)),
                event("admin_user_viewed", "ok", support, Some(&ana)),
                event("admin_user_viewed", "ok", support, Some(&phone_user)),
                event("admin_user_viewed", "not_found", support, None),
            ]
        );
        // A lookup names what was looked for, masked, as every event does.
        let looked_for = w.rows("SELECT destination FROM audit_events WHERE event = 'admin_user_viewed' ORDER BY id");
        let looked_for: Vec<_> = looked_for.iter().map(|r| r["destination"].as_str()).collect();
        assert_eq!(looked_for, [None, Some("a*a@example.com"), Some("+15******777"), Some("n****y@example.com")]);
        no_secret_in_the_trail(&w);
    })
}

#[test]
fn disabling_ends_every_session_for_good_and_enabling_lets_the_user_sign_in_anew() {
    run(async {
        let w = world();
        let user = w.seed_user("bo@example.com", "active");
        w.seed_user("cy@example.com", "active");
        let (laptop, phone) = (w.logged_in(IP, "bo@example.com").await, w.logged_in(IP, "bo@example.com").await);
        let bystander = w.logged_in(IP, "cy@example.com").await;
        w.fakes.clock.advance(5_000);

        let app = w.app(IP);
        let ops = actor(&app, OPS, Scope::UsersWrite);
        w.fakes.trips.reset();
        let disabled = admin::disable(&app, &ops, &user).await.unwrap();
        assert_eq!(w.fakes.trips.figures().0, 2, "the user, then one transaction");
        app.store_trail();
        w.fakes.run_later().await;
        assert_eq!((disabled.status.as_str(), disabled.live_sessions), ("disabled", 0));
        assert_eq!(disabled.updated_at, crate::domain::time::rfc3339_millis(crate::native::T0 + 5_000));
        for s in [&laptop, &phone] {
            assert!(!accepted(&w, &s.access).await, "an access token of the disabled account");
            assert!(crate::flows::refresh::refresh(&w.app(IP), &s.refresh).await.is_err());
        }
        assert!(accepted(&w, &bystander.access).await, "another account is untouched");
        let reasons = w.rows(&format!("SELECT revoked_reason FROM sessions WHERE user_id = '{user}'"));
        assert!(reasons.iter().all(|r| r["revoked_reason"] == "account_disabled"), "{reasons:?}");
        let again = as_admin(&w, OPS, Scope::UsersWrite, async |app, a| admin::disable(app, a, &user).await).await;
        assert_eq!(again.unwrap().status, "disabled", "disabling twice changes nothing");

        let enabled =
            as_admin(&w, OPS, Scope::UsersWrite, async |app, a| admin::enable(app, a, &user).await).await.unwrap();
        assert_eq!((enabled.status.as_str(), enabled.live_sessions), ("active", 0));
        assert!(!accepted(&w, &laptop.access).await, "enabling brings no session back");
        let fresh = w.logged_in(IP, "bo@example.com").await;
        assert!(accepted(&w, &fresh.access).await, "the user signs in anew");
        let again = as_admin(&w, OPS, Scope::UsersWrite, async |app, a| admin::enable(app, a, &user).await).await;
        assert_eq!(again.unwrap().live_sessions, 1);

        let ops = Some("admin:ops");
        assert_eq!(
            admin_events(&w),
            [
                event("admin_user_disabled", "ok", ops, Some(&user)),
                event("admin_user_disabled", "unchanged", ops, Some(&user)),
                event("admin_user_enabled", "ok", ops, Some(&user)),
                event("admin_user_enabled", "unchanged", ops, Some(&user)),
            ]
        );
        no_secret_in_the_trail(&w);
    })
}

#[test]
fn revoking_a_users_sessions_ends_its_live_ones_and_no_one_elses() {
    run(async {
        let w = world();
        let user = w.seed_user("di@example.com", "active");
        w.seed_user("ed@example.com", "active");
        let (a, b) = (w.logged_in(IP, "di@example.com").await, w.logged_in(IP, "di@example.com").await);
        let gone = w.logged_in(IP, "di@example.com").await;
        let app = w.app(IP);
        account::logout(&app, &account::authenticate(&app, Some(&bearer(&gone.access))).await.unwrap()).await.unwrap();
        let bystander = w.logged_in(IP, "ed@example.com").await;

        let out = as_admin(&w, OPS, Scope::SessionsWrite, async |app, ac| admin::revoke_sessions(app, ac, &user).await)
            .await
            .unwrap();

        assert_eq!(out.revoked, 2, "the two live ones; the logged-out one is not counted");
        for s in [&a, &b] {
            assert!(!accepted(&w, &s.access).await);
        }
        assert!(accepted(&w, &bystander.access).await);
        let reasons = w.rows(&format!("SELECT revoked_reason AS r FROM sessions WHERE user_id = '{user}' ORDER BY 1"));
        let reasons: Vec<_> = reasons.iter().map(|r| r["r"].as_str().unwrap()).collect();
        assert_eq!(reasons, ["logout", "revoked_by_admin", "revoked_by_admin"]);
        let looked_up =
            as_admin(&w, SUPPORT, Scope::UsersRead, async |app, a| admin::user(app, a, UserKey::Id(&user)).await);
        assert_eq!((looked_up.await.unwrap().status.as_str()), "active", "the account stays active");
        assert_eq!(admin_events(&w)[0], event("admin_sessions_revoked", "ok", Some("admin:ops"), Some(&user)));
    })
}

#[test]
fn a_users_events_come_newest_first_bounded_and_name_the_actor() {
    run(async {
        let w = world();
        let user = w.seed_user("flo@example.com", "active");
        w.seed_user("gus@example.com", "active");
        w.logged_in(IP, "flo@example.com").await;
        w.logged_in(IP, "gus@example.com").await;
        w.fakes.clock.advance(1_000);
        as_admin(&w, OPS, Scope::SessionsWrite, async |app, a| admin::revoke_sessions(app, a, &user).await)
            .await
            .unwrap();
        w.fakes.clock.advance(1_000);

        let listed = as_admin(&w, OPS, Scope::AuditRead, async |app, a| admin::events(app, a, &user, 50).await)
            .await
            .unwrap()
            .events;

        let names: Vec<&str> = listed.iter().map(|e| e.event.as_ref()).collect();
        assert_eq!(
            names,
            ["admin_sessions_revoked", "session_created", "otp_verified", "otp_delivered", "otp_requested"]
        );
        assert!(listed.windows(2).all(|p| p[0].at_ms >= p[1].at_ms), "newest first");
        assert!(listed.iter().all(|e| e.user_id.as_deref() == Some(user.as_str())), "only this user's");
        assert_eq!(listed[0].actor.as_deref(), Some("admin:ops"));
        assert!(listed[1..].iter().all(|e| e.actor.is_none()), "the user's own events name no actor");
        assert_eq!(listed[4].destination.as_deref(), Some("f*o@example.com"), "destinations stay masked");

        let two = as_admin(&w, OPS, Scope::AuditRead, async |app, a| admin::events(app, a, &user, 2).await).await;
        let two: Vec<String> = two.unwrap().events.into_iter().map(|e| e.event.into_owned()).collect();
        assert_eq!(two, ["admin_events_listed", "admin_sessions_revoked"], "the listing itself is an event");
        let dump = serde_json::to_string(&listed).unwrap();
        assert!(!dump.contains("flo@example.com") && !dump.contains(IP), "{dump}");
        no_secret_in_the_trail(&w);
    })
}

#[test]
fn an_action_on_an_unknown_user_is_404_and_recorded() {
    run(async {
        let w = world();
        let nobody = "00000000-0000-4000-8000-000000000000";
        let not_found = (404, "USER_NOT_FOUND", "No user has this id, email or phone".to_string());
        let r = as_admin(&w, OPS, Scope::UsersRead, async |app, a| admin::user(app, a, UserKey::Id(nobody)).await);
        assert_eq!(refusal(r.await), not_found);
        let r = as_admin(&w, OPS, Scope::UsersWrite, async |app, a| admin::disable(app, a, nobody).await);
        assert_eq!(refusal(r.await), not_found);
        let r = as_admin(&w, OPS, Scope::UsersWrite, async |app, a| admin::enable(app, a, nobody).await);
        assert_eq!(refusal(r.await), not_found);
        let r = as_admin(&w, OPS, Scope::SessionsWrite, async |app, a| admin::revoke_sessions(app, a, nobody).await);
        assert_eq!(refusal(r.await), not_found);
        let r = as_admin(&w, OPS, Scope::AuditRead, async |app, a| admin::events(app, a, nobody, 10).await);
        assert_eq!(refusal(r.await), not_found);
        let outcomes: Vec<_> = admin_events(&w).into_iter().map(|(e, o, a, u)| (e, o, a.unwrap(), u)).collect();
        let expected: Vec<_> = [
            "admin_user_viewed",
            "admin_user_disabled",
            "admin_user_enabled",
            "admin_sessions_revoked",
            "admin_events_listed",
        ]
        .into_iter()
        .map(|e| (e.to_string(), "not_found".to_string(), "admin:ops".to_string(), None))
        .collect();
        assert_eq!(outcomes, expected, "stored without a user id: there is no such user");
    })
}

#[test]
fn the_script_mints_a_256_bit_token_whose_entry_admits_it_once_shown() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/admin-token.sh");
    let out = std::process::Command::new(&script).args(["support", "users:read", "audit:read"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = |label: &str| {
        let found = stdout.lines().find_map(|l| l.strip_prefix(label));
        found.unwrap_or_else(|| panic!("no {label:?} line in {stdout}")).to_string()
    };
    let (token, entry) = (line("token: "), line("entry: "));
    // `oea_` and 32 bytes in base64url without padding.
    assert_eq!(token.len(), 4 + 43, "{token}");
    assert!(token.starts_with("oea_") && token[4..].bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)));
    assert!(!entry.contains(&token), "the entry holds the token's hash, not the token");
    let tokens = crate::domain::admin::parse_tokens(&entry).unwrap();
    let found = crate::domain::admin::find(&tokens, &token).expect("the entry admits its token");
    assert_eq!(found.id, "support");
    let scopes: Vec<Scope> = Scope::ALL.into_iter().filter(|s| found.allows(*s)).collect();
    assert_eq!(scopes, [Scope::UsersRead, Scope::AuditRead]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(&token), "the token is shown once");

    let second = std::process::Command::new(&script).args(["support", "users:read"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&second.stdout).contains(&token), "each run mints a new token");
    for bad in [&["support"][..], &["sup port", "users:read"], &["support", "users:admin"], &[]] {
        let refused = std::process::Command::new(&script).args(bad).output().unwrap();
        assert!(!refused.status.success() && refused.stdout.is_empty(), "{bad:?}");
    }
}
