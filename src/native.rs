//! The ports natively, for tests (`cargo test --lib`): SQLite (rusqlite,
//! bundled) running the same `migrations/` and the same statements as D1;
//! rate-limit objects running `domain::limits` on SQLite event logs, as the
//! Durable Object does; a provider fake that records what it is sent; a
//! clock that tests move; background work collected to be run on demand.
//!
//! Every port call yields once before it runs, as a real round trip does,
//! so flows joined in one test interleave at their awaits; and every call
//! is counted (`Trips`), with the depth of calls that waited on each other.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params_from_iter, Connection};

use crate::domain::crypto::Entropy;
use crate::domain::delivery::DeliveryJob;
use crate::domain::limits::{self, Breaker, EventLog, GuessPolicy, Judged, Outcome, PendingCode, Remembered, Rule};
use crate::domain::outbound::ProviderRequest;
use crate::ports::{
    Answer, Arg, Background, Clock, Database, DeliveryQueue, Fut, Limiter, Ports, Row, Sender, Stmt, StoreError,
    WebhookQueue,
};

/// Returns `Pending` once, then `Ready`: a round trip's await.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Round trips, counted per kind, and their sequential depth: a call that
/// starts while another is in flight adds no depth (the two ran side by
/// side); one that starts when none is in flight waits on what came before.
#[derive(Default)]
pub struct Trips {
    in_flight: Cell<u32>,
    pub depth: Cell<u32>,
    pub db_batches: Cell<u32>,
    pub limiter_calls: Cell<u32>,
    pub provider_calls: Cell<u32>,
    pub queue_sends: Cell<u32>,
}

impl Trips {
    fn start(&self, counter: &Cell<u32>) {
        counter.set(counter.get() + 1);
        if self.in_flight.get() == 0 {
            self.depth.set(self.depth.get() + 1);
        }
        self.in_flight.set(self.in_flight.get() + 1);
    }

    fn end(&self) {
        self.in_flight.set(self.in_flight.get() - 1);
    }

    pub fn reset(&self) {
        for c in [&self.depth, &self.db_batches, &self.limiter_calls, &self.provider_calls, &self.queue_sends] {
            c.set(0);
        }
    }

    /// `(db batches, limiter calls, provider calls, queue sends, depth)`.
    pub fn figures(&self) -> (u32, u32, u32, u32, u32) {
        (
            self.db_batches.get(),
            self.limiter_calls.get(),
            self.provider_calls.get(),
            self.queue_sends.get(),
            self.depth.get(),
        )
    }
}

/// A round trip: counted, yields once, then runs `work`.
async fn trip<T>(trips: &Trips, counter: &Cell<u32>, work: impl FnOnce() -> T) -> T {
    trips.start(counter);
    YieldOnce(false).await;
    let out = work();
    trips.end();
    out
}

// ---------------------------------------------------------------------------
// The database: SQLite with the project's migrations
// ---------------------------------------------------------------------------

/// The project's D1 migrations, in order.
pub fn migrations() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

pub struct SqliteDb {
    pub conn: Connection,
    trips: Rc<Trips>,
    /// Whether the next batch fails (D1 unavailable).
    pub fail_next: Cell<bool>,
}

impl SqliteDb {
    pub fn new(trips: Rc<Trips>) -> SqliteDb {
        let conn = Connection::open_in_memory().unwrap();
        // D1 enforces foreign keys.
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        for (name, sql) in migrations() {
            conn.execute_batch(&sql).unwrap_or_else(|e| panic!("migration {name}: {e}"));
        }
        SqliteDb { conn, trips, fail_next: Cell::new(false) }
    }

    /// Rows of a query, for tests to look at the state directly.
    pub fn query(&self, sql: &str) -> Vec<Row> {
        run(&self.conn, &Stmt::new(sql.to_string(), vec![])).unwrap()
    }

    pub fn execute(&self, sql: &str) {
        self.conn.execute_batch(sql).unwrap();
    }
}

fn sql_arg(arg: &Arg) -> SqlValue {
    match arg {
        Arg::Null => SqlValue::Null,
        Arg::Int(n) => SqlValue::Integer(*n),
        Arg::Text(s) => SqlValue::Text(s.clone()),
    }
}

fn run(conn: &Connection, stmt: &Stmt) -> Result<Vec<Row>, StoreError> {
    let err = |e: rusqlite::Error| StoreError(e.to_string());
    let mut prepared = conn.prepare(&stmt.sql).map_err(err)?;
    let names: Vec<String> = prepared.column_names().into_iter().map(str::to_string).collect();
    let mut rows = prepared.query(params_from_iter(stmt.args.iter().map(sql_arg))).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let mut object = Row::new();
        for (i, name) in names.iter().enumerate() {
            let value = match row.get_ref(i).map_err(err)? {
                ValueRef::Null => serde_json::Value::Null,
                ValueRef::Integer(n) => n.into(),
                ValueRef::Real(f) => f.into(),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                ValueRef::Blob(_) => return Err(StoreError("blobs are not used".into())),
            };
            object.insert(name.clone(), value);
        }
        out.push(object);
    }
    Ok(out)
}

impl Database for SqliteDb {
    /// One transaction, as D1's batch: all statements or none.
    fn batch(&self, stmts: Vec<Stmt>) -> Fut<'_, Result<Vec<Vec<Row>>, StoreError>> {
        Box::pin(trip(&self.trips, &self.trips.db_batches, move || {
            if self.fail_next.replace(false) {
                return Err(StoreError("D1_ERROR: the database is unavailable".into()));
            }
            self.conn.execute_batch("BEGIN").unwrap();
            let results: Result<Vec<Vec<Row>>, StoreError> = stmts.iter().map(|s| run(&self.conn, s)).collect();
            self.conn.execute_batch(if results.is_ok() { "COMMIT" } else { "ROLLBACK" }).unwrap();
            results
        }))
    }
}

// ---------------------------------------------------------------------------
// Rate-limit objects: domain::limits on SQLite event logs
// ---------------------------------------------------------------------------

/// One object's event log: the Durable Object's schema on SQLite.
pub struct SqliteEvents(Connection);

impl SqliteEvents {
    pub fn new() -> SqliteEvents {
        let conn = Connection::open_in_memory().unwrap();
        for statement in crate::ports::EVENT_LOG_SCHEMA {
            conn.execute_batch(statement).unwrap();
        }
        SqliteEvents(conn)
    }

    pub fn count(&self) -> i64 {
        self.0.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap()
    }

    /// Events whose bucket belongs to the key (`<limit>:<key>`).
    pub fn count_for(&self, key: &str) -> i64 {
        self.0
            .query_row("SELECT COUNT(*) FROM events WHERE bucket LIKE ?1", [format!("%:{key}")], |r| r.get(0))
            .unwrap()
    }
}

impl Default for SqliteEvents {
    fn default() -> Self {
        SqliteEvents::new()
    }
}

impl EventLog for SqliteEvents {
    type Error = rusqlite::Error;

    fn prune(&self, now_ms: i64) -> Result<(), rusqlite::Error> {
        self.0.execute("DELETE FROM events WHERE expires <= ?1", [now_ms])?;
        self.0.execute("DELETE FROM codes WHERE expires <= ?1", [now_ms]).map(|_| ())
    }

    fn newest(&self, bucket: &str, after_ms: i64, limit: u32) -> Result<Vec<i64>, rusqlite::Error> {
        let mut stmt =
            self.0.prepare("SELECT at FROM events WHERE bucket = ?1 AND at > ?2 ORDER BY at DESC LIMIT ?3")?;
        let rows = stmt.query_map(rusqlite::params![bucket, after_ms, limit], |r| r.get(0))?;
        rows.collect()
    }

    fn record(&self, bucket: &str, at_ms: i64, expires_ms: i64) -> Result<i64, rusqlite::Error> {
        self.0.query_row(
            "INSERT INTO events (bucket, at, expires) VALUES (?1, ?2, ?3) RETURNING id",
            rusqlite::params![bucket, at_ms, expires_ms],
            |r| r.get(0),
        )
    }

    fn remove(&self, id: i64) -> Result<(), rusqlite::Error> {
        self.0.execute("DELETE FROM events WHERE id = ?1", [id]).map(|_| ())
    }

    fn remember(&self, code: &PendingCode) -> Result<(), rusqlite::Error> {
        self.0
            .execute(
                "INSERT OR REPLACE INTO codes (id, key, note, expires) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![code.id, code.key, code.note, code.expires_ms],
            )
            .map(|_| ())
    }

    fn recall(&self, id: &str, now_ms: i64) -> Result<Option<Remembered>, rusqlite::Error> {
        let mut stmt = self.0.prepare("SELECT key, note FROM codes WHERE id = ?1 AND expires > ?2")?;
        let mut rows =
            stmt.query_map(rusqlite::params![id, now_ms], |r| Ok(Remembered { key: r.get(0)?, note: r.get(1)? }))?;
        rows.next().transpose()
    }
}

/// The rate-limit objects by name, each judging its calls one at a time.
pub struct Objects {
    pub objects: RefCell<HashMap<String, Rc<SqliteEvents>>>,
    clock: Rc<TestClock>,
    trips: Rc<Trips>,
    /// Whether every call fails (the Durable Object unreachable).
    pub down: Cell<bool>,
}

impl Objects {
    fn object(&self, name: &str) -> Rc<SqliteEvents> {
        self.objects.borrow_mut().entry(name.to_string()).or_default().clone()
    }

    fn call<T>(
        &self,
        name: &str,
        f: impl FnOnce(&SqliteEvents, i64) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        if self.down.get() {
            return Err(StoreError("the rate limiter is unreachable".into()));
        }
        f(&self.object(name), self.clock.now_ms()).map_err(|e| StoreError(e.to_string()))
    }
}

impl Limiter for Objects {
    fn hit(
        &self,
        object: &str,
        rules: Vec<Rule>,
        breaker: Option<Breaker>,
        code: Option<PendingCode>,
    ) -> Fut<'_, Result<Outcome, StoreError>> {
        let object = object.to_string();
        Box::pin(trip(&self.trips, &self.trips.limiter_calls, move || {
            self.call(&object, |log, now| match &code {
                Some(code) => limits::hit_remembering(log, &rules, breaker.as_ref(), code, now),
                None => limits::hit_with(log, &rules, breaker.as_ref(), now),
            })
        }))
    }

    fn peek(&self, object: &str, rules: Vec<Rule>) -> Fut<'_, Result<Outcome, StoreError>> {
        let object = object.to_string();
        Box::pin(trip(&self.trips, &self.trips.limiter_calls, move || {
            self.call(&object, |log, now| limits::peek(log, &rules, now))
        }))
    }

    fn guess_code(&self, object: &str, id: &str, policy: GuessPolicy) -> Fut<'_, Result<Option<Judged>, StoreError>> {
        let (object, id) = (object.to_string(), id.to_string());
        Box::pin(trip(&self.trips, &self.trips.limiter_calls, move || {
            self.call(&object, |log, now| limits::guess_code(log, &id, &policy, now))
        }))
    }

    fn settle(&self, object: &str, ids: Vec<i64>, known: Option<Rule>) -> Fut<'_, Result<(), StoreError>> {
        let object = object.to_string();
        Box::pin(trip(&self.trips, &self.trips.limiter_calls, move || {
            self.call(&object, |log, now| limits::settle(log, &ids, known.as_ref(), now))
        }))
    }

    fn release(&self, object: &str, ids: Vec<i64>) -> Fut<'_, Result<(), StoreError>> {
        let object = object.to_string();
        Box::pin(trip(&self.trips, &self.trips.limiter_calls, move || {
            self.call(&object, |log, _| limits::release(log, &ids))
        }))
    }

    fn ping(&self, object: &str) -> Fut<'_, Result<bool, StoreError>> {
        let object = object.to_string();
        Box::pin(trip(&self.trips, &self.trips.limiter_calls, move || {
            self.call(&object, |log, _| log.newest("ping", 0, 1).map(|_| true))
        }))
    }
}

// ---------------------------------------------------------------------------
// Providers, the queue, the clock, background work
// ---------------------------------------------------------------------------

/// A provider fake: records every request; answers from a script per
/// destination (`answer_next`), else as the provider accepts a message.
#[derive(Default)]
pub struct Providers {
    pub requests: RefCell<Vec<ProviderRequest>>,
    spent_tokens: RefCell<std::collections::HashSet<String>>,
    scripted: RefCell<HashMap<String, VecDeque<Result<Answer, bool>>>>,
    trips: Rc<Trips>,
}

impl Providers {
    /// The next requests for `destination` get these answers, in order.
    pub fn answer_next(&self, destination: &str, answers: Vec<Result<Answer, bool>>) {
        self.scripted.borrow_mut().entry(destination.to_string()).or_default().extend(answers);
    }

    /// Turnstile's siteverify with Cloudflare's test secret keys: `1x...AA`
    /// always passes, `2x...AA` always fails, `3x...AA` answers "already
    /// spent" (developers.cloudflare.com/turnstile/troubleshooting/testing);
    /// any other secret is refused as invalid. Tokens are single use.
    fn siteverify(&self, request: &ProviderRequest) -> Result<Answer, bool> {
        let form: HashMap<String, String> = form_urlencoded::parse(request.body.as_bytes()).into_owned().collect();
        let refused = |code: &str| answer(200, &format!(r#"{{"success":false,"error-codes":["{code}"]}}"#));
        let (Some(secret), Some(token)) = (form.get("secret"), form.get("response")) else {
            return refused("missing-input-response");
        };
        let first_use = self.spent_tokens.borrow_mut().insert(token.clone());
        match secret.as_str() {
            "1x0000000000000000000000000000000AA" if first_use => {
                answer(200, r#"{"success":true,"error-codes":[],"hostname":"example.com"}"#)
            }
            "1x0000000000000000000000000000000AA" | "3x0000000000000000000000000000000AA" => {
                refused("timeout-or-duplicate")
            }
            "2x0000000000000000000000000000000AA" => refused("invalid-input-response"),
            _ => refused("invalid-input-secret"),
        }
    }

    /// The requests whose body names `destination`.
    pub fn requests_to(&self, destination: &str) -> Vec<ProviderRequest> {
        self.requests.borrow().iter().filter(|r| Providers::matches(r, destination)).cloned().collect()
    }

    /// Whether `request` carries a message to `destination`: Resend's
    /// `to: [address]`, Postmark's `To`, Twilio's form field `To`.
    fn matches(request: &ProviderRequest, destination: &str) -> bool {
        let encoded = destination.replace('+', "%2B");
        request.body.contains(&format!("\"{destination}\""))
            || request.body.contains(&format!("To={encoded}&"))
            || request.body.contains(&format!("response={destination}&"))
    }
}

/// `answer(status, body)` with no `Retry-After`.
pub fn answer(status: u16, body: &str) -> Result<Answer, bool> {
    Ok(Answer { status, retry_after: None, body: body.to_string() })
}

impl Sender for Providers {
    fn send<'a>(&'a self, request: &'a ProviderRequest, _timeout_ms: u64) -> Fut<'a, Result<Answer, bool>> {
        Box::pin(trip(&self.trips, &self.trips.provider_calls, move || {
            self.requests.borrow_mut().push(request.clone());
            let destination = self.scripted.borrow().keys().find(|d| Providers::matches(request, d)).cloned();
            if let Some(next) = destination.and_then(|d| self.scripted.borrow_mut().get_mut(&d)?.pop_front()) {
                return next;
            }
            match request.provider {
                crate::domain::outbound::Provider::Twilio => answer(201, r#"{"sid":"SM0","status":"queued"}"#),
                crate::domain::outbound::Provider::Turnstile => self.siteverify(request),
                _ => answer(200, r#"{"id":"4ef9a417-02e9-4d39-ad75-9611e0fcc33c"}"#),
            }
        }))
    }
}

/// The delivery queue: jobs with their delays, for the test to run.
#[derive(Default)]
pub struct Jobs {
    pub queued: RefCell<VecDeque<(DeliveryJob, u64)>>,
    trips: Rc<Trips>,
}

impl DeliveryQueue for Jobs {
    fn enqueue(&self, job: &DeliveryJob, delay_seconds: u64) -> Fut<'_, Result<(), StoreError>> {
        let job = job.clone();
        Box::pin(trip(&self.trips, &self.trips.queue_sends, move || {
            self.queued.borrow_mut().push_back((job, delay_seconds));
            Ok(())
        }))
    }
}

/// The webhook queue: each `sendBatch`'s messages, for the test to look at
/// or consume (`flows::webhooks::consume`).
#[derive(Default)]
pub struct Hooks {
    pub batches: RefCell<Vec<Vec<String>>>,
    /// Whether the next `sendBatch` fails (the queue unavailable).
    pub fail_next: Cell<bool>,
    trips: Rc<Trips>,
}

impl Hooks {
    /// Every message sent so far, in order, taken out.
    pub fn take(&self) -> Vec<String> {
        self.batches.borrow_mut().drain(..).flatten().collect()
    }
}

impl WebhookQueue for Hooks {
    fn send_batch(&self, messages: Vec<String>) -> Fut<'_, Result<(), StoreError>> {
        Box::pin(trip(&self.trips, &self.trips.queue_sends, move || {
            if self.fail_next.replace(false) {
                return Err(StoreError("Queue send failed: the queue is unavailable".into()));
            }
            self.batches.borrow_mut().push(messages);
            Ok(())
        }))
    }
}

/// Time as the test sets it; sleeping moves it on at once.
pub struct TestClock(pub Cell<i64>);

impl TestClock {
    pub fn advance(&self, ms: i64) {
        self.0.set(self.0.get() + ms);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.get()
    }

    fn sleep(&self, ms: u64) -> Fut<'_, ()> {
        self.advance(ms as i64);
        Box::pin(std::future::ready(()))
    }
}

/// Random bytes from a seed (splitmix64): the same world draws the same
/// codes and ids run after run, so a failure replays exactly.
pub struct SeededEntropy(pub Cell<u64>);

impl Entropy for SeededEntropy {
    fn fill(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut z = self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            self.0.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Work after the answer, kept until the test runs it.
#[derive(Default)]
pub struct Later(pub RefCell<Vec<Fut<'static, ()>>>);

impl Background for Later {
    fn spawn(&self, work: Fut<'static, ()>) {
        self.0.borrow_mut().push(work);
    }
}

/// The native ports of one test, with handles on each fake.
pub struct Fakes {
    pub trips: Rc<Trips>,
    pub db: Rc<SqliteDb>,
    pub limiter: Rc<Objects>,
    pub providers: Rc<Providers>,
    pub queue: Rc<Jobs>,
    pub hooks: Rc<Hooks>,
    pub clock: Rc<TestClock>,
    pub entropy: Rc<SeededEntropy>,
    pub later: Rc<Later>,
}

/// A fixed moment, 2026-12-01T00:00:00Z, as tests start.
pub const T0: i64 = 1_796_083_200_000;

impl Fakes {
    pub fn new() -> Fakes {
        let trips = Rc::new(Trips::default());
        let clock = Rc::new(TestClock(Cell::new(T0)));
        Fakes {
            db: Rc::new(SqliteDb::new(trips.clone())),
            limiter: Rc::new(Objects {
                objects: RefCell::default(),
                clock: clock.clone(),
                trips: trips.clone(),
                down: Cell::new(false),
            }),
            providers: Rc::new(Providers { trips: trips.clone(), ..Providers::default() }),
            queue: Rc::new(Jobs { trips: trips.clone(), ..Jobs::default() }),
            hooks: Rc::new(Hooks { trips: trips.clone(), ..Hooks::default() }),
            later: Rc::new(Later::default()),
            entropy: Rc::new(SeededEntropy(Cell::new(0x5EED))),
            clock,
            trips,
        }
    }

    pub fn ports(&self) -> Ports {
        Ports {
            db: self.db.clone(),
            limiter: self.limiter.clone(),
            sender: self.providers.clone(),
            queue: Some(self.queue.clone()),
            webhooks: Some(self.hooks.clone()),
            clock: self.clock.clone(),
            entropy: self.entropy.clone(),
            background: self.later.clone(),
        }
    }

    /// Runs the work spawned after answers so far, to its end.
    pub async fn run_later(&self) {
        loop {
            let work: Vec<_> = self.later.0.borrow_mut().drain(..).collect();
            if work.is_empty() {
                return;
            }
            for w in work {
                w.await;
            }
        }
    }
}

impl Default for Fakes {
    fn default() -> Self {
        Fakes::new()
    }
}

/// Runs a test's future to its end on this thread.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}
