//! The `RateLimiter` Durable Object (SQLite-backed, one object per key) and
//! the `Limiter` port that calls it. The object is storage and a wire
//! format: `domain::limits` decides, over the object's SQLite as its
//! `EventLog`. Its SQL calls are synchronous, so a check and its record
//! cannot interleave with another request to the object: limits are exact
//! under any concurrency. An alarm deletes the object's storage once it has
//! been idle past its longest window.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use worker::*;

use crate::domain::limits::{self, Breaker, EventLog, GuessPolicy, Judged, Outcome, PendingCode, Remembered, Rule};
use crate::ports::{self, Fut, StoreError};

/// Binding name of the Durable Object namespace in wrangler.toml.
pub const BINDING: &str = "RATE_LIMITER";

/// The request a Worker sends to one object.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    Ping,
    Hit { rules: Vec<Rule>, breaker: Option<Breaker>, code: Option<PendingCode> },
    Peek { rules: Vec<Rule> },
    GuessCode { id: String, policy: GuessPolicy },
    Settle { ids: Vec<i64>, known: Option<Rule> },
    Release { ids: Vec<i64> },
}

#[durable_object]
pub struct RateLimiter {
    state: State,
    /// Whether `events` exists; `delete_all` drops it.
    schema_ready: Cell<bool>,
}

#[derive(Deserialize)]
struct At {
    at: i64,
}

#[derive(Deserialize)]
struct Id {
    id: i64,
}

#[derive(Deserialize)]
struct Expires {
    expires: Option<i64>,
}

/// An outcome as the wire carries it, and whether it took slots (which
/// the cleanup alarm must outlive).
fn answer(outcome: &Outcome) -> (String, bool) {
    let took = matches!(outcome, Outcome::Allowed { ids } if !ids.is_empty());
    (serde_json::to_string(outcome).unwrap_or_default(), took)
}

/// The object's storage as the algorithm's event log.
struct Events(SqlStorage);

impl EventLog for Events {
    type Error = Error;

    fn prune(&self, now_ms: i64) -> Result<()> {
        self.0.exec("DELETE FROM events WHERE expires <= ?", vec![now_ms.into()])?;
        self.0.exec("DELETE FROM codes WHERE expires <= ?", vec![now_ms.into()])?;
        Ok(())
    }

    fn newest(&self, bucket: &str, after_ms: i64, limit: u32) -> Result<Vec<i64>> {
        let rows = self.0.exec(
            "SELECT at FROM events WHERE bucket = ? AND at > ? ORDER BY at DESC LIMIT ?",
            vec![bucket.into(), after_ms.into(), (limit as i64).into()],
        )?;
        Ok(rows.to_array::<At>()?.into_iter().map(|r| r.at).collect())
    }

    fn record(&self, bucket: &str, at_ms: i64, expires_ms: i64) -> Result<i64> {
        let row: Id = self
            .0
            .exec(
                "INSERT INTO events (bucket, at, expires) VALUES (?, ?, ?) RETURNING id",
                vec![bucket.into(), at_ms.into(), expires_ms.into()],
            )?
            .one()?;
        Ok(row.id)
    }

    fn remove(&self, id: i64) -> Result<()> {
        self.0.exec("DELETE FROM events WHERE id = ?", vec![id.into()])?;
        Ok(())
    }

    fn remember(&self, code: &PendingCode) -> Result<()> {
        self.0.exec(
            "INSERT OR REPLACE INTO codes (id, key, note, expires) VALUES (?, ?, ?, ?)",
            vec![code.id.as_str().into(), code.key.as_str().into(), code.note.as_str().into(), code.expires_ms.into()],
        )?;
        Ok(())
    }

    fn recall(&self, id: &str, now_ms: i64) -> Result<Option<Remembered>> {
        let rows =
            self.0.exec("SELECT key, note FROM codes WHERE id = ? AND expires > ?", vec![id.into(), now_ms.into()])?;
        Ok(rows.to_array::<Remembered>()?.into_iter().next())
    }
}

impl RateLimiter {
    fn events(&self) -> Result<Events> {
        let sql = self.state.storage().sql();
        if !self.schema_ready.get() {
            for statement in ports::EVENT_LOG_SCHEMA {
                sql.exec(statement, None)?;
            }
            self.schema_ready.set(true);
        }
        Ok(Events(sql))
    }

    fn latest_expiry(&self) -> Result<Option<i64>> {
        let latest: Expires = self
            .events()?
            .0
            .exec(
                "SELECT MAX(expires) AS expires FROM (SELECT expires FROM events UNION ALL SELECT expires FROM codes)",
                None,
            )?
            .one()?;
        Ok(latest.expires)
    }

    /// Makes sure an alarm is pending: it re-arms itself until the newest
    /// event has left its window, then deletes the object's storage. Set
    /// once, not on every hit (a storage write per request saved).
    async fn schedule_cleanup(&self) -> Result<()> {
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none() {
            if let Some(at) = self.latest_expiry()? {
                storage.set_alarm(at).await?;
            }
        }
        Ok(())
    }
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter { state, schema_ready: Cell::new(false) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let command: Command = req.json().await?;
        let now_ms = Date::now().as_millis() as i64;
        let log = self.events()?;
        let none = || Outcome::Allowed { ids: Vec::new() };
        let (body, took) = match command {
            Command::Ping => {
                // A real read of this object's SQLite storage.
                log.newest("ping", 0, 1)?;
                answer(&none())
            }
            Command::Hit { rules, breaker, code: None } => {
                answer(&limits::hit_with(&log, &rules, breaker.as_ref(), now_ms)?)
            }
            Command::Hit { rules, breaker, code: Some(code) } => {
                answer(&limits::hit_remembering(&log, &rules, breaker.as_ref(), &code, now_ms)?)
            }
            Command::Peek { rules } => answer(&limits::peek(&log, &rules, now_ms)?),
            Command::GuessCode { id, policy } => {
                let judged = limits::guess_code(&log, &id, &policy, now_ms)?;
                let took = matches!(&judged, Some(Judged { outcome: Outcome::Allowed { ids }, .. }) if !ids.is_empty());
                (serde_json::to_string(&judged)?, took)
            }
            Command::Settle { ids, known } => {
                limits::settle(&log, &ids, known.as_ref(), now_ms)?;
                answer(&none())
            }
            Command::Release { ids } => {
                limits::release(&log, &ids)?;
                answer(&none())
            }
        };
        if took {
            self.schedule_cleanup().await?;
        }
        Response::ok(body)
    }

    async fn alarm(&self) -> Result<Response> {
        let now_ms = Date::now().as_millis() as i64;
        self.events()?.prune(now_ms)?;
        match self.latest_expiry()? {
            // Idle past every window: drop the object's whole storage.
            None => {
                self.state.storage().delete_all().await?;
                self.schema_ready.set(false);
            }
            Some(at) => self.state.storage().set_alarm(at).await?,
        }
        Response::empty()
    }
}

/// The `Limiter` port: calls into rate-limiter objects by name. A missing
/// binding is an error of each call (the request fails closed, 503).
pub struct DurableLimiter {
    namespace: std::result::Result<ObjectNamespace, String>,
}

impl DurableLimiter {
    pub fn from_env(env: &Env) -> DurableLimiter {
        DurableLimiter { namespace: env.durable_object(BINDING).map_err(|e| e.to_string()) }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        object: &str,
        command: &Command,
    ) -> std::result::Result<T, StoreError> {
        let body = self.call_raw(object, command).await?;
        serde_json::from_str(&body).map_err(|e| StoreError(e.to_string()))
    }

    /// One command to `object`; the answer's body.
    async fn call_raw(&self, object: &str, command: &Command) -> std::result::Result<String, StoreError> {
        let store = |e: Error| StoreError(e.to_string());
        let namespace = self.namespace.as_ref().map_err(|e| StoreError(e.clone()))?;
        let stub = namespace.get_by_name(object).map_err(store)?;
        let mut init = RequestInit::new();
        let body = serde_json::to_string(command).map_err(|e| StoreError(e.to_string()))?;
        init.with_method(Method::Post).with_body(Some(body.into()));
        let request = Request::new_with_init("https://limiter/", &init).map_err(store)?;
        let mut resp = stub.fetch_with_request(request).await.map_err(store)?;
        if resp.status_code() != 200 {
            return Err(StoreError(format!("rate limiter answered HTTP {}", resp.status_code())));
        }
        resp.text().await.map_err(store)
    }
}

impl ports::Limiter for DurableLimiter {
    fn hit(
        &self,
        object: &str,
        rules: Vec<Rule>,
        breaker: Option<Breaker>,
        code: Option<PendingCode>,
    ) -> Fut<'_, std::result::Result<Outcome, StoreError>> {
        let object = object.to_string();
        Box::pin(async move { self.call(&object, &Command::Hit { rules, breaker, code }).await })
    }

    fn peek(&self, object: &str, rules: Vec<Rule>) -> Fut<'_, std::result::Result<Outcome, StoreError>> {
        let object = object.to_string();
        Box::pin(async move { self.call(&object, &Command::Peek { rules }).await })
    }

    fn guess_code(
        &self,
        object: &str,
        id: &str,
        policy: GuessPolicy,
    ) -> Fut<'_, std::result::Result<Option<Judged>, StoreError>> {
        let (object, id) = (object.to_string(), id.to_string());
        Box::pin(async move { self.call(&object, &Command::GuessCode { id, policy }).await })
    }

    fn settle(&self, object: &str, ids: Vec<i64>, known: Option<Rule>) -> Fut<'_, std::result::Result<(), StoreError>> {
        let object = object.to_string();
        Box::pin(async move { self.call::<Outcome>(&object, &Command::Settle { ids, known }).await.map(|_| ()) })
    }

    fn release(&self, object: &str, ids: Vec<i64>) -> Fut<'_, std::result::Result<(), StoreError>> {
        let object = object.to_string();
        Box::pin(async move { self.call::<Outcome>(&object, &Command::Release { ids }).await.map(|_| ()) })
    }

    fn ping(&self, object: &str) -> Fut<'_, std::result::Result<bool, StoreError>> {
        let object = object.to_string();
        Box::pin(
            async move { Ok(matches!(self.call::<Outcome>(&object, &Command::Ping).await?, Outcome::Allowed { .. })) },
        )
    }
}
