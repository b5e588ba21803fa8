//! A login as an app's returning user makes it: the account exists, its
//! email was verified at an earlier login from the same app install, whose
//! device row and session are there. One login: request a code (from the
//! user's own client address), read it from the fake mail API, verify it
//! with the app's install id, platform and version. The `login` phase of
//! `make bench` and the load of `make profile` both run it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fake_mail::FakeMail;
use crate::report::Endpoint;
use crate::Sample;

pub fn email(i: usize) -> String {
    format!("bench-login-{i}@bench.test")
}

/// The address user `client` of a phase logs in from: each concurrent
/// client is one user population's network, from 198.18.0.0/15 (set aside
/// for benchmarks, RFC 2544), block 2 and up (timing.rs uses 0 and 1).
pub fn client_ip(client: usize) -> String {
    assert!(client < 65_536);
    format!("198.20.{}.{}", client / 256, client % 256)
}

/// SQL that creates `n` returning users, each with a verified email, the
/// device of its app install and a live session opened from it a week
/// before `now_ms`.
pub fn returning_users_sql(n: usize, now_ms: i64) -> String {
    const DAY: i64 = 86_400_000;
    let (created, last_login, expires) = (now_ms - 30 * DAY, now_ms - 7 * DAY, now_ms + 83 * DAY);
    let n = |table_and_select: &str| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) {table_and_select} FROM n;\n",
            last = n - 1
        )
    };
    [
        n(&format!(
            "INSERT INTO users (id, username, email, status, email_verified, created_at, updated_at) \
             SELECT printf('00000000-0000-4000-9000-%012d', i), 'login' || i, 'bench-login-' || i || '@bench.test', \
             'active', 1, {created}, {last_login}"
        )),
        n(&format!(
            "INSERT INTO devices (id, user_id, install_id, platform, app_version, created_at, last_seen_at) \
             SELECT printf('00000000-0000-4000-a000-%012d', i), printf('00000000-0000-4000-9000-%012d', i), \
             'bench-install-' || i, 'ios', '1.0.0', {created}, {last_login}"
        )),
        n(&format!(
            "INSERT INTO sessions (id, user_id, device_id, refresh_token_hash, ip_address, user_agent, \
             created_at, last_used_at, expires_at, platform) \
             SELECT printf('00000000-0000-4000-b000-%012d', i), printf('00000000-0000-4000-9000-%012d', i), \
             printf('00000000-0000-4000-a000-%012d', i), 'bench-seeded-session-' || i, '198.51.100.7', \
             'BenchApp/1.0', {last_login}, {last_login}, {expires}, 'ios'"
        )),
    ]
    .concat()
}

/// Hands out returning users, each once (so no destination's budget, 5
/// requests an hour per network, comes into play).
pub struct Users {
    next: AtomicUsize,
    count: usize,
}

impl Users {
    pub fn new(count: usize) -> Users {
        Users { next: AtomicUsize::new(0), count }
    }

    pub fn take(&self) -> usize {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        assert!(i < self.count, "ran out of returning users; raise LOGIN_USERS");
        i
    }
}

/// One returning user's login from `ip`: the request's and the verify's
/// latencies, and whether each succeeded (the verify with tokens).
pub async fn login(client: &reqwest::Client, base: &str, mail: &FakeMail, user: usize, ip: &str) -> Vec<Sample> {
    let base = base.trim_end_matches('/');
    let email = email(user);
    let send = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .header("cf-connecting-ip", ip)
            .header("user-agent", "BenchApp/1.0 (iOS)")
            .json(&body)
            .send()
    };
    let t = Instant::now();
    let answer = send("/api/auth/otp/request/", json!({"destination": email, "purpose": "login"})).await;
    let otp_id = match answer {
        Ok(r) if r.status().is_success() => {
            r.json::<serde_json::Value>().await.ok().and_then(|v| v["otp_id"].as_str().map(str::to_string))
        }
        _ => None,
    };
    let request_time = t.elapsed();
    let Some(otp_id) = otp_id else { return vec![(Endpoint::Request, request_time, false)] };
    let Some(code) = mail.code_for(&email, Duration::from_secs(10)).await else {
        return vec![(Endpoint::Request, request_time, false)];
    };
    let t = Instant::now();
    let verify = send(
        "/api/auth/otp/verify/",
        json!({"otp_id": otp_id, "otp_code": code, "install_id": format!("bench-install-{user}"),
               "platform": "ios", "app_version": "1.0.0"}),
    )
    .await;
    let ok = match verify {
        Ok(r) if r.status().is_success() => r
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["access"].is_string() && v["refresh"].is_string() && v["user"]["email_verified"] == true),
        _ => false,
    };
    vec![(Endpoint::Request, request_time, true), (Endpoint::Verify, t.elapsed(), ok)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_are_distinct_and_apart_from_the_timing_ones() {
        let all: std::collections::HashSet<String> = (0..1000).map(client_ip).collect();
        assert_eq!(all.len(), 1000);
        assert_eq!(client_ip(258), "198.20.1.2");
    }

    #[test]
    fn seed_sql_makes_users_devices_and_sessions() {
        let sql = returning_users_sql(500, 1_800_000_000_000);
        assert_eq!(sql.matches(";\n").count(), 3, "three statements, one per table");
        assert_eq!(sql.matches("WHERE i < 499").count(), 3);
        for table in ["users", "devices", "sessions"] {
            assert!(sql.contains(&format!("INSERT INTO {table} (")), "{table}");
        }
        // A session opened a week before, expiring 83 days after.
        assert!(sql.contains(&(1_800_000_000_000i64 - 7 * 86_400_000).to_string()));
        assert!(sql.contains(&(1_800_000_000_000i64 + 83 * 86_400_000).to_string()));
        assert!(!sql.contains("--"), "serve.mjs strips comments");
        assert_eq!(email(3), "bench-login-3@bench.test");
    }

    #[test]
    fn users_are_handed_out_once() {
        let users = Users::new(2);
        assert_eq!((users.take(), users.take()), (0, 1));
        assert!(std::panic::catch_unwind(|| users.take()).is_err());
    }
}
