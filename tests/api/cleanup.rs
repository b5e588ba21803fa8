//! The hourly cron deletes OTP rows nobody can use any more, once they are a
//! day old, and leaves live ones alone.

use std::time::{Duration, Instant};

use crate::helpers::{now_ms, random_email, random_uuid, spawn_app, sql_str};

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

/// An `otp_requests` row's VALUES: a pending (or, with `verified_at`, used)
/// email code created at `created_at`, expiring at `expires_at`.
fn otp_row(id: &str, created_at: i64, expires_at: i64, verified_at: Option<i64>) -> String {
    let hash = "0".repeat(64);
    let (is_verified, verified_at) = verified_at.map_or((0, "NULL".to_string()), |t| (1, t.to_string()));
    format!(
        "({}, NULL, 'email', {}, '{hash}', 'verify', {is_verified}, 0, 3, {created_at}, {expires_at}, {verified_at}, NULL, '127.0.0.1', 'test')",
        sql_str(id),
        sql_str(&random_email()),
    )
}

#[tokio::test]
async fn the_cron_deletes_codes_expired_or_used_over_a_day_ago() {
    let app = spawn_app().await;
    let now = now_ms();
    let [expired_long_ago, used_long_ago, pending, just_used] = [(); 4].map(|_| random_uuid());
    app.d1(&format!(
        "INSERT INTO otp_requests (id, user_id, otp_type, destination, otp_hash, purpose, is_verified, attempts, \
         max_attempts, created_at, expires_at, verified_at, invalidated_at, ip_address, user_agent) VALUES {}",
        [
            otp_row(&expired_long_ago, now - 2 * DAY - 10 * MINUTE, now - 2 * DAY, None),
            otp_row(&used_long_ago, now - 2 * DAY - 10 * MINUTE, now - 2 * DAY, Some(now - 2 * DAY - 5 * MINUTE)),
            otp_row(&pending, now, now + 10 * MINUTE, None),
            otp_row(&just_used, now - MINUTE, now + 9 * MINUTE, Some(now)),
        ]
        .join(", ")
    ))
    .await;

    let resp = app.get("/__scheduled?cron=17+*+*+*+*").await;
    assert!(resp.status().is_success(), "{}", resp.status());

    let ids = [&expired_long_ago, &used_long_ago, &pending, &just_used].map(|id| sql_str(id)).join(", ");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = app.d1(&format!("SELECT id FROM otp_requests WHERE id IN ({ids}) ORDER BY created_at")).await;
        let left: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
        if left.len() <= 2 || Instant::now() > deadline {
            assert_eq!(left, [just_used.as_str(), pending.as_str()], "rows left after the cron");
            break;
        }
    }
}
