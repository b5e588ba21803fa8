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
use wiremock::MockServer;

/// Test secrets: fixed so failures are reproducible; never used outside tests.
pub const TEST_PEPPER: &str = "test-pepper-0123456789abcdefghijklmnopqrstuvwxyz";
/// Ed25519 seeds (32 bytes each, base64url).
pub const TEST_KEY_A: &str = "key-a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
pub const TEST_KEY_B: &str = "key-b:HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE";
pub const TWILIO_SID: &str = "AC00000000000000000000000000000000";
pub const TWILIO_TOKEN: &str = "twilio-test-auth-token";
pub const MAIL_KEY: &str = "re_test_mail_api_key";
/// Admin API tokens, in the shape scripts/admin-token.sh mints: `ADMIN_TOKEN`
/// (id `ops`) has every scope, `SUPPORT_TOKEN` (id `support`) `users:read` only.
pub const ADMIN_TOKEN: &str = "oea_YwfrINqH20j7DHSwTlZ5Y-QEoZq-mJ4y1HrX9f7hVxQ";
pub const SUPPORT_TOKEN: &str = "oea_1VKHyHu2E1TNFy7z30WJpBiVnTqPYNptCfmE22VOYUg";

/// Every test Worker's `ADMIN_API_TOKENS`: the two tokens' entries.
fn admin_api_tokens() -> String {
    use otp_edge::domain::crypto::{hex, sha256};
    let entry = |id: &str, scopes: &str, token: &str| format!("{id}:{scopes}:{}", hex(&sha256(token.as_bytes())));
    let ops = entry("ops", "users:read users:write sessions:write audit:read", ADMIN_TOKEN);
    format!("{ops},{}", entry("support", "users:read", SUPPORT_TOKEN))
}

/// A named set of settings; each profile gets its own running Worker.
#[derive(Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    pub vars: &'static [(&'static str, &'static str)],
}

/// In a profile's value, the address the Worker is started on.
pub const WORKER_ADDRESS: &str = "{worker}";

/// Real providers (faked on loopback), development environment.
pub const DEFAULT: Profile = Profile { name: "default", vars: &[] };

/// Codes live two seconds, so a test can outwait them.
pub const SHORT_TTL: Profile =
    Profile { name: "short-ttl", vars: &[("OTP_TTL_EMAIL_SECONDS", "2"), ("OTP_TTL_PHONE_SECONDS", "2")] };

/// Login requests say plainly when there is no (active) account.
pub const NO_ENUMERATION_PROTECTION: Profile =
    Profile { name: "no-enumeration-protection", vars: &[("ENUMERATION_PROTECTION", "false")] };

/// Fixed-code identities: two valid until 2099, one that expired in 2020.
pub const TEST_IDS: Profile = Profile {
    name: "test-ids",
    vars: &[(
        "TEST_IDENTITIES",
        "review@acme.test:246810:2099-01-01,+15550009999:135790:2099-01-01,old@acme.test:111111:2020-01-01",
    )],
};

/// Eight-digit codes.
pub const LONG_CODES: Profile = Profile { name: "long-codes", vars: &[("OTP_LENGTH", "8")] };

fn base_vars(mail: &str, sms: &str, captcha: &str) -> Vec<(String, String)> {
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
        // The issuer is the service's URL, as README asks: discovery works.
        v("JWT_ISSUER", WORKER_ADDRESS),
        // Used only by profiles that set TURNSTILE_SECRET_KEY.
        v("TURNSTILE_API_BASE", captcha),
        v("ADMIN_API_TOKENS", &admin_api_tokens()),
    ]
}

#[derive(Clone)]
pub struct TestApp {
    pub address: String,
    pub worker: Arc<RunningWorker>,
    pub client: reqwest::Client,
    /// Per destination, how many messages `code_sent_to` has already read.
    read_messages: Arc<Mutex<HashMap<String, usize>>>,
    /// The `CF-Connecting-IP` this test's requests carry (from 198.18.0.0/15).
    pub client_ip: String,
}

pub struct RunningWorker {
    pub address: String,
    pub profile: Profile,
    pub mail: MockServer,
    pub sms: MockServer,
    /// The rules those fakes enforce, what they refused and what they sent (tests/api/providers).
    pub providers: crate::providers::Fakes,
    /// A fake Turnstile siteverify, and the checks it answered.
    pub captcha: MockServer,
    pub siteverify: Arc<crate::providers::turnstile::Siteverify>,
    pub log_path: PathBuf,
    /// The `--persist-to` directory: local D1 and the Durable Object's storage.
    pub state_dir: PathBuf,
    /// The Worker's local D1 fails at once (SQLITE_BUSY, answered as 503) if
    /// another process holds the SQLite write lock, so `TestApp::d1` writes
    /// only while no request is in flight: requests share, test writes are
    /// exclusive (reads need no gate: see `TestApp::d1`).
    db_gate: tokio::sync::RwLock<()>,
    /// Held open while the Worker should run: for a shared Worker, the life
    /// of the test process (see the module comment); `stop` closes it.
    supervisor_stdin: Mutex<Option<ChildStdin>>,
    supervisor: Mutex<Child>,
}

impl RunningWorker {
    /// Stops this Worker and waits until its processes are gone (so another
    /// Worker can start on the same state). Dropping the last handle to a
    /// private Worker stops it too, without waiting.
    pub async fn stop(&self) {
        drop(self.supervisor_stdin.lock().unwrap().take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.supervisor.lock().unwrap().try_wait().expect("could not wait for the supervisor").is_none() {
            assert!(Instant::now() < deadline, "the Worker at {} did not stop within 30 s", self.address);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(DEFAULT).await
}

pub async fn spawn_app_with(profile: Profile) -> TestApp {
    /// One Worker per profile name, started by the first test that asks.
    type Workers = Mutex<HashMap<&'static str, Arc<OnceCell<Arc<RunningWorker>>>>>;
    static WORKERS: OnceLock<Workers> = OnceLock::new();
    let cell = WORKERS.get_or_init(Default::default).lock().unwrap().entry(profile.name).or_default().clone();
    let worker = cell.get_or_init(|| start_worker(profile)).await.clone();
    TestApp::of(worker)
}

/// A state directory (local D1 and the Durable Object's storage) of one
/// test's own, migrated once when created, on which Workers can be started
/// one after another: a restart with other settings keeps users and
/// sessions. Removed when dropped, or when the test process exits.
pub struct WorkerState {
    name: String,
    run_dir: PathBuf,
    state_dir: PathBuf,
    starts: std::sync::atomic::AtomicUsize,
    /// Removes `run_dir` when closed (by drop or at exit); see `supervise`.
    _cleanup_stdin: ChildStdin,
    _cleanup: Child,
}

impl WorkerState {
    pub async fn new(name: &str) -> WorkerState {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let run_dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("private-{name}-{}-{n}", std::process::id()));
        // Registered for removal before anything is written into it; the
        // supervised command only waits to be stopped.
        let mut idle = Command::new("sleep");
        idle.arg("infinity");
        let (cleanup, cleanup_stdin) = supervise(idle, Path::new("/dev/null"), Some(&run_dir));
        let state_dir = migrated_state_dir(&run_dir).await;
        WorkerState {
            name: name.to_string(),
            run_dir,
            state_dir,
            starts: Default::default(),
            _cleanup_stdin: cleanup_stdin,
            _cleanup: cleanup,
        }
    }

    /// Starts a Worker on this state whose wrangler config lacks the
    /// rate-limiter Durable Object binding: the platform failing to reach
    /// the object, as the service sees it.
    pub async fn start_without_rate_limiter(&self, profile: Profile) -> TestApp {
        let unbound = ("bindings = [{ name = \"RATE_LIMITER\", class_name = \"RateLimiter\" }]", "bindings = []");
        self.start_with_wrangler_changes(profile, "no-rate-limiter", &[unbound], false).await
    }

    /// Starts a Worker on this state with `changes` (from, to) made to
    /// wrangler.toml, each of which must find its text there; `variant`
    /// names its files. Unless `healthy`, a 503 from /healthz counts as up.
    pub async fn start_with_wrangler_changes(
        &self,
        profile: Profile,
        variant: &str,
        changes: &[(&str, &str)],
        healthy: bool,
    ) -> TestApp {
        let root = project_root();
        let config = std::fs::read_to_string(root.join("wrangler.toml")).unwrap();
        let abs = |p: &str| root.join(p).display().to_string();
        let mut replaced = vec![
            ("main = \"build/index.js\"", format!("main = {:?}", abs("build/index.js"))),
            ("command = \"sh scripts/build.sh\"", "command = \"true\"".to_string()),
            ("migrations_dir = \"migrations\"", format!("migrations_dir = {:?}", abs("migrations"))),
            ("directory = \"src/http/assets\"", format!("directory = {:?}", abs("src/http/assets"))),
        ];
        replaced.extend(changes.iter().map(|(from, to)| (*from, to.to_string())));
        let replaced = replaced.into_iter().fold(config, |text, (from, to)| {
            assert!(text.contains(from), "wrangler.toml no longer has {from}");
            text.replace(from, &to)
        });
        let dir = self.run_dir.join(variant);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("wrangler.toml"), replaced).unwrap();
        let log_path = self.run_dir.join(format!("wrangler-{}-{variant}.log", self.name));
        TestApp::of(
            launch_with(profile, self.state_dir.clone(), log_path, None, Some(&dir.join("wrangler.toml")), healthy)
                .await,
        )
    }

    /// Starts a Worker whose settings are refused (its /healthz answers 503),
    /// to see what a misconfigured deployment tells its clients.
    pub async fn start_misconfigured(&self, profile: Profile) -> TestApp {
        let log_path = self.run_dir.join(format!("wrangler-{}-misconfigured.log", self.name));
        TestApp::of(launch_with(profile, self.state_dir.clone(), log_path, None, None, false).await)
    }

    /// Starts a Worker of its own on this state, with `profile`'s settings
    /// (and fresh fake providers). Stop the previous one first
    /// (`app.worker.stop()`): two Workers must not share the state.
    pub async fn start(&self, profile: Profile) -> TestApp {
        let n = self.starts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log_path = self.run_dir.join(format!("wrangler-{}-{n}-{}.log", self.name, profile.name));
        TestApp::of(launch(profile, self.state_dir.clone(), log_path, None).await)
    }
}

/// A random address in 198.18.0.0/15, the range reserved for benchmarks.
pub fn random_ip() -> String {
    let mut b = [0u8; 3];
    getrandom::getrandom(&mut b).expect("OS randomness");
    format!("198.{}.{}.{}", 18 + (b[0] & 1), b[1], b[2])
}

impl TestApp {
    fn of(worker: Arc<RunningWorker>) -> TestApp {
        TestApp {
            address: worker.address.clone(),
            worker,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            read_messages: Default::default(),
            client_ip: random_ip(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    /// Sends a request built on `self.client`; every request to the Worker goes through here,
    /// and every answer is checked against the OpenAPI document (`contract::checked`).
    /// Unless the test sets its own, each `TestApp` speaks from its own random
    /// client IP (`CF-Connecting-IP`, which Cloudflare sets in production), so
    /// tests sharing a Worker do not share the per-IP limits.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let mut request = request.build().expect("a well-formed request");
        if !request.headers().contains_key("cf-connecting-ip") {
            request.headers_mut().insert("cf-connecting-ip", self.client_ip.parse().unwrap());
        }
        let _in_flight = self.worker.db_gate.read().await;
        let method = request.method().clone();
        let response = self.client.execute(request).await.expect("request to the Worker failed");
        // Every answer must be one src/http/assets/openapi.json allows (tests/api/contract.rs).
        crate::contract::checked(&method, response).await
    }

    /// Everything the Worker printed so far (its console).
    pub fn worker_log(&self) -> String {
        std::fs::read_to_string(&self.worker.log_path).unwrap_or_default()
    }
}

/// A code that was requested and delivered.
#[derive(Debug, Clone)]
pub struct Otp {
    pub id: String,
    pub code: String,
}

/// The OTP API, the messages the fake providers received, and the database.
impl TestApp {
    pub async fn request_otp(&self, destination: &str, purpose: &str) -> reqwest::Response {
        let body = serde_json::json!({ "destination": destination, "purpose": purpose });
        self.post_json("/api/auth/otp/request/", &body).await
    }

    pub async fn verify_otp(&self, otp_id: &str, code: &str) -> reqwest::Response {
        let body = serde_json::json!({ "otp_id": otp_id, "otp_code": code });
        self.post_json("/api/auth/otp/verify/", &body).await
    }

    /// Requests a code that must be sent, and reads it from the message.
    pub async fn otp_for(&self, destination: &str, purpose: &str) -> Otp {
        let response = self.request_otp(destination, purpose).await;
        self.assert_provider_contract_kept_for(destination);
        let (status, body) = json_of(response).await;
        assert_eq!(status, 200, "requesting a {purpose} code for {destination}: {body}");
        let id = body["otp_id"].as_str().expect("otp_id is a string").to_string();
        Otp { id, code: self.code_sent_to(destination).await }
    }

    /// The code in the newest message to `destination` (normalized) that this
    /// test has not read yet. Polls: a login code is sent after the answer.
    pub async fn code_sent_to(&self, destination: &str) -> String {
        let already_read = self.read_messages.lock().unwrap().get(destination).copied().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let texts = self.message_texts_to(destination).await;
            if texts.len() > already_read {
                self.read_messages.lock().unwrap().insert(destination.to_string(), texts.len());
                let newest = texts.last().unwrap();
                let length = self.otp_length();
                return first_digit_run(newest, length)
                    .unwrap_or_else(|| panic!("no {length}-digit code in the message to {destination}: {newest:?}"));
            }
            assert!(Instant::now() < deadline, "no new message to {destination} within 10 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many messages the fake providers received for `destination`.
    pub async fn messages_to(&self, destination: &str) -> usize {
        self.message_texts_to(destination).await.len()
    }

    /// How many codes were ever stored for `destination` (its OTP rows).
    pub async fn codes_stored_for(&self, destination: &str) -> usize {
        self.d1(&format!("SELECT id FROM otp_requests WHERE destination = {}", sql_str(destination))).await.len()
    }

    /// Absence can only be seen by waiting: a login message goes out
    /// `LOGIN_DELIVERY_DELAY_SECONDS` after the answer, then within
    /// milliseconds on loopback; a second and a half more is ample.
    pub async fn assert_nothing_sent_to(&self, destination: &str) {
        self.assert_nothing_sent_to_any(&[destination]).await
    }

    /// `assert_nothing_sent_to` for each of `destinations`, waiting once.
    pub async fn assert_nothing_sent_to_any(&self, destinations: &[&str]) {
        let delay = otp_edge::config::DEFAULT_LOGIN_DELIVERY_DELAY_SECONDS;
        tokio::time::sleep(Duration::from_secs(delay) + Duration::from_millis(1500)).await;
        for destination in destinations {
            assert_eq!(self.messages_to(destination).await, 0, "a message was sent to {destination}");
        }
    }

    /// Texts of the messages the fake providers accepted and sent to
    /// `destination`, oldest first: the `text` of a Resend email, the
    /// `TextBody` of a Postmark one, the `Body` of a Twilio SMS. Fails if a
    /// request for `destination` broke a provider's rules, even if the
    /// Worker coped with the refusal.
    async fn message_texts_to(&self, destination: &str) -> Vec<String> {
        self.assert_provider_contract_kept_for(destination);
        self.worker.providers.texts_sent_to(destination)
    }

    fn otp_length(&self) -> usize {
        let configured = self.worker.profile.vars.iter().find(|(k, _)| *k == "OTP_LENGTH");
        configured.map_or(6, |(_, v)| v.parse().unwrap())
    }

    /// Runs SQL against the Worker's local D1; the rows of every statement.
    ///
    /// Local D1 is a SQLite file in WAL mode that the Worker's workerd keeps
    /// open, without a busy timeout: another process *writing* to it makes
    /// the Worker's own writes fail at once (SQLITE_BUSY, answered as 503),
    /// while readers never block it (WAL). Measured here: 15,170 reads from
    /// a second process during 100 requests, 0 failures; a second writer,
    /// 46 of 60 requests refused. So this opens the file in-process with
    /// SQLite itself (rusqlite), never through a second `wrangler` process:
    /// reads run at once, and statements that write wait until no request is
    /// in flight (`db_gate`) and hold the write lock for one short
    /// transaction, without an fsync.
    pub async fn d1(&self, sql: &str) -> Vec<serde_json::Value> {
        let db = local_d1_file(&self.worker.state_dir);
        use rusqlite::fallible_iterator::FallibleIterator;
        let writes = {
            let conn = open_local_d1(&db);
            let mut writes = false;
            let mut batch = rusqlite::Batch::new(&conn, sql);
            while let Some(stmt) = batch.next().unwrap_or_else(|e| panic!("bad SQL ({e}): {sql}")) {
                writes |= !stmt.readonly();
            }
            writes
        };
        let _exclusive = if writes { Some(self.worker.db_gate.write().await) } else { None };
        let sql = sql.to_string();
        tokio::task::spawn_blocking(move || run_sql(&db, &sql, writes)).await.unwrap()
    }

    /// A user with this normalized email or phone; returns the user's id.
    pub async fn seed_user(&self, destination: &str, status: &str) -> String {
        let (id, now) = (random_uuid(), now_ms());
        let column = if destination.contains('@') { "email" } else { "phone_e164" };
        self.d1(&format!(
            "INSERT INTO users (id, username, {column}, status, email_verified, phone_verified, created_at, updated_at) \
             VALUES ({}, {}, {}, {}, 0, 0, {now}, {now})",
            sql_str(&id),
            sql_str(&format!("user_{}", random_hex(12))),
            sql_str(destination),
            sql_str(status),
        ))
        .await;
        id
    }

    /// The `otp_requests` row of a code.
    pub async fn otp_row(&self, otp_id: &str) -> serde_json::Value {
        let rows = self.d1(&format!("SELECT * FROM otp_requests WHERE id = {}", sql_str(otp_id))).await;
        assert_eq!(rows.len(), 1, "no otp_requests row for {otp_id}");
        rows.into_iter().next().unwrap()
    }
}

/// The SQLite file of the Worker's local D1 database under `state_dir`
/// (miniflare keeps one per database, beside its `metadata.sqlite`).
fn local_d1_file(state_dir: &Path) -> PathBuf {
    let dir = state_dir.join("v3/d1/miniflare-D1DatabaseObject");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no local D1 under {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sqlite") && !p.ends_with("metadata.sqlite"))
        .collect();
    assert_eq!(files.len(), 1, "expected one local D1 database in {}: {files:?}", dir.display());
    files.remove(0)
}

fn open_local_d1(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    // The Worker holds its own write transactions for milliseconds at most.
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    // This connection's commits skip the fsync (test data), so a write holds
    // the lock for as short a time as SQLite can.
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    conn
}

/// Runs every statement of `sql` (in one transaction when it writes) and
/// returns their rows as JSON objects.
fn run_sql(path: &Path, sql: &str, writes: bool) -> Vec<serde_json::Value> {
    use rusqlite::fallible_iterator::FallibleIterator;
    use rusqlite::types::ValueRef;
    let mut conn = open_local_d1(path);
    let tx = conn
        .transaction_with_behavior(if writes {
            rusqlite::TransactionBehavior::Immediate
        } else {
            rusqlite::TransactionBehavior::Deferred
        })
        .unwrap();
    let mut rows_out = Vec::new();
    {
        let mut batch = rusqlite::Batch::new(&tx, sql);
        while let Some(mut stmt) = batch.next().unwrap() {
            let names: Vec<String> = stmt.column_names().into_iter().map(str::to_string).collect();
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().unwrap_or_else(|e| panic!("SQL failed ({e}): {sql}")) {
                let mut object = serde_json::Map::new();
                for (i, name) in names.iter().enumerate() {
                    let value = match row.get_ref(i).unwrap() {
                        ValueRef::Null => serde_json::Value::Null,
                        ValueRef::Integer(n) => n.into(),
                        ValueRef::Real(f) => f.into(),
                        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                        ValueRef::Blob(b) => format!("{b:?}").into(),
                    };
                    object.insert(name.clone(), value);
                }
                rows_out.push(serde_json::Value::Object(object));
            }
        }
    }
    tx.commit().unwrap_or_else(|e| panic!("SQL failed to commit ({e}): {sql}"));
    rows_out
}

/// Status and JSON body of a response; fails if the body is not JSON.
pub async fn json_of(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string());
    let text = resp.text().await.expect("could not read the body");
    assert!(
        content_type.as_deref().is_some_and(|t| t.starts_with("application/json")),
        "{status} answer is {content_type:?}, not JSON: {text}"
    );
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} answer is not JSON ({e}): {text}"));
    (status, body)
}

/// A JSON error `{code, message}` with this status and code; returns its message.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> String {
    let (actual, body) = json_of(resp).await;
    assert_eq!((actual, body["code"].as_str()), (status, Some(code)), "{body}");
    body["message"].as_str().unwrap_or_else(|| panic!("error without a message: {body}")).to_string()
}

/// A refused verification with exactly this message.
pub async fn assert_invalid_otp(resp: reqwest::Response, message: &str) {
    assert_eq!(assert_error(resp, 400, "INVALID_OTP").await, message);
}

/// A successful login: 200, as the user with this id.
pub async fn assert_logged_in_as(resp: reqwest::Response, user_id: &str) {
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], user_id, "{body}");
}

/// A digit-wise different code of the same length.
pub fn wrong_code(code: &str) -> String {
    code.chars().map(|c| char::from_digit((c.to_digit(10).unwrap() + 1) % 10, 10).unwrap()).collect()
}

pub fn random_email() -> String {
    format!("user-{}@example.com", random_hex(12))
}

/// A random number in the +1 555 range, E.164.
pub fn random_phone() -> String {
    format!("+1555{}", random_digits(7))
}

pub fn random_hex(len: usize) -> String {
    random_chars(len, 16)
}

pub fn random_digits(len: usize) -> String {
    random_chars(len, 10)
}

fn random_chars(len: usize, radix: u32) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::getrandom(&mut bytes).expect("OS randomness");
    bytes.iter().map(|b| char::from_digit(*b as u32 % radix, radix).unwrap()).collect()
}

/// A random (version 4) UUID string.
pub fn random_uuid() -> String {
    otp_edge::domain::crypto::new_uuid().hyphenated().to_string()
}

pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A SQL string literal.
pub fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The first run of exactly `len` ASCII digits.
fn first_digit_run(text: &str, len: usize) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit()).find(|run| run.len() == len).map(str::to_string)
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

/// A port for a Worker (or its inspector) to listen on.
///
/// Not one from the kernel's ephemeral range (`bind(0)`): between taking a
/// free port there and `wrangler dev` binding it, a fake provider started by
/// another test could be given the same port by the kernel, and the Worker
/// would not start while its health checks reached the fake. Ports below
/// the ephemeral range are never handed out by `bind(0)`; this process
/// hands each out once, from a random start so that test processes running
/// side by side rarely meet, and skips any that is taken.
pub fn free_port() -> u16 {
    static NEXT: OnceLock<std::sync::atomic::AtomicU16> = OnceLock::new();
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_start.saturating_sub(1).max(10_001));
    let next = NEXT.get_or_init(|| {
        let mut b = [0u8; 2];
        getrandom::getrandom(&mut b).expect("OS randomness");
        std::sync::atomic::AtomicU16::new(low + u16::from_le_bytes(b) % (high - low))
    });
    for _ in 0..(high - low) {
        let candidate = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = low + (candidate.wrapping_sub(low)) % (high - low);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// The fake providers answer like the real ones, refusals included (they
/// check every request against the providers' specs and rules), unless a
/// test mounts something more specific for a destination.
async fn fake_providers() -> (MockServer, MockServer, crate::providers::Fakes) {
    crate::providers::start_fakes().await
}

async fn start_worker(profile: Profile) -> Arc<RunningWorker> {
    let run_dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("worker-{}-{}", profile.name, std::process::id()));
    let state_dir = migrated_state_dir(&run_dir).await;
    launch(profile, state_dir, run_dir.join("wrangler.log"), Some(&run_dir)).await
}

/// Builds the Worker (once), and creates `run_dir/state` with the D1
/// migrations applied (a copy of `migrated_template`); returns the state
/// directory.
async fn migrated_state_dir(run_dir: &Path) -> PathBuf {
    let template = migrated_template().await;
    let state_dir = run_dir.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let copy = Command::new("cp").arg("-a").arg(template.join(".")).arg(&state_dir).output().expect("cp");
    assert!(copy.status.success(), "could not copy the migrated state: {}", String::from_utf8_lossy(&copy.stderr));
    state_dir
}

/// A state directory with every D1 migration applied, made once per test
/// process and copied for each Worker: `wrangler d1 migrations apply` takes
/// about 10 s of CPU here, and the suite starts dozens of Workers. Removed
/// when the test process exits (its supervisor, as for a Worker's).
async fn migrated_template() -> &'static Path {
    static TEMPLATE: OnceCell<(PathBuf, Mutex<(Child, ChildStdin)>)> = OnceCell::const_new();
    let (state_dir, _) = TEMPLATE
        .get_or_init(|| async {
            tokio::task::spawn_blocking(build_once).await.unwrap();
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("migrated-{}", std::process::id()));
            let mut idle = Command::new("sleep");
            idle.arg("infinity");
            let cleanup = supervise(idle, Path::new("/dev/null"), Some(&dir));
            let state_dir = dir.join("state");
            std::fs::create_dir_all(&state_dir).unwrap();
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
            assert!(migrate.status.success(), "migrations failed: {}", String::from_utf8_lossy(&migrate.stderr));
            (state_dir, Mutex::new(cleanup))
        })
        .await;
    state_dir
}

/// Starts `wrangler dev` with `profile`'s settings on an existing state
/// directory, fake providers of its own, and waits until it is healthy. With
/// `cleanup_dir`, its supervisor removes that directory when it stops it.
async fn launch(
    profile: Profile,
    state_dir: PathBuf,
    log_path: PathBuf,
    cleanup_dir: Option<&Path>,
) -> Arc<RunningWorker> {
    launch_with(profile, state_dir, log_path, cleanup_dir, None, true).await
}

/// `launch`, with another wrangler config when given. Unless `expect_healthy`,
/// the Worker only has to answer /healthz, healthy or not, to count as started.
async fn launch_with(
    profile: Profile,
    state_dir: PathBuf,
    log_path: PathBuf,
    cleanup_dir: Option<&Path>,
    config: Option<&Path>,
    expect_healthy: bool,
) -> Arc<RunningWorker> {
    let (mail, sms, providers) = fake_providers().await;
    let (captcha, siteverify) = crate::providers::turnstile::start().await;

    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let mut vars = base_vars(&mail.uri(), &sms.uri(), &captcha.uri());
    for (k, v) in profile.vars {
        match vars.iter_mut().find(|(name, _)| name == k) {
            Some(entry) => entry.1 = v.to_string(),
            None => vars.push((k.to_string(), v.to_string())),
        }
    }
    // `{worker}` stands for the Worker's own address (PUBLIC_BASE_URL, JWT_ISSUER).
    for (_, v) in vars.iter_mut() {
        *v = v.replace(WORKER_ADDRESS, &address);
    }

    let mut dev = wrangler();
    dev.args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
        .args(["--inspector-port", &free_port().to_string()])
        .arg("--persist-to")
        .arg(&state_dir)
        .args(["--show-interactive-dev-session=false", "--test-scheduled", "--log-level", "log"]);
    if let Some(config) = config {
        dev.arg("--config").arg(config);
    }
    for (k, v) in &vars {
        dev.arg("--var").arg(format!("{k}:{v}"));
    }
    let (supervisor, stdin) = supervise(dev, &log_path, cleanup_dir);

    wait_until_up(&address, &log_path, expect_healthy).await;
    Arc::new(RunningWorker {
        address,
        profile,
        mail,
        sms,
        providers,
        captcha,
        siteverify,
        log_path,
        state_dir,
        db_gate: Default::default(),
        supervisor_stdin: Mutex::new(Some(stdin)),
        supervisor: Mutex::new(supervisor),
    })
}

/// Starts `cmd` in its own process group under a bash supervisor that kills
/// the group, and removes `cleanup_dir` if given, when our end of its stdin
/// closes.
fn supervise(cmd: Command, log_path: &Path, cleanup_dir: Option<&Path>) -> (Child, ChildStdin) {
    const SCRIPT: &str = r#"
set -m
log=$1 dir=$2; shift 2
"$@" >"$log" 2>&1 </dev/null &
child=$!
set +m
stop() { kill -TERM -- -"$child" 2>/dev/null; sleep 1; kill -KILL -- -"$child" 2>/dev/null; [ -z "$dir" ] || rm -rf "$dir"; }
trap stop EXIT
read -r _ || true
"#;
    let mut sup = Command::new("bash");
    sup.arg("-c").arg(SCRIPT).arg("supervisor").arg(log_path).arg(cleanup_dir.unwrap_or(Path::new("")));
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

async fn wait_until_up(address: &str, log_path: &Path, healthy: bool) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(resp) = client.get(format!("{address}/healthz")).send().await {
            if resp.status().is_success() || (!healthy && resp.status() == 503) {
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
