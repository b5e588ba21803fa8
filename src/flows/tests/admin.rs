//! The admin API's rules, natively: service tokens and their scopes, each
//! action and its audit event (naming the token's id, never the token),
//! disabling that ends every session, unknown users, and the script that
//! mints tokens.

use super::{refusal, run, World};
use crate::audit::AuditEvent;
use crate::domain::admin::Scope;
use crate::domain::crypto::{hex, sha256};
use crate::domain::destination::Destination;
use crate::flows::admin::{self, Action, Actor, AdminUser, Answer};
use crate::flows::error::Error;
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

/// `action` on the user `key` names, as one request with `token` (holding
/// the action's scope), then stores its audit trail.
async fn act(w: &World, token: &str, key: UserKey<'_>, action: Action) -> Result<Answer, Error> {
    let app = w.app(IP);
    let actor = actor(&app, token, action.scope());
    let out = admin::act(&app, &actor, key, action).await;
    app.store_trail();
    w.fakes.run_later().await;
    out
}

/// `act`, answering the user.
async fn user_after(w: &World, token: &str, key: UserKey<'_>, action: Action) -> AdminUser {
    match act(w, token, key, action).await {
        Ok(Answer::User(user)) => user,
        other => panic!("{action:?}: {other:?}"),
    }
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
fn a_token_is_allowed_its_scopes_only_and_a_valid_tokens_refusal_is_recorded() {
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

        // A valid token's refusals are audit events; a stranger's are log lines only.
        let denied: Vec<_> = admin_events(&w).into_iter().map(|(e, outcome, actor, _)| (e, outcome, actor)).collect();
        let refusal = ("admin_denied".to_string(), "insufficient_scope".to_string(), Some("admin:support".to_string()));
        assert_eq!(denied, [refusal.clone(), refusal.clone(), refusal], "granted checks record nothing");
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

        let by_id = user_after(&w, SUPPORT, UserKey::Id(&ana), Action::View).await;
        assert_eq!(
            (by_id.user.id.as_str(), by_id.user.email.as_deref(), by_id.user.phone.as_deref()),
            (ana.as_str(), Some("ana@example.com"), None)
        );
        assert_eq!((by_id.status.as_str(), by_id.live_sessions, by_id.user.email_verified), ("active", 2, true));
        assert_eq!(by_id.created_at, crate::domain::time::rfc3339_millis(crate::native::T0));

        // Normalized as a login normalizes: case and spaces of an email, punctuation of a phone.
        let email = Destination::parse("  ANA@Example.com ").unwrap();
        let found = user_after(&w, SUPPORT, UserKey::Destination(&email), Action::View).await;
        assert_eq!(found.user.id, ana);
        let phone = Destination::parse("+1 (555) 010-7777").unwrap();
        let found = user_after(&w, SUPPORT, UserKey::Destination(&phone), Action::View).await;
        assert_eq!((found.user.id.as_str(), found.user.phone.as_deref()), (phone_user.as_str(), Some("+15550107777")));
        let nobody = Destination::parse("nobody@example.com").unwrap();
        let missing = act(&w, SUPPORT, UserKey::Destination(&nobody), Action::View).await;
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
        let Ok(Answer::User(disabled)) = admin::act(&app, &ops, UserKey::Id(&user), Action::Disable).await else {
            panic!("not disabled")
        };
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
        let again = user_after(&w, OPS, UserKey::Id(&user), Action::Disable).await;
        assert_eq!(again.status, "disabled", "disabling twice changes nothing");

        let enabled = user_after(&w, OPS, UserKey::Id(&user), Action::Enable).await;
        assert_eq!((enabled.status.as_str(), enabled.live_sessions), ("active", 0));
        assert!(!accepted(&w, &laptop.access).await, "enabling brings no session back");
        let fresh = w.logged_in(IP, "bo@example.com").await;
        assert!(accepted(&w, &fresh.access).await, "the user signs in anew");
        let again = user_after(&w, OPS, UserKey::Id(&user), Action::Enable).await;
        assert_eq!(again.live_sessions, 1);

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

        let out = act(&w, OPS, UserKey::Id(&user), Action::RevokeSessions).await;

        assert!(
            matches!(out, Ok(Answer::Revoked { revoked: 2 })),
            "the two live ones, not the logged-out one: {out:?}"
        );
        for s in [&a, &b] {
            assert!(!accepted(&w, &s.access).await);
        }
        assert!(accepted(&w, &bystander.access).await);
        let reasons = w.rows(&format!("SELECT revoked_reason AS r FROM sessions WHERE user_id = '{user}' ORDER BY 1"));
        let reasons: Vec<_> = reasons.iter().map(|r| r["r"].as_str().unwrap()).collect();
        assert_eq!(reasons, ["logout", "revoked_by_admin", "revoked_by_admin"]);
        let looked_up = user_after(&w, SUPPORT, UserKey::Id(&user), Action::View).await;
        assert_eq!(looked_up.status, "active", "the account stays active");
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
        act(&w, OPS, UserKey::Id(&user), Action::RevokeSessions).await.unwrap();
        w.fakes.clock.advance(1_000);
        // Each listed event is an audit event as the log lines show it, its absent fields null.
        let events = async |limit| match act(&w, OPS, UserKey::Id(&user), Action::Events { limit }).await {
            Ok(Answer::Events { events }) => events
                .into_iter()
                .map(|mut row| {
                    assert_eq!(row.len(), 13, "every field, null where the event has none: {row:?}");
                    row.retain(|_, v| !v.is_null());
                    let row = serde_json::Value::Object(row);
                    let event = AuditEvent::from_json(&row).unwrap_or_else(|| panic!("not an event: {row}"));
                    assert_eq!(serde_json::to_value(&event).unwrap(), row);
                    event
                })
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };

        let listed = events(50).await;

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

        let two: Vec<String> = events(2).await.into_iter().map(|e| e.event.into_owned()).collect();
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
        for action in
            [Action::View, Action::Disable, Action::Enable, Action::RevokeSessions, Action::Events { limit: 10 }]
        {
            assert_eq!(refusal(act(&w, OPS, UserKey::Id(nobody), action).await), not_found, "{action:?}");
        }
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

#[test]
fn an_admin_ending_a_users_sessions_is_a_session_revoked_webhook_naming_the_token() {
    run(async {
        let mut settings = vec![("WEBHOOK_URL", "https://hooks.acme.test/h"), ("WEBHOOK_SECRET", SECRET)];
        let tokens = entry("ops", "users:read users:write sessions:write audit:read", OPS);
        settings.push(("ADMIN_API_TOKENS", &tokens));
        let w = World::with(&settings);
        let user = w.seed_user("ivo@example.com", "active");
        w.logged_in(IP, "ivo@example.com").await;
        w.fakes.run_later().await;
        w.fakes.hooks.take();

        act(&w, OPS, UserKey::Id(&user), Action::RevokeSessions).await.unwrap();
        act(&w, OPS, UserKey::Id(&user), Action::View).await.unwrap();
        act(&w, OPS, UserKey::Id(&user), Action::Disable).await.unwrap();
        act(&w, OPS, UserKey::Id(&user), Action::Disable).await.unwrap();

        let bodies: Vec<serde_json::Value> = w
            .fakes
            .hooks
            .take()
            .iter()
            .map(|m| {
                let q = crate::domain::standard_webhooks::Queued::from_message(m).unwrap();
                serde_json::from_str(&q.body).unwrap()
            })
            .collect();
        // Revoking and disabling end sessions; a look, or disabling again, does not.
        let events: Vec<(&str, &str)> =
            bodies.iter().map(|b| (b["type"].as_str().unwrap(), b["data"]["event"].as_str().unwrap())).collect();
        assert_eq!(events, [("session.revoked", "admin_sessions_revoked"), ("session.revoked", "admin_user_disabled")]);
        for b in &bodies {
            assert_eq!(b["data"]["actor"], "admin:ops");
            assert_eq!(b["data"]["user_id"], user.as_str());
            assert!(!b.to_string().contains(OPS), "the token itself: {b}");
        }
    })
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
