//! The hourly cron deletes OTP rows nobody can use any more, once they are a
//! day old, retired refresh tokens of sessions that ended, and sessions a
//! month after they ended; it leaves live ones alone.

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

/// A `sessions` row's VALUES for `user_id`.
fn session_row(id: &str, user_id: &str, created_at: i64, expires_at: i64, revoked_at: Option<i64>) -> String {
    let revoked = revoked_at.map_or("NULL, NULL".to_string(), |t| format!("{t}, 'logout'"));
    format!(
        "({}, {}, {}, '127.0.0.1', 'test', {created_at}, {created_at}, {expires_at}, {revoked})",
        sql_str(id),
        sql_str(user_id),
        sql_str(&random_uuid()),
    )
}

#[tokio::test]
async fn the_cron_prunes_retired_refresh_tokens_of_ended_sessions_and_sessions_a_month_after_their_end() {
    let app = spawn_app().await;
    let now = now_ms();
    let user = app.seed_user(&random_email(), "active").await;
    let [revoked_long_ago, revoked_recently, expired_long_ago, live, past_max_lifetime] =
        [(); 5].map(|_| random_uuid());
    let sessions = [&revoked_long_ago, &revoked_recently, &expired_long_ago, &live, &past_max_lifetime];
    let retired: Vec<String> = sessions
        .iter()
        .flat_map(|s| {
            [2 * 60 * MINUTE, 90 * MINUTE]
                .map(|ago| format!("({}, {}, {})", sql_str(&random_uuid()), sql_str(s), now - ago))
        })
        .collect();
    // One transaction: another test's cron run must not find the sessions without their tokens.
    app.d1(&format!(
        "INSERT INTO sessions (id, user_id, refresh_token_hash, ip_address, user_agent, created_at, last_used_at, \
         expires_at, revoked_at, revoked_reason) VALUES {}; \
         INSERT INTO retired_refresh_tokens (token_hash, session_id, retired_at) VALUES {}",
        [
            session_row(&revoked_long_ago, &user, now - 40 * DAY, now - 10 * DAY, Some(now - 31 * DAY)),
            session_row(&revoked_recently, &user, now - 5 * DAY, now + 25 * DAY, Some(now - 60 * MINUTE)),
            session_row(&expired_long_ago, &user, now - 70 * DAY, now - 31 * DAY, None),
            session_row(&live, &user, now - DAY, now + 29 * DAY, None),
            // Rotated before sessions had a maximum lifetime (90 days): ended a day ago.
            session_row(&past_max_lifetime, &user, now - 91 * DAY, now + 20 * DAY, None),
        ]
        .join(", "),
        retired.join(", ")
    ))
    .await;

    let resp = app.get("/__scheduled?cron=17+*+*+*+*").await;
    assert!(resp.status().is_success(), "{}", resp.status());

    let in_list = sessions.map(|id| sql_str(id)).join(", ");
    let expected_sessions = {
        let mut kept = vec![revoked_recently.clone(), live.clone(), past_max_lifetime.clone()];
        kept.sort();
        kept
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kept: Vec<String> = app
            .d1(&format!("SELECT id FROM sessions WHERE id IN ({in_list}) ORDER BY id"))
            .await
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        let tokens: Vec<String> = app
            .d1(&format!("SELECT session_id FROM retired_refresh_tokens WHERE session_id IN ({in_list})"))
            .await
            .iter()
            .map(|r| r["session_id"].as_str().unwrap().to_string())
            .collect();
        let done = kept == expected_sessions && tokens == [live.clone(), live.clone()];
        if done || Instant::now() > deadline {
            assert_eq!(kept, expected_sessions, "sessions left after the cron (ended a month ago: gone)");
            assert_eq!(tokens, [live.clone(), live.clone()], "retired tokens left: only the live session's");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
