//! The demo login page in a real browser: headless Chromium (Debian's
//! `/usr/bin/chromium`, installed by `scripts/bootstrap-browser.sh`) driven
//! by `tests/browser/demo_login.mjs` through playwright-core, against the
//! real Worker. The script asks this test for each code over its stdin and
//! stdout (JSON lines); the test reads the code the fake provider received.
//!
//! It signs in by email with another session open, revokes that one,
//! refreshes, adds a phone to the account, signs out everywhere else (of a
//! session opened meanwhile), logs out; creates an account by phone and revokes the current
//! session; and requests codes for one address until the 429, whose
//! countdown must run with the send buttons off. Screenshots go to
//! `test-artifacts/` (git-ignored).
//!
//! The demo page being off in production is a unit test of the configuration
//! (`src/config.rs`): a production Worker needs https providers the harness
//! does not fake.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    assert_error, json_of, project_root, random_email, random_hex, random_phone, spawn_app, sql_str, TestApp,
};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Everything the browser does, from launch to the last screenshot.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::test]
async fn the_demo_page_signs_in_registers_and_counts_down_in_a_real_browser() {
    let app = spawn_app().await;

    // An existing user, already signed in elsewhere (through the API).
    let email = random_email();
    let user_id = app.seed_user(&email, "active").await;
    let otp = app.otp_for(&email, "login").await;
    let (status, other) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
    assert_eq!(status, 200, "{other}");
    let other_session = other["session_id"].as_str().unwrap().to_string();
    let other_access = other["access"].as_str().unwrap().to_string();

    let screenshot = project_root().join("test-artifacts/demo-login.png");
    for stale in ["demo-login.png", "demo-rate-limit.png", "demo-failure.png"] {
        let _ = std::fs::remove_file(project_root().join("test-artifacts").join(stale));
    }
    let phone = random_phone();
    let added_phone = random_phone();
    let username = format!("demo_{}", random_hex(10));
    let mut run = BrowserRun::start(json!({
        "base_url": app.address,
        "client_ip": app.client_ip,
        "chromium": CHROMIUM,
        "artifacts_dir": project_root().join("test-artifacts"),
        "timeout_ms": (BROWSER_TIMEOUT - Duration::from_secs(10)).as_millis() as u64,
        "login": { "destination": email, "user_id": user_id, "other_session_id": other_session, "phone": added_phone },
        "register": { "destination": phone, "username": username },
        // RATE_LIMIT_PER_HOUR is 5: the sixth request is refused.
        "rate_limit": { "destination": random_email(), "max_requests": 8 },
    }));
    let result = match tokio::time::timeout(BROWSER_TIMEOUT, run.converse(&app)).await {
        Ok(result) => result,
        Err(_) => panic!("the browser test did not finish within {BROWSER_TIMEOUT:?}; its log:\n{}", run.log()),
    };
    assert_eq!(result["ok"], true, "the browser test failed: {result}\nits log:\n{}", run.log());
    assert_eq!(result["requests_until_429"], 6, "{result}");
    drop(run);

    // What the page did, seen from the API and the database.
    let me = app.send(app.client.get(app.url("/api/auth/me/")).bearer_auth(&other_access)).await;
    assert_error(me, 401, "SESSION_REVOKED").await;
    let login_session = result["login_session_id"].as_str().unwrap();
    let registered = result["registered_user_id"].as_str().unwrap();
    let rows = app
        .d1(&format!(
            "SELECT s.id, s.revoked_reason, u.username, u.phone_e164 FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id IN ({}, {}) OR s.user_id = {} ORDER BY s.created_at",
            sql_str(login_session),
            sql_str(&other_session),
            sql_str(registered),
        ))
        .await;
    assert_eq!(rows.len(), 3, "the two sessions of the login and one of the new account: {rows:?}");
    let reasons: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["id"].as_str().unwrap(), r["revoked_reason"].as_str().unwrap_or("live"))).collect();
    assert_eq!(
        reasons,
        [(other_session.as_str(), "revoked_by_user"), (login_session, "logout"), (reasons[2].0, "revoked_by_user")],
        "{rows:?}"
    );
    let registered_row = (rows[2]["username"].as_str(), rows[2]["phone_e164"].as_str());
    assert_eq!(registered_row, (Some(username.as_str()), Some(phone.as_str())));

    // The phone the page added to the email account, and the session that
    // signing out everywhere else ended.
    let user =
        app.d1(&format!("SELECT email, phone_e164, phone_verified FROM users WHERE id = {}", sql_str(&user_id))).await;
    assert_eq!(user, [json!({ "email": email, "phone_e164": added_phone, "phone_verified": 1 })]);
    let late = result["late_session_id"].as_str().unwrap();
    let late_row = app.d1(&format!("SELECT revoked_reason FROM sessions WHERE id = {}", sql_str(late))).await;
    assert_eq!(late_row, [json!({ "revoked_reason": "signed_out_everywhere" })]);

    let saved = std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 1000);
    assert!(saved, "no screenshot at {}", screenshot.display());
}

/// The page is two static files under a strict CSP, and the script keeps to
/// the rules an integrator's page should: no HTML from data, no stored
/// tokens, no code from strings, nothing from elsewhere.
#[tokio::test]
async fn the_demo_page_is_static_under_a_strict_policy() {
    let app = spawn_app().await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    let header = |name: &str| page.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(header("content-type").as_deref(), Some("text/html; charset=utf-8"));
    assert_eq!(
        header("content-security-policy").as_deref(),
        Some(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    );
    assert_eq!(header("x-frame-options").as_deref(), Some("DENY"));
    let html = page.text().await.unwrap();
    assert_eq!(html, std::fs::read_to_string(project_root().join("src/http/assets/demo.html")).unwrap());

    let script = app.get("/demo.js").await;
    assert_eq!(script.status(), 200);
    let content_type = script.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("text/javascript; charset=utf-8"));
    let js = script.text().await.unwrap();
    assert_eq!(js, std::fs::read_to_string(project_root().join("src/http/assets/demo.js")).unwrap());

    let lower = html.to_ascii_lowercase();
    assert_eq!(lower.matches("<script").count(), 1, "one script element");
    assert!(lower.contains(r#"<script src="/demo.js" defer></script>"#), "the script is /demo.js, not inline");
    for banned in ["http://", "https://", "//cdn", " onclick=", " onload=", " onsubmit=", " style=\"", "javascript:"] {
        assert!(!lower.contains(banned), "demo.html contains {banned:?}");
    }
    for banned in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "localStorage",
        "sessionStorage",
        "indexedDB",
        "document.cookie",
        "eval(",
        "new Function",
        "http://",
        "https://",
    ] {
        assert!(!js.contains(banned), "demo.js contains {banned:?}");
    }
}

/// The Node script and the browser it starts. Dropping it stops both, and
/// removes the browser profile, however the test ends.
struct BrowserRun {
    node: Child,
    stdin: Option<ChildStdin>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    dir: PathBuf,
    profile: PathBuf,
}

impl BrowserRun {
    fn start(mut config: Value) -> BrowserRun {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run scripts/bootstrap-browser.sh (or scripts/bootstrap.sh)"
        );
        let root = project_root();
        let node = root.join("node_modules/.bin/node");
        assert!(
            root.join("node_modules/playwright-core/package.json").exists(),
            "playwright-core is missing: run scripts/bootstrap.sh"
        );
        let name = format!("browser-{}-{}", std::process::id(), random_hex(8));
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        config["user_data_dir"] = json!(profile);
        let log = std::fs::File::create(dir.join("browser.log")).unwrap();

        let mut cmd = Command::new(&node);
        cmd.arg(root.join("tests/browser/demo_login.mjs"))
            .arg(config.to_string())
            .current_dir(&root)
            // Never fetch a browser of Playwright's own.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .env("PLAYWRIGHT_BROWSERS_PATH", dir.join("no-browsers"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            // Its own process group, so that it can be stopped as a whole.
            .process_group(0);
        let mut node = cmd.spawn().unwrap_or_else(|e| panic!("could not start {}: {e}", node.display()));

        let stdout = node.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        BrowserRun { stdin: node.stdin.take(), node, lines, dir, profile }
    }

    /// Answers the script's requests for codes until it reports its result.
    async fn converse(&mut self, app: &TestApp) -> Value {
        while let Some(line) = self.lines.recv().await {
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                println!("browser: {line}");
                continue;
            };
            let answer = if let Some(destination) = message["need_code"].as_str() {
                json!({ "code": app.code_sent_to(destination).await })
            } else if let Some(destination) = message["need_session"].as_str() {
                // A login elsewhere, through the API.
                let otp = app.otp_for(destination, "login").await;
                let (status, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
                assert_eq!(status, 200, "{body}");
                json!({ "session_id": body["session_id"] })
            } else if message.get("ok").is_some() {
                return message;
            } else {
                println!("browser: {message}");
                continue;
            };
            let stdin = self.stdin.as_mut().expect("stdin is open");
            writeln!(stdin, "{answer}").and_then(|_| stdin.flush()).expect("writing to the script");
        }
        panic!("the browser script ended without a result; its log:\n{}", self.log())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("browser.log")).unwrap_or_default()
    }

    /// Chromium processes of this run: their command line names our profile.
    fn chromium_pids(&self) -> Vec<u32> {
        let needle = self.profile.to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
            })
            .collect()
    }
}

/// Sends `signal` to a process group (`-pgid`) or a process.
fn kill(signal: &str, target: &str) {
    let _ = Command::new("kill").args([signal, "--", target]).stderr(Stdio::null()).status();
}

/// The process group of `pid`, from /proc/pid/stat (the field after the state).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(2)?.parse().ok()
}

impl Drop for BrowserRun {
    fn drop(&mut self) {
        // Closing stdin asks the script to close the browser and exit;
        // SIGTERM too (Playwright closes its browsers on it); then SIGKILL.
        drop(self.stdin.take());
        let group = format!("-{}", self.node.id());
        if self.node.try_wait().ok().flatten().is_none() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.node.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                if deadline - Instant::now() < Duration::from_secs(5) {
                    kill("-TERM", &group);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        kill("-KILL", &group);
        let _ = self.node.wait();
        // Playwright starts Chromium in a process group of its own; whatever
        // of it outlived the script goes now.
        for pid in self.chromium_pids() {
            if process_group(pid) == Some(pid) {
                kill("-KILL", &format!("-{pid}"));
            }
            kill("-KILL", &pid.to_string());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
