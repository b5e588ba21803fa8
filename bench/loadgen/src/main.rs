//! The benchmark: what one OTP login flow costs, against the platform's own
//! ceiling, measured in one run.
//!
//! It serves two release bundles on the local workerd (through Miniflare's
//! API, as `wrangler dev` does, without wrangler's dev proxy): the service
//! with fresh in-memory D1 and Durable Object state and a fake mail provider
//! on loopback, and a no-op Worker built with the same toolchain. Then, at
//! fixed concurrency levels for a fixed time each, it drives:
//!
//! - flow: request a login code for a fresh user, read it from the fake
//!   provider, verify it (ends with tokens);
//! - verify: only verifies, of codes requested beforehand;
//! - refresh: only refreshes, each client rotating its own session;
//! - noop: GET on the no-op Worker.
//!
//! It reports throughput, latency percentiles per endpoint, errors, workerd
//! CPU per flow (from /proc) and peak memory, each with its ratio to the
//! no-op baseline, plus bundle size and start-up time, and writes
//! BENCHMARKS.md.
//!
//! Last, on a fresh service, it compares the latency of login requests for
//! registered accounts and for unknown destinations (timing.rs); with the
//! argument `timing` it does only that and rewrites its section of
//! BENCHMARKS.md.
//!
//! Run with `make bench` (see README); BENCH_SECONDS sets the time per level.
//! `make timing` runs the timing comparison alone.

mod cdp;
mod cpuprofile;
mod fake_mail;
mod login;
mod perf;
mod procfs;
mod profile;
mod report;
mod sections;
mod server;
mod stats;
mod timing;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use report::{Endpoint, PhaseResult};
use serde_json::{json, Value};

pub const LEVELS: [usize; 3] = [1, 8, 32];
/// The login phase's levels, and so also the no-op's.
pub const LOGIN_LEVELS: [usize; 3] = [1, 16, 64];
const NOOP_LEVELS: [usize; 5] = [1, 8, 16, 32, 64];
/// Users seeded before the run; each flow and each pre-requested code takes one.
const SEEDED_USERS: usize = 60_000;
/// Returning users seeded before the run (login.rs); each login takes one.
const LOGIN_USERS: usize = 20_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = std::env::current_dir().expect("cwd");
    if std::env::args().nth(1).as_deref() == Some("timing") {
        let section = timing::run(&root, "make timing").await.markdown();
        println!("{section}");
        let path = root.join("BENCHMARKS.md");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
        std::fs::write(&path, timing::splice(&text, &section)).expect("write BENCHMARKS.md");
        eprintln!("timing: wrote its section of BENCHMARKS.md");
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("profile") {
        let run = profile::run(&root).await;
        println!("{}", run.print());
        let path = root.join("BENCHMARKS.md");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
        std::fs::write(&path, profile::splice(&text, &run)).expect("write BENCHMARKS.md");
        eprintln!("profile: wrote its part of BENCHMARKS.md");
        return;
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let duration = Duration::from_secs(seconds);

    let mail = fake_mail::FakeMail::start().await;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let seed =
        server::write_seed(&root, &[server::users_sql(SEEDED_USERS), login::returning_users_sql(LOGIN_USERS, now_ms)]);
    let service = server::Server::start(&root, "build/index.js", Some(&seed), &service_vars(&mail.url())).await;
    let noop = server::Server::start(&root, "bench/noop/build/index.js", None, &[]).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();

    let mut phases: Vec<PhaseResult> = Vec::new();
    let users = Arc::new(AtomicUsize::new(0));

    for &c in &NOOP_LEVELS {
        let (client_, url_) = (client.clone(), noop.url.clone());
        phases.push(
            run_phase("noop", c, duration, &noop, move |_| {
                let (client, url) = (client_.clone(), url_.clone());
                async move {
                    let t = Instant::now();
                    let ok = client.get(&url).send().await.map(|r| r.status().is_success()).unwrap_or(false);
                    vec![(Endpoint::Noop, t.elapsed(), ok)]
                }
            })
            .await,
        );
    }

    // Where the time goes: the service's floor (an unknown path: routing,
    // a JSON error, no storage), and one D1 query plus one Durable Object
    // call (/healthz), at one concurrency.
    for (phase, path, endpoint) in [("floor", "/nope", Endpoint::Floor), ("d1+do", "/healthz", Endpoint::Health)] {
        let (client_, url_) = (client.clone(), format!("{}{}", service.url.trim_end_matches('/'), path));
        phases.push(
            run_phase(phase, 8, duration, &service, move |_| {
                let (client, url) = (client_.clone(), url_.clone());
                async move {
                    let t = Instant::now();
                    let ok = client.get(&url).send().await.map(|r| r.status().as_u16() < 500).unwrap_or(false);
                    vec![(endpoint, t.elapsed(), ok)]
                }
            })
            .await,
        );
    }

    for &c in &LEVELS {
        let (client_, url_, mail_, users_) = (client.clone(), service.url.clone(), mail.clone(), users.clone());
        phases.push(
            run_phase("flow", c, duration, &service, move |_| {
                let (client, url, mail, users) = (client_.clone(), url_.clone(), mail_.clone(), users_.clone());
                async move { login_flow(&client, &url, &mail, &users).await }
            })
            .await,
        );
    }

    // Logins of returning users (login.rs), as an app's users make them:
    // each of the c clients is a user population behind its own address.
    let returning = Arc::new(login::Users::new(LOGIN_USERS));
    for &c in &LOGIN_LEVELS {
        let (client_, url_, mail_, users_) = (client.clone(), service.url.clone(), mail.clone(), returning.clone());
        phases.push(
            run_phase("login", c, duration, &service, move |worker| {
                let (client, url, mail, users) = (client_.clone(), url_.clone(), mail_.clone(), users_.clone());
                async move { login::login(&client, &url, &mail, users.take(), &login::client_ip(worker)).await }
            })
            .await,
        );
    }

    // Verify only: codes requested beforehand (not timed), one per fresh user.
    let best_flow_rate = phases.iter().filter(|p| p.phase == "flow").map(|p| p.per_second()).fold(0.0, f64::max);
    for &c in &LEVELS {
        let wanted = ((best_flow_rate * 2.5 * seconds as f64) as usize).clamp(200, 12_000);
        let codes = request_codes(&client, &service.url, &mail, &users, wanted).await;
        let codes = Arc::new(Mutex::new(codes));
        let (client_, url_) = (client.clone(), service.url.clone());
        phases.push(
            run_phase("verify", c, duration, &service, move |_| {
                let (client, url, codes) = (client_.clone(), url_.clone(), codes.clone());
                async move {
                    let Some((otp_id, code)) = codes.lock().unwrap().pop() else { return Vec::new() };
                    let t = Instant::now();
                    let ok = post(&client, &url, "/api/auth/otp/verify/", json!({"otp_id": otp_id, "otp_code": code}))
                        .await
                        .is_some_and(|v| v["access"].is_string());
                    vec![(Endpoint::Verify, t.elapsed(), ok)]
                }
            })
            .await,
        );
    }

    // Refresh only: each client rotates its own session's token.
    for &c in &LEVELS {
        let mut sessions = Vec::new();
        for _ in 0..c {
            let (_, tokens) = login_flow_tokens(&client, &service.url, &mail, &users).await;
            sessions.push(Arc::new(Mutex::new(
                tokens.expect("a session for the refresh phase")["refresh"].as_str().unwrap().to_string(),
            )));
        }
        let sessions = Arc::new(sessions);
        let (client_, url_) = (client.clone(), service.url.clone());
        phases.push(
            run_phase("refresh", c, duration, &service, move |worker| {
                let (client, url, slot) = (client_.clone(), url_.clone(), sessions[worker].clone());
                async move {
                    let refresh = slot.lock().unwrap().clone();
                    let t = Instant::now();
                    let answer = post(&client, &url, "/api/auth/token/refresh/", json!({"refresh": refresh})).await;
                    let elapsed = t.elapsed();
                    let next = answer.as_ref().and_then(|v| v["refresh"].as_str()).map(str::to_string);
                    let ok = next.is_some();
                    if let Some(next) = next {
                        *slot.lock().unwrap() = next;
                    }
                    vec![(Endpoint::Refresh, elapsed, ok)]
                }
            })
            .await,
        );
    }

    let report = report::Report {
        phases,
        service_start: service.startup,
        noop_start: noop.startup,
        wasm: report::BundleSize::of(&root.join("build/index_bg.wasm")),
        noop_wasm: report::BundleSize::of(&root.join("bench/noop/build/index_bg.wasm")),
        seconds,
        service_peak_rss_kb: procfs::peak_rss_kb(&service.workerd_pids()),
        noop_peak_rss_kb: procfs::peak_rss_kb(&noop.workerd_pids()),
        micro: report::Micro::read(&root.join("target/criterion")),
    };
    service.stop();
    noop.stop();
    let text = report.render();
    println!("{text}");
    let section = timing::run(&root, "make bench").await.markdown();
    println!("{section}");
    // `make profile`'s section is not this command's: it is kept.
    let old = std::fs::read_to_string(root.join("BENCHMARKS.md")).unwrap_or_default();
    let mut new = report.markdown(&format!("{text}\n{section}"));
    if let Some(kept) = sections::get(&old, profile::HEADING) {
        new = sections::splice(&new, profile::HEADING, kept, &[timing::HEADING, "## Analysis"]);
    }
    std::fs::write(root.join("BENCHMARKS.md"), new).expect("write BENCHMARKS.md");
    eprintln!("bench: wrote BENCHMARKS.md");
}

/// The service's settings for the run: real defaults, except that the
/// per-IP limits are lifted (the load comes from one address) and mail goes
/// to the fake provider.
pub(crate) fn service_vars(mail_url: &str) -> Vec<(String, String)> {
    [
        ("ENVIRONMENT", "development"),
        ("APP_NAME", "Bench"),
        ("DEFAULT_FROM_EMAIL", "Bench <login@bench.test>"),
        ("MAIL_PROVIDER", "resend"),
        ("MAIL_API_BASE", mail_url),
        ("MAIL_API_KEY", "re_bench"),
        ("SMS_PROVIDER", "log"),
        ("OTP_PEPPER", "bench-pepper-0123456789abcdefghijklmnopqrstuvwxyz"),
        ("JWT_SIGNING_KEYS", "bench:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"),
        ("IP_REQUESTS_PER_HOUR", "1000000"),
        ("IP_VERIFIES_PER_HOUR", "1000000"),
        // A login code's deliberate one-second wait in the queue (README
        // "No timing oracle") is idle time, not load: without it the flow
        // phases measure the service's work, not the wait. The timing
        // comparison sets it back to the default.
        ("LOGIN_DELIVERY_DELAY_SECONDS", "0"),
        // The refresh phase rotates each client's session in a loop to
        // measure a rotation; at the default 10 a minute all but the first
        // ten answers would be the cheaper 429.
        ("REFRESH_PER_SESSION_PER_MINUTE", "1000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub(crate) type Sample = (Endpoint, Duration, bool);

/// Runs `c` clients calling `one` in a loop for `duration`; measures workerd
/// CPU over the phase.
async fn run_phase<F, Fut>(
    phase: &'static str,
    c: usize,
    duration: Duration,
    server: &server::Server,
    one: F,
) -> PhaseResult
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = Vec<Sample>> + Send + 'static,
{
    let pids = server.workerd_pids();
    let cpu_before = procfs::cpu_ms(&pids);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for worker in 0..c {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut completed = 0usize;
            let mut failed = 0usize;
            while Instant::now() < deadline {
                let result = one(worker).await;
                if result.is_empty() {
                    break; // the phase's work ran out
                }
                if result.iter().all(|(_, _, ok)| *ok) {
                    completed += 1;
                } else {
                    failed += 1;
                }
                samples.extend(result);
            }
            (samples, completed, failed)
        }));
    }
    let mut result = PhaseResult::new(phase, c);
    for t in tasks {
        let (samples, completed, failed) = t.await.expect("client task");
        result.completed += completed;
        result.errors += failed;
        for (endpoint, latency, _) in samples {
            result.latencies.entry(endpoint).or_default().push(latency);
        }
    }
    result.elapsed = start.elapsed();
    result.cpu_ms = procfs::cpu_ms(&pids) - cpu_before;
    eprintln!("bench: {phase} c={c}: {:.0}/s, {} errors", result.per_second(), result.errors);
    result
}

async fn post(client: &reqwest::Client, base: &str, path: &str, body: Value) -> Option<Value> {
    let resp = client.post(format!("{}{}", base.trim_end_matches('/'), path)).json(&body).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

fn next_user(users: &AtomicUsize) -> String {
    let i = users.fetch_add(1, Ordering::Relaxed);
    assert!(i < SEEDED_USERS, "ran out of seeded users; raise SEEDED_USERS");
    server::user_email(i)
}

/// One complete login: request, read the code from the fake provider, verify.
async fn login_flow(
    client: &reqwest::Client,
    base: &str,
    mail: &fake_mail::FakeMail,
    users: &AtomicUsize,
) -> Vec<Sample> {
    login_flow_tokens(client, base, mail, users).await.0
}

async fn login_flow_tokens(
    client: &reqwest::Client,
    base: &str,
    mail: &fake_mail::FakeMail,
    users: &AtomicUsize,
) -> (Vec<Sample>, Option<Value>) {
    let email = next_user(users);
    let t = Instant::now();
    let requested =
        post(client, base, "/api/auth/otp/request/", json!({"destination": email, "purpose": "login"})).await;
    let request_time = t.elapsed();
    let Some(otp_id) = requested.as_ref().and_then(|v| v["otp_id"].as_str()).map(str::to_string) else {
        return (vec![(Endpoint::Request, request_time, false)], None);
    };
    let Some(code) = mail.code_for(&email, Duration::from_secs(10)).await else {
        return (vec![(Endpoint::Request, request_time, false)], None);
    };
    let t = Instant::now();
    let tokens = post(client, base, "/api/auth/otp/verify/", json!({"otp_id": otp_id, "otp_code": code})).await;
    let ok = tokens.as_ref().is_some_and(|v| v["access"].is_string() && v["refresh"].is_string());
    (vec![(Endpoint::Request, request_time, true), (Endpoint::Verify, t.elapsed(), ok)], tokens.filter(|_| ok))
}

/// Requests `n` login codes for fresh users (32 at a time) and reads them.
async fn request_codes(
    client: &reqwest::Client,
    base: &str,
    mail: &fake_mail::FakeMail,
    users: &Arc<AtomicUsize>,
    n: usize,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let batch: Vec<_> = (0..32.min(n - out.len()))
            .map(|_| {
                let (client, base, mail, users) = (client.clone(), base.to_string(), mail.clone(), users.clone());
                tokio::spawn(async move {
                    let email = next_user(&users);
                    let v = post(
                        &client,
                        &base,
                        "/api/auth/otp/request/",
                        json!({"destination": email, "purpose": "login"}),
                    )
                    .await?;
                    let code = mail.code_for(&email, Duration::from_secs(10)).await?;
                    Some((v["otp_id"].as_str()?.to_string(), code))
                })
            })
            .collect();
        for t in batch {
            if let Some(pair) = t.await.unwrap() {
                out.push(pair);
            }
        }
    }
    out
}
