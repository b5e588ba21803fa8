//! The `RateLimiter` Durable Object (SQLite-backed, one object per key) and
//! the Worker-side client that calls it.
//!
//! A hit checks every rule and records the event with synchronous SQL calls
//! and no `await` in between, so two requests to one object can never both
//! take the last slot: limits are exact under any concurrency. Old events
//! are pruned on use, and an alarm deletes the object's storage once it has
//! been idle past its longest window.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use worker::*;

use crate::domain::limits::{self, Decision, Rule};

/// Binding name of the Durable Object namespace in wrangler.toml.
pub const BINDING: &str = "RATE_LIMITER";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Command {
    Ping,
    /// Take a slot under every rule, or none.
    Hit {
        rules: Vec<Rule>,
    },
    /// A verification guess: refused if `rule`'s window is full; otherwise
    /// allowed, and recorded as an event only if it `failed`. One call, so
    /// parallel guesses are judged one at a time.
    Guess {
        rule: Rule,
        failed: bool,
    },
    /// Give back slots taken by an earlier hit (its work did not count).
    Release {
        ids: Vec<i64>,
    },
}

#[derive(Serialize, Deserialize)]
struct Answer {
    allowed: bool,
    #[serde(default)]
    retry_after_ms: i64,
    #[serde(default)]
    ids: Vec<i64>,
}

#[durable_object]
pub struct RateLimiter {
    state: State,
    /// Whether `events` exists; `delete_all` drops it.
    schema_ready: Cell<bool>,
}

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS events (\
     id INTEGER PRIMARY KEY, bucket TEXT NOT NULL, at INTEGER NOT NULL, expires INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_bucket_at ON events (bucket, at)",
];

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

impl RateLimiter {
    fn sql(&self) -> Result<SqlStorage> {
        let sql = self.state.storage().sql();
        if !self.schema_ready.get() {
            for statement in SCHEMA {
                sql.exec(statement, None)?;
            }
            self.schema_ready.set(true);
        }
        Ok(sql)
    }

    /// Check all rules, then record: synchronous from start to end.
    fn hit(&self, rules: &[Rule], now_ms: i64) -> Result<Answer> {
        if let Some(refused) = self.check(rules, now_ms)? {
            return Ok(refused);
        }
        Ok(Answer { allowed: true, retry_after_ms: 0, ids: self.record(rules, now_ms)? })
    }

    /// Judge a guess: refused while the window is full, else recorded if it
    /// failed. Synchronous from start to end.
    fn guess(&self, rule: &Rule, failed: bool, now_ms: i64) -> Result<Answer> {
        let rules = std::slice::from_ref(rule);
        if let Some(refused) = self.check(rules, now_ms)? {
            return Ok(refused);
        }
        let ids = if failed { self.record(rules, now_ms)? } else { Vec::new() };
        Ok(Answer { allowed: true, retry_after_ms: 0, ids })
    }

    /// Prunes expired events, then decides: `Some` refusal, or `None`.
    fn check(&self, rules: &[Rule], now_ms: i64) -> Result<Option<Answer>> {
        let sql = self.sql()?;
        sql.exec("DELETE FROM events WHERE expires <= ?", vec![now_ms.into()])?;
        let mut failure = None;
        let decision = limits::decide_all(rules, now_ms, |rule| {
            let rows = sql.exec(
                "SELECT at FROM events WHERE bucket = ? AND at > ? ORDER BY at DESC LIMIT ?",
                vec![
                    rule.bucket.as_str().into(),
                    limits::window_floor(rule, now_ms).into(),
                    (rule.limit as i64).into(),
                ],
            );
            match rows.and_then(|c| c.to_array::<At>()) {
                Ok(rows) => rows.into_iter().map(|r| r.at).collect(),
                Err(e) => {
                    failure = Some(e);
                    Vec::new()
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(match decision {
            Decision::Refuse { retry_after_ms } => Some(Answer { allowed: false, retry_after_ms, ids: Vec::new() }),
            Decision::Allow => None,
        })
    }

    /// Records one event per bucket at `now_ms`; returns their ids.
    fn record(&self, rules: &[Rule], now_ms: i64) -> Result<Vec<i64>> {
        let sql = self.sql()?;
        let mut ids = Vec::new();
        let mut buckets: Vec<&str> = rules.iter().map(|r| r.bucket.as_str()).collect();
        buckets.sort_unstable();
        buckets.dedup();
        for bucket in buckets {
            let longest = rules.iter().filter(|r| r.bucket == bucket).map(|r| r.window_ms).max().unwrap_or(0);
            let row: Id = sql
                .exec(
                    "INSERT INTO events (bucket, at, expires) VALUES (?, ?, ?) RETURNING id",
                    vec![bucket.into(), now_ms.into(), (now_ms + longest).into()],
                )?
                .one()?;
            ids.push(row.id);
        }
        Ok(ids)
    }

    /// Makes sure an alarm is pending: it re-arms itself until the newest
    /// event has left its window, then deletes the object's storage. Set
    /// once, not on every hit (a storage write per request saved).
    async fn schedule_cleanup(&self) -> Result<()> {
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none() {
            let latest: Expires = self.sql()?.exec("SELECT MAX(expires) AS expires FROM events", None)?.one()?;
            if let Some(at) = latest.expires {
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
        let answer = match command {
            Command::Ping => {
                // A real read of this object's SQLite storage.
                let one: Vec<serde_json::Value> =
                    self.sql()?.exec("SELECT COUNT(*) AS n FROM events", None)?.to_array()?;
                Answer { allowed: one.len() == 1, retry_after_ms: 0, ids: Vec::new() }
            }
            Command::Hit { rules } => {
                let answer = self.hit(&rules, now_ms)?;
                if !answer.ids.is_empty() {
                    self.schedule_cleanup().await?;
                }
                answer
            }
            Command::Guess { rule, failed } => {
                let answer = self.guess(&rule, failed, now_ms)?;
                if !answer.ids.is_empty() {
                    self.schedule_cleanup().await?;
                }
                answer
            }
            Command::Release { ids } => {
                let sql = self.sql()?;
                for id in ids {
                    sql.exec("DELETE FROM events WHERE id = ?", vec![id.into()])?;
                }
                Answer { allowed: true, retry_after_ms: 0, ids: Vec::new() }
            }
        };
        Response::from_json(&answer)
    }

    async fn alarm(&self) -> Result<Response> {
        let now_ms = Date::now().as_millis() as i64;
        let sql = self.sql()?;
        sql.exec("DELETE FROM events WHERE expires <= ?", vec![now_ms.into()])?;
        let left: Expires = sql.exec("SELECT MAX(expires) AS expires FROM events", None)?.one()?;
        match left.expires {
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

/// The outcome of a hit, for the flow that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// Slots taken; `ids` can give them back.
    Allowed {
        object: String,
        ids: Vec<i64>,
    },
    Refused {
        retry_after_ms: i64,
    },
}

/// Calls into rate-limiter objects by name.
pub struct Limiter {
    namespace: ObjectNamespace,
}

impl Limiter {
    pub fn from_env(env: &Env) -> Result<Limiter> {
        Ok(Limiter { namespace: env.durable_object(BINDING)? })
    }

    async fn call(&self, object: &str, command: &Command) -> Result<Answer> {
        let stub = self.namespace.get_by_name(object)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(serde_json::to_string(command)?.into()));
        let mut resp = stub.fetch_with_request(Request::new_with_init("https://limiter/", &init)?).await?;
        if resp.status_code() != 200 {
            return Err(Error::RustError(format!("rate limiter answered HTTP {}", resp.status_code())));
        }
        resp.json().await
    }

    /// Round trip to one object: proves the namespace, the object and its
    /// storage answer.
    pub async fn ping(&self, object: &str) -> Result<bool> {
        Ok(self.call(object, &Command::Ping).await?.allowed)
    }

    pub async fn hit(&self, object: &str, rules: Vec<Rule>) -> Result<Hit> {
        let answer = self.call(object, &Command::Hit { rules }).await?;
        Ok(if answer.allowed {
            Hit::Allowed { object: object.to_string(), ids: answer.ids }
        } else {
            Hit::Refused { retry_after_ms: answer.retry_after_ms }
        })
    }

    /// Judges a verification guess under `rule` (see `Command::Guess`).
    pub async fn guess(&self, object: &str, rule: Rule, failed: bool) -> Result<Hit> {
        let answer = self.call(object, &Command::Guess { rule, failed }).await?;
        Ok(if answer.allowed {
            Hit::Allowed { object: object.to_string(), ids: answer.ids }
        } else {
            Hit::Refused { retry_after_ms: answer.retry_after_ms }
        })
    }

    /// Gives back the slots of an allowed hit.
    pub async fn release(&self, hit: &Hit) -> Result<()> {
        if let Hit::Allowed { object, ids } = hit {
            self.call(object, &Command::Release { ids: ids.clone() }).await?;
        }
        Ok(())
    }
}
