//! Starts a built Worker bundle on the local workerd through
//! bench/serve.mjs (Miniflare's API), and stops it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Server {
    pub url: String,
    /// From process start to the first answered request.
    pub startup: Duration,
    child: Child,
    pid: u32,
}

pub fn user_email(i: usize) -> String {
    format!("bench-{i}@bench.test")
}

/// Writes a seed SQL file, target/bench-seed.sql, from `statements`.
pub fn write_seed(root: &Path, statements: &[String]) -> PathBuf {
    let path = root.join("target/bench-seed.sql");
    std::fs::write(&path, statements.concat()).expect("write seed SQL");
    path
}

/// Writes a seed SQL file with `n` active users (`users_sql`).
pub fn seed_users_sql(root: &Path, n: usize) -> PathBuf {
    write_seed(root, &[users_sql(n)])
}

/// SQL that creates `n` active users bench-0@bench.test ... in one statement.
pub fn users_sql(n: usize) -> String {
    format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) \
         INSERT INTO users (id, username, email, status, created_at, updated_at) \
         SELECT printf('00000000-0000-4000-8000-%012d', i), 'bench' || i, 'bench-' || i || '@bench.test', 'active', 0, 0 FROM n;\n",
        last = n - 1
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    pub async fn start(root: &Path, script: &str, seed: Option<&Path>, vars: &[(String, String)]) -> Server {
        Server::start_with(root, script, seed, vars, None).await
    }

    /// As `start`, with workerd's V8 inspector on `inspector_port`.
    pub async fn start_with(
        root: &Path,
        script: &str,
        seed: Option<&Path>,
        vars: &[(String, String)],
        inspector_port: Option<u16>,
    ) -> Server {
        let port = free_port();
        let mut cmd = Command::new(root.join("node_modules/.bin/node"));
        cmd.current_dir(root)
            .arg("bench/serve.mjs")
            .args(["--script", script, "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(seed) = seed {
            cmd.args(["--migrations", "migrations", "--seed-sql"]).arg(seed);
        }
        if let Some(p) = inspector_port {
            cmd.args(["--inspector-port", &p.to_string()]);
        }
        for (k, v) in vars {
            cmd.arg("--var").arg(format!("{k}={v}"));
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("start node bench/serve.mjs");
        let pid = child.id().unwrap();
        // Start-up: until the Worker answers anything (a 404 counts), before
        // migrations and seeding, which only the benchmark needs.
        let client = reqwest::Client::new();
        let first = format!("http://127.0.0.1:{port}/");
        while client.get(&first).send().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(120), "the Worker did not answer within 120 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let startup = started.elapsed();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .expect("the Worker did not start within 120 s")
                .expect("read serve.mjs output")
                .unwrap_or_else(|| panic!("serve.mjs for {script} exited before it was ready"));
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(url) = v["ready"].as_str() {
                    break url.to_string();
                }
            }
        };
        // The Worker's own console (e.g. delivery logs) is drained, not kept.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        if seed.is_some() {
            let health = client.get(format!("{url}healthz")).send().await.expect("healthz");
            assert!(health.status().is_success(), "the service is not healthy: {:?}", health.text().await);
        }
        Server { url, startup, child, pid }
    }

    pub fn workerd_pids(&self) -> Vec<u32> {
        crate::procfs::descendants_named(self.pid, "workerd")
    }

    pub fn stop(mut self) {
        // The whole process group: node and the workerd it started. The "--"
        // matters: without it procps-ng's kill (4.0.2) takes the group's first
        // digit, `kill -TERM -16437` signalling -1: every process there is.
        let _ = std::process::Command::new("kill").args(["-s", "TERM", "--", &format!("-{}", self.pid)]).status();
        let _ = self.child.start_kill();
    }
}
