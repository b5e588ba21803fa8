//! The hourly cron cleanup (`Db::delete_stale` with `KEEP_STALE_MS`, then
//! `Db::prune_sessions`): codes and verification tokens that expired, or
//! were used or withdrawn, more than a day ago are deleted, newer ones kept;
//! audit events are kept 30 days; retired refresh tokens go once their
//! session ended and their grace window passed, sessions 30 days after
//! their end, in bounded rounds.

use super::{refusal, run, World, T0};
use crate::domain::otp::Purpose;
use crate::flows::otp_verify::Verified;
use crate::flows::session::LoggedIn;
use crate::store::maintenance::{Pruned, SessionRetention, PRUNE_BATCH};
use crate::store::Db;
use crate::KEEP_STALE_MS;

const DAY: i64 = 86_400_000;
const MINUTE: i64 = 60_000;

/// Runs the cleanup as the cron does, at the clock's time.
async fn clean(w: &World) -> Pruned {
    let db = Db::new(w.fakes.ports().db);
    let now = w.fakes.clock.0.get();
    db.delete_stale(now, KEEP_STALE_MS).await.expect("the cleanup ran");
    db.prune_sessions(now, &SessionRetention::of(&w.config.tokens)).await.expect("the session cleanup ran")
}

fn sql_int(v: Option<i64>) -> String {
    v.map_or("NULL".to_string(), |n| n.to_string())
}

/// A code row: created 10 minutes before it expires.
fn seed_code(w: &World, id: &str, expires_at: i64, verified_at: Option<i64>, invalidated_at: Option<i64>) {
    w.fakes.db.execute(&format!(
        "INSERT INTO otp_requests (id, otp_type, destination, otp_hash, purpose, is_verified, max_attempts, \
         created_at, expires_at, verified_at, invalidated_at, ip_address, user_agent) \
         VALUES ('{id}', 'email', '{id}@example.com', 'hash', 'register', {}, 3, {}, {expires_at}, {}, {}, \
         '192.0.2.1', 'test')",
        i64::from(verified_at.is_some()),
        expires_at - 10 * MINUTE,
        sql_int(verified_at),
        sql_int(invalidated_at),
    ));
}

/// A verification token: created 10 minutes before it expires.
fn seed_token(w: &World, hash: &str, expires_at: i64, consumed_at: Option<i64>) {
    w.fakes.db.execute(&format!(
        "INSERT INTO verification_tokens (token_hash, otp_request_id, purpose, otp_type, destination, created_at, \
         expires_at, consumed_at) VALUES ('{hash}', 'some-code', 'register', 'email', 'x@example.com', {}, \
         {expires_at}, {})",
        expires_at - 10 * MINUTE,
        sql_int(consumed_at),
    ));
}

fn seed_audit(w: &World, request_id: &str, at: i64) {
    w.fakes.db.execute(&format!(
        "INSERT INTO audit_events (at, request_id, event, outcome, latency_ms, ip_hash) \
         VALUES ({at}, '{request_id}', 'otp_requested', 'ok', 1, 'abcd')"
    ));
}

/// The values of `column` left in `table`, sorted.
fn left(w: &World, table: &str, column: &str) -> Vec<String> {
    w.rows(&format!("SELECT {column} FROM {table} ORDER BY {column}"))
        .into_iter()
        .map(|r| r[column].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn codes_expired_used_or_withdrawn_more_than_a_day_ago_are_deleted() {
    run(async {
        let w = World::new();
        let now = w.fakes.clock.0.get();
        let cutoff = now - DAY;
        seed_code(&w, "expired-two-days-ago", now - 2 * DAY, None, None);
        seed_code(&w, "expired-a-day-and-1ms-ago", cutoff - 1, None, None);
        seed_code(&w, "expired-exactly-a-day-ago", cutoff, None, None);
        seed_code(&w, "expired-an-hour-ago", now - 60 * MINUTE, None, None);
        seed_code(&w, "pending", now + 5 * MINUTE, None, None);
        // Used or withdrawn just over a day ago, before they would have expired.
        seed_code(&w, "used-a-day-and-1min-ago", cutoff + 9 * MINUTE, Some(cutoff - MINUTE), None);
        seed_code(&w, "withdrawn-a-day-and-1min-ago", cutoff + 9 * MINUTE, None, Some(cutoff - MINUTE));
        seed_code(&w, "used-an-hour-ago", now - 55 * MINUTE, Some(now - 60 * MINUTE), None);
        seed_code(&w, "withdrawn-an-hour-ago", now - 55 * MINUTE, None, Some(now - 60 * MINUTE));

        clean(&w).await;

        assert_eq!(
            left(&w, "otp_requests", "id"),
            [
                "expired-an-hour-ago",
                "expired-exactly-a-day-ago",
                "pending",
                "used-an-hour-ago",
                "withdrawn-an-hour-ago"
            ]
        );
    })
}

#[test]
fn verification_tokens_expired_or_consumed_more_than_a_day_ago_are_deleted() {
    run(async {
        let w = World::new();
        let now = w.fakes.clock.0.get();
        let cutoff = now - DAY;
        seed_token(&w, "expired-two-days-ago", now - 2 * DAY, None);
        seed_token(&w, "expired-a-day-and-1ms-ago", cutoff - 1, None);
        seed_token(&w, "expired-exactly-a-day-ago", cutoff, None);
        seed_token(&w, "expired-an-hour-ago", now - 60 * MINUTE, None);
        seed_token(&w, "live", now + 5 * MINUTE, None);
        seed_token(&w, "consumed-a-day-and-1min-ago", cutoff + 9 * MINUTE, Some(cutoff - MINUTE));
        seed_token(&w, "consumed-an-hour-ago", now - 55 * MINUTE, Some(now - 60 * MINUTE));

        clean(&w).await;

        assert_eq!(
            left(&w, "verification_tokens", "token_hash"),
            ["consumed-an-hour-ago", "expired-an-hour-ago", "expired-exactly-a-day-ago", "live"]
        );
    })
}

#[test]
fn audit_events_older_than_30_days_are_deleted() {
    run(async {
        let w = World::new();
        let now = w.fakes.clock.0.get();
        seed_audit(&w, "a-year-ago", now - 365 * DAY);
        seed_audit(&w, "30-days-and-1ms-ago", now - 30 * DAY - 1);
        seed_audit(&w, "exactly-30-days-ago", now - 30 * DAY);
        seed_audit(&w, "2-days-ago", now - 2 * DAY);
        seed_audit(&w, "just-now", now);

        clean(&w).await;

        assert_eq!(left(&w, "audit_events", "request_id"), ["2-days-ago", "exactly-30-days-ago", "just-now"]);
    })
}

#[test]
fn what_the_flows_stored_is_deleted_a_day_after_its_use_or_expiry() {
    run(async {
        let w = World::new();
        // At T0: a code used at once (with its token), and one left to expire.
        let (used, code) = w.code_for("192.0.2.1", "uma@example.com", Purpose::Register).await;
        let Ok(Verified::Register { .. }) = w.verify("192.0.2.1", &used, &code).await else { panic!("not verified") };
        let unused = w.request("192.0.2.1", "vic@example.com", Purpose::Register).await.unwrap().otp_id;
        w.deliver_queued().await;
        let events = w.events().len();
        assert_eq!(w.rows("SELECT token_hash FROM verification_tokens").len(), 1);

        // A day after the use: the used code goes, 1 ms later.
        w.fakes.clock.advance(DAY);
        let (fresh, _) = w.code_for("192.0.2.1", "wes@example.com", Purpose::Register).await;
        clean(&w).await;
        assert_eq!(left(&w, "otp_requests", "id"), sorted([&used, &unused, &fresh]));
        w.fakes.clock.advance(1);
        clean(&w).await;
        assert_eq!(left(&w, "otp_requests", "id"), sorted([&unused, &fresh]));
        assert_eq!(w.rows("SELECT token_hash FROM verification_tokens").len(), 1, "its token lives 10 min more");

        // A day after the unused code and the token expired (600 s after T0).
        w.fakes.clock.advance(10 * MINUTE);
        clean(&w).await;

        assert_eq!(left(&w, "otp_requests", "id"), [fresh]);
        assert!(w.rows("SELECT token_hash FROM verification_tokens").is_empty());
        let kept = w.rows(&format!("SELECT id FROM audit_events WHERE at = {T0}"));
        assert_eq!(kept.len(), events, "audit events are kept 30 days");
    })
}

fn sorted<const N: usize>(ids: [&String; N]) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().cloned().collect();
    ids.sort_unstable();
    ids
}

// ---------------------------------------------------------------------------
// Sessions and retired refresh tokens

/// A session row of a seeded user: opened at `created_at`.
fn seed_session(w: &World, user: &str, id: &str, created_at: i64, expires_at: i64, revoked_at: Option<i64>) {
    w.fakes.db.execute(&format!(
        "INSERT INTO sessions (id, user_id, refresh_token_hash, ip_address, user_agent, created_at, last_used_at, \
         expires_at, revoked_at) VALUES ('{id}', '{user}', 'current-{id}', '192.0.2.1', 'test', {created_at}, \
         {created_at}, {expires_at}, {})",
        sql_int(revoked_at),
    ));
}

/// `n` retired tokens of `session`, retired at `retired_at`.
fn seed_retired(w: &World, session: &str, retired_at: i64, n: usize) {
    let rows: Vec<String> =
        (0..n).map(|i| format!("('{session}-{retired_at}-{i}', '{session}', {retired_at})")).collect();
    w.fakes.db.execute(&format!(
        "INSERT INTO retired_refresh_tokens (token_hash, session_id, retired_at) VALUES {}",
        rows.join(", ")
    ));
}

/// Per session, how many retired tokens are left: `(session, count)`, sorted.
fn retired_left(w: &World) -> Vec<(String, i64)> {
    w.rows("SELECT session_id, COUNT(*) AS n FROM retired_refresh_tokens GROUP BY session_id ORDER BY session_id")
        .into_iter()
        .map(|r| (r["session_id"].as_str().unwrap().to_string(), r["n"].as_i64().unwrap()))
        .collect()
}

#[test]
fn retired_tokens_go_once_their_session_ended_and_their_grace_window_passed() {
    run(async {
        let w = World::new(); // grace 10 s, sessions 90 days
        let user = w.seed_user("ida@example.com", "active");
        let now = w.fakes.clock.0.get();
        seed_session(&w, &user, "live", now - DAY, now + 29 * DAY, None);
        seed_session(&w, &user, "revoked-an-hour-ago", now - 2 * DAY, now + 28 * DAY, Some(now - 60 * MINUTE));
        seed_session(&w, &user, "revoked-just-now", now - DAY, now + 29 * DAY, Some(now));
        seed_session(&w, &user, "expired", now - 40 * DAY, now - 10 * DAY, None);
        // Rotated before sessions had a maximum lifetime: ends at 90 days all the same.
        seed_session(&w, &user, "past-max-lifetime", now - 90 * DAY, now + 20 * DAY, None);
        seed_session(&w, &user, "one-ms-younger", now - 90 * DAY + 1, now + 20 * DAY, None);
        for s in ["live", "revoked-an-hour-ago", "expired", "past-max-lifetime", "one-ms-younger"] {
            seed_retired(&w, s, now - 2 * 60 * MINUTE, 3);
        }
        seed_retired(&w, "revoked-just-now", now - 10_000, 1);
        seed_retired(&w, "revoked-just-now", now - 10_001, 1);

        let pruned = clean(&w).await;

        assert_eq!(pruned, Pruned { retired_tokens: 10, sessions: 0 });
        let left = |names: &[(&str, i64)]| names.iter().map(|(s, n)| (s.to_string(), *n)).collect::<Vec<_>>();
        assert_eq!(
            retired_left(&w),
            left(&[("live", 3), ("one-ms-younger", 3), ("revoked-just-now", 1)]),
            "a live session keeps its retired tokens (reuse detection); an ended one keeps those in the grace window"
        );
        // A millisecond later: past the grace window, and at 90 days.
        w.fakes.clock.advance(1);
        clean(&w).await;
        assert_eq!(retired_left(&w), left(&[("live", 3)]));
        assert_eq!(w.rows("SELECT id FROM sessions").len(), 6, "sessions stay 30 days after their end");
    })
}

#[test]
fn sessions_go_30_days_after_their_end_whatever_ended_them() {
    run(async {
        let w = World::new();
        let user = w.seed_user("jo@example.com", "active");
        let now = w.fakes.clock.0.get();
        let month = 30 * DAY;
        seed_session(&w, &user, "revoked-30-days-ago", now - 40 * DAY, now + DAY, Some(now - month));
        seed_session(&w, &user, "revoked-30-days-less-1ms", now - 40 * DAY, now + DAY, Some(now - month + 1));
        seed_session(&w, &user, "expired-30-days-ago", now - 60 * DAY, now - month, None);
        seed_session(&w, &user, "expired-30-days-less-1ms", now - 60 * DAY, now - month + 1, None);
        seed_session(&w, &user, "reached-90-days-30-days-ago", now - 120 * DAY, now + DAY, None);
        seed_session(&w, &user, "reached-90-days-29-days-ago", now - 119 * DAY, now + DAY, None);
        seed_session(&w, &user, "live", now - DAY, now + 29 * DAY, None);
        seed_retired(&w, "revoked-30-days-ago", now - 31 * DAY, 2);
        w.fakes.db.execute(&format!(
            "INSERT INTO audit_events (at, request_id, event, outcome, latency_ms, ip_hash, session_id) \
             VALUES ({}, 'r', 'token_refreshed', 'ok', 1, 'abcd', 'revoked-30-days-ago')",
            now - DAY
        ));

        let pruned = clean(&w).await;

        assert_eq!(pruned, Pruned { retired_tokens: 2, sessions: 3 }, "its tokens first, then the session");
        assert_eq!(
            left(&w, "sessions", "id"),
            ["expired-30-days-less-1ms", "live", "reached-90-days-29-days-ago", "revoked-30-days-less-1ms"]
        );
        assert_eq!(w.rows("SELECT id FROM audit_events WHERE session_id = 'revoked-30-days-ago'").len(), 1);
    })
}

#[test]
fn the_cleanup_goes_in_bounded_rounds_until_nothing_is_left() {
    run(async {
        let w = World::new();
        let user = w.seed_user("kit@example.com", "active");
        let now = w.fakes.clock.0.get();
        seed_session(&w, &user, "ended", now - 40 * DAY, now + DAY, Some(now - 31 * DAY));
        seed_retired(&w, "ended", now - 35 * DAY, PRUNE_BATCH as usize + 1);
        let db = Db::new(w.fakes.ports().db);
        let retention = SessionRetention::of(&w.config.tokens);

        let one = db.prune_sessions_once(now, &retention, 2).await.unwrap();
        assert_eq!(
            one,
            Pruned { retired_tokens: 2, sessions: 0 },
            "at most the batch; the session waits for its tokens"
        );
        w.fakes.trips.reset();
        let rest = clean(&w).await;

        assert_eq!(rest, Pruned { retired_tokens: PRUNE_BATCH - 1, sessions: 1 });
        assert_eq!(w.fakes.trips.figures().0, 1 + 1, "delete_stale, then one round (the first was not full)");
        assert!(retired_left(&w).is_empty());
        seed_session(&w, &user, "ended-too", now - 40 * DAY, now + DAY, Some(now - 31 * DAY));
        seed_retired(&w, "ended-too", now - 35 * DAY, PRUNE_BATCH as usize + 3);
        w.fakes.trips.reset();
        assert_eq!(clean(&w).await, Pruned { retired_tokens: PRUNE_BATCH + 3, sessions: 1 });
        assert_eq!(w.fakes.trips.figures().0, 1 + 2, "a full round is followed by another");
    })
}

#[test]
fn what_a_session_left_is_pruned_after_logout_and_its_tokens_are_refused_all_along() {
    run(async {
        let w = World::new();
        w.seed_user("lou@example.com", "active");
        let (otp_id, code) = w.code_for("192.0.2.1", "lou@example.com", Purpose::Login).await;
        let Ok(Verified::Login(first)) = w.verify("192.0.2.1", &otp_id, &code).await else { panic!("no login") };
        let refresh = |token: String| {
            let app = w.app("192.0.2.1");
            async move { crate::flows::refresh::refresh(&app, &token).await }
        };
        let second = refresh(first.refresh.clone()).await.unwrap();
        let third = refresh(second.refresh.clone()).await.unwrap();
        clean(&w).await;
        assert_eq!(retired_left(&w), [(first.session_id.clone(), 2)], "a live session keeps them");

        logout(&w, &first).await;
        w.fakes.clock.advance(10_001);
        clean(&w).await;
        assert!(retired_left(&w).is_empty(), "ended, past the grace window");
        assert_eq!(refusal(refresh(third.refresh.clone()).await).1, "SESSION_REVOKED", "its current token");
        assert_eq!(refusal(refresh(first.refresh.clone()).await).1, "REFRESH_TOKEN_INVALID", "a pruned one");

        w.fakes.clock.advance(30 * DAY);
        clean(&w).await;
        assert!(w.rows("SELECT id FROM sessions").is_empty());
        assert_eq!(refusal(refresh(third.refresh.clone()).await).1, "REFRESH_TOKEN_INVALID", "its session is gone");
    })
}

async fn logout(w: &World, session: &LoggedIn) {
    let app = w.app("192.0.2.1");
    let who = crate::flows::account::authenticate(&app, Some(&format!("Bearer {}", session.access))).await.unwrap();
    crate::flows::account::logout(&app, &who).await.unwrap();
}
