//! Schemathesis fuzzes a Worker against src/http/assets/openapi.json: generated
//! requests for every operation (valid and invalid bodies, parameters and
//! headers), each answer checked for no 5xx and conformance of its status,
//! content type, headers and body to the document. Schemathesis comes from
//! scripts/bootstrap-python.sh (target/venv).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::json;

use crate::contract::python_tools;
use crate::helpers::{
    json_of, project_root, random_email, random_hex, spawn_app_with, sql_str, Profile, TestApp, ADMIN_TOKEN,
};

/// Limits high enough that the fuzzer explores the endpoints rather than the
/// 429s (which the document still declares), and access tokens that outlive
/// the run.
const FUZZ: Profile = Profile {
    name: "fuzz",
    vars: &[
        ("IP_REQUESTS_PER_HOUR", "1000000"),
        ("IP_VERIFIES_PER_HOUR", "1000000"),
        ("RATE_LIMIT_PER_HOUR", "1000000"),
        ("VERIFY_FAILURES_PER_DAY", "1000000"),
        ("SMS_DAILY_CAP", "1000000"),
        ("DESTINATION_REQUESTS_BREAKER", "1000000"),
        ("VERIFY_FAILURES_BREAKER", "1000000"),
        ("REFRESH_PER_SESSION_PER_MINUTE", "1000000"),
        ("ACCESS_TOKEN_LIFETIME_SECONDS", "3600"),
    ],
};

/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "25";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// A new user, registered with a fresh email; its email.
async fn new_user(app: &TestApp) -> String {
    let email = random_email();
    let otp = app.otp_for(&email, "register").await;
    let (status, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
    assert_eq!(status, 200, "{body}");
    let token = body["verification_token"].as_str().unwrap();
    let username = format!("fuzz_{}", random_hex(12));
    let answer =
        app.post_json("/api/auth/register/", &json!({ "verification_token": token, "username": username })).await;
    let (status, body) = json_of(answer).await;
    assert_eq!(status, 201, "{body}");
    email
}

/// The access token of a new session of the user with this email.
async fn sign_in(app: &TestApp, email: &str) -> String {
    let otp = app.otp_for(email, "login").await;
    let (status, body) = json_of(app.verify_otp(&otp.id, &otp.code).await).await;
    assert_eq!(status, 200, "{body}");
    body["access"].as_str().unwrap().to_string()
}

/// One `st run` against the Worker; its output and the number of test cases it ran.
fn schemathesis(st: &Path, app: &TestApp, access: &str, filter: &[&str], work_dir: &Path) -> (bool, String, u64) {
    let root = project_root();
    let out = Command::new(st)
        // Hypothesis' example database and reports stay out of the repository.
        .current_dir(work_dir)
        .arg("run")
        .arg(root.join("src/http/assets/openapi.json"))
        .args(["--url", &app.address])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--header", &format!("Authorization: Bearer {access}")])
        // A fixed seed: a failure reproduces; change it to explore further.
        .args(["--seed", "20240611"])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "30"])
        .args(filter)
        .args(["--no-color", "--output-truncate", "false"])
        .output()
        .expect("could not run schemathesis (target/venv/bin/st)");
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let cases = test_cases(&output);
    (out.status.success(), output, cases)
}

/// The number of generated test cases in schemathesis' summary
/// ("Test cases:" then "609 generated, 609 passed").
fn test_cases(output: &str) -> u64 {
    let Some(at) = output.find("Test cases:") else { return 0 };
    output[at + "Test cases:".len()..].split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_contract_violation() {
    let st = tokio::task::spawn_blocking(|| python_tools().join("st")).await.unwrap();
    let app = spawn_app_with(FUZZ).await;
    let email = new_user(&app).await;
    let work_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).unwrap();

    // Revoking a session (the stateful phase follows the link from the
    // sessions list to DELETE, and may pick the caller's own), logging out
    // and signing out everywhere end the session of the token: each run is a user of its own, so
    // that one run ending sessions cannot end another's, and the runs go
    // side by side (one after another they were the suite's longest test).
    let runs: [&[&str]; 4] = [
        &[
            "--exclude-operation-id",
            "revokeSession",
            "--exclude-operation-id",
            "logout",
            "--exclude-operation-id",
            "signOutEverywhere",
            "--exclude-tag",
            "admin",
        ],
        &["--include-operation-id", "listSessions", "--include-operation-id", "revokeSession"],
        // Alone, it has no links to follow: no stateful phase.
        &[
            "--include-operation-id",
            "logout",
            "--include-operation-id",
            "signOutEverywhere",
            "--phases",
            "examples,coverage,fuzzing",
        ],
        // The admin API, with a service token that has every scope (every
        // Worker's ADMIN_API_TOKENS, tests/api/helpers.rs); its ids and
        // destinations are generated, so it finds no user of the other runs.
        &["--include-tag", "admin"],
    ];
    let started = Instant::now();
    let mut running = Vec::new();
    for (n, filter) in runs.into_iter().enumerate() {
        let (st, dir) = (st.clone(), work_dir.join(format!("run-{n}")));
        std::fs::create_dir_all(&dir).unwrap();
        let access = if n == 3 {
            // Every `{id}` is a user of the admin run's own, so its answers
            // are the user's, not only 404s (schemathesis.toml in its
            // working directory, `[parameters]`: schemathesis.readthedocs.io,
            // reference/configuration).
            let email = new_user(&app).await;
            let id = &app.d1(&format!("SELECT id FROM users WHERE email = {}", sql_str(&email))).await[0]["id"];
            std::fs::write(dir.join("schemathesis.toml"), format!("[parameters]\n\"path.id\" = {id}\n")).unwrap();
            ADMIN_TOKEN.to_string()
        } else {
            let email = if n == 0 { email.clone() } else { new_user(&app).await };
            sign_in(&app, &email).await
        };
        let app = app.clone();
        running.push(tokio::task::spawn_blocking(move || schemathesis(&st, &app, &access, filter, &dir)));
    }
    let mut total = 0;
    let mut failures = Vec::new();
    for run in running {
        let (passed, output, cases) = run.await.unwrap();
        println!("{output}");
        total += cases;
        if !passed {
            failures.push(output);
        }
    }
    // Written past the test harness' capture, so every run shows it.
    let summary = format!("schemathesis: {total} generated test cases in {:.0?}\n", started.elapsed());
    let _ = std::io::stderr().write_all(summary.as_bytes());
    let _ = std::fs::remove_dir_all(&work_dir);
    assert!(failures.is_empty(), "schemathesis found problems:\n{}", failures.join("\n"));
    assert!(total > 0, "schemathesis ran no test case");
}
