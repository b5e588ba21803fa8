//! `spawn_app()`: the real Worker under `wrangler dev` (local workerd, local
//! D1, the real Durable Object), with fake mail and Twilio servers on loopback.
//!
//! The Worker is built once per test run. Each configuration profile starts
//! one `wrangler dev` that all its tests share (they use unique destinations),
//! with its own fresh state directory. Everything started here is stopped when
//! the test process ends, however it ends: `wrangler dev` runs under a small
//! supervisor that waits on a pipe from this process and, when the pipe
//! closes, kills the whole process group and removes the state directory.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Test secrets: fixed so failures are reproducible; never used outside tests.
pub const TEST_PEPPER: &str = "test-pepper-0123456789abcdefghijklmnopqrstuvwxyz";
/// Ed25519 seeds (32 bytes each, base64url).
pub const TEST_KEY_A: &str = "key-a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
pub const TEST_KEY_B: &str = "key-b:HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE";
pub const TWILIO_SID: &str = "AC00000000000000000000000000000000";
pub const TWILIO_TOKEN: &str = "twilio-test-auth-token";
pub const MAIL_KEY: &str = "re_test_mail_api_key";

/// A named set of settings; each profile gets its own running Worker.
#[derive(Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    pub vars: &'static [(&'static str, &'static str)],
}

/// Real providers (faked on loopback), development environment.
pub const DEFAULT: Profile = Profile { name: "default", vars: &[] };

fn base_vars(mail: &str, sms: &str) -> Vec<(String, String)> {
    let v = |k: &str, val: &str| (k.to_string(), val.to_string());
    vec![
        v("ENVIRONMENT", "development"),
        v("APP_NAME", "Acme"),
        v("DEFAULT_FROM_EMAIL", "Acme <login@acme.test>"),
        v("MAIL_PROVIDER", "resend"),
        v("MAIL_API_BASE", mail),
        v("MAIL_API_KEY", MAIL_KEY),
        v("SMS_PROVIDER", "twilio"),
        v("TWILIO_API_BASE", sms),
        v("TWILIO_ACCOUNT_SID", TWILIO_SID),
        v("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
        v("TWILIO_PHONE_NUMBER", "+15005550006"),
        v("TWILIO_MESSAGING_SERVICE_SID", ""),
        v("OTP_PEPPER", TEST_PEPPER),
        v("JWT_SIGNING_KEYS", TEST_KEY_A),
    ]
}

pub struct TestApp {
    pub address: String,
    pub worker: Arc<RunningWorker>,
    pub client: reqwest::Client,
}

pub struct RunningWorker {
    pub address: String,
    pub mail: MockServer,
    pub sms: MockServer,
    pub log_path: PathBuf,
    /// Held open for the life of the test process; see the module comment.
    _supervisor_stdin: Mutex<ChildStdin>,
    _supervisor: Mutex<Child>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(DEFAULT).await
}

pub async fn spawn_app_with(profile: Profile) -> TestApp {
    static WORKERS: OnceLock<Mutex<HashMap<&'static str, Arc<OnceCell<Arc<RunningWorker>>>>>> =
        OnceLock::new();
    let cell = WORKERS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(profile.name)
        .or_default()
        .clone();
    let worker = cell.get_or_init(|| start_worker(profile)).await.clone();
    TestApp {
        address: worker.address.clone(),
        worker,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET failed")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.expect("POST failed")
    }

    /// Everything the Worker printed so far (its console).
    pub fn worker_log(&self) -> String {
        std::fs::read_to_string(&self.worker.log_path).unwrap_or_default()
    }
}

/// The project root (where wrangler.toml is).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// PATH with node_modules/.bin first, so wrangler runs on the npm Node 22.
fn tool_path() -> String {
    let bin = project_root().join("node_modules/.bin");
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

pub fn wrangler() -> Command {
    let mut cmd = Command::new(project_root().join("node_modules/.bin/wrangler"));
    cmd.current_dir(project_root())
        .env("PATH", tool_path())
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "1")
        .env("NO_COLOR", "1")
        // Built once below; wrangler's [build] command then does nothing.
        .env("OTP_EDGE_SKIP_BUILD", "1");
    cmd
}

/// Builds the release bundle once per test process.
pub fn build_once() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("sh")
            .arg(project_root().join("scripts/build.sh"))
            .current_dir(project_root())
            .env_remove("OTP_EDGE_SKIP_BUILD")
            .status()
            .expect("could not run scripts/build.sh");
        assert!(status.success(), "scripts/build.sh failed");
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The fake providers answer like the real ones unless a test mounts
/// something more specific.
async fn fake_providers() -> (MockServer, MockServer) {
    let mail = MockServer::builder().start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"
        })))
        .with_priority(u8::MAX)
        .mount(&mail)
        .await;
    let sms = MockServer::builder().start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "sid": "SM00000000000000000000000000000000", "status": "queued"
        })))
        .with_priority(u8::MAX)
        .mount(&sms)
        .await;
    (mail, sms)
}

async fn start_worker(profile: Profile) -> Arc<RunningWorker> {
    tokio::task::spawn_blocking(build_once).await.unwrap();
    let (mail, sms) = fake_providers().await;

    let mut vars = base_vars(&mail.uri(), &sms.uri());
    for (k, v) in profile.vars {
        match vars.iter_mut().find(|(name, _)| name == k) {
            Some(entry) => entry.1 = v.to_string(),
            None => vars.push((k.to_string(), v.to_string())),
        }
    }

    let run_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("worker-{}-{}", profile.name, std::process::id()));
    let state_dir = run_dir.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let log_path = run_dir.join("wrangler.log");

    let migrate = tokio::task::spawn_blocking({
        let state_dir = state_dir.clone();
        move || {
            wrangler()
                .args(["d1", "migrations", "apply", "DB", "--local", "--persist-to"])
                .arg(&state_dir)
                .output()
                .expect("could not run wrangler d1 migrations apply")
        }
    })
    .await
    .unwrap();
    assert!(
        migrate.status.success(),
        "migrations failed: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let port = free_port();
    let mut dev = wrangler();
    dev.args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
        .args(["--inspector-port", &free_port().to_string()])
        .arg("--persist-to")
        .arg(&state_dir)
        .args(["--show-interactive-dev-session=false", "--test-scheduled", "--log-level", "info"]);
    for (k, v) in &vars {
        dev.arg("--var").arg(format!("{k}:{v}"));
    }
    let (supervisor, stdin) = supervise(dev, &log_path, &run_dir);

    let address = format!("http://127.0.0.1:{port}");
    wait_until_up(&address, &log_path).await;
    Arc::new(RunningWorker {
        address,
        mail,
        sms,
        log_path,
        _supervisor_stdin: Mutex::new(stdin),
        _supervisor: Mutex::new(supervisor),
    })
}

/// Starts `cmd` in its own process group under a bash supervisor that kills
/// the group and removes `cleanup_dir` when our end of its stdin closes.
fn supervise(cmd: Command, log_path: &Path, cleanup_dir: &Path) -> (Child, ChildStdin) {
    const SCRIPT: &str = r#"
set -m
log=$1 dir=$2; shift 2
"$@" >"$log" 2>&1 </dev/null &
child=$!
set +m
stop() { kill -TERM -- -"$child" 2>/dev/null; sleep 1; kill -KILL -- -"$child" 2>/dev/null; rm -rf "$dir"; }
trap stop EXIT
read -r _ || true
"#;
    let mut sup = Command::new("bash");
    sup.arg("-c").arg(SCRIPT).arg("supervisor").arg(log_path).arg(cleanup_dir);
    sup.arg(cmd.get_program()).args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        sup.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sup.env(k, v),
            None => sup.env_remove(k),
        };
    }
    let mut child = sup.stdin(Stdio::piped()).stderr(Stdio::null()).spawn().expect("could not start supervisor");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.flush();
    (child, stdin)
}

async fn wait_until_up(address: &str, log_path: &Path) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(resp) = client.get(format!("{address}/healthz")).send().await {
            if resp.status().is_success() {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "wrangler dev did not become healthy at {address}; its log:\n{}",
                std::fs::read_to_string(log_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
