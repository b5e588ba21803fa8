//! A client generated from the served document works: the Worker's own
//! `/openapi.json` goes through openapi-python-client (target/venv, from
//! scripts/bootstrap-python.sh), and tests/python/generated_client_flow.py
//! registers, logs in twice, refreshes, lists and revokes sessions and logs
//! out through that client alone, against the running Worker. A document the
//! generator reads wrongly (a body model missing fields, an answer it cannot
//! parse) or only with warnings fails here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::contract::python_tools;
use crate::helpers::{project_root, spawn_app_with, Profile};

/// Fixed-code identities (nothing is sent), so the script needs no access to
/// the fake providers: (destination, code).
const EMAIL: (&str, &str) = ("generated-client@acme.test", "314159");
const PHONE: (&str, &str) = ("+15550004242", "271828");

/// EMAIL and PHONE as `TEST_IDENTITIES`, valid until 2099 (a const cannot
/// concatenate, so spelled out and checked in the test).
const GENERATED_CLIENT: Profile = Profile {
    name: "generated-client",
    vars: &[("TEST_IDENTITIES", "generated-client@acme.test:314159:2099-01-01,+15550004242:271828:2099-01-01")],
};

/// Where the client is generated, afresh each run (kept afterwards, to read).
fn client_dir() -> PathBuf {
    project_root().join("target/generated-client")
}

fn output_text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Generates the package `otp_edge_client` from `document` into `dir`;
/// any generator warning (a part of the document it could not read) fails.
fn generate(tools: &Path, document: &[u8], dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("openapi.json");
    std::fs::write(&path, document).unwrap();
    let out = Command::new(tools.join("openapi-python-client"))
        .current_dir(dir)
        .arg("generate")
        .arg("--path")
        .arg(&path)
        .args(["--meta", "none", "--output-path", "otp_edge_client", "--fail-on-warning"])
        // No post-hooks (ruff): the generated code is only run, not read.
        .arg("--config")
        .arg(project_root().join("tests/python/openapi-python-client.json"))
        .output()
        .expect("could not run openapi-python-client (target/venv/bin/openapi-python-client)");
    let text = output_text(&out);
    assert!(
        out.status.success() && !text.contains("Warning"),
        "openapi-python-client could not read /openapi.json cleanly:\n{text}"
    );
}

#[tokio::test]
async fn a_python_client_generated_from_the_served_document_runs_the_whole_flow() {
    let identities = format!("{}:{}:2099-01-01,{}:{}:2099-01-01", EMAIL.0, EMAIL.1, PHONE.0, PHONE.1);
    assert_eq!(GENERATED_CLIENT.vars, [("TEST_IDENTITIES", identities.as_str())]);
    let tools = tokio::task::spawn_blocking(python_tools).await.unwrap();
    let app = spawn_app_with(GENERATED_CLIENT).await;
    let started = Instant::now();

    // The document as the Worker serves it, not as the repository has it.
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), 200);
    let document = resp.bytes().await.unwrap();
    let dir = client_dir();
    let generator = (tools.clone(), dir.clone());
    tokio::task::spawn_blocking(move || generate(&generator.0, &document, &generator.1)).await.unwrap();
    let generated = started.elapsed();

    let mut script = Command::new(tools.join("python"));
    script
        .current_dir(&dir)
        .arg(project_root().join("tests/python/generated_client_flow.py"))
        .arg("--client-dir")
        .arg(&dir)
        .args(["--base-url", &app.address])
        .args(["--client-ip", &app.client_ip])
        .args(["--email", &format!("{}:{}", EMAIL.0, EMAIL.1)])
        .args(["--phone", &format!("{}:{}", PHONE.0, PHONE.1)]);
    let out = tokio::task::spawn_blocking(move || script.output().expect("could not run target/venv/bin/python"))
        .await
        .unwrap();
    let text = output_text(&out);
    println!("{text}");
    assert!(out.status.success(), "the generated Python client failed against the Worker ({}):\n{text}", out.status);

    // Written past the test harness' capture, so every run shows it.
    let summary = format!(
        "generated client: generated in {generated:.1?}, flow passed in {:.1?}\n",
        started.elapsed() - generated
    );
    let _ = std::io::stderr().write_all(summary.as_bytes());
    for destination in [EMAIL.0, PHONE.0] {
        assert_eq!(app.messages_to(destination).await, 0, "a test identity got a message: {destination}");
    }
}
