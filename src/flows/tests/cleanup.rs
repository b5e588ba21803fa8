//! The hourly cron cleanup (`Db::delete_stale` with `KEEP_STALE_MS`): codes
//! and verification tokens that expired, or were used or withdrawn, more
//! than a day ago are deleted, newer ones kept; audit events are kept 30 days.

use super::{run, World, T0};
use crate::domain::otp::Purpose;
use crate::flows::otp_verify::Verified;
use crate::store::Db;
use crate::KEEP_STALE_MS;

const DAY: i64 = 86_400_000;
const MINUTE: i64 = 60_000;

/// Runs the cleanup as the cron does, at the clock's time.
async fn clean(w: &World) {
    let db = Db::new(w.fakes.ports().db);
    db.delete_stale(w.fakes.clock.0.get(), KEEP_STALE_MS).await.expect("the cleanup ran");
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
