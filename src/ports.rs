//! The seam between the rules and the platform: what a flow needs from the
//! outside world, as small traits. The Worker implements them with D1, the
//! rate-limiter Durable Object, `fetch`, Cloudflare Queues and `Date.now()`
//! (`platform`); native tests implement them with SQLite running the same
//! SQL and migrations, in-process limiters over the same algorithm, and
//! recording fakes (`native`, test builds only).
//!
//! Futures are boxed and not `Send`: a Worker is single-threaded, and boxed
//! futures keep the traits object-safe, so a flow takes `&dyn Database`.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use serde::de::DeserializeOwned;

use crate::domain::crypto::Entropy;
use crate::domain::delivery::DeliveryJob;
use crate::domain::limits::{Breaker, GuessPolicy, Judged, Outcome, PendingCode, Rule};
use crate::domain::outbound::ProviderRequest;

pub type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

// ---------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------

/// A value bound to a statement parameter (`?1`, `?2` ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(n: i64) -> Arg {
        Arg::Int(n)
    }
}

impl From<u32> for Arg {
    fn from(n: u32) -> Arg {
        Arg::Int(n as i64)
    }
}

impl From<bool> for Arg {
    fn from(b: bool) -> Arg {
        Arg::Int(b as i64)
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Text(s.to_string())
    }
}

impl From<&String> for Arg {
    fn from(s: &String) -> Arg {
        Arg::Text(s.clone())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Text(s)
    }
}

impl<T: Into<Arg>> From<Option<T>> for Arg {
    fn from(v: Option<T>) -> Arg {
        v.map_or(Arg::Null, Into::into)
    }
}

/// One SQL statement and its arguments: plain data, run by D1 in the Worker
/// and by SQLite natively, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub sql: Cow<'static, str>,
    pub args: Vec<Arg>,
}

impl Stmt {
    pub fn new(sql: impl Into<Cow<'static, str>>, args: Vec<Arg>) -> Stmt {
        Stmt { sql: sql.into(), args }
    }
}

/// A result row, by column name.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// Storage did not answer, or refused a statement. The message is for the
/// log; `is_unique_violation` tells constraint failures apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl StoreError {
    /// A UNIQUE constraint on `table.column` refused the statement (SQLite's
    /// wording, which D1 passes on).
    pub fn is_unique_violation(&self, column: &str) -> bool {
        self.0.contains("UNIQUE constraint failed") && self.0.contains(column)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// The database: D1 in the Worker, SQLite natively.
pub trait Database {
    /// Runs `stmts` in one transaction (all or nothing); the rows of each.
    fn batch(&self, stmts: Vec<Stmt>) -> Fut<'_, Result<Vec<Vec<Row>>, StoreError>>;

    /// Every row of one statement.
    fn all(&self, stmt: Stmt) -> Fut<'_, Result<Vec<Row>, StoreError>> {
        Box::pin(async move { Ok(self.batch(vec![stmt]).await?.pop().unwrap_or_default()) })
    }
}

/// Rows as typed values.
pub fn typed<T: DeserializeOwned>(rows: Vec<Row>) -> Result<Vec<T>, StoreError> {
    rows.into_iter()
        .map(|row| serde_json::from_value(serde_json::Value::Object(row)).map_err(|e| StoreError(e.to_string())))
        .collect()
}

/// The first row, typed.
pub fn first<T: DeserializeOwned>(rows: Vec<Row>) -> Result<Option<T>, StoreError> {
    Ok(typed(rows)?.into_iter().next())
}

/// The first row of statement `index` of a batch's results.
pub fn first_of<T: DeserializeOwned>(results: &mut [Vec<Row>], index: usize) -> Result<Option<T>, StoreError> {
    first(results.get_mut(index).map(std::mem::take).unwrap_or_default())
}

/// The first row of statement `index` of a batch's results, untyped.
pub fn row_of(results: &mut [Vec<Row>], index: usize) -> Option<Row> {
    results.get_mut(index).and_then(|rows| rows.drain(..).next())
}

// Columns read by hand, where a derived `Deserialize` for the row would cost
// the bundle more (each one is KBs of wasm).

/// An integer column; 0 when NULL or absent.
pub fn int(row: &Row, column: &str) -> i64 {
    opt_int(row, column).unwrap_or(0)
}

/// An integer column that may be NULL.
pub fn opt_int(row: &Row, column: &str) -> Option<i64> {
    row.get(column)?.as_i64()
}

/// A text column that may be NULL.
pub fn text(row: &Row, column: &str) -> Option<String> {
    row.get(column)?.as_str().map(str::to_string)
}

// ---------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------

/// A rate-limit object's storage: the Durable Object's SQLite, and
/// SQLite natively.
pub const EVENT_LOG_SCHEMA: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS events (\
     id INTEGER PRIMARY KEY, bucket TEXT NOT NULL, at INTEGER NOT NULL, expires INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_bucket_at ON events (bucket, at)",
    // Pruning on use: an object holds the events of many destinations.
    "CREATE INDEX IF NOT EXISTS events_expires ON events (expires)",
    // The codes whose requests this object allowed, until they expire.
    "CREATE TABLE IF NOT EXISTS codes (id TEXT PRIMARY KEY, key TEXT NOT NULL, note TEXT NOT NULL, \
     expires INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS codes_expires ON codes (expires)",
];

/// The rate-limit objects, one per key (the Durable Object in the Worker),
/// each running `domain::limits` on its own event log, one call at a time.
pub trait Limiter {
    /// `limits::hit_with`: a slot under every rule (and the breaker), or
    /// none; allowed, the object keeps `code` (`limits::hit_remembering`).
    fn hit(
        &self,
        object: &str,
        rules: Vec<Rule>,
        breaker: Option<Breaker>,
        code: Option<PendingCode>,
    ) -> Fut<'_, Result<Outcome, StoreError>>;
    /// `limits::peek`: whether a hit would be allowed, recording nothing.
    fn peek(&self, object: &str, rules: Vec<Rule>) -> Fut<'_, Result<Outcome, StoreError>>;
    /// `limits::guess_code`: a guess at a code the object knows, held as a failure.
    fn guess_code(&self, object: &str, id: &str, policy: GuessPolicy) -> Fut<'_, Result<Option<Judged>, StoreError>>;
    /// `limits::settle`: a held guess given back, its network made known if it was right.
    fn settle(&self, object: &str, ids: Vec<i64>, known: Option<Rule>) -> Fut<'_, Result<(), StoreError>>;
    /// Gives back the slots of an allowed hit.
    fn release(&self, object: &str, ids: Vec<i64>) -> Fut<'_, Result<(), StoreError>>;
    /// A real round trip to `object` and its storage.
    fn ping(&self, object: &str) -> Fut<'_, Result<bool, StoreError>>;
}

// ---------------------------------------------------------------------------
// Delivery, time, background work
// ---------------------------------------------------------------------------

/// One provider's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

/// One HTTP request to a provider, bounded by `timeout_ms`. `Err(true)` is a
/// timeout, `Err(false)` a request that could not be made.
pub trait Sender {
    fn send<'a>(&'a self, request: &'a ProviderRequest, timeout_ms: u64) -> Fut<'a, Result<Answer, bool>>;
}

/// The clock, and waiting.
pub trait Clock {
    fn now_ms(&self) -> i64;
    fn sleep(&self, ms: u64) -> Fut<'_, ()>;
}

/// Work that continues after the answer (`ctx.waitUntil` in the Worker).
pub trait Background {
    fn spawn(&self, work: Fut<'static, ()>);
}

/// Runs `futures` side by side to the end; their outputs in order.
/// (futures-util's `join_all` would bring its larger `FuturesOrdered` into
/// the bundle.)
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, out) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                    *out = Some(v);
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

/// Runs `a` and `b` side by side to the end; both outputs.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (Box::pin(a), Box::pin(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(|cx| {
        if out_a.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        if out_a.is_some() && out_b.is_some() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    (out_a.expect("a finished"), out_b.expect("b finished"))
}

/// The delivery queue: jobs handled later by this Worker's consumer.
pub trait DeliveryQueue {
    fn enqueue(&self, job: &DeliveryJob, delay_seconds: u64) -> Fut<'_, Result<(), StoreError>>;
}

/// The webhook queue: signed webhooks sent later by this Worker's consumer
/// (`flows::webhooks`), each message a `standard_webhooks::Queued`.
pub trait WebhookQueue {
    /// One `sendBatch` (at most 100 messages and 256 KB).
    fn send_batch(&self, messages: Vec<String>) -> Fut<'_, Result<(), StoreError>>;
}

/// Everything a flow may reach outside itself. Cheap to clone, so work
/// after the answer can take its own copy.
#[derive(Clone)]
pub struct Ports {
    pub db: Rc<dyn Database>,
    pub limiter: Rc<dyn Limiter>,
    pub sender: Rc<dyn Sender>,
    /// `None` where no delivery queue is bound: codes are then sent directly.
    pub queue: Option<Rc<dyn DeliveryQueue>>,
    /// `None` where no webhook queue is bound: webhooks are then not sent.
    pub webhooks: Option<Rc<dyn WebhookQueue>>,
    pub clock: Rc<dyn Clock>,
    /// Random bytes for codes, ids, tokens and nonces.
    pub entropy: Rc<dyn Entropy>,
    pub background: Rc<dyn Background>,
}
